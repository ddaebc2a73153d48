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
