"""The command-line app: one module per command, registered here in the order `--help` shows."""
# ruff: noqa: I001  (the import order below is the order of the commands in --help)

from __future__ import annotations

from typing import Annotated

import typer

# Registration order is the order `rnncli --help` lists the commands in.
from rnncli.cli import tokenize, train, sample, score, rescore, tasks, explain, serve, quantize, info, plot, interop  # noqa: F401
from rnncli.cli.common import app


def _version(value: bool) -> None:
    if value:
        from rnncli import __version__

        typer.echo(f"rnncli {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, sample and score recurrent networks (RNN, GRU, LSTM) on a CPU: language models, classifiers,
    taggers and translators."""


def main() -> None:
    import sys

    # Numba imports cffi and pycparser when they are installed (~50 ms of every command's start),
    # for calling cffi functions from kernels, which rnncli never does: the command-line process
    # declines them. (Code importing rnncli as a library is not affected.)
    sys.modules.setdefault("cffi", None)  # type: ignore[arg-type]
    sys.exit(run(sys.argv[1:]))


def run(args: list[str]) -> int:
    """The app on `args` -> its exit status. A usage error (an unknown option, a value of the wrong
    type, a missing argument) is one line on stderr and status 2, like every other refusal; Typer's
    boxes are for --help only."""
    import sys

    usage_error = typer.BadParameter.__mro__[1]  # click's UsageError, as Typer raises it (it may vendor click)
    try:
        status = app(args, prog_name="rnncli", standalone_mode=False)
    except usage_error as err:
        where = f" (see `{err.ctx.command_path} --help`)" if err.ctx is not None else ""
        message = " ".join(err.format_message().split()).removesuffix(".")
        sys.stderr.write(f"error: {message[:1].lower() + message[1:]}{where}\n")
        return 2
    except typer.Abort:  # Ctrl-C while click itself reads input (no command's own handler)
        sys.stderr.write("interrupted\n")
        return 130
    return status if isinstance(status, int) else 0


__all__ = ["app", "main", "run"]
