import json
import subprocess
import sys

import pytest

COMMANDS = ["tokenize", "train", "sample", "score"]


def test_root_help_lists_every_command(cli):
    result = cli("--help")
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli, command):
    result = cli(command, "--help")
    assert result.exit_code == 0
    assert "Usage" in result.stdout


def test_version(cli):
    result = cli("--version")
    assert result.exit_code == 0 and result.stdout.startswith("rnncli ")


def test_help_and_version_do_not_import_numba():
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom rnncli.cli import app\n"
            "r = CliRunner().invoke(app, ['--help']); assert r.exit_code == 0\n"
            "r = CliRunner().invoke(app, ['--version']); assert r.exit_code == 0\n"
            "print('numba' in sys.modules, 'numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_python_dash_m(tmp_path):
    out = subprocess.run([sys.executable, "-m", "rnncli", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and "rnncli" in out.stdout


def test_tokenize_json(cli, demo_path):
    result = cli("tokenize", demo_path, "--level", "word", "--json", "--show", "3")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["level"] == "word"
    assert report["lines"] == 600
    assert report["unk_rate"] == 0.0
    assert report["tokens"] > 5000 and report["vocab_size"] > 50
    assert len(report["top"]) == 3


def test_tokenize_table(cli, demo_path):
    result = cli("tokenize", demo_path)
    assert result.exit_code == 0
    assert "vocabulary" in result.stdout and "<UNK> rate" in result.stdout


def test_tokenize_stdin(cli):
    result = cli("tokenize", "-", "--json", input="hello\nworld\n")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["tokens"] == 12 and report["lines"] == 2 and report["characters"] == 8


def test_save_then_show_tokens_with_unk(cli, tmp_path, demo_path):
    vocab = tmp_path / "vocab.npz"
    assert cli("tokenize", demo_path, "--level", "word", "--save", vocab).exit_code == 0
    result = cli("tokenize", "--vocab", vocab, "--json", "the apple and zyzzyva salad")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)[0]["tokens"]
    assert [r["piece"] for r in rows] == ["the", "apple", "and", "zyzzyva", "salad", "<EOS>"]
    assert rows[3]["id"] == 0 and rows[3]["token"] == "<UNK>"
    text = cli("tokenize", "--vocab", vocab, "the zyzzyva").stdout
    assert "zyzzyva = <UNK>" in text and "the = " in text


def test_subword_too_small_is_a_clean_usage_error(cli, tmp_path):
    path = tmp_path / "small.txt"
    path.write_text("a tiny corpus\n")
    result = cli("tokenize", path, "--level", "subword", "--vocab-size", "4000")
    assert result.exit_code == 2
    assert "--vocab-size" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "content, code, message",
    [
        (None, 2, "no such file"),
        ("DIR", 2, "directory"),
        (b"", 1, "empty"),
        (b"\x00\x01\x02binary", 1, "binary"),
        (b"caf\xe9\n", 1, "byte offset 3"),
    ],
)
def test_tokenize_error_paths(cli, tmp_path, content, code, message):
    path = tmp_path / "corpus.txt"
    if content == "DIR":
        path = tmp_path
    elif content is not None:
        path.write_bytes(content)
    result = cli("tokenize", path)
    assert result.exit_code == code
    assert message in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


def test_tokenize_bad_options(cli, demo_path):
    assert cli("tokenize", demo_path, "--level", "bytes").exit_code == 2
    assert cli("tokenize", demo_path, "--min-count", "0").exit_code == 2
    assert cli("tokenize").exit_code == 2
    assert cli("tokenize", "--vocab", "missing.npz", "text").exit_code == 2


def test_tokenize_vocab_not_a_checkpoint(cli, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    result = cli("tokenize", "--vocab", bad, "text")
    assert result.exit_code == 1 and "not an rnncli .npz" in result.stderr
