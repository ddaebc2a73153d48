"""Metrics against their reference implementations: phrases as CoNLL's conlleval reads them (its
figures for hand-made IOB1 and IOB2 sentences, computed with conlleval.pl 2004-01-26), BLEU against
sacrebleu itself, classification against counts done by hand."""

import pytest

from rnncli.tasks.metrics import chunks, classification_report, conll_report, corpus_bleu, tokenize_13a


def test_iob2_phrases_start_at_b():
    assert chunks(["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC"]) == {(0, 2, "PER"), (3, 4, "LOC"), (4, 6, "LOC")}


def test_iob1_phrases_start_at_i_after_o_or_at_a_type_change():
    # IOB1: I- opens a phrase after O or another type; B- only splits two adjacent phrases of one type
    assert chunks(["I-PER", "I-PER", "I-LOC", "O", "I-LOC", "B-LOC"]) == {(0, 2, "PER"), (2, 3, "LOC"),
                                                                          (4, 5, "LOC"), (5, 6, "LOC")}


def test_a_stray_i_after_another_type_opens_a_phrase():
    assert chunks(["B-PER", "I-LOC", "I-LOC"]) == {(0, 1, "PER"), (1, 3, "LOC")}
    assert chunks(["O", "O"]) == set()


def test_conll_report_matches_conlleval():
    gold = [["O", "O", "B-PER", "I-PER", "O", "B-PER", "I-PER", "O"],
            ["O", "O", "O", "O", "O"],
            ["I-PER", "I-PER", "O", "O", "I-LOC", "I-LOC", "O", "I-LOC", "B-LOC"]]
    pred = [["O", "O", "B-PER", "I-PER", "O", "B-PER", "O", "O"],
            ["B-PER", "O", "O", "O", "O"],
            ["I-PER", "I-PER", "O", "O", "I-LOC", "I-ORG", "O", "I-LOC", "I-LOC"]]
    r = conll_report(gold, pred)
    # conlleval: processed 22 tokens with 6 phrases; found: 7 phrases; correct: 2.
    #            accuracy: 81.82%; precision: 28.57%; recall: 33.33%; FB1: 30.77
    #            LOC 0.00 (found 2), ORG 0.00 (found 1), PER: precision 50.00%; recall 66.67%; FB1 57.14 (found 4)
    assert (r["tokens"], r["phrases"], r["found"], r["correct"]) == (22, 6, 7, 2)
    assert round(100 * r["accuracy"], 2) == 81.82
    assert [round(100 * r[k], 2) for k in ("precision", "recall", "f1")] == [28.57, 33.33, 30.77]
    per = r["per_type"]
    assert (per["LOC"]["f1"], per["LOC"]["predicted"], per["ORG"]["predicted"]) == (0.0, 2, 1)
    assert (round(100 * per["PER"]["precision"], 2), round(100 * per["PER"]["recall"], 2),
            round(100 * per["PER"]["f1"], 2), per["PER"]["predicted"]) == (50.0, 66.67, 57.14, 4)


HYPOTHESES = ["The cat sat on the mat.", "I would like to sing with you!", "2021-03-03",
              "It's a \"test\" of the 13a rules, isn't it?", "nothing matches here", "A-B 3.5 1,000 x-ray"]
REFERENCES = ["The cat is on the mat.", "Would you like to sing with me?", "2021-03-03",
              "It is a \"test\" of the 13a rules, is it not?", "completely different words", "A-B 3.5 1,000 X-ray"]


def test_bleu_is_sacrebleus():
    import sacrebleu  # a dev extra: the reference BLEU
    ref = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES])
    ours = corpus_bleu(HYPOTHESES, REFERENCES)
    assert ours["bleu"] == pytest.approx(ref.score, abs=1e-9)
    assert ours["precisions"] == pytest.approx(ref.precisions, abs=1e-9)
    assert (ours["hypothesis_length"], ours["reference_length"]) == (ref.sys_len, ref.ref_len)
    for h, r in [(HYPOTHESES[:1], REFERENCES[:1]), (["a b"], ["a b c d e f"]), (["x"], ["y"])]:
        assert corpus_bleu(h, r)["bleu"] == pytest.approx(sacrebleu.corpus_bleu(h, [r]).score, abs=1e-9)
    for line in HYPOTHESES + REFERENCES:
        assert tokenize_13a(line) == sacrebleu.tokenizers.tokenizer_13a.Tokenizer13a()(line).split()


def test_exact_match_rate():
    assert corpus_bleu(["a b", "c"], ["a b", "d"])["exact_match"] == 0.5


def test_classification_report_by_hand():
    gold = ["pos", "pos", "neg", "neg", "neg", "mixed"]
    pred = ["pos", "neg", "neg", "neg", "pos", "neg"]
    r = classification_report(gold, pred, ["neg", "pos", "mixed"])
    assert r["accuracy"] == pytest.approx(3 / 6)
    assert r["confusion"] == [[2, 1, 0], [1, 1, 0], [1, 0, 0]]  # rows gold neg, pos, mixed
    neg = r["per_class"]["neg"]  # TP 2, FP 2, FN 1
    assert (neg["precision"], neg["recall"]) == pytest.approx((0.5, 2 / 3))
    assert neg["f1"] == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert r["per_class"]["mixed"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 1}
