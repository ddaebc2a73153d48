"""What every command shares: the Typer app, clean errors, JSON and console output, model lookup.

The CLI layer is this package: it parses, calls one core function, prints. No maths here, and no
heavy import at module level, so `rnncli --help` starts instantly and compiles nothing.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from typing import Annotated

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
STORE_HELP = ("Keep the corpus's token ids in this token store file: read when it holds this corpus cut by this "
              "tokenizer, else made (again: a changed corpus is noticed).")
GLOB_HELP = "In a folder, read the files whose names match this pattern (hidden ones never)."
INPUTS_HELP = ("files, folders (their files matching --glob, sorted) or `-` for stdin; .gz, .bz2, .xz, .zst are "
               "read decompressed")
FILE_OPTIONS = "Checkpoints"
GENERATION_OPTIONS = "Generation"
SCORING_OPTIONS = "Scoring"


# The tokenizer's rules, as `train` and `tokenize` take them.
Split = Annotated[str, typer.Option(help="Word level: words (words and punctuation marks apart) or whitespace (each "
                                         "field between spaces whole, as pytorch/examples, KenLM and SRILM read "
                                         "text).", rich_help_panel=TOKENIZER_OPTIONS)]
BlankLines = Annotated[str, typer.Option(help="Word and subword levels: skip a blank line, or read it as one <EOS> "
                                              "(eos, as pytorch/examples does).", rich_help_panel=TOKENIZER_OPTIONS)]

QUIET_HELP = "Print nothing but errors (and --json output)."
VERBOSE_HELP = "Print more: every progress update, timings."


def note(message: str) -> None:
    """A line the user should see (on stderr, not mixed into the output)."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def fail(message: str, code: int) -> None:
    sys.stderr.write(f"error: {message}\n")
    sys.stderr.flush()
    raise typer.Exit(code)


def _silence_stdout() -> None:
    """Point standard output at /dev/null, so that what is still buffered cannot fail again at exit."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def user_errors(fn):
    """Turn our own errors into one line on stderr and the right exit code, never a traceback.
    Standard output is flushed before returning, so that a write error (a full disk, /dev/full)
    is reported like any other, as coreutils do; a reader that left (`| head`) is not an error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()
            return result
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
            _silence_stdout()
            raise typer.Exit(0) from None
        except OSError as err:  # files are checked where they are opened: what is left is mostly the output
            if err.filename is not None:
                fail(f"{err.filename}: {err.strerror or err}", 1)
            _silence_stdout()
            fail(f"cannot write to standard output: {err.strerror or err}", 1)

    return wrapper


def announce_compilation(delay: float = 2.0) -> None:
    """Say once on stderr that kernels are being compiled, when compilation is still going `delay`
    seconds after it began: the first run of a cell after an install (or after `make clean`) compiles its
    kernels for this machine, which takes seconds; later runs load them from Numba's cache. Call
    it after the core's import (Numba is loaded by then)."""
    import threading

    from numba.core import event

    def say() -> None:
        sys.stderr.write("compiling rnncli's kernels for this machine (first use only; later runs start at once)\n")
        sys.stderr.flush()

    class Notice(event.Listener):
        """Starts a timer at the first compilation; when it fires, speaks if one is still going
        (a cold start compiles many kernels in a row, a warm one loads them in a fraction of it)."""

        depth, timer = 0, None

        def on_start(self, ev) -> None:
            self.depth += 1
            if self.timer is None:
                self.timer = threading.Timer(delay, self.fire)
                self.timer.daemon = True
                self.timer.start()

        def on_end(self, ev) -> None:
            self.depth -= 1

        def fire(self) -> None:
            if self.depth > 0:
                say()

    event.register("numba:compile", Notice())


def command_line_text(texts: list[str], what: str) -> list[str]:
    """Text typed on the command line as valid Unicode. A shell passes bytes; Python keeps bytes
    that are not UTF-8 as lone surrogates, which can be neither encoded nor written. Each such byte
    becomes U+FFFD (the replacement character), with one warning, as a UTF-8 decoder with
    errors="replace" would read it; tokenizers then see an ordinary, unknown character."""
    cleaned = [t.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for t in texts]
    if cleaned != texts:
        sys.stderr.write(f"warning: {what} is not valid UTF-8; its undecodable bytes are read as U+FFFD\n")
    return cleaned


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


def model_path(path: str | None) -> str | None:
    """The checkpoint a command uses: `path`, else $RNNCLI_MODEL, else the model trained last here."""
    from rnncli.training.runfiles import latest_model

    return path or latest_model()


def load_model(path: str | None, allow_nonfinite: bool = False, task: str | tuple | None = None,
               int8_in_memory: bool = False):
    """The checkpoint at `path`, else $RNNCLI_MODEL, else the model trained last here (weights,
    tokenizer and history; not the optimizer state, which only `train --resume` needs). With
    `task`, a model of another task is refused with the command that uses it; `int8_in_memory`: a
    quantized model's weights stay int8 (a command that only builds its steps: formats/int8.py)."""
    from rnncli.errors import UsageError
    from rnncli.tasks import load_model_checkpoint

    path = model_path(path)
    if not path:
        raise UsageError("no model given and none trained here yet: run `rnncli train CORPUS` first, "
                         "or pass --model PATH (or set RNNCLI_MODEL)")
    ck = load_model_checkpoint(path, training_state=False, allow_nonfinite=allow_nonfinite,
                               int8_in_memory=int8_in_memory)
    if task is not None:
        from rnncli.inference.predict import require_task

        require_task(ck, task, path)
    return ck
