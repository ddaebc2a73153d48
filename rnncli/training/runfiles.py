"""A training run's files, in one place: the checkpoint beside its `.best.npz`, `.metrics.jsonl`
and `.lock`, and `runs/LATEST`, which remembers the model trained last for `sample`, `score` and
`info`. `train` writes them; `plot` and `info` read them through the same functions.

    runs/<corpus>-<cell>.npz            the last state (resumable)
    runs/<corpus>-<cell>.best.npz       the lowest validation loss so far
    runs/<corpus>-<cell>.metrics.jsonl  one JSON object per evaluation
    runs/<corpus>-<cell>.npz.lock       held while a `train` writes these
    runs/LATEST                         the absolute path of the checkpoint trained last
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import os

from rnncli.errors import RnncliError, UsageError

DEFAULT_RUNS_DIR = "runs"
LATEST_POINTER = "LATEST"


def default_out(corpus: str, cell: str) -> str:
    stem = "stdin" if corpus == "-" else os.path.splitext(os.path.basename(corpus.rstrip("/")))[0] or "corpus"
    return os.path.join(DEFAULT_RUNS_DIR, f"{stem}-{cell}.npz")


def best_path(out: str) -> str:
    stem, ext = os.path.splitext(out)
    return f"{stem}.best{ext or '.npz'}"


def metrics_path(out: str) -> str:
    return os.path.splitext(out)[0] + ".metrics.jsonl"


@contextlib.contextmanager
def run_lock(out: str):
    """Hold `<out>.lock` for the whole run: a second `train` on the same --out is refused."""
    lock_path = out + ".lock"
    try:
        os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
        fd = os.open(lock_path, os.O_CREAT | os.O_RDWR, 0o644)
    except OSError as err:
        raise RnncliError(f"{out}: cannot write beside the checkpoint ({err.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UsageError(f"{out}: another rnncli train is writing this checkpoint; "
                         "wait for it or pass a different --out") from None
    try:
        for stale in glob.glob(glob.escape(out) + ".*.tmp") + glob.glob(glob.escape(best_path(out)) + ".*.tmp"):
            with contextlib.suppress(OSError):
                os.unlink(stale)  # left by a run killed mid-write; we hold the lock, so not in use
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)


# ---- the metrics log ---------------------------------------------------------------------------


def append_metrics(out: str, record: dict) -> None:
    """One evaluation's record, appended as a JSON line (a full disk loses the line, not the run;
    something other than a regular file at the path, which could block or be a device, is left alone)."""
    path = metrics_path(out)
    if os.path.exists(path) and not os.path.isfile(path):
        return
    with contextlib.suppress(OSError), open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _metrics_record():
    from rnncli.formats.schema import Optional

    loss = Optional(float)
    return {"step": int, "tokens_seen": int, **{k: loss for k in ("train_loss", "val_loss")}}


def parse_metrics(lines: list[str], name: str) -> list[dict]:
    """The records of a metrics file's lines; a line that is not one names its number."""
    from rnncli.formats.schema import check

    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise RnncliError(f"{name}: line {number} is not JSON (expected a .metrics.jsonl file)") from None
        if not isinstance(record, dict) or "step" not in record or "tokens_seen" not in record:
            raise RnncliError(f"{name}: line {number} is not an rnncli metrics record")
        record = {"train_loss": None, "val_loss": None, **record}  # (an evaluation may lack one)
        check(record, _metrics_record(), f"{name}: line {number}")
        records.append(record)
    return records


def read_metrics(path: str) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise RnncliError(f"{path}: cannot read ({err})") from None
    return parse_metrics(lines, path)


# ---- the model trained last ---------------------------------------------------------------------


def set_latest(out: str) -> None:
    """Remember the most recently trained model for `sample` and `score` without --model."""
    folder = DEFAULT_RUNS_DIR
    with contextlib.suppress(OSError):
        os.makedirs(folder, exist_ok=True)
        tmp = os.path.join(folder, LATEST_POINTER + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(os.path.abspath(out) + "\n")
        os.replace(tmp, os.path.join(folder, LATEST_POINTER))


def latest_model() -> str | None:
    """$RNNCLI_MODEL, else the model named in runs/LATEST (relative to the current folder)."""
    env = os.environ.get("RNNCLI_MODEL")
    if env:
        return env
    pointer = os.path.join(DEFAULT_RUNS_DIR, LATEST_POINTER)
    try:
        with open(pointer, encoding="utf-8") as f:
            path = f.read().strip()
    except OSError:
        return None
    return path or None
