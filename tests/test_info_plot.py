"""`rnncli info` and `rnncli plot`."""

import builtins
import json

from tests.conftest import run_cli


def test_info_json(char_model):
    result = run_cli("info", char_model, "--json")
    assert result.exit_code == 0, result.stderr
    d = json.loads(result.stdout)
    for key in ("cell", "layers", "hidden", "parameters", "level", "vocab_size", "corpus", "corpus_bytes", "steps",
                "tokens_seen", "best_val_loss", "val_loss", "rnncli_version", "format_version", "history"):
        assert key in d, key
    assert d["cell"] == "gru" and d["level"] == "char" and d["steps"] > 0 and len(d["history"]) > 1


def test_info_text_draws_the_curve(char_model):
    result = run_cli("info", char_model)
    assert result.exit_code == 0
    assert "parameters" in result.stdout and "validation loss" in result.stdout and "tokens" in result.stdout
    assert result.stdout.count("|") > 10


def test_plot_png_from_checkpoints_and_metrics(char_model, word_model, tmp_path):
    out = tmp_path / "c.png"
    metrics = str(char_model).replace(".npz", ".metrics.jsonl")
    result = run_cli("plot", metrics, word_model, "-o", out)
    assert result.exit_code == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_from_stdin(char_model, tmp_path):
    from typer.testing import CliRunner

    from rnncli.cli import app

    metrics = open(str(char_model).replace(".npz", ".metrics.jsonl")).read()
    out = tmp_path / "s.png"
    result = CliRunner().invoke(app, ["plot", "-", "-o", str(out), "--x", "steps"], input=metrics)
    assert result.exit_code == 0, result.stderr
    assert out.exists()


def test_plot_without_matplotlib_says_how_to_get_it(char_model, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    result = run_cli("plot", char_model, "-o", tmp_path / "x.png")
    assert result.exit_code == 2 and "pip install" in result.stderr


def test_plot_bad_input(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not json\n")
    result = run_cli("plot", bad)
    assert result.exit_code == 1 and "not JSON" in result.stderr
    assert run_cli("plot", tmp_path / "missing.jsonl").exit_code == 2
