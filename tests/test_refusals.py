"""Refusals as a class, not case by case: every command, every option of a number type, walked from
the app itself. A usage error is one line on stderr and exit status 2 (Typer's boxes are for --help
only), before anything is read or written."""

import numpy as np
import pytest
import typer

from rnncli.cli import app, run
from tests.conftest import ROOT


def _commands():
    group = typer.main.get_command(app)
    return sorted(group.commands.items())


def _number_options(command):
    """(flag, type name) of every option of a command that takes an int or a float."""
    for param in command.params:
        if getattr(param, "is_flag", False) or not getattr(param, "opts", None) or param.nargs != 1:
            continue
        name = getattr(param.type, "name", "")
        if name in ("int", "float", "integer range", "float range") and param.opts[0].startswith("--"):
            yield param.opts[0], name


def _usage_errors():
    """(command line, what the line must name) for each command: an unknown option, every number
    option given a word, a missing required argument."""
    cases = [(["nosuch"], "nosuch"), (["--bogus"], "--bogus")]
    for name, command in _commands():
        cases.append(([name, "--no-such-option"], "--no-such-option"))
        for flag, _ in _number_options(command):
            cases.append(([name, flag, "abc"], flag))
        required = [p for p in command.params if getattr(p, "required", False) and not getattr(p, "opts", [""])[0]
                    .startswith("-")]
        if required:
            cases.append(([name], required[0].name))
    return cases


CASES = _usage_errors()


def test_the_walk_finds_the_number_options():
    """The walk is not empty: it reaches the commands and their typed options."""
    flags = {tuple(args) for args, _ in CASES}
    assert ("train", "--hidden", "abc") in flags and ("score", "--workers", "abc") in flags
    assert ("sample", "--temperature", "abc") in flags and ("train",) in flags
    assert len(CASES) > 60


@pytest.mark.parametrize("args, named", CASES, ids=[" ".join(a) for a, _ in CASES])
def test_a_usage_error_is_one_line_and_status_2(args, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = run(args)
    out, err = capsys.readouterr()
    assert status == 2, (out, err)
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert named.strip("-").split("-")[0] in lines[0] and "Traceback" not in err and "╭" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_help_keeps_its_page(capsys):
    assert run(["score", "--help"]) == 0
    out, _ = capsys.readouterr()
    assert "Usage: rnncli score" in out and "--workers" in out


# ---- an output that is the command's own input ------------------------------------------------


def _output_onto_input_cases():
    """(name, command line with IN for the input and OUT for the output, which input IN is): every
    command that writes a file, its output given as one of its inputs."""
    return [
        ("train --out the corpus", ["train", "IN", "--max-steps", "1", "--out", "OUT"], "corpus"),
        ("export onto the model", ["export", "IN", "--to", "safetensors", "-o", "OUT"], "model"),
        ("export onnx onto the model", ["export", "IN", "--to", "onnx", "-o", "OUT"], "model"),
        ("explain -o onto the model", ["explain", "some text", "--model", "IN", "-o", "OUT"], "model"),
        ("score -o onto its file", ["score", "--model", "MODEL", "--file", "IN", "--per-line", "-o", "OUT"], "corpus"),
        ("score -o onto the model", ["score", "--model", "IN", "--file", "CORPUS", "--per-line", "-o", "OUT"], "model"),
        ("rescore -o onto the n-best", ["rescore", "IN", "--model", "MODEL", "-o", "OUT"], "nbest"),
        ("sample -o onto the model", ["sample", "--model", "IN", "-n", "2", "--length", "5", "-o", "OUT"], "model"),
        ("sample -o onto its prime", ["sample", "--model", "MODEL", "--prime-file", "IN", "-n", "2", "--length", "5",
                                      "-o", "OUT"], "corpus"),
        ("tokenize --save onto the corpus", ["tokenize", "IN", "--save", "OUT"], "corpus"),
        ("tokenize --encode -o onto it", ["tokenize", "--model", "MODEL", "--encode", "IN", "-o", "OUT"], "corpus"),
        ("import -o onto the file", ["import", "IN", "-o", "OUT"], "export"),
        ("plot -o onto the metrics", ["plot", "IN", "-o", "OUT"], "metrics"),
    ]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, char_model):
    """One file of each kind a command reads, made once; each test copies the one it needs."""
    folder = tmp_path_factory.mktemp("inputs")
    corpus = folder / "corpus.txt"
    corpus.write_text("the cat sat on the mat\nthe dog sat too\n" * 20, encoding="utf-8")
    nbest = folder / "nbest.txt"
    nbest.write_text("utt1-1 the cat sat\nutt1-2 the cat sad\n", encoding="utf-8")
    export = folder / "export.safetensors"
    assert run(["export", str(char_model), "--to", "safetensors", "-o", str(export)]) == 0
    metrics = folder / "run.metrics.jsonl"
    metrics.write_text('{"step": 1, "tokens_seen": 10, "train_loss": 3.0, "val_loss": 3.1}\n', encoding="utf-8")
    return {"corpus": corpus, "model": char_model, "nbest": nbest, "export": export, "metrics": metrics}


@pytest.mark.parametrize("through", ["same path", "symbolic link", "hard link"])
@pytest.mark.parametrize("name, args, kind", _output_onto_input_cases(), ids=[c[0] for c in _output_onto_input_cases()])
def test_an_output_onto_its_own_input_is_refused_before_any_work(name, args, kind, through, inputs, tmp_path,
                                                                  capsys, monkeypatch):
    import os
    import shutil

    monkeypatch.chdir(tmp_path)
    source = tmp_path / inputs[kind].name
    shutil.copy(inputs[kind], source)
    before = source.read_bytes()
    if through == "same path":
        out = source
    elif through == "symbolic link":
        out = tmp_path / ("link-" + source.name)
        out.symlink_to(source)
    else:
        out = tmp_path / ("hard-" + source.name)
        os.link(source, out)
    names = {"IN": str(source), "OUT": str(out), "MODEL": str(inputs["model"]), "CORPUS": str(inputs["corpus"])}
    capsys.readouterr()
    status = run([names.get(a, a) for a in args])
    _, err = capsys.readouterr()
    assert status == 2, err
    assert err.startswith("error: ") and "input" in err and len(err.strip().split("\n")) == 1, err
    assert source.read_bytes() == before  # the input is intact
    assert not [p for p in tmp_path.iterdir() if p.name.endswith((".parts", ".tmp"))]  # nothing begun


# ---- a refused job leaves nothing behind; process counts are bounded ---------------------------


JOBS = {
    "score": ["score", "--model", "MODEL", "--file", "CORPUS", "--per-line"],
    "rescore": ["rescore", "NBEST", "--model", "MODEL"],
    "tokenize": ["tokenize", "--model", "MODEL", "--encode", "CORPUS"],
    "sample": ["sample", "--model", "MODEL", "-n", "2", "--length", "5", "--seed", "1"],
}


BAD_JOB_OPTIONS = {  # (job, option, value): values each job refuses
    **{(job, "--workers", value): None for job in JOBS for value in ("0", "-3", "100000")},
    **{(job, "--shard-lines", "0"): None for job in ("score", "rescore", "tokenize")},
    ("sample", "--temperature", "-1"): None, ("sample", "--top-p", "2"): None, ("sample", "--top-k", "-2"): None,
    ("rescore", "--weight", "2"): None, ("score", "--keep-below", "nan"): None,
}


@pytest.mark.parametrize("job, option, value", list(BAD_JOB_OPTIONS), ids=[" ".join(k) for k in BAD_JOB_OPTIONS])
def test_a_refused_job_leaves_nothing_and_the_next_one_runs(job, option, value, inputs, tmp_path, capsys):
    """A job's option out of range (--workers 0, negative or absurd, --shard-lines 0, a temperature
    below 0, ...): refused in one line before anything is made (no OUT.parts/ that would then refuse
    the correct command as an unfinished job), and no process is started."""
    out = tmp_path / "out.txt"
    names = {"MODEL": str(inputs["model"]), "CORPUS": str(inputs["corpus"]), "NBEST": str(inputs["nbest"])}
    args = [names.get(a, a) for a in JOBS[job]] + ["-o", str(out)]
    good = []
    if option == "--keep-below":  # (a filter instead of --per-line)
        args.remove("--per-line")
        good = [option, "1000"]
    capsys.readouterr()
    assert run([*args, option, value]) == 2
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {option}") and len(err.strip().split("\n")) == 1, err
    assert list(tmp_path.iterdir()) == []
    assert run([*args, *good]) == 0 and out.exists()


# ---- invalid values: NaN for every number option ---------------------------------------------

BASES = {  # a command line each option is tried in (MODEL, CORPUS, NBEST: the module's inputs)
    "train": ["train", "CORPUS", "--max-steps", "1", "--out", "m.npz"],
    "score": ["score", "--model", "MODEL", "--file", "CORPUS"],
    "sample": ["sample", "--model", "MODEL", "--length", "3"],
    "rescore": ["rescore", "NBEST", "--model", "MODEL"],
    "translate": ["translate", "--model", "MODEL", "some text"],
    "serve": ["serve", "--model", "MODEL", "--port", "0"],
}


def _float_options():
    for name, command in _commands():
        for flag, kind in _number_options(command):
            if kind == "float":
                yield name, flag


def test_every_command_with_a_float_option_is_walked():
    assert {name for name, _ in _float_options()} <= set(BASES)
    assert len(list(_float_options())) >= 15


@pytest.mark.parametrize("name, flag", list(_float_options()), ids=[f"{n} {f}" for n, f in _float_options()])
def test_nan_is_refused_naming_the_option(name, flag, inputs, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = {"MODEL": str(inputs["model"]), "CORPUS": str(inputs["corpus"]), "NBEST": str(inputs["nbest"])}
    capsys.readouterr()
    status = run([names.get(a, a) for a in BASES[name]] + [flag, "nan"])
    out, err = capsys.readouterr()
    assert status == 2 and flag in err and len(err.strip().split("\n")) == 1, (out, err)
    assert list(tmp_path.iterdir()) == []


# ---- what rnncli reads back that it wrote: JSON of the wrong shape ------------------------------


def _interrupted_job(inputs, tmp_path, monkeypatch):
    """A score job whose shard 2 fails every time: its other parts and manifest stay for --resume."""
    corpus = tmp_path / "lines.txt"
    corpus.write_text("".join(f"the cat sat on mat {i}\n" for i in range(40)), encoding="utf-8")
    out = tmp_path / "scores.tsv"
    args = ["score", "--model", str(inputs["model"]), "--file", str(corpus), "--per-line", "--shard-lines", "8",
            "-o", str(out)]
    monkeypatch.setenv("RNNCLI_FAULTS", "fail:2")
    assert run(args) == 1
    monkeypatch.delenv("RNNCLI_FAULTS")
    return args, out, tmp_path / "scores.tsv.parts"


MANIFEST_DAMAGE = {
    "a list": lambda m: [m],
    "parts a list": lambda m: {**m, "parts": list(m["parts"].values())},
    "job missing": lambda m: {"parts": m["parts"]},
    "a part's items a string": lambda m: {**m, "parts": {k: {**v, "items": "8"} for k, v in m["parts"].items()}},
    "a part number not a number": lambda m: {**m, "parts": {"x" + k: v for k, v in m["parts"].items()}},
    "a part's counts a list": lambda m: {**m, "parts": {k: {**v, "counts": [1]} for k, v in m["parts"].items()}},
    "a part's digest missing": lambda m: {**m, "parts": {k: {x: y for x, y in v.items() if x != "sha256"}
                                                         for k, v in m["parts"].items()}},
    "null": lambda m: None,
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_manifest_of_the_wrong_shape_is_refused_naming_the_field(damage, inputs, tmp_path, capsys, monkeypatch):
    import json

    args, out, parts = _interrupted_job(inputs, tmp_path, monkeypatch)
    manifest = parts / "manifest.json"
    manifest.write_text(json.dumps(MANIFEST_DAMAGE[damage](json.loads(manifest.read_text()))), encoding="utf-8")
    capsys.readouterr()
    assert run([*args, "--resume"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {manifest}: ") and len(err.strip().split("\n")) == 1, err
    assert not out.exists()


@pytest.mark.parametrize("damage", ["truncated", "emptied", "changed", "removed"])
def test_resume_reruns_a_part_that_fails_its_check(damage, inputs, tmp_path, capsys, monkeypatch):
    """A part file truncated, emptied, changed in place (same size) or removed after the job stopped:
    --resume says so, runs that part again, and the output is the whole job's, byte for byte."""
    args, out, parts = _interrupted_job(inputs, tmp_path, monkeypatch)
    part = parts / "00001.part"
    text = part.read_bytes()
    if damage == "truncated":
        part.write_bytes(text[: len(text) // 2])
    elif damage == "emptied":
        part.write_bytes(b"")
    elif damage == "changed":
        part.write_bytes(text.replace(b"-", b"+", 1) if b"-" in text else b"x" + text[1:])
    else:
        part.unlink()
    capsys.readouterr()
    assert run([*args, "--resume"]) == 0
    _, err = capsys.readouterr()
    assert "part 1 (lines from 9) failed its check" in err and "running it again" in err, err
    whole = tmp_path / "whole.tsv"
    assert run([*args[:-1], str(whole)]) == 0
    assert out.read_bytes() == whole.read_bytes()


def _safetensors_with(path, header: dict) -> None:
    import json
    import struct

    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + b"\0" * 64)


SAFETENSORS_DAMAGE = {
    "offsets as strings": {"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}},
    "shape a string": {"w": {"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}},
    "entry a list": {"w": [1, 2]},
    "entry null": {"w": None},
    "dtype a number": {"w": {"dtype": 3, "shape": [2], "data_offsets": [0, 8]}},
    "offsets missing": {"w": {"dtype": "F32", "shape": [2]}},
    "a bool in the shape": {"w": {"dtype": "F32", "shape": [True], "data_offsets": [0, 4]}},
    "metadata a list": {"__metadata__": ["x"], "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
}


@pytest.mark.parametrize("damage", list(SAFETENSORS_DAMAGE))
def test_a_safetensors_header_of_the_wrong_shape_is_refused(damage, tmp_path, capsys):
    path = tmp_path / "m.safetensors"
    _safetensors_with(path, SAFETENSORS_DAMAGE[damage])
    capsys.readouterr()
    assert run(["import", str(path), "-o", str(tmp_path / "out.npz")]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {path}: ") and len(err.strip().split("\n")) == 1, err
    assert not (tmp_path / "out.npz").exists()


METADATA_DAMAGE = {
    "model_config a list": ("model_config", "[1]"),
    "hidden a string": ("model_config", None),  # set below from the real one
    "vocabulary an object": ("vocabulary", '{"a": 1}'),
    "vocabulary of numbers": ("vocabulary", "[1, 2]"),
    "tokenizer_config a list": ("tokenizer_config", "[]"),
    "lowercase a string": ("tokenizer_config", None),
}


@pytest.mark.parametrize("damage", list(METADATA_DAMAGE))
def test_an_exports_metadata_of_the_wrong_shape_is_refused(damage, inputs, tmp_path, capsys):
    import json

    from rnncli.formats import safetensors

    tensors, metadata = safetensors.read(str(inputs["export"]))
    key, value = METADATA_DAMAGE[damage]
    if value is None:
        stored = json.loads(metadata[key])
        field = "hidden" if key == "model_config" else "lowercase"
        value = json.dumps({**stored, field: "x"})
    path = tmp_path / "damaged.safetensors"
    safetensors.write(str(path), tensors, {**metadata, key: value})
    capsys.readouterr()
    assert run(["import", str(path), "-o", str(tmp_path / "out.npz")]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {path}: ") and len(err.strip().split("\n")) == 1, err
    assert not (tmp_path / "out.npz").exists()


@pytest.mark.parametrize("line", ['[1, 2]', '{"step": "3", "tokens_seen": 10}', '{"step": 3, "tokens_seen": 10, '
                                  '"val_loss": "low"}', '{"step": 3, "tokens_seen": [10]}', "null"])
def test_a_metrics_line_of_the_wrong_shape_is_refused(line, tmp_path, capsys):
    path = tmp_path / "run.metrics.jsonl"
    path.write_text('{"step": 1, "tokens_seen": 5, "train_loss": 3.0, "val_loss": 3.2}\n' + line + "\n")
    capsys.readouterr()
    assert run(["plot", str(path), "-o", str(tmp_path / "c.png")]) == 1
    _, err = capsys.readouterr()
    assert err.startswith(f"error: {path}: line 2") and len(err.strip().split("\n")) == 1, err


# ---- resources a user's option sizes, and values that cannot be used --------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:1", "localhost:9"])
def test_a_ray_address_where_nothing_listens_fails_at_once(address, inputs, capsys):
    """Refused connections fail in one line (Ray itself would wait there without end)."""
    capsys.readouterr()
    status = run(["score", "--model", str(inputs["model"]), "--file", str(inputs["corpus"]), "--per-line",
                  "--ray", address])
    _, err = capsys.readouterr()
    assert status == 1 and err.startswith(f"error: --ray {address}: nothing answers") and err.count("\n") == 1, err


@pytest.mark.parametrize("address", ["nonsense", "host:port", ":6379"])
def test_a_ray_address_that_is_not_one_is_a_usage_error(address, inputs, capsys):
    capsys.readouterr()
    assert run(["score", "--model", str(inputs["model"]), "--file", str(inputs["corpus"]), "--per-line",
                "--ray", address]) == 2
    assert "give HOST:PORT" in capsys.readouterr().err


@pytest.mark.parametrize("labels", [3, 40, 3000])
def test_an_evaluation_grows_with_the_examples_not_the_square_of_the_labels(labels):
    """Up to 30 labels the confusion matrix; beyond, the 20 most frequent confusions: the report's
    size stays linear in the labels (3,000 labels made a 63 MB matrix), its numbers the same."""
    import json

    from rnncli.tasks import get_task, metrics

    rng = np.random.default_rng(labels)
    names = [f"label{i}" for i in range(labels)]
    gold = [names[i] for i in rng.integers(0, labels, 5000)]
    predicted = [g if rng.random() < 0.6 else names[rng.integers(0, labels)] for g in gold]
    report = metrics.classification_report(gold, predicted, names)
    assert report["accuracy"] == pytest.approx(np.mean([g == p for g, p in zip(gold, predicted, strict=True)]))
    support = {n: gold.count(n) for n in set(gold)}
    assert all(report["per_class"][n]["support"] == support.get(n, 0) for n in names)
    if labels <= metrics.CONFUSION_MAX_LABELS:
        assert sum(map(sum, report["confusion"])) == 5000
    else:
        assert "confusion" not in report and len(report["top_confusions"]) == metrics.TOP_CONFUSIONS
        counts = [n for _, _, n in report["top_confusions"]]
        assert counts == sorted(counts, reverse=True) and all(g != p for g, p, _ in report["top_confusions"])
    assert len(json.dumps(report)) < 400 * labels + 20_000
    text = get_task("classify").report_text(report)
    assert len(text.splitlines()) < labels + 40


def test_repeated_labels_are_refused():
    from rnncli.config import ModelConfig
    from rnncli.errors import ConfigError
    from rnncli.tasks import check_model

    with pytest.raises(ConfigError, match="labels.*'pos' repeat"):
        check_model(ModelConfig(task="classify", labels=["neg", "pos", "pos"], vocab_size=9))


def test_a_validation_set_whose_labels_training_never_saw_is_refused(tmp_path, capsys, monkeypatch):
    """It would score nothing: 'validation loss 0.0000', saved as the best checkpoint."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.tsv").write_text("".join(f"{'pos' if i % 2 else 'neg'}\tthe film was {i}\n"
                                                for i in range(40)), encoding="utf-8")
    (tmp_path / "valid.tsv").write_text("happy\tthe film\nsad\tthe end\n", encoding="utf-8")
    capsys.readouterr()
    status = run(["train", "train.tsv", "--task", "classify", "--valid", "valid.tsv", "--max-steps", "1",
                  "--out", "m.npz"])
    _, err = capsys.readouterr()
    assert status == 2 and "valid.tsv: none of its 2 examples has a label the training examples have" in err, err
    assert not (tmp_path / "m.npz").exists()


def test_more_workers_than_cores_says_what_it_does(inputs, tmp_path, capsys, monkeypatch):
    from rnncli.execution import plan

    monkeypatch.setattr(plan, "machine_cores", lambda: 1)
    args = ["score", "--model", str(inputs["model"]), "--file", str(inputs["corpus"]), "--per-line"]
    capsys.readouterr()
    assert run([*args, "--workers", "2"]) == 0
    shared, err = capsys.readouterr()
    assert "note: --workers 2 on 1 core(s): the processes take turns" in err
    assert run([*args, "--workers", "5"]) == 2  # beyond 4 per core
    capsys.readouterr()
    assert run(args) == 0 and capsys.readouterr().out == shared


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_ray_address_that_answers_but_is_not_ray_ends_at_a_signal(sig, inputs):
    """A port that accepts connections and says nothing: Ray's client retries it in native code,
    where signals waited ~35 s; rnncli waits for it in a thread, so SIGTERM and Ctrl-C end the
    command at once (Ctrl-C with status 130), long before Ray or rnncli's own 60 s would give up."""
    pytest.importorskip("ray")
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    port = listener.getsockname()[1]
    try:
        command = [sys.executable, "-m", "rnncli", "score", "--model", str(inputs["model"]), "--file",
                   str(inputs["corpus"]), "--per-line", "--ray", f"127.0.0.1:{port}"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "PYTHONPATH": str(ROOT)},
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        time.sleep(4)  # (a signal sooner ends it as well)
        process.send_signal(getattr(signal, sig))
        start = time.monotonic()
        _, err = process.communicate(timeout=60)
        assert time.monotonic() - start < 20, err
        assert process.returncode == (130 if sig == "SIGINT" else -signal.SIGTERM), err
    finally:
        listener.close()


@pytest.mark.parametrize("job", list(JOBS))
def test_an_output_device_that_refuses_the_write_is_named(job, inputs, capsys):
    """-o /dev/full: one line naming it (it said 'cannot write to standard output')."""
    import os

    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full on this system")
    names = {"MODEL": str(inputs["model"]), "CORPUS": str(inputs["corpus"]), "NBEST": str(inputs["nbest"])}
    capsys.readouterr()
    assert run([names.get(a, a) for a in JOBS[job]] + ["-o", "/dev/full"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: /dev/full: could not write") and err.count("\n") == 1, err


def test_a_checkpoint_whose_labels_repeat_is_refused_on_load(tmp_path, capsys, monkeypatch):
    import json

    import numpy as np

    monkeypatch.chdir(tmp_path)
    (tmp_path / "train.tsv").write_text("".join(f"{'pos' if i % 2 else 'neg'}\tthe film was {i}\n"
                                                for i in range(40)), encoding="utf-8")
    assert run(["train", "train.tsv", "--task", "classify", "--hidden", "8", "--embed", "4", "--max-steps", "1",
                "--out", "m.npz"]) == 0
    with np.load(tmp_path / "m.npz", allow_pickle=False) as f:
        arrays = dict(f)
    config = json.loads(str(arrays["config"]))
    config["model"]["labels"] = ["neg", "neg"]
    arrays["config"] = np.array(json.dumps(config))
    np.savez(tmp_path / "twice.npz", **arrays)
    capsys.readouterr()
    assert run(["classify", "--model", "twice.npz", "the film"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "labels" in err and "'neg' repeat" in err and err.count("\n") == 1, err


def test_a_beams_history_beyond_memory_is_refused(inputs, capsys):
    capsys.readouterr()
    assert run(["sample", "--model", str(inputs["model"]), "--beam", "4", "--length", str(10**12)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --beam 4 x --length 1,000,000,000,000") and err.count("\n") == 1, err
