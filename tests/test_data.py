import numpy as np
import pytest

from rnncli.errors import RnncliError, UsageError
from rnncli.text.data import Corpus, count_lines, token_stats
from rnncli.text.encoding import encode_corpus
from rnncli.text.tokenizers import EOS, CharTokenizer, WordTokenizer


def write(tmp_path, data: bytes, name="c.txt"):
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


def test_bom_and_crlf_are_normalised(tmp_path):
    path = write(tmp_path, b"\xef\xbb\xbfab\r\ncd\re\r\n")
    assert Corpus(path).read_text() == "ab\ncd\ne\n"


def test_crlf_split_across_blocks(tmp_path):
    data = b"x" * 9 + b"\r\n" + b"y" * 20 + b"\r\n"
    path = write(tmp_path, data)
    blocks = list(Corpus(path).blocks(block_bytes=10))
    assert "".join(blocks) == "x" * 9 + "\n" + "y" * 20 + "\n"
    assert all(b.endswith("\n") for b in blocks)


def test_invalid_utf8_names_file_and_offset(tmp_path):
    path = write(tmp_path, b"hello\nw\xffrld\n")
    with pytest.raises(RnncliError, match=r"c\.txt.*byte offset 7.*--encoding latin-1"):
        Corpus(path).read_text()
    assert Corpus(path, encoding="latin-1").read_text() == "hello\nwÿrld\n"
    assert "\ufffd" in Corpus(path, errors="replace").read_text()


def test_invalid_utf8_offset_in_a_later_block(tmp_path):
    data = "é".encode() * 10 + b"\n" + b"\xc3"  # a truncated sequence at the very end
    path = write(tmp_path, data)
    with pytest.raises(RnncliError, match=r"byte offset 21"):
        list(Corpus(path).blocks(block_bytes=4))


@pytest.mark.parametrize(
    "data, pattern",
    [(b"", "empty"), (b"\n\n \n", "empty"), (b"ab\x00cd", "binary"), ("hi".encode("utf-16"), "UTF-16")],
)
def test_unusable_corpora(tmp_path, data, pattern):
    with pytest.raises(RnncliError, match=pattern):
        Corpus(write(tmp_path, data)).read_text()


def test_missing_and_directory(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        Corpus(str(tmp_path / "nope.txt")).read_text()
    with pytest.raises(UsageError, match="no files matching"):  # a folder stands for its files: here none
        Corpus(str(tmp_path)).read_text()


def test_streaming_encoder_matches_whole_text(tmp_path):
    rng = np.random.default_rng(0)
    lines = ["".join(rng.choice(list("abcdé xyz"), size=rng.integers(0, 80))) for _ in range(5000)]
    text = "\n".join(lines) + "\n"
    path = write(tmp_path, text.encode())
    corpus = Corpus(path)
    assert len(list(corpus.blocks(block_bytes=4096))) > 10
    for tok in (CharTokenizer.fit([text]), WordTokenizer.fit([text])):
        whole = tok.encode(text)
        streamed = encode_corpus(tok, corpus, block_bytes=4096)  # many blocks, growing the array
        assert streamed.dtype == np.int32
        assert np.array_equal(whole, streamed)
        assert np.array_equal(whole, encode_corpus(tok, corpus))  # one block


def test_stats_and_lines(tmp_path):
    path = write(tmp_path, b"a b\nc\nd")
    corpus = Corpus(path)
    tok = WordTokenizer.fit(corpus.blocks(), max_vocab=4)
    ids = encode_corpus(tok, corpus)
    stats = token_stats(ids, tok.vocab_size, count_lines(corpus))
    assert stats.lines == 3 and stats.tokens == 7
    assert stats.unk == 2 and stats.unk_rate == pytest.approx(2 / 7)
    assert stats.counts[EOS] == 3


def test_large_corpora_are_encoded_to_a_memory_map(tmp_path):
    text = "the apple and pear salad\n" * 2000
    path = write(tmp_path, text.encode())
    corpus = Corpus(path)
    tok = WordTokenizer.fit(corpus.blocks())
    in_memory = encode_corpus(tok, corpus)
    mapped = encode_corpus(tok, corpus, block_bytes=4096, spill_bytes=0)
    assert isinstance(mapped, np.memmap) and not mapped.flags.writeable
    assert np.array_equal(in_memory, mapped)
    assert list(tmp_path.iterdir()) == [tmp_path / "c.txt"]  # the temp file is not left behind


def test_training_and_scoring_from_a_memory_map(tmp_path, monkeypatch):
    import json

    import rnncli.text.encoding as encoding
    from tests.conftest import CORPORA, run_cli

    monkeypatch.setattr(encoding, "SPILL_BYTES", 0)
    out = tmp_path / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--cell", "gru", "--layers", "1", "--hidden", "16",
                     "--max-steps", "3", "--seq-len", "16", "--batch-size", "4", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    scored = run_cli("score", "--model", out, "--file", CORPORA / "demo.txt", "--continuous", "--json")
    assert scored.exit_code == 0 and json.loads(scored.stdout)["tokens"] > 30000


def test_drop_rare_inputs_replaces_only_words_seen_once():
    from rnncli.tasks.models import Batch
    from rnncli.text.examples import Encoded, drop_rare_inputs, rare_inputs
    from rnncli.text.tokenizers import UNK

    encoded = Encoded([np.array([5, 6, 6, 7]), np.array([8, 6, 9])], [0, 1])
    rare = rare_inputs(encoded, 12)
    assert np.flatnonzero(rare).tolist() == [5, 7, 8, 9]
    inputs = np.tile(np.array([[5], [6], [7], [8], [9], [10]]), (1, 2000))  # (T, B)
    out = drop_rare_inputs(Batch(inputs, np.zeros(2000, np.int64)), rare, 0.5, np.random.default_rng(0)).inputs
    assert (out[[1, 5]] == inputs[[1, 5]]).all()  # 6 (seen three times) and 10 (never) are kept
    for t in (0, 2, 3, 4):
        share = (out[t] == UNK).mean()
        assert 0.45 < share < 0.55 and ((out[t] == UNK) | (out[t] == inputs[t])).all()
    again = drop_rare_inputs(Batch(inputs, np.zeros(2000, np.int64)), rare, 0.5, np.random.default_rng(0)).inputs
    np.testing.assert_array_equal(out, again)  # the run's RNG decides: a resumed run draws the same


@pytest.mark.parametrize("level", ["char", "word", "subword"])
def test_encoding_on_several_processes_gives_the_same_ids(tmp_path, level):
    """Blocks encoded by two worker processes, in order, are the ids of one process encoding them."""
    from rnncli.config import TokenizerConfig
    from rnncli.text.encoding import encoded_blocks
    from rnncli.text.tokenizers import fit_tokenizer
    from tests.conftest import CORPORA

    path = write(tmp_path, (CORPORA / "demo.txt").read_bytes() * 3)
    corpus = Corpus(path)
    tok = fit_tokenizer(TokenizerConfig(level=level, vocab_size=120), corpus.blocks())
    alone = np.concatenate(list(encoded_blocks(tok, corpus, block_bytes=4096, processes=1)))
    shared = np.concatenate(list(encoded_blocks(tok, corpus, block_bytes=4096, processes=2)))
    assert np.array_equal(alone, shared.astype(np.int32)) and len(alone) > 1000
