"""`rnncli rescore`: n-best lists in Kaldi's and the TSV form, costs that agree with `score`."""

import json
import math

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


def test_every_input_line_gets_one_output_line_and_a_bad_one_cannot_win(tmp_path, char_model):
    """Kaldi's scripts check n-best lists line for line: a blank line stays blank, a malformed line
    (an undecodable one deep in a file too: test_jobs) still gets its line (a cost of 1e+30, named
    on stderr, exit status 1), and the good lines' costs are what they are alone."""
    lines = [b"utt1-1 The apple and pear salad.", b"", b"utt1-2\tonly two fields", b"utt1-3\tfive\t1\t2\t3",
             b"utt2-1\tThe cook.\t3.5", b"utt2-2\tThe cook.\tnot-a-cost"]
    (tmp_path / "nbest.txt").write_bytes(b"\n".join(lines) + b"\n")
    result = run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model)
    out = result.stdout.split("\n")[:-1]
    assert result.exit_code == 1 and len(out) == len(lines)
    assert out[1] == "" and out[2] == "utt1-2\t1e+30\t1e+30" and out[5] == "utt2-2\t1e+30\t1e+30"
    assert out[3] == "utt1-3\t1e+30\t1e+30"
    assert "3 bad lines" in result.stderr and "line 3" in result.stderr and "1e+30" in result.stderr
    (tmp_path / "good.txt").write_text("utt1-1 The apple and pear salad.\nutt2-1\tThe cook.\t3.5\n")
    good = run_cli("rescore", tmp_path / "good.txt", "--model", char_model)
    assert good.exit_code == 0 and good.stdout.splitlines() == [out[0], out[4]]
    best = run_cli("rescore", tmp_path / "nbest.txt", "--model", char_model, "--best")  # a bad line never wins
    assert best.exit_code == 1 and best.stdout.splitlines() == ["utt1 The apple and pear salad.", "utt2 The cook."]


def test_an_unknown_word_costs_what_it_is_told_to(tmp_path, word_model):
    """A hypothesis with a word outside the vocabulary costs P(<UNK>) plus --unk-cost (a number, or
    each word's -ln p from a file of `word probability` lines, the file's largest for a word it
    lacks), so it cannot beat the same hypothesis with the right, known word for free."""
    (tmp_path / "nbest.txt").write_text("u-1 the teacher\nu-2 the zqxj\nu-3 the zqxj vvkw\n")
    plain = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model))
    priced = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model, "--unk-cost", "7.5"))
    assert priced["u-1"] == plain["u-1"]
    assert priced["u-2"] == pytest.approx(plain["u-2"] + 7.5, abs=1e-5)
    assert priced["u-3"] == pytest.approx(plain["u-3"] + 15.0, abs=1e-5)
    (tmp_path / "unk.probs").write_text("zqxj 0.001\nother 0.0001\n")
    by_word = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model, "--unk-cost",
                            tmp_path / "unk.probs"))
    assert by_word["u-2"] == pytest.approx(plain["u-2"] - math.log(0.001), abs=1e-5)
    assert by_word["u-3"] == pytest.approx(plain["u-3"] - math.log(0.001) - math.log(0.0001), abs=1e-5)
    record = json.loads(run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model, "--unk-cost", "1",
                                "--json").stdout.splitlines()[2])
    assert record["oov_words"] == 2
    (tmp_path / "bad.probs").write_text("zqxj 0.001\nwrong 2\n")
    refused = run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model, "--unk-cost", tmp_path / "bad.probs")
    assert refused.exit_code != 0 and "line 2" in refused.stderr and "Traceback" not in refused.stderr
    refused = run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model, "--unk-cost", "-1")
    assert refused.exit_code == 2 and "--unk-cost" in refused.stderr


def test_ignored_symbols_are_removed_before_scoring(tmp_path, word_model):
    (tmp_path / "nbest.txt").write_text("u-1 the teacher\nu-2 [noise] the <SPOKEN_NOISE> teacher [noise]\n")
    got = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model, "--ignore", "[noise]",
                        "--ignore", "<SPOKEN_NOISE> [laughter]"))
    assert got["u-2"] == got["u-1"]
    kept = costs(run_cli("rescore", tmp_path / "nbest.txt", "--model", word_model))
    assert kept["u-2"] != kept["u-1"]


def test_the_utterance_rule_is_stated_and_settable(tmp_path, char_model):
    """By default an id's last `-N` is dropped (Kaldi's utt-id-N), which LibriSpeech-style utterance
    ids also match; --utterance '^(.*)$' takes each id whole, so different utterances never merge."""
    text = "".join(f"1089-134686-000{i}\tThe cook{'.' * i}\t{i}\n" for i in range(3))
    (tmp_path / "nbest.tsv").write_text(text)
    merged = run_cli("rescore", tmp_path / "nbest.tsv", "--model", char_model, "--best")
    assert [line.split()[0] for line in merged.stdout.splitlines()] == ["1089-134686"]
    whole = run_cli("rescore", tmp_path / "nbest.tsv", "--model", char_model, "--best", "--utterance", "^(.*)$")
    assert [line.split()[0] for line in whole.stdout.splitlines()] == [f"1089-134686-000{i}" for i in range(3)]
    nbest = "".join(f"1089-134686-0000-{n} The cook{'.' * n}\n" for n in (1, 2))
    (tmp_path / "kaldi.txt").write_text(nbest)
    kaldi = run_cli("rescore", tmp_path / "kaldi.txt", "--model", char_model, "--best")
    assert [line.split()[0] for line in kaldi.stdout.splitlines()] == ["1089-134686-0000"]
    for bad in ("(", "no-group"):
        refused = run_cli("rescore", tmp_path / "kaldi.txt", "--model", char_model, "--utterance", bad)
        assert refused.exit_code == 2 and "--utterance" in refused.stderr


def test_the_command_states_the_engines_utterance_rule():
    from rnncli.cli import rescore as command

    assert command.KALDI_UTTERANCE == rescore_module.KALDI_UTTERANCE


def test_several_nbest_files_are_read_as_one(tmp_path, char_model):
    import gzip

    (tmp_path / "a.txt").write_text("utt1-1 The apple.\nutt1-2 The apples.\n")
    (tmp_path / "b.txt.gz").write_bytes(gzip.compress(b"utt2-1 The pear.\nutt2-2 The bear.\n"))
    (tmp_path / "all.txt").write_text("utt1-1 The apple.\nutt1-2 The apples.\nutt2-1 The pear.\nutt2-2 The bear.\n")
    both = run_cli("rescore", tmp_path / "a.txt", tmp_path / "b.txt.gz", "--model", char_model, "--best")
    whole = run_cli("rescore", tmp_path / "all.txt", "--model", char_model, "--best")
    assert both.exit_code == 0, both.stderr
    assert both.stdout == whole.stdout and len(both.stdout.splitlines()) == 2
