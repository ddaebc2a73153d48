import json

import numpy as np

from corpora.synthetic import agreement_corpus, demo_corpus, demo_parts, markov_corpus, markov_source
from tests.conftest import CORPORA


def test_shipped_corpora_match_the_generator():
    text, entropy = markov_corpus()
    assert (CORPORA / "markov.txt").read_text(encoding="utf-8") == text
    meta = json.loads((CORPORA / "markov.json").read_text())
    assert abs(meta["entropy_rate_nats_per_char"] - entropy) < 1e-12
    assert (CORPORA / "agreement.txt").read_text(encoding="utf-8") == agreement_corpus()
    assert (CORPORA / "demo.txt").read_text(encoding="utf-8") == demo_corpus()


def test_the_demo_folder_is_the_demo_corpus_in_compressed_parts():
    from rnncli.text.data import Corpus

    assert sorted(p.name for p in (CORPORA / "demo-parts").iterdir()) == sorted(demo_parts())
    assert Corpus(str(CORPORA / "demo-parts")).read_text() == demo_corpus()


def test_entropy_rate_matches_empirical_log_loss():
    # The true model's average log-loss on a long sample converges to the entropy rate.
    source = markov_source()
    text, entropy = markov_corpus(n_chars=200_000, seed=1234)
    A = len(source.alphabet)
    index = {c: i for i, c in enumerate(source.alphabet)}
    ids = np.array([index[c] for c in text])
    ctx = ids[:-2] * A + ids[1:-1]
    loss = -np.log(source.probs[ctx, ids[2:]]).mean()
    assert abs(loss - entropy) < 0.02
    assert 0.5 < entropy < np.log(A)


def test_agreement_lines_agree():
    for line in agreement_corpus(n_lines=200).splitlines():
        words = line.split()
        plural = words[1] in ("cats", "dogs", "birds", "children")
        assert words[-3] == ("were" if plural else "was")
