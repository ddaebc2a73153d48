"""Every `rnncli` command in the README's ```sh blocks runs, in order, in a fresh folder holding the
shipped corpora, so the README cannot drift from the tool."""

import json
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import CORPORA, ROOT, run_cli


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("rnncli "):
                commands.append(line)
    return commands


def test_the_readme_has_a_walkthrough():
    commands = readme_commands()
    for word in ("train", "sample", "score", "info", "plot", "tokenize"):
        assert any(c.split()[1] == word for c in commands), word


@pytest.mark.slow
def test_every_readme_command_runs(tmp_path, monkeypatch):
    shutil.copytree(CORPORA, tmp_path / "corpora", ignore=shutil.ignore_patterns("downloads"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RNNCLI_MODEL", raising=False)
    for command in readme_commands():
        args = shlex.split(command)[1:]
        if args[0] == "--install-completion":
            continue
        result = run_cli(*args)
        assert result.exit_code == 0, f"{command}\n{result.stderr}"
    assert (tmp_path / "curve.png").stat().st_size > 1000


def all_commands() -> list[str]:
    import typer.main

    from rnncli.cli import app

    return sorted(typer.main.get_command(app).commands)


@pytest.mark.parametrize("command", all_commands())
def test_help_has_summary_example_defaults_and_groups(command):
    result = run_cli(command, "--help")
    assert result.exit_code == 0
    text = result.stdout
    assert "Example: rnncli " + command in text.replace("\n", " ").replace("│", " ") or \
        re.search(r"Example:\s+rnncli\s+" + command, text)
    lines = [line.strip(" │") for line in text.splitlines() if line.strip(" │")]
    assert any(len(line) > 15 and not line.startswith(("Usage", "╭", "─", "-")) for line in lines[:4])
    if command in ("tokenize", "train", "sample", "score", "rescore", "export"):
        assert "[default:" in text.replace("\n", " ")
        assert "Output" in text


ONNX_LEVELS = [("char", "lstm"), ("word", "gru"), ("word-whitespace", "gru-cudnn"), ("subword", "rnn")]


@pytest.mark.parametrize(("level", "cell"), ONNX_LEVELS)
def test_the_readme_onnx_script_scores_what_rnncli_scores(tmp_path, level, cell):
    """The README's ONNX scoring script, run as written (its own process, only onnxruntime and the
    export's two files), prints each sentence's log P as `rnncli score` does, at every level."""
    pytest.importorskip("onnxruntime")
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    script = next(b for b in re.findall(r"```python\n(.*?)```", text, flags=re.S) if "onnxruntime" in b)
    (tmp_path / "score_onnx.py").write_text(script, encoding="utf-8")
    cut = {"char": ["--level", "char"], "word": ["--level", "word", "--lowercase"],
           "word-whitespace": ["--level", "word", "--split", "whitespace"],
           "subword": ["--level", "subword", "--vocab-size", "120"]}[level]
    model = tmp_path / "m.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--cell", cell, *cut, "--layers", "2", "--hidden", "12",
                     "--embed", "8", "--max-steps", "3", "--out", model)
    assert result.exit_code == 0, result.stderr
    assert run_cli("export", model, "--to", "onnx", "-o", tmp_path / "m.onnx").exit_code == 0
    sentences = ["The apple and pear salad was sweet.", "the zyzzyva , ate 3 plums !", "Pear."]
    done = subprocess.run([sys.executable, "score_onnx.py", "m.onnx", *sentences], cwd=tmp_path,
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    printed = [line.split("\t") for line in done.stdout.splitlines()]
    assert [t for _, t in printed] == sentences
    result = run_cli("score", "--model", model, *sentences, "--json")
    assert result.exit_code == 0, result.stderr
    ours = {r["text"]: r["logprob"] for r in json.loads(result.stdout)}
    for logprob, sentence in printed:
        assert abs(float(logprob) - ours[sentence]) < 2e-3, (sentence, logprob, ours[sentence])
