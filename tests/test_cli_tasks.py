"""The task commands end to end on the shipped corpora: train --task classify|tag|translate, then
classify, tag, translate and evaluate; looking ahead helps tagging; models of one task are
refused by the commands of another; resume is exact; bad files fail with one line."""

import json

import numpy as np
import pytest

from rnncli.training.request import load_model_checkpoint
from tests.conftest import CORPORA, run_cli

SENTIMENT, SENTIMENT_TEST = CORPORA / "sentiment.tsv", CORPORA / "sentiment-test.tsv"
NER, NER_TEST = CORPORA / "ner.txt", CORPORA / "ner-test.txt"
DATES, DATES_TEST = CORPORA / "dates.tsv", CORPORA / "dates-test.tsv"


def ok(result):
    assert result.exit_code == 0, result.stderr
    return result


def train(out, corpus, *options):
    return ok(run_cli("train", corpus, "--out", out, "--json", *options))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    out = tmp_path_factory.mktemp("classify") / "sentiment.npz"
    train(out, SENTIMENT, "--task", "classify", "--bidirectional", "--hidden", "32", "--embed", "16",
          "--layers", "1", "--epochs", "3")
    return out


@pytest.fixture(scope="module")
def taggers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tag")
    for name, extra in (("bi", ["--bidirectional"]), ("uni", [])):
        train(folder / f"{name}.npz", NER, "--task", "tag", "--hidden", "32", "--embed", "16", "--layers", "1",
              "--epochs", "4", "--lr", "6e-3", *extra)
    return folder


@pytest.fixture(scope="module")
def translator(tmp_path_factory):
    out = tmp_path_factory.mktemp("translate") / "dates.npz"
    train(out, DATES, "--task", "translate", "--level", "char", "--hidden", "96", "--embed", "24",
          "--layers", "1", "--epochs", "6", "--bidirectional")
    return out


def test_the_classifier_reads_negation(classifier):
    result = ok(run_cli("classify", "--model", classifier, "there is nothing to like in this movie",
                        "there is nothing but likeable work in this movie"))
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [line[0] for line in lines] == ["neg", "pos"]
    assert lines[0][2] == "there is nothing to like in this movie"
    first = lines[0][1].split()  # ranked: the label's own probability first
    assert first[0].startswith("neg=") and float(first[0][4:]) > 0.9


def test_classify_json_and_file_from_stdin(classifier, cli):
    result = cli("classify", "--model", classifier, "--json", "--file", "-",
                 input="the plot is not dull at all\n\nthe cast is dull , never funny\n")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["label"] for r in rows] == ["pos", "neg"]
    dash = cli("classify", "--model", classifier, "--json", "-", input="the plot is not dull at all\n")
    assert dash.exit_code == 0 and json.loads(dash.stdout)["label"] == "pos"
    for r in rows:
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert list(r["probabilities"].values()) == sorted(r["probabilities"].values(), reverse=True)


def test_evaluate_a_classifier(classifier):
    report = json.loads(ok(run_cli("evaluate", "--model", classifier, SENTIMENT_TEST, "--json")).stdout)
    assert report["task"] == "classify" and report["examples"] == 300
    assert report["accuracy"] > 0.95
    assert sum(map(sum, report["confusion"])) == 300
    text = ok(run_cli("evaluate", "--model", classifier, SENTIMENT_TEST)).stdout
    assert "accuracy" in text and "confusion" in text


def test_looking_ahead_helps_tagging(taggers):
    f1 = {name: json.loads(ok(run_cli("evaluate", "--model", taggers / f"{name}.npz", NER_TEST,
                                      "--json")).stdout)["f1"] for name in ("bi", "uni")}
    assert f1["bi"] > 0.95  # "Teddy bears" against "Teddy Roosevelt": only the next word tells
    assert f1["bi"] - f1["uni"] > 0.2, f1


def test_tag_formats(taggers):
    model = taggers / "bi.npz"
    text = ok(run_cli("tag", "--model", model, "Teddy bears are on sale.", "Teddy Roosevelt was a great President."))
    assert text.stdout.splitlines() == ["Teddy/O bears/O are/O on/O sale/O ./O",
                                        "Teddy/B-PER Roosevelt/I-PER was/O a/O great/O President/O ./O"]
    conll = ok(run_cli("tag", "--model", model, "--format", "conll", "Rose Potter visited Oslo last year.")).stdout
    assert conll.splitlines()[:4] == ["Rose\tB-PER", "Potter\tI-PER", "visited\tO", "Oslo\tB-LOC"]
    assert conll.endswith("\n\n")
    row = json.loads(ok(run_cli("tag", "--model", model, "--json", "Jack fruit is sweet.")).stdout)
    assert row["tokens"] == ["Jack", "fruit", "is", "sweet", "."] and row["tags"] == ["O"] * 5


def test_the_translator_learns_dates(translator):
    report = json.loads(ok(run_cli("evaluate", "--model", translator, DATES_TEST, "--json")).stdout)
    assert report["task"] == "translate" and report["sentences"] == 300
    assert report["bleu"] > 60, report["bleu"]
    out = ok(run_cli("translate", "--model", translator, "the 3rd of March 2021")).stdout.strip()
    assert len(out) == 10 and out.startswith("20") and out[4] == "-" and out[7] == "-"


def test_translate_decodings(translator):
    greedy = ok(run_cli("translate", "--model", translator, "December 25, 1999")).stdout
    beam = ok(run_cli("translate", "--model", translator, "--beam", "4", "December 25, 1999")).stdout
    assert beam.strip() and greedy.strip()
    a = ok(run_cli("translate", "--model", translator, "--temperature", "1", "--seed", "5", "--json", "May 1, 2000"))
    b = ok(run_cli("translate", "--model", translator, "--temperature", "1", "--seed", "5", "--json", "May 1, 2000"))
    assert a.stdout == b.stdout and json.loads(a.stdout)["source"] == "May 1, 2000"


def test_commands_refuse_a_model_of_another_task(classifier, translator, char_model):
    for args, needle in [(("sample", "--model", classifier), "use rnncli classify"),
                         (("score", "--model", classifier, "a b"), "use rnncli classify"),
                         (("tag", "--model", classifier, "a b"), "is a classifier"),
                         (("classify", "--model", translator, "a b"), "use rnncli translate"),
                         (("classify", "--model", char_model, "a b"), "use rnncli sample")]:
        result = run_cli(*args)
        assert result.exit_code == 2, (args, result.stdout)
        assert needle in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_bidirectional_is_refused_for_a_language_model(tmp_path):
    result = run_cli("train", CORPORA / "demo.txt", "--bidirectional", "--out", tmp_path / "x.npz")
    assert result.exit_code == 2
    assert "--bidirectional is not for a language model" in result.stderr
    assert not (tmp_path / "x.npz").exists()


def test_info_shows_the_task(classifier):
    data = json.loads(ok(run_cli("info", classifier, "--json")).stdout)
    assert data["task"] == "classify" and data["bidirectional"] is True and data["labels"] == ["neg", "pos"]
    text = ok(run_cli("info", classifier)).stdout
    assert "classifier (2 labels: neg, pos)" in text and "1 bidirectional layer(s) of 32" in text


def with_names_seen_once(tmp_path):
    """The shipped tagging corpus repeats every word; this one adds sixty names seen once each."""
    corpus = tmp_path / "ner-rare.txt"
    corpus.write_text(NER.read_text(encoding="utf-8")
                      + "".join(f"\nmet O\nQuorb{i} B-PER\ntoday O\n" for i in range(60)), encoding="utf-8")
    return corpus


def test_a_task_run_resumes_exactly(tmp_path):
    """Dropout and the words seen once turned into <UNK> draw from the run's RNG: a resumed run
    draws what the uninterrupted one drew."""
    corpus = with_names_seen_once(tmp_path)
    common = ["--task", "tag", "--bidirectional", "--hidden", "16", "--embed", "8", "--layers", "1",
              "--dropout", "0.2", "--seed", "3", "--schedule", "constant"]  # the budget grows on resume
    train(tmp_path / "full.npz", corpus, *common, "--max-steps", "40")
    train(tmp_path / "part.npz", corpus, *common, "--max-steps", "25")
    train(tmp_path / "part.npz", corpus, "--resume", tmp_path / "part.npz", "--max-steps", "40")
    full, part = load_model_checkpoint(str(tmp_path / "full.npz")), load_model_checkpoint(str(tmp_path / "part.npz"))
    assert full.state["step"] == part.state["step"] == 40
    for name in full.params:
        np.testing.assert_array_equal(full.params[name], part.params[name], err_msg=name)


@pytest.mark.parametrize("task, text, needle", [
    ("classify", "pos\n", ":1: expected lines of label<TAB>text"),
    ("translate", "only a source\n", ":1: expected lines of source<TAB>target"),
    ("tag", "word\n", ":1: expected CoNLL lines"),
    ("classify", "label\ttext\npos\tgood\npos\tfine\n", "every example has the label 'pos'"),
])
def test_bad_task_files_fail_with_one_line(tmp_path, task, text, needle):
    path = tmp_path / "bad.txt"
    path.write_text(text)
    result = run_cli("train", path, "--task", task, "--out", tmp_path / "x.npz")
    assert result.exit_code != 0
    assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.npz").exists()


def test_task_commands_need_text(classifier):
    result = run_cli("classify", "--model", classifier)
    assert result.exit_code == 2 and "give a text" in result.stderr


def test_evaluate_a_language_model_gives_the_continuous_score(char_model):
    report = json.loads(ok(run_cli("evaluate", "--model", char_model, CORPORA / "demo.txt", "--json")).stdout)
    score = json.loads(ok(run_cli("score", "--model", char_model, "--file", CORPORA / "demo.txt", "--continuous",
                                  "--json")).stdout)
    assert report["task"] == "lm"
    assert {k: report[k] for k in score} == score


def test_a_task_validates_on_its_own_file(tmp_path):
    result = train(tmp_path / "v.npz", SENTIMENT, "--task", "classify", "--hidden", "8", "--embed", "8",
                   "--layers", "1", "--epochs", "1", "--valid", SENTIMENT_TEST)
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["val_loss"] is not None and summary["best_checkpoint"]
    assert load_model_checkpoint(str(tmp_path / "v.npz")).state["corpus"]["examples"] == 3000


def test_words_seen_once_teach_the_model_unk(tmp_path):
    """Every training word has its own entry, so <UNK> (what unseen words become) would never occur
    in training: with --unk-dropout (default 0.5) words seen once sometimes become <UNK> and its
    embedding is learnt; with 0 it never moves (Adam never moves a row that never had a gradient)."""
    from rnncli.text.tokenizers import UNK

    corpus = with_names_seen_once(tmp_path)
    common = ["--task", "tag", "--hidden", "16", "--embed", "8", "--layers", "1", "--epochs", "1", "--seed", "3"]
    train(tmp_path / "on.npz", corpus, *common)
    train(tmp_path / "off.npz", corpus, *common, "--unk-dropout", "0")
    on, off = load_model_checkpoint(str(tmp_path / "on.npz")), load_model_checkpoint(str(tmp_path / "off.npz"))
    assert on.train.unk_dropout == 0.5 and off.train.unk_dropout == 0.0
    assert not np.allclose(on.params["embed.weight"][UNK], off.params["embed.weight"][UNK])
    train(tmp_path / "early.npz", corpus, *common, "--unk-dropout", "0", "--max-steps", "2")
    early = load_model_checkpoint(str(tmp_path / "early.npz"))
    np.testing.assert_array_equal(early.params["embed.weight"][UNK], off.params["embed.weight"][UNK])
    assert not np.allclose(early.params["embed.weight"], off.params["embed.weight"])  # the other rows moved
    result = run_cli("train", NER, "--task", "tag", "--unk-dropout", "1", "--out", tmp_path / "x.npz")
    assert result.exit_code != 0 and "--unk-dropout" in result.stderr and "Traceback" not in result.stderr
