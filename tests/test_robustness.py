"""Hostile input for every command, broken and malicious checkpoints, faults during training.
The only acceptable outcomes are success or our own one-line error: never a traceback, never a
partial output file, never code run from a file."""

import errno
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rnncli.config import TokenizerConfig
from rnncli.errors import RnncliError
from rnncli.text.data import Corpus
from rnncli.text.encoding import encode_corpus
from rnncli.text.tokenizers import fit_tokenizer
from rnncli.training.request import load_model_checkpoint as load_checkpoint
from tests.conftest import CORPORA, ROOT, run_cli

TINY = ("--cell", "gru", "--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "2",
        "--max-steps", "1", "--val-fraction", "0")

CORPUS_CASES = {
    "empty": (b"", (1, "empty")),
    "only newlines": (b"\n\n\r\n\n", (1, "empty")),
    "one character": (b"a", "train-too-short"),
    "binary": (bytes(range(256)) * 4, (1, "binary")),
    "NUL bytes": (b"hello\x00world\n" * 10, (1, "binary")),
    "UTF-16": ("hello world\n".encode("utf-16"), (1, "UTF-16")),
    "Latin-1": ("caf\xe9 cr\xe8me br\xfbl\xe9e\n".encode("latin-1") * 20, (1, "--encoding latin-1")),
    "BOM and CRLF": (b"\xef\xbb\xbf" + b"the apple and pear salad\r\n" * 30, "ok"),
    "5 MB single line": (b"abcdefgh " * 600_000, "ok"),
    "emoji, combining, RTL": ("🍐 poire e\u0301te\u0301 שלום عليكم 🙂\n".encode() * 40, "ok"),
}


def corpus_file(tmp_path, data: bytes):
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    return path


def assert_clean_failure(result, code, message, name):
    assert result.exit_code == code, (name, result.exit_code, result.stderr, result.stdout[-300:])
    assert message in result.stderr, (name, result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, (name, result.stderr)


@pytest.mark.parametrize("name", CORPUS_CASES)
def test_tokenize_on_hostile_corpora(tmp_path, name):
    data, expected = CORPUS_CASES[name]
    result = run_cli("tokenize", corpus_file(tmp_path, data), "--json")
    if expected in ("ok", "train-too-short"):
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["tokens"] > 0
    else:
        assert_clean_failure(result, *expected, name)


@pytest.mark.parametrize("name", CORPUS_CASES)
def test_train_on_hostile_corpora_writes_nothing_on_failure(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    data, expected = CORPUS_CASES[name]
    corpus_file(tmp_path, data)
    result = run_cli("train", "corpus.txt", *TINY, "--out", "model.npz")
    if expected == "ok":
        assert result.exit_code == 0, result.stderr
        assert load_checkpoint("model.npz").state["step"] == 1
        return
    if expected == "train-too-short":
        expected = (2, "too few")
    assert_clean_failure(result, *expected, name)
    assert sorted(os.listdir(tmp_path)) == ["corpus.txt"]


@pytest.mark.parametrize("name", ["empty", "binary", "UTF-16", "Latin-1", "emoji, combining, RTL"])
def test_score_file_and_sample_prime_file_on_hostile_input(tmp_path, char_model, name):
    data, expected = CORPUS_CASES[name]
    path = corpus_file(tmp_path, data)
    for args in (("score", "--model", char_model, "--file", path), ("sample", "--model", char_model,
                                                                      "--prime-file", path, "--length", "5")):
        result = run_cli(*args)
        if expected == "ok":
            assert result.exit_code == 0, result.stderr
        else:
            assert_clean_failure(result, *expected, name)


@pytest.mark.parametrize("command", ["tokenize", "train"])
def test_paths_that_are_not_files(tmp_path, command):
    assert_clean_failure(run_cli(command, tmp_path / "nope.txt"), 2, "no such file", command)
    assert_clean_failure(run_cli(command, tmp_path), 2, "directory", command)


def test_huge_vocabulary_is_refused_before_allocating(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "words.txt").write_text(" ".join(f"w{i}" for i in range(300_000)) + "\n")
    result = run_cli("train", "words.txt", "--level", "word")
    assert_clean_failure(result, 2, "--max-vocab", "huge vocabulary")
    assert run_cli("train", "words.txt", "--level", "word", "--max-vocab", "2000", "--hidden", "16",
                   "--max-steps", "1", "--batch-size", "4", "--seq-len", "8", "--out", "w.npz").exit_code == 0


# ---------------------------------------------------------------------------------------------
# Broken and malicious checkpoints


@pytest.fixture(scope="module")
def good_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ck") / "good.npz"
    result = run_cli("train", CORPORA / "demo.txt", *TINY, "--out", out)
    assert result.exit_code == 0, result.stderr
    return out


def rewrite(src, dst, change):
    """A copy of checkpoint `src` at `dst` with `change(arrays)` applied (as a user's tool might)."""
    with np.load(src, allow_pickle=False) as f:
        arrays = {k: f[k] for k in f.files}
    change(arrays)
    np.savez(dst, **arrays)
    return dst


class Payload:
    """Unpickling this would create a file: proof of code execution."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def make_broken(kind, good, tmp_path):
    path = tmp_path / f"{kind}.npz"
    if kind == "not a zip":
        path.write_text("just some text")
    elif kind == "empty file":
        path.write_bytes(b"")
    elif kind == "truncated":
        data = good.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "missing array":
        rewrite(good, path, lambda a: a.pop("param.output.W"))
    elif kind == "wrong shape":
        rewrite(good, path, lambda a: a.__setitem__("param.layers.0.Wh", np.zeros((3, 3), np.float32)))
    elif kind == "oversized array":
        rewrite(good, path, lambda a: a.__setitem__("param.layers.0.Wh", np.zeros((2000, 2000), np.float32)))
    elif kind == "future format":
        rewrite(good, path, lambda a: a.__setitem__("format_version", np.array(99)))
    elif kind == "damaged config":
        rewrite(good, path, lambda a: a.__setitem__("config", np.array("{not json")))
    elif kind == "object array":
        marker = tmp_path / "pwned"
        payload = np.empty(1, dtype=object)
        payload[0] = Payload(str(marker))
        with zipfile.ZipFile(path, "w") as z:
            with np.load(good, allow_pickle=False) as f:
                for k in f.files:
                    buf = io.BytesIO()
                    np.save(buf, f[k] if k != "config" else payload, allow_pickle=True)
                    z.writestr(k + ".npy", buf.getvalue())
        assert pickle.dumps(payload[0])  # the payload is a real pickle gadget
    elif kind == "zip bomb":
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
            with np.load(good, allow_pickle=False) as f:
                for k in f.files:
                    buf = io.BytesIO()
                    np.save(buf, f[k])
                    z.writestr(k + ".npy", buf.getvalue())
            z.writestr("param.bomb.npy", b"\0" * (64 << 20))
    return path


BROKEN = ["not a zip", "empty file", "truncated", "missing array", "wrong shape", "oversized array",
          "future format", "damaged config", "object array", "zip bomb"]


@pytest.mark.parametrize("kind", BROKEN)
def test_broken_checkpoints_are_refused_cleanly(tmp_path, good_checkpoint, kind):
    path = make_broken(kind, good_checkpoint, tmp_path)
    for args in (("sample", "--model", path, "--length", "5"), ("score", "--model", path, "hello"),
                 ("info", path), ("tokenize", "--model", path, "hello"),
                 ("train", CORPORA / "demo.txt", "--resume", path)):
        result = run_cli(*args)
        assert result.exit_code in (1, 2), (kind, args, result.stdout)
        assert path.name in result.stderr and "Traceback" not in result.stderr, (kind, args, result.stderr)
    assert not (tmp_path / "pwned").exists()


def test_pickle_payload_is_never_executed(tmp_path, good_checkpoint):
    path = make_broken("object array", good_checkpoint, tmp_path)
    with pytest.raises(RnncliError, match="refuses to unpickle"):
        load_checkpoint(str(path))
    assert not (tmp_path / "pwned").exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2000))
def test_random_bytes_as_a_checkpoint(tmp_path, data):
    path = tmp_path / "random.npz"
    path.write_bytes(data)
    with pytest.raises(RnncliError):
        load_checkpoint(str(path))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8))
def test_randomly_damaged_checkpoints(tmp_path, good_checkpoint, flips):
    data = bytearray(good_checkpoint.read_bytes())
    for position, value in flips:
        data[position % len(data)] = value
    path = tmp_path / "damaged.npz"
    path.write_bytes(bytes(data))
    try:
        damaged = load_checkpoint(str(path))
    except RnncliError as err:
        assert str(err).startswith(str(path)), err  # the one clear line names the file
        return
    # Loaded: then the flips hit bytes no array depends on (zip timestamps, comments, attributes),
    # and it is the very same model, never a silently different one.
    original = load_checkpoint(str(good_checkpoint))
    assert damaged.params.keys() == original.params.keys()
    for name, value in original.params.items():
        np.testing.assert_array_equal(damaged.params[name], value, err_msg=name)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=3000), level=st.sampled_from(["char", "word"]))
def test_random_bytes_as_a_corpus(tmp_path, data, level):
    path = tmp_path / "random.txt"
    path.write_bytes(data)
    corpus = Corpus(str(path))
    try:
        tok = fit_tokenizer(TokenizerConfig(level=level), corpus.blocks())
        ids = encode_corpus(tok, corpus)
    except RnncliError:
        return
    assert ids.dtype == np.int32 and (ids >= 0).all() and (ids < tok.vocab_size).all()


# ---------------------------------------------------------------------------------------------
# Options: 0, negative, NaN, huge


NUMERIC_TRAIN_OPTIONS = ["--seed", "--layers", "--hidden", "--embed", "--dropout", "--seq-len", "--batch-size", "--lr",
                         "--weight-decay", "--clip", "--lr-decay", "--epochs", "--max-steps", "--patience",
                         "--val-fraction", "--eval-every", "--min-count", "--max-vocab"]


@pytest.mark.parametrize("option", NUMERIC_TRAIN_OPTIONS)
@pytest.mark.parametrize("value", ["0", "-1", "nan", "1e12", "99999999999"])
def test_train_numeric_options_fail_cleanly_or_work(tmp_path, monkeypatch, option, value):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.txt").write_text((CORPORA / "demo.txt").read_text()[:4000])
    args = ["train", "c.txt", "--cell", "gru", "--layers", "1", "--hidden", "8", "--embed", "4", "--seq-len", "8",
            "--batch-size", "2", "--max-steps", "2", "--out", "m.npz"]
    if option in args:
        i = args.index(option)
        args[i + 1] = value
    else:
        args += [option, value]
    result = run_cli(*args)
    assert result.exit_code in (0, 2), (result.exception, result.stderr)
    assert "Traceback" not in result.stderr
    if result.exit_code == 0:  # a value that works trains a model that loads
        assert load_checkpoint(str(tmp_path / "m.npz")).state["step"] >= 1
    else:  # a value that does not is named, with the option, on one line
        assert result.stderr.startswith(("error:", "Usage:")), result.stderr
        assert option in result.stderr or option.replace("--", "'--") in result.stderr, result.stderr
        assert not (tmp_path / "m.npz").exists()


@pytest.mark.parametrize("args", [
    ("--temperature", "nan"), ("--temperature", "1e300"), ("--top-k", "0"), ("--top-k", "1000000"),
    ("--top-p", "nan"), ("--length", "0"), ("-n", "0"), ("--beam", "-2"), ("--seed", "-5"),
])
def test_sample_options_fail_cleanly_or_work(char_model, args):
    result = run_cli("sample", "--model", char_model, "--length", "5", *args, "--json")
    assert result.exit_code in (0, 2), result.exception
    assert "Traceback" not in result.stderr
    if result.exit_code == 0:  # a value that works generates what was asked
        samples = [json.loads(line) for line in result.stdout.splitlines()]
        assert len(samples) >= 1 and all(s["tokens"] <= 5 for s in samples)
    else:  # a value that does not is named on one line
        assert args[0] in result.stderr and result.stderr.count("\n") == 1, result.stderr


def test_contradictory_options(tmp_path, good_checkpoint):
    cases = [
        ("train", CORPORA / "demo.txt", "--resume", good_checkpoint, "--init-from", good_checkpoint),
        ("score", "--model", good_checkpoint, "--log10", "--bits", "a"),
        ("score", "--model", good_checkpoint, "--continuous", "a"),
        ("train", CORPORA / "demo.txt", "--tie-weights", "--embed", "3", "--hidden", "5"),
    ]
    for args in cases:
        result = run_cli(*args)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, (args, result.stderr)


# ---------------------------------------------------------------------------------------------
# Faults during training


SMALL = ("--cell", "lstm", "--layers", "1", "--hidden", "16", "--embed", "8", "--seq-len", "16",
         "--batch-size", "8", "--dropout", "0.1", "--eval-every", "1",
         "--schedule", "constant")  # the budget grows on resume: a decaying schedule would move with it


def test_disk_full_at_save_time_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import rnncli.formats.checkpoint as ck_module

    out = tmp_path / "full.npz"
    assert run_cli("train", CORPORA / "demo.txt", *SMALL, "--max-steps", "2", "--out", out).exit_code == 0
    before = out.read_bytes()
    real_savez = np.savez

    def full_disk(file, **arrays):
        real_savez(file, **{k: v for k, v in list(arrays.items())[:2]})  # a partial write, then...
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ck_module.np, "savez", full_disk)
    result = run_cli("train", CORPORA / "demo.txt", "--resume", out, "--max-steps", "6")
    assert result.exit_code == 1
    assert "No space left on device" in result.stderr and "intact" in result.stderr
    monkeypatch.setattr(ck_module.np, "savez", real_savez)
    assert out.read_bytes() == before
    assert load_checkpoint(str(out)).state["step"] == 2
    assert not list(tmp_path.glob("*.tmp"))


def _spawn(tmp_path, out, *extra):
    return subprocess.Popen(
        [sys.executable, "-m", "rnncli", "train", str(CORPORA / "demo.txt"), *SMALL, "--epochs", "100000",
         "--out", str(out), *extra],
        cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_kill_and_resume_many_times_is_exact(tmp_path):
    """SIGKILL at random moments (checkpoints are written every step, so many kills land mid-write);
    every time the checkpoint is complete, and the run resumed to N steps equals a run straight to N."""
    import random

    rng = random.Random(11)
    killed = tmp_path / "killed.npz"
    rounds = 0
    for _ in range(10):
        proc = _spawn(tmp_path, killed, *(("--resume", str(killed)) if killed.exists() else ()))
        deadline = time.monotonic() + 60
        while not killed.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.05, 0.8))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        load_checkpoint(str(killed))
        rounds += 1
    steps = load_checkpoint(str(killed)).state["step"]
    target = steps + 3
    assert run_cli("train", CORPORA / "demo.txt", "--resume", killed, "--max-steps", target).exit_code == 0
    straight = tmp_path / "straight.npz"
    assert run_cli("train", CORPORA / "demo.txt", *SMALL, "--max-steps", target, "--out", straight).exit_code == 0
    a, b = load_checkpoint(str(killed)), load_checkpoint(str(straight))
    assert rounds == 10 and a.state["step"] == b.state["step"] == target
    for name in a.params:
        assert np.array_equal(a.params[name], b.params[name]), name
    assert not list(tmp_path.glob("*.tmp"))
