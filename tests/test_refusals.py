"""Refusals as a class, not case by case: every command, every option of a number type, walked from
the app itself. A usage error is one line on stderr and exit status 2 (Typer's boxes are for --help
only), before anything is read or written."""

import pytest
import typer

from rnncli.cli import app, run


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
