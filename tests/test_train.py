"""`rnncli train`: it learns, it resumes exactly, it survives interruption and kills, and it
refuses bad input without writing anything."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rnncli.models.model import Model
from rnncli.training.request import load_model_checkpoint as load_checkpoint
from tests.conftest import CORPORA, ROOT, run_cli, use_cores

DEMO = CORPORA / "demo.txt"


def summary_of(result) -> dict:
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_gru_learns_the_markov_source_to_its_entropy_rate(tmp_path):
    entropy = json.loads((CORPORA / "markov.json").read_text())["entropy_rate_nats_per_char"]
    result = run_cli("train", CORPORA / "markov.txt", "--cell", "gru", "--layers", "1", "--hidden", "64",
                     "--epochs", "4", "--seq-len", "50", "--lr", "5e-3", "--lr-decay", "0.5",
                     "--out", tmp_path / "m.npz", "--json")
    summary = summary_of(result)
    assert summary["best_val_loss"] - entropy < 0.05, summary
    assert summary["best_val_loss"] > entropy - 0.05  # nothing beats the source on held-out text


def verb_accuracy(path, lines) -> float:
    ck = load_checkpoint(str(path))
    tok = ck.tokenizer
    was, were = tok.vocab.index("was"), tok.vocab.index("were")
    correct = 0
    for line in lines:
        ids = tok.encode(line)
        inputs = np.concatenate([[1], ids[:-1]]).astype(np.int64)[:, None]
        model = Model(ck.model)
        lp, _ = model.next_token_logprobs(ck.params, inputs, model.initial_state(1))
        pos = int(np.flatnonzero((ids == was) | (ids == were))[0])
        guess = was if lp[pos, 0, was] > lp[pos, 0, were] else were
        correct += int(guess == ids[pos])
    return correct / len(lines)


@pytest.mark.slow
def test_gated_cells_carry_long_range_agreement_and_the_rnn_does_not(tmp_path):
    lines = (CORPORA / "agreement.txt").read_text().splitlines()[-300:]  # from the validation split
    accuracy = {}
    for cell in ("rnn", "gru", "lstm"):
        out = tmp_path / f"{cell}.npz"
        summary_of(run_cli("train", CORPORA / "agreement.txt", "--level", "word", "--cell", cell, "--layers", "1",
                           "--hidden", "64", "--embed", "32", "--seq-len", "40", "--batch-size", "16",
                           "--epochs", "30", "--lr", "5e-3", "--out", out, "--json"))
        accuracy[cell] = verb_accuracy(out, lines)
    assert accuracy["gru"] >= 0.85 and accuracy["lstm"] >= 0.85, accuracy
    assert accuracy["rnn"] <= 0.7, accuracy  # about chance: the subject is 10+ words back


SMALL = ("--cell", "lstm", "--layers", "2", "--hidden", "24", "--embed", "8", "--seq-len", "16",
         "--batch-size", "8", "--dropout", "0.2", "--eval-every", "5", "--lr-decay", "0.5",
         "--schedule", "constant")  # the budget grows on resume: a decaying schedule would move with it


def test_resume_is_bit_identical(tmp_path):
    one = tmp_path / "one.npz"
    two = tmp_path / "two.npz"
    summary_of(run_cli("train", DEMO, *SMALL, "--max-steps", "13", "--out", one, "--json"))
    summary_of(run_cli("train", DEMO, *SMALL, "--max-steps", "7", "--out", two, "--json"))
    resumed = summary_of(run_cli("train", DEMO, "--resume", two, "--max-steps", "13", "--json"))
    assert resumed["steps"] == 13 and resumed["checkpoint"] == str(two)
    a, b = load_checkpoint(str(one)), load_checkpoint(str(two))
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name
    for name in a.optim:
        assert np.array_equal(a.optim[name], b.optim[name]), name
    assert a.state["rng"] == b.state["rng"] and a.state["lr"] == b.state["lr"]


@pytest.mark.parametrize("option, value, message", [
    ("--hidden", "32", "--hidden 32 differs"),
    ("--batch-size", "4", "--batch-size 4 differs"),
    ("--level", "word", "vocabulary is fixed"),
])
def test_resume_refuses_incompatible_options(tmp_path, option, value, message):
    out = tmp_path / "run.npz"
    summary_of(run_cli("train", DEMO, *SMALL, "--max-steps", "2", "--out", out, "--json"))
    result = run_cli("train", DEMO, "--resume", out, option, value)
    assert result.exit_code == 2 and message in result.stderr


def test_resume_refuses_another_corpus(tmp_path):
    out = tmp_path / "run.npz"
    summary_of(run_cli("train", DEMO, *SMALL, "--max-steps", "2", "--out", out, "--json"))
    other = tmp_path / "other.txt"
    other.write_text(DEMO.read_text()[::-1])
    result = run_cli("train", other, "--resume", out)
    assert result.exit_code == 2 and "not the training data" in result.stderr


def test_init_from_fine_tunes_with_the_old_vocabulary(tmp_path):
    base = tmp_path / "base.npz"
    summary_of(run_cli("train", DEMO, *SMALL, "--max-steps", "3", "--out", base, "--json"))
    new_corpus = tmp_path / "new.txt"
    new_corpus.write_text("Zebras ate the pear salad.\n" * 200)  # 'Z' and 'b' may be new characters
    tuned = tmp_path / "tuned.npz"
    summary = summary_of(run_cli("train", new_corpus, "--init-from", base, "--max-steps", "3", "--seq-len", "16",
                                 "--batch-size", "8", "--out", tuned, "--json"))
    assert summary["steps"] == 3
    assert load_checkpoint(str(tuned)).tokenizer.vocab == load_checkpoint(str(base)).tokenizer.vocab


def test_json_summary_and_metrics_log(tmp_path):
    out = tmp_path / "run.npz"
    result = run_cli("train", DEMO, *SMALL, "--max-steps", "10", "--out", out, "--json")
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    evals, summary = lines[:-1], lines[-1]
    assert [e["step"] for e in evals] == [5, 10]
    for key in ("checkpoint", "train_loss", "val_loss", "steps", "tokens_seen", "seconds"):
        assert key in summary
    assert summary["tokens_seen"] == 10 * 8 * 16
    assert os.path.exists(summary["best_checkpoint"])
    log = [json.loads(line) for line in open(summary["metrics"])]
    assert [r["step"] for r in log] == [5, 10] and all(r["val_loss"] > 0 for r in log)
    ck = load_checkpoint(str(out))
    assert ck.state["step"] == 10 and len(ck.state["history"]) == 2
    with np.load(out, allow_pickle=False) as f:  # readable without pickle
        assert "format_version" in f.files


@pytest.mark.slow
def test_max_time_stops_the_run(tmp_path):
    summary = summary_of(run_cli("train", DEMO, *SMALL, "--epochs", "1000", "--max-time", "2s",
                                 "--out", tmp_path / "t.npz", "--json"))
    assert summary["stop_reason"] == "max_time"  # long before the 1000 epochs it was given


def test_patience_stops_early(tmp_path):
    summary = summary_of(run_cli("train", DEMO, *SMALL, "--epochs", "1000", "--lr", "0.5", "--patience", "2",
                                 "--out", tmp_path / "p.npz", "--json"))
    assert summary["stop_reason"] in ("early_stop",)


def test_nan_loss_stops_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    real_forward = Model.forward
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss, states, cache = real_forward(*args, **kwargs)
        return (float("nan") if calls["n"] > 3 else loss), states, cache

    monkeypatch.setattr(Model, "forward", poisoned)
    out = tmp_path / "nan.npz"
    result = run_cli("train", DEMO, *SMALL, "--max-steps", "20", "--out", out)
    assert result.exit_code == 1
    assert "diverged at step 4" in result.stderr and "--lr" in result.stderr
    monkeypatch.setattr(Model, "forward", real_forward)
    ck = load_checkpoint(str(out))
    assert ck.state["step"] == 3
    assert all(np.isfinite(p).all() for p in ck.params.values())


def _train_process(tmp_path, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "rnncli", "train", str(DEMO), *SMALL, "--epochs", "100000", "--eval-every", "1",
         "--out", str(out), *extra],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


def _wait_for(path, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)


def _wait_for_new_save(path, before, proc, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not path.exists() or path.stat().st_mtime_ns == before:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no new checkpoint appeared"
        time.sleep(0.02)


def test_ctrl_c_saves_and_exits_130(tmp_path):
    out = tmp_path / "int.npz"
    proc = _train_process(tmp_path, out)
    _wait_for(out, proc)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert load_checkpoint(str(out)).state["step"] > 0


@pytest.mark.slow
def test_sigkill_never_leaves_a_corrupt_checkpoint(tmp_path):
    out = tmp_path / "kill.npz"
    rng = random.Random(7)
    steps = []
    for _ in range(6):
        extra = ("--resume", str(out)) if out.exists() else ()
        before = out.stat().st_mtime_ns if out.exists() else None
        proc = _train_process(tmp_path, out, *extra)
        _wait_for_new_save(out, before, proc)  # the run is past start-up and writing checkpoints
        time.sleep(rng.uniform(0.0, 1.0))
        proc.kill()
        proc.wait()
        ck = load_checkpoint(str(out))  # complete and loadable, old or new
        steps.append(ck.state["step"])
        assert len(list(tmp_path.glob("*.tmp"))) <= 2  # at most the write that was cut short
    assert steps == sorted(steps) and steps[-1] > steps[0]
    # a resumed run cleans up what the kills left
    summary_of(run_cli("train", DEMO, "--resume", out, "--max-steps", str(steps[-1] + 1), "--json"))
    assert not list(tmp_path.glob("*.tmp"))


def test_second_run_on_the_same_checkpoint_is_refused(tmp_path):
    out = tmp_path / "locked.npz"
    proc = _train_process(tmp_path, out)
    try:
        _wait_for(out, proc)
        result = run_cli("train", DEMO, *SMALL, "--max-steps", "2", "--out", out)
        assert result.exit_code == 2 and "another rnncli train" in result.stderr
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("setup, args, code, message", [
    (None, ("missing.txt",), 2, "no such file"),
    (b"", ("c.txt",), 1, "empty"),
    (b"\x00\x01binary\x00", ("c.txt",), 1, "binary"),
    (b"short text\n", ("c.txt",), 2, "too few"),
    (b"x" * 5000, ("c.txt", "--hidden", "0"), 2, "--hidden"),
    (b"x" * 5000, ("c.txt", "--lr", "-1"), 2, "--lr"),
    (b"x" * 5000, ("c.txt", "--dropout", "1"), 2, "--dropout"),
    (b"x" * 5000, ("c.txt", "--cell", "transformer"), 2, "--cell"),
    (b"x" * 5000, ("c.txt", "--max-time", "soon"), 2, "--max-time"),
    (b"x" * 5000, ("c.txt", "--optimizer", "lbfgs"), 2, "--optimizer"),
    (b"x" * 5000, ("c.txt", "--tie-weights", "--embed", "8"), 2, "--tie-weights"),
])
def test_bad_input_is_one_clean_line_and_writes_nothing(tmp_path, monkeypatch, setup, args, code, message):
    monkeypatch.chdir(tmp_path)
    if setup is not None:
        (tmp_path / "c.txt").write_bytes(setup)
    before = set(os.listdir(tmp_path))
    result = run_cli("train", *args)
    assert result.exit_code == code, result.stderr
    assert message in result.stderr and result.stderr.count("\n") == 1
    assert set(os.listdir(tmp_path)) == before


@pytest.mark.slow
def test_the_three_lines_work_in_an_empty_folder(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(DEMO.read_text())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RNNCLI_MODEL", None)

    def run(*args):
        return subprocess.run([sys.executable, "-m", "rnncli", *args], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=600)

    train = run("train", "corpus.txt", "--cell", "gru")
    assert train.returncode == 0, train.stderr
    sample = run("sample", "--temperature", "0.8", "--length", "50")
    assert sample.returncode == 0, sample.stderr
    assert len(sample.stdout) >= 20
    score = run("score", "the apple and pear salad")
    assert score.returncode == 0, score.stderr
    assert "the apple and pear salad" in score.stdout


def test_a_round_one_checkpoint_loads_scores_samples_and_resumes_as_before(tmp_path):
    """tests/reference/round1-lstm.npz was written by rnncli before the model's redesign (3 steps
    of a 2 x 16 lstm on the demo corpus); the figures below are what that code printed for it."""
    ckpt = tmp_path / "round1.npz"
    shutil.copy(ROOT / "tests" / "reference" / "round1-lstm.npz", ckpt)
    scored = json.loads(run_cli("score", "--model", ckpt, "The apple and pear salad was sweet.", "--json").stdout)
    assert scored[0]["logprob"] == pytest.approx(-133.31880927085876, rel=1e-6)
    sampled = json.loads(run_cli("sample", "--model", ckpt, "--length", "40", "--seed", "3", "--json").stdout)
    assert sampled["text"] == ".Iog.acBm?TdagmwMjlM\nwMOtgcn lT.juDiMmlE"
    resumed = summary_of(run_cli("train", DEMO, "--resume", ckpt, "--max-steps", "5", "--json"))
    assert resumed["steps"] == 5
    assert resumed["train_loss"] == pytest.approx(3.7014753818511963, rel=1e-5)
    assert resumed["val_loss"] == pytest.approx(3.6740202032777525, rel=1e-5)


def test_verbose_says_how_a_batch_runs(tmp_path, monkeypatch):
    """--verbose names which code computes which product and how the batch is split over the cores."""

    use_cores(monkeypatch, 2)
    args = ("train", CORPORA / "demo.txt", "--hidden", "16", "--max-steps", "1", "--out", tmp_path / "m.npz")
    result = run_cli(*args, "--batch-size", "16", "--verbose")
    assert result.exit_code == 0, result.stderr
    assert "packed kernel" in result.stdout and "2 shards of 8+ rows, one per core" in result.stdout
    result = run_cli(*args, "--batch-size", "3", "--verbose")
    assert "a batch of 3 rows runs whole" in result.stdout
    assert "engine:" not in run_cli(*args, "--batch-size", "3").stdout  # only with --verbose
