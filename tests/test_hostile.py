"""What rnncli refuses, class by class (README: "What rnncli refuses"): damaged models, odd paths,
odd bytes on the command line, and output that cannot be written. Each case ends in one clear line
and a non-zero exit, or in the documented fallback, never in a traceback or a silent wrong answer."""

import json
import os
import stat
import subprocess
import sys
import threading

import numpy as np
import pytest

from rnncli.errors import RnncliError
from rnncli.training.request import load_model_checkpoint
from tests.conftest import CORPORA, ROOT, run_cli
from tests.test_robustness import rewrite

TINY = ("--cell", "lstm", "--layers", "2", "--hidden", "8", "--embed", "4", "--seq-len", "8", "--batch-size", "2",
        "--max-steps", "2", "--val-fraction", "0.05")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "good.npz"
    result = run_cli("train", CORPORA / "demo.txt", *TINY, "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def good_subword(tmp_path_factory):
    out = tmp_path_factory.mktemp("subword") / "subword.npz"
    result = run_cli("train", CORPORA / "demo.txt", *TINY, "--level", "subword", "--vocab-size", "60", "--out", out,
                     "--json")
    assert result.exit_code == 0, result.stderr
    return out


def config_change(section, key, value):
    def change(arrays):
        config = json.loads(str(arrays["config"]))
        if value is DELETE:
            del config[section][key]
        else:
            config[section][key] = value
        arrays["config"] = np.array(json.dumps(config))
    return change


def state_change(key, value):
    def change(arrays):
        state = json.loads(str(arrays["state"]))
        state[key] = value
        arrays["state"] = np.array(json.dumps(state))
    return change


DELETE = object()


def assert_refused(result, *needles, code=1):
    assert result.exit_code == code, (result.exit_code, result.stdout[-300:], result.stderr)
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# ---- 1. a configuration inconsistent with itself or with rnncli ----------------------------------

CONFIG_CASES = {
    "unknown cell": (config_change("model", "cell", "transformer"), "cell must be one of"),
    "zero hidden": (config_change("model", "hidden", 0), "hidden must be"),
    "negative layers": (config_change("model", "layers", -2), "layers must be"),
    "size as a string": (config_change("model", "hidden", "8"), "hidden must be"),
    "size as a float": (config_change("model", "embed", 4.0), "embed must be"),
    "fewer layers than arrays": (config_change("model", "layers", 1), "configuration does not describe"),
    "more layers than arrays": (config_change("model", "layers", 3), "missing param.layers.2"),
    "dropout out of range": (config_change("model", "dropout", 1.5), "dropout must be"),
    "tie_weights as text": (config_change("model", "tie_weights", "yes"), "tie_weights must be"),
    "vocabulary size as text": (config_change("model", "vocab_size", "41"), "vocab_size must be"),
    "training batch as text": (config_change("train", "batch_size", "2"), "batch_size must be"),
    "unknown optimizer": (config_change("train", "optimizer", "lbfgs"), "optimizer must be"),
    "unknown tokenizer level": (config_change("tokenizer", "level", "bytes"), "level must be"),
    "model section missing": (lambda a: a.update(config=np.array(json.dumps({"train": {}, "tokenizer": {}}))),
                              "damaged configuration"),
    "config not JSON": (lambda a: a.update(config=np.array("{not json")), "damaged configuration"),
    "step as text": (state_change("step", "12"), "damaged training state"),
    "negative tokens seen": (state_change("tokens_seen", -5), "damaged training state"),
    "history not a list": (state_change("history", "lots"), "damaged training state"),
    "loss as text": (state_change("val_loss", "low"), "damaged training state"),
}


@pytest.mark.parametrize("case", CONFIG_CASES)
def test_an_inconsistent_configuration_is_refused_before_anything_is_built(tmp_path, good, case):
    change, message = CONFIG_CASES[case]
    bad = rewrite(good, tmp_path / "bad.npz", change)
    for command in (("score", "--model", bad, "some text"), ("sample", "--model", bad, "--length", "5"),
                    ("info", bad)):
        assert_refused(run_cli(*command), "bad.npz", message)
    with pytest.raises(RnncliError, match="bad.npz"):
        load_model_checkpoint(str(bad))


# ---- 2. damaged tokenizer data -------------------------------------------------------------------


def spm_bytes(change):
    def apply(arrays):
        arrays["tokenizer.spm_model"] = change(arrays["tokenizer.spm_model"])
    return apply


def vocab(change):
    def apply(arrays):
        arrays["tokenizer.vocab"] = np.array(change(list(arrays["tokenizer.vocab"])))
    return apply


TOKENIZER_CASES = {
    "sentencepiece model truncated": ("subword", spm_bytes(lambda b: b[: len(b) // 3]), "tokenizer data is damaged"),
    "sentencepiece model garbage": ("subword", spm_bytes(lambda b: np.frombuffer(b"\x07garbage" * 50, np.uint8)),
                                    "tokenizer data is damaged"),
    "sentencepiece model empty": ("subword", spm_bytes(lambda b: b[:0]), "tokenizer"),
    "duplicate entry": ("char", vocab(lambda v: v[:-1] + [v[5]]), "appears twice"),
    "one entry short": ("char", vocab(lambda v: v[:-1]), "expects"),
    "reserved tokens missing": ("char", vocab(lambda v: v[2:] + ["x", "y"]), "does not start with <UNK>"),
}


@pytest.mark.parametrize("case", TOKENIZER_CASES)
def test_damaged_tokenizer_data_is_refused(tmp_path, good, good_subword, case):
    level, change, message = TOKENIZER_CASES[case]
    bad = rewrite(good_subword if level == "subword" else good, tmp_path / "bad.npz", change)
    assert_refused(run_cli("score", "--model", bad, "some text"), "bad.npz", message)
    assert_refused(run_cli("tokenize", "--model", bad, "some text"), "bad.npz", message)


# ---- 3. weights that are not finite ---------------------------------------------------------------


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", ["param.layers.1.Wh", "param.embed.weight", "param.output.b"])
def test_weights_that_are_not_finite_are_refused_by_name_and_shown_by_info(tmp_path, good, name, value):
    def poison(arrays):
        arrays[name] = arrays[name].copy()
        arrays[name].flat[3] = value
    bad = rewrite(good, tmp_path / "bad.npz", poison)
    weight = name.removeprefix("param.")
    assert_refused(run_cli("score", "--model", bad, "some text"), weight, "NaN or infinite")
    assert_refused(run_cli("sample", "--model", bad, "--length", "5"), weight)
    info = run_cli("info", bad, "--json")
    assert info.exit_code == 0, info.stderr
    assert json.loads(info.stdout)["nonfinite_weights"] == [weight]
    assert "unusable" in run_cli("info", bad).stdout


# ---- 4. command-line text that is not valid UTF-8 --------------------------------------------------

RAW = "caf\udce9"  # what Python makes of the bytes caf\xe9 in argv (a lone surrogate)


@pytest.mark.parametrize("command", [
    ("score", "{model}", RAW),
    ("score", "{model}", "--per-token", RAW + " au lait"),
    ("sample", "{model}", "--prime", RAW, "--length", "3", "--seed", "1"),
    ("sample", "{model}", "--stop", RAW, "--length", "3", "--seed", "1"),
    ("tokenize", "{model}", RAW),
])
def test_text_that_is_not_utf8_reads_as_replacement_characters(good, command):
    name, _, *rest = command
    result = run_cli(name, "--model", good, *rest)
    assert result.exit_code == 0, result.stderr
    assert "not valid UTF-8" in result.stderr and result.stderr.count("not valid UTF-8") == 1
    if name == "tokenize":
        assert "\ufffd = <UNK>" in result.stdout
    elif name != "sample" or "--prime" in rest:
        assert "caf\ufffd" in result.stdout
    result.stdout.encode("utf-8")  # what was printed is valid text


def test_bytes_on_a_real_command_line(tmp_path, good):
    """Through a real process, as a shell passes them."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "rnncli", "score", "--model", str(good), b"caf\xe9"],
                          capture_output=True, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "caf\ufffd".encode() in proc.stdout and b"not valid UTF-8" in proc.stderr


# ---- 5. output paths that are not regular files -----------------------------------------------------


def make_node(path, kind):
    if kind == "device":
        try:
            os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # the numbers of /dev/null
        except PermissionError:
            pytest.skip("creating a device node needs root")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        os.mkdir(path)
    return os.stat(path)


@pytest.mark.parametrize("kind", ["device", "fifo", "directory"])
@pytest.mark.parametrize("command", ["train", "tokenize"])
def test_a_checkpoint_or_tokenizer_is_never_renamed_over_a_special_file(tmp_path, kind, command):
    target = tmp_path / "node"
    before = make_node(target, kind)
    if command == "train":
        result = run_cli("train", CORPORA / "demo.txt", *TINY, "--out", target)
    else:
        result = run_cli("tokenize", CORPORA / "demo.txt", "--save", target)
    assert_refused(result, "not a regular file", code=2)
    after = os.stat(target)
    assert stat.S_IFMT(after.st_mode) == stat.S_IFMT(before.st_mode) and after.st_ino == before.st_ino
    assert sorted(os.listdir(tmp_path)) == ["node"]  # no temp file, lock or metrics left


def test_a_plot_is_written_straight_into_a_device_or_a_fifo(tmp_path, good):
    device = tmp_path / "null"
    before = make_node(device, "device")
    result = run_cli("plot", good, "-o", device)
    assert result.exit_code == 0, result.stderr
    assert os.stat(device).st_ino == before.st_ino and stat.S_ISCHR(os.stat(device).st_mode)
    fifo = tmp_path / "pipe"
    make_node(fifo, "fifo")
    received = []
    reader = threading.Thread(target=lambda: received.append(open(fifo, "rb").read()))
    reader.start()
    result = run_cli("plot", good, "-o", fifo)
    reader.join(timeout=30)
    assert result.exit_code == 0, result.stderr
    assert received and received[0].startswith(b"\x89PNG") and stat.S_ISFIFO(os.stat(fifo).st_mode)


def test_a_link_to_a_regular_file_stays_a_link_and_its_target_is_replaced(tmp_path):
    real = tmp_path / "real.npz"
    real.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    result = run_cli("train", CORPORA / "demo.txt", *TINY, "--out", link)
    assert result.exit_code == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert load_model_checkpoint(str(real)).state["step"] == 2


# ---- 6. write errors on standard output ---------------------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("command", [
    ("sample", "--model", "{model}", "--length", "200"),
    ("score", "--model", "{model}", "some text", "--json"),
    ("score", "--model", "{model}", "some text"),
    ("tokenize", "--model", "{model}", "some text", "--json"),
    ("info", "{model}", "--json"),
])
def test_a_full_output_is_one_error_line_and_exit_1(good, command):
    args = [str(good) if a == "{model}" else a for a in command]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "rnncli", *args], stdout=full, stderr=subprocess.PIPE,
                              text=True, env=env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == ["error: cannot write to standard output: No space left on device"]


# ---- a beam wider than the vocabulary -------------------------------------------------------------------


def test_a_beam_wider_than_the_vocabulary_is_the_widest_that_can_differ(good):
    V = load_model_checkpoint(str(good)).model.vocab_size
    huge = run_cli("sample", "--model", good, "--beam", "1000000", "--length", "8", "--json")
    widest = run_cli("sample", "--model", good, "--beam", str(V - 1), "--length", "8", "--json")
    assert huge.exit_code == 0 and widest.exit_code == 0
    assert json.loads(huge.stdout)["text"] == json.loads(widest.stdout)["text"]


# ---- plain progress off a terminal -----------------------------------------------------------------------


def test_train_off_a_terminal_prints_the_terminals_lines_not_json(tmp_path):
    result = run_cli("train", CORPORA / "demo.txt", *TINY, "--eval-every", "1", "--out", tmp_path / "m.npz")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert not any(line.lstrip().startswith("{") for line in lines), result.stdout
    assert lines[0].startswith("lstm 2x8") and "parameters" in lines[0]
    assert sum(line.startswith("step ") for line in lines) == 2
    assert any(line.startswith("finished after 2 steps") for line in lines)


def test_train_makes_the_folder_of_its_checkpoint(tmp_path):
    out = tmp_path / "new" / "folder" / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", *TINY, "--out", out)
    assert result.exit_code == 0, result.stderr
    assert load_model_checkpoint(str(out)).state["step"] == 2
