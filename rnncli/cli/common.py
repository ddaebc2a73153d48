"""What every command shares: the Typer app, clean errors, JSON and console output, model lookup.

The CLI layer is this package: it parses, calls one core function, prints. No maths here, and no
heavy import at module level, so `rnncli --help` starts instantly and compiles nothing.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import typer

from rnncli.errors import ConfigError, RnncliError

app = typer.Typer(
    name="rnncli",
    help="Train, sample and score recurrent language models (RNN, GRU, LSTM) on a CPU.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)

TOKENIZER_OPTIONS = "Tokenizer"
OUTPUT_OPTIONS = "Output"
MODEL_OPTIONS = "Model"
TRAINING_OPTIONS = "Training"
STOP_OPTIONS = "When to stop"
DATA_OPTIONS = "Data"
FILE_OPTIONS = "Checkpoints"
GENERATION_OPTIONS = "Generation"
SCORING_OPTIONS = "Scoring"


QUIET_HELP = "Print nothing but errors (and --json output)."
VERBOSE_HELP = "Print more: every progress update, timings."


def fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def user_errors(fn):
    """Turn our own errors into one line on stderr and the right exit code, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except ConfigError as err:  # the core names the field; the user typed its flag
            fail(f"--{err.field.replace('_', '-')} {err.problem}", err.exit_code)
        except RnncliError as err:
            fail(str(err), err.exit_code)
        except KeyboardInterrupt:
            sys.stderr.write("interrupted\n")
            raise typer.Exit(130) from None
        except MemoryError:
            fail("out of memory; try a smaller corpus, vocabulary or model", 1)
        except BrokenPipeError:  # `rnncli sample | head`: the reader left; not an error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise typer.Exit(0) from None

    return wrapper


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def console(stderr: bool = False):
    """A rich console: plain text when not a terminal or when NO_COLOR is set."""
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=True, no_color="NO_COLOR" in os.environ or None)


def utf8_stdout() -> None:
    """Write UTF-8 even when stdout is redirected to a file or pipe with another locale."""
    try:
        sys.stdout.reconfigure(encoding="utf-8")  # type: ignore[union-attr]
    except (AttributeError, ValueError):
        pass


def load_model(path: str | None):
    """The checkpoint at `path`, else $RNNCLI_MODEL, else the model trained last here (weights,
    tokenizer and history; not the optimizer state, which only `train --resume` needs)."""
    from rnncli.errors import UsageError
    from rnncli.runfiles import latest_model
    from rnncli.setup import load_model_checkpoint

    path = path or latest_model()
    if not path:
        raise UsageError("no model given and none trained here yet: run `rnncli train CORPUS` first, "
                         "or pass --model PATH (or set RNNCLI_MODEL)")
    return load_model_checkpoint(path, training_state=False)
