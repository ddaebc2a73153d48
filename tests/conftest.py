from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORPORA = ROOT / "corpora"


@pytest.fixture
def demo_path() -> Path:
    return CORPORA / "demo.txt"


@pytest.fixture
def cli():
    """Run the real app through Typer's CliRunner; returns the Result (stdout, stderr, exit_code)."""
    from typer.testing import CliRunner

    from rnncli.cli import app

    runner = CliRunner()

    def run(*args: str, input: str | bytes | None = None):
        return runner.invoke(app, [str(a) for a in args], input=input)

    return run


def run_cli(*args):
    from typer.testing import CliRunner

    from rnncli.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def char_model(tmp_path_factory) -> Path:
    """A small char-level GRU trained briefly on the demo corpus."""
    out = tmp_path_factory.mktemp("char") / "model.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--cell", "gru", "--layers", "1", "--hidden", "48",
                     "--epochs", "3", "--seq-len", "32", "--batch-size", "16", "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


@pytest.fixture(scope="session")
def word_model(tmp_path_factory) -> Path:
    """A small word-level LSTM trained briefly on the demo corpus."""
    out = tmp_path_factory.mktemp("word") / "model.npz"
    result = run_cli("train", CORPORA / "demo.txt", "--level", "word", "--cell", "lstm", "--layers", "2",
                     "--hidden", "32", "--embed", "16", "--epochs", "4", "--seq-len", "20", "--batch-size", "16",
                     "--out", out, "--json")
    assert result.exit_code == 0, result.stderr
    return out


def use_cores(monkeypatch, n: int) -> None:
    """The engine's plan gives this process n cores for the rest of the test (execution/plan.py);
    the plan before is restored after it."""
    from rnncli.execution import plan

    monkeypatch.setattr(plan, "_plan", plan.Plan(n))
