"""The learning-rate schedule and the budget-aware validation of `train`."""

import json
import math

import pytest

from rnncli.training.request import FOR_A_TIME_BUDGET, load_model_checkpoint
from rnncli.training.schedule import FLOOR, lr_factor
from tests.conftest import CORPORA, run_cli

SMALL = ("--cell", "gru", "--layers", "1", "--hidden", "16", "--embed", "8", "--seq-len", "16", "--batch-size", "4")


@pytest.mark.parametrize("schedule, p, expected", [
    ("constant", 0.0, 1.0), ("constant", 1.0, 1.0),
    ("linear", 0.0, 1.0), ("linear", 0.5, 1 - (1 - FLOOR) / 2), ("linear", 1.0, FLOOR),
    ("cosine", 0.0, 1.0), ("cosine", 0.5, FLOOR + (1 - FLOOR) / 2), ("cosine", 1.0, FLOOR),
    ("cosine", 2.0, FLOOR), ("linear", -1.0, 1.0),
    ("cooldown", 0.0, 1.0), ("cooldown", 0.75, 1.0), ("cooldown", 0.875, 1 - (1 - FLOOR) / 2),
    ("cooldown", 1.0, FLOOR), ("cooldown", 2.0, FLOOR),
])
def test_decay_follows_its_formula(schedule, p, expected):
    assert lr_factor(schedule, 0, 100, p) == pytest.approx(expected)


def test_warmup_rises_linearly_then_hands_over_to_the_decay():
    assert [lr_factor("constant", 4, s, 0.0) for s in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])
    assert lr_factor("cosine", 4, 1, 0.5) == pytest.approx(0.5 * (FLOOR + (1 - FLOOR) / 2))


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant", "cooldown"])
def test_a_run_records_the_scheduled_rate(tmp_path, schedule):
    out = tmp_path / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", *SMALL, "--max-steps", "40", "--eval-every", "10",
                     "--schedule", schedule, "--warmup", "5", "--lr", "0.01", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    lrs = [json.loads(line)["lr"] for line in (tmp_path / "m.metrics.jsonl").read_text().splitlines()]
    # the rate of the step just before each evaluation: steps 10, 20, 30 of 40 (0-based 9, 19, 29)
    expected = [0.01 * lr_factor(schedule, 5, s - 1, (s - 1) / 40) for s in (10, 20, 30)]
    assert lrs[:3] == pytest.approx(expected, rel=1e-9)


def test_a_timed_run_validates_on_a_sample_and_scores_the_whole_split_at_the_end(tmp_path):
    out = tmp_path / "t.npz"
    result = run_cli("train", CORPORA / "markov.txt", *SMALL, "--max-time", "1h", "--max-steps", "600", "--out", out,
                     "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout.splitlines()[-1])
    assert 0 <= summary["eval_share"] < 1
    records = [json.loads(line) for line in (tmp_path / "t.metrics.jsonl").read_text().splitlines()]
    samples = {r.get("val_sample_tokens") for r in records[:-1]}
    assert len(samples) == 1  # every evaluation during the run on the same sample (or all on the whole split)
    assert "val_sample_tokens" not in records[-1]  # the last one: the whole split
    scored = run_cli("score", "--model", out, "--file", CORPORA / "markov.txt", "--continuous", "--json")
    assert scored.exit_code == 0, scored.stderr
    # the final figure is the whole validation split's, as `train` validates (not the sample's)
    assert math.isfinite(summary["val_loss"]) and summary["val_loss"] == pytest.approx(records[-1]["val_loss"])
    # a resumed run validates on the same sample, so its best checkpoint compares like with like
    resumed = run_cli("train", CORPORA / "markov.txt", "--resume", out, "--max-steps", "1200", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    again = [json.loads(line) for line in (tmp_path / "t.metrics.jsonl").read_text().splitlines()]
    assert {r.get("val_sample_tokens") for r in again[len(records):-1]} == samples


def test_a_language_model_trained_against_the_clock_takes_the_budget_defaults(tmp_path):
    """--max-time: each option the user does not give takes the value measured best in five minutes;
    the options given stay theirs, the first lines say what trains, and without a budget nothing changes."""
    timed = tmp_path / "timed.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--max-time", "1h", "--max-steps", "2", "--hidden", "16",
                     "--out", timed)
    assert result.exit_code == 0, result.stderr
    ck = load_model_checkpoint(str(timed))
    budget = FOR_A_TIME_BUDGET
    assert (ck.model.cell, ck.model.layers, ck.model.hidden, ck.model.dropout) == (
        budget["cell"], budget["layers"], 16, budget["dropout"])
    assert (ck.train.batch_size, ck.train.seq_len, ck.train.lr, ck.train.schedule) == (
        budget["batch_size"], budget["seq_len"], budget["lr"], "cooldown")
    said = result.stdout + result.stderr
    assert f"{budget['cell']} 2x16" in said and f"at lr {budget['lr']:g}, cooldown schedule" in said

    plain = tmp_path / "plain.npz"
    assert run_cli("train", CORPORA / "demo.txt", "--max-steps", "2", "--hidden", "16", "--out", plain).exit_code == 0
    ck = load_model_checkpoint(str(plain))
    assert (ck.model.cell, ck.model.layers, ck.train.lr, ck.train.schedule) == ("lstm", 2, 2e-3, "cooldown")

    sgd = tmp_path / "sgd.npz"  # Adam's rate is not SGD's: an SGD run keeps --lr's default
    assert run_cli("train", CORPORA / "demo.txt", "--max-time", "1h", "--max-steps", "2", "--hidden", "16",
                   "--optimizer", "sgd", "--out", sgd).exit_code == 0
    ck = load_model_checkpoint(str(sgd))
    assert (ck.model.cell, ck.train.lr) == (FOR_A_TIME_BUDGET["cell"], 2e-3)


def test_sgd_momentum_is_an_option(tmp_path):
    out = tmp_path / "s.npz"
    result = run_cli("train", CORPORA / "demo.txt", *SMALL, "--optimizer", "sgd", "--lr", "1", "--momentum", "0",
                     "--max-steps", "3", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    assert load_model_checkpoint(str(out)).train.momentum == 0.0
    bad = run_cli("train", CORPORA / "demo.txt", *SMALL, "--momentum", "1.5", "--out", tmp_path / "x.npz")
    assert bad.exit_code == 2 and "--momentum" in bad.stderr
    from rnncli.config import ConfigError, TrainConfig

    TrainConfig(optimizer="sgd", momentum=0.0, lr=20.0).check()  # pytorch/examples' word model: plain SGD at 20
    with pytest.raises(ConfigError, match="far too large"):
        TrainConfig(optimizer="adam", lr=20.0).check()


def test_an_interrupted_run_resumes_its_schedule_exactly(tmp_path):
    """Ctrl-C part-way through a scheduled run, then --resume: the weights equal a run straight
    through (the schedule is a function of the step within the same budget)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import numpy as np

    from tests.conftest import ROOT

    args = [*SMALL, "--max-steps", "400", "--schedule", "linear", "--warmup", "20", "--eval-every", "1"]
    straight = tmp_path / "straight.npz"
    assert run_cli("train", CORPORA / "demo.txt", *args, "--out", straight).exit_code == 0
    split = tmp_path / "split.npz"
    proc = subprocess.Popen([sys.executable, "-m", "rnncli", "train", str(CORPORA / "demo.txt"), *args, "--out",
                             str(split)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not split.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    stopped_at = load_model_checkpoint(str(split)).state["step"]
    resumed = run_cli("train", CORPORA / "demo.txt", "--resume", split)
    assert resumed.exit_code == 0, resumed.stderr
    a, b = load_model_checkpoint(str(straight)), load_model_checkpoint(str(split))
    assert 0 < stopped_at < 400 and a.state["step"] == b.state["step"] == 400
    for name in a.params:
        np.testing.assert_array_equal(a.params[name], b.params[name], err_msg=name)
