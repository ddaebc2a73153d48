"""Every `rnncli` command in the README's ```sh blocks runs, in order, in a fresh folder holding the
shipped corpora, so the README cannot drift from the tool."""

import re
import shlex
import shutil

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
