"""`rnncli rescore`: n-best lists in Kaldi's and the TSV form, costs that agree with `score`."""

import json

import pytest

import rnncli.inference.rescore as rescore_module
from tests.conftest import run_cli

NBEST = """utt1-1 The apple and pear salad was sweet.
utt1-2 The apple and pair salad was sweet.
utt1-3 the apple and pear salad was sweet
utt2-1 The cook made a golden grape juice.
utt2-2 The cook maid a golden grape juice.
"""


def costs(result) -> dict[str, float]:
    assert result.exit_code == 0, result.stderr
    return {line.split()[0]: float(line.split()[1]) for line in result.stdout.splitlines()}


def test_costs_are_minus_the_log_probabilities_score_gives(tmp_path, char_model):
    (tmp_path / "nbest.txt").write_text(NBEST)
    got = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model))
    texts = [line.split(" ", 1)[1] for line in NBEST.splitlines()]
    scored = json.loads(run_cli("score", "--model", char_model, *texts, "--json").stdout)
    by_text = {r["text"]: r["logprob"] for r in scored}
    for line in NBEST.splitlines():
        hyp_id, text = line.split(" ", 1)
        assert got[hyp_id] == pytest.approx(-by_text[text], abs=1e-5)
    no_eos = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model, "--no-eos"))
    assert all(no_eos[k] < got[k] for k in got)  # without -ln P(<EOS> | ...), each cost is lower


def test_shards_give_the_same_costs_and_keep_utterances_whole(tmp_path, char_model):
    (tmp_path / "nbest.txt").write_text(NBEST)
    whole = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model))
    assert costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model, "--shard-lines", "2")) == \
        pytest.approx(whole)
    best = run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model, "--best")
    # shards of one line: a cut never falls inside an utterance, so each still gets one best line
    assert run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model, "--best", "--shard-lines", "1",
                   "--workers", "2").stdout == best.stdout
    assert [line.split()[0] for line in best.stdout.splitlines()] == ["utt1", "utt2"]
    assert [rescore_module.utterance_of(line) for line in NBEST.splitlines()] == ["utt1"] * 3 + ["utt2"] * 2


def test_the_best_hypothesis_per_utterance_by_the_interpolated_total(tmp_path, char_model):
    lines = [("utt1-1", "The apple and pear salad was sweet.", 30.0, 50.0),
             ("utt1-2", "The apple and pair salad was sweet.", 10.0, 40.0),
             ("utt2-1", "The cook made a golden grape juice.", 5.0, 9.0)]
    (tmp_path / "nbest.tsv").write_text("".join(f"{i}\t{t}\t{a}\t{o}\n" for i, t, a, o in lines))
    result = run_cli("rescore", tmp_path / "nbest.tsv", "--model", char_model, "--weight", "0.3", "--json")
    assert result.exit_code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    for r, (_, _, am, old) in zip(records, lines, strict=True):
        assert r["total"] == pytest.approx(am + 0.3 * r["rnn_cost"] + 0.7 * old)
    best = run_cli("rescore", tmp_path / "nbest.tsv", "--model", char_model, "--weight", "0.3", "--best")
    expected = min(records[:2], key=lambda r: r["total"])
    assert best.stdout.splitlines() == [f"utt1 {expected['text']}", f"utt2 {lines[2][1]}"]


@pytest.mark.parametrize("content, message", [
    ("a-1\tsome text\tnot-a-number\n", "line 1"),
    ("a-1 fine\nb-1\tonly two fields\n", "line 2"),
    ("a-1\ttext\t1\t2\t3\n", "line 1"),
    ("a-1\ttext\tnan\n", "not finite"),
])
def test_a_malformed_line_is_named(tmp_path, char_model, content, message):
    (tmp_path / "bad.txt").write_text(content)
    result = run_cli("rescore", tmp_path / "bad.txt", "--model", char_model)
    assert result.exit_code == 1 and message in result.stderr and result.stderr.count("\n") == 1


def test_weight_out_of_range_is_refused(tmp_path, char_model):
    (tmp_path / "nbest.txt").write_text(NBEST)
    result = run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model, "--weight", "1.5")
    assert result.exit_code == 2 and "--weight" in result.stderr
