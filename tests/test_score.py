"""`rnncli score`: probabilities that add up, rankings, file summaries that agree with training."""

import json
import math

import numpy as np
import pytest

from rnncli.inference.score import score_sentences
from rnncli.models.model import Model
from rnncli.training.request import load_model_checkpoint as load_checkpoint
from tests.conftest import CORPORA, run_cli


def score_json(model, *args):
    result = run_cli("score", "--model", model, "--json", *args)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_next_token_distribution_sums_to_one(word_model):
    ck = load_checkpoint(str(word_model))
    ids = ck.tokenizer.encode("The apple and pear salad was sweet.\nWe ate it.")
    model = Model(ck.model)
    lp, _ = model.next_token_logprobs(ck.params, ids[:, None].astype(np.int64), model.initial_state(1))
    np.testing.assert_allclose(np.exp(lp.astype(np.float64)).sum(axis=2), 1.0, atol=1e-5)


@pytest.mark.parametrize("fixture", ["char_model", "word_model"])
def test_sentence_logprob_is_the_sum_of_its_tokens(request, fixture):
    model = request.getfixturevalue(fixture)
    rows = score_json(model, "--per-token", "the apple and pear salad", "the apple and pair salad")
    for row in rows:
        assert row["logprob"] == pytest.approx(sum(t["logprob"] for t in row["per_token"]))
        assert row["log10prob"] == pytest.approx(row["logprob"] / math.log(10))
        assert row["perplexity"] == pytest.approx(math.exp(-row["logprob"] / row["tokens"]))
        assert row["per_token"][-1]["token"] == "<EOS>"
    assert rows[0]["logprob"] >= rows[1]["logprob"]  # ranked best first
    assert rows[0]["rank"] == 1


def test_batched_scores_equal_one_at_a_time(word_model):
    ck = load_checkpoint(str(word_model))
    texts = ["The plum tart was warm.", "We ate the fig jam in the shop.", "Snow covered the hill."]
    together = score_sentences(ck, texts)
    for text, s in zip(texts, together, strict=True):
        alone = score_sentences(ck, [text])[0]
        assert s.logprob == pytest.approx(alone.logprob, abs=1e-4)


def test_the_pear_salad_beats_the_pair_salad(word_model):
    rows = score_json(word_model, "the apple and pair salad", "the apple and pear salad")
    assert rows[0]["text"] == "the apple and pear salad"


def test_no_eos_and_units(word_model):
    with_eos = score_json(word_model, "the apple")[0]
    without = score_json(word_model, "--no-eos", "the apple")[0]
    assert without["tokens"] == with_eos["tokens"] - 1
    assert without["logprob"] > with_eos["logprob"]
    text = run_cli("score", "--model", word_model, "--bits", "the apple").stdout
    assert "log2prob" in text


def test_oov_words_are_counted(word_model):
    row = score_json(word_model, "the zyzzyva salad")[0]
    assert row["oov"] == 1


def test_file_summary(word_model, tmp_path):
    path = tmp_path / "s.txt"
    path.write_text("The apple and pear salad was sweet.\n\nWe ate the zyzzyva.\n")
    summary = score_json(word_model, "--file", path)
    assert summary["sentences"] == 2 and summary["oov"] == 1
    rows = score_json(word_model, "The apple and pear salad was sweet.", "We ate the zyzzyva.")
    assert summary["logprob"] == pytest.approx(sum(r["logprob"] for r in rows), abs=1e-4)
    assert summary["tokens"] == sum(r["tokens"] for r in rows)
    assert summary["perplexity"] == pytest.approx(math.exp(-summary["logprob"] / summary["tokens"]))
    assert summary["perplexity_without_unk"] != summary["perplexity"]
    chars = len("The apple and pear salad was sweet.") + len("We ate the zyzzyva.") + 2
    assert summary["bits_per_char"] == pytest.approx(-summary["logprob"] / math.log(2) / chars)


def test_file_from_stdin_and_formats(word_model):
    from typer.testing import CliRunner

    from rnncli.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["score", "--model", str(word_model), "--file", "-", "--format", "jsonl"],
                           input="The plum tart was warm.\nWe ate.\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["sentences"] == 2
    tsv = run_cli("score", "--model", word_model, "--format", "tsv", "a", "b").stdout.splitlines()
    assert tsv[0].startswith("rank\tlogprob") and len(tsv) == 3
    lines = run_cli("score", "--model", word_model, "--format", "jsonl", "a", "b").stdout.splitlines()
    assert [json.loads(x)["rank"] for x in lines] == [1, 2]


def test_continuous_file_score_equals_trainings_validation_loss(tmp_path):
    val = tmp_path / "val.txt"
    val.write_text("".join((CORPORA / "demo.txt").read_text().splitlines(keepends=True)[-60:]))
    out = tmp_path / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--cell", "gru", "--layers", "1", "--hidden", "16",
                     "--max-steps", "4", "--seq-len", "20", "--batch-size", "8", "--valid", val,
                     "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    reported = json.loads(result.stdout.strip().splitlines()[-1])["val_loss"]
    scored = score_json(out, "--file", val, "--continuous")
    assert scored["loss"] == pytest.approx(reported, abs=1e-9)


@pytest.mark.parametrize("args, code, message", [
    (("",), 2, "empty sentence"),
    (("a", "--file", "x.txt"), 2, "not both"),
    ((), 2, "nothing to score"),
    (("a", "--format", "xml"), 2, "--format"),
    (("--file", "missing.txt"), 2, "no such file"),
])
def test_bad_input(word_model, args, code, message):
    result = run_cli("score", "--model", word_model, *args)
    assert result.exit_code == code and message in result.stderr


def test_not_a_checkpoint(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"PK\x03\x04 truncated")
    result = run_cli("score", "--model", bad, "hello")
    assert result.exit_code == 1 and "bad.npz" in result.stderr
