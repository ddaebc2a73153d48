"""The training loop: truncated BPTT over contiguous batches, evaluation, checkpoints.

The token stream is cut into B parallel streams (B = --batch-size); each optimizer step takes the
next T tokens (T = --seq-len) of every stream, and the hidden state is carried from chunk to chunk
and reset at each epoch (char-rnn's scheme). Progress reaches the caller through `on_event` dicts;
this module prints nothing.

Exactness: everything that decides the next update (weights, optimizer state, RNG, hidden state,
data position, learning rate and plateau counters) is in the checkpoint, so N steps in one run and
k steps + resume for N - k give bit-identical weights. Only evaluations on the schedule
(`eval_every`) may change the learning rate or stop early; the extra evaluation at the end of a run
only reports.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import math
import os
import re
import signal
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnncli import model as M
from rnncli.checkpoint import Checkpoint, save_checkpoint
from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig
from rnncli.errors import RnncliError, UsageError
from rnncli.optim import Optimizer

DTYPE = np.float32
Event = dict
DEFAULT_RUNS_DIR = "runs"
LATEST_POINTER = "LATEST"


def parse_duration(text: str) -> float:
    """'300', '90s', '5m', '1.5h' -> seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", str(text))
    if not m:
        raise UsageError(f"--max-time must look like 300, 90s, 5m or 1h, not {text!r}")
    return float(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def check_train_config(c: TrainConfig) -> None:
    def positive(name: str, value) -> None:
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise UsageError(f"--{name.replace('_', '-')} must be a positive number, not {value}")

    for name in ("seq_len", "batch_size", "lr", "epochs"):
        positive(name, getattr(c, name))
    for name in ("weight_decay", "clip", "max_steps", "max_time", "eval_every", "patience"):
        value = getattr(c, name)
        if not (math.isfinite(value) and value >= 0):
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more, not {value}")
    if not 0 < c.lr_decay <= 1 or not math.isfinite(c.lr_decay):
        raise UsageError(f"--lr-decay must be in (0, 1], not {c.lr_decay}")
    if not 0 <= c.val_fraction < 1 or not math.isfinite(c.val_fraction):
        raise UsageError(f"--val-fraction must be in [0, 1), not {c.val_fraction}")
    if c.seed < 0:
        raise UsageError(f"--seed must be 0 or more, not {c.seed}")
    if c.lr > 10:
        raise UsageError(f"--lr {c.lr} is far too large (try 2e-3)")


# ---------------------------------------------------------------------------------------------
# Data


def contiguous_streams(ids: np.ndarray, B: int) -> np.ndarray:
    """(N,) -> (B, S): B contiguous streams of S = N // B tokens (the tail is dropped)."""
    S = len(ids) // B
    return ids[: B * S].reshape(B, S)


def chunk(streams: np.ndarray, k: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """The k-th chunk: inputs and targets (T, B), time-major, targets shifted by one token."""
    start = k * T
    inputs = np.ascontiguousarray(streams[:, start : start + T].T)
    targets = np.ascontiguousarray(streams[:, start + 1 : start + T + 1].T)
    return inputs, targets


def ids_checksum(ids: np.ndarray, block: int = 1 << 22) -> int:
    """CRC-32 of the token ids, read block by block (ids may be memory-mapped)."""
    crc = 0
    for start in range(0, len(ids), block):
        crc = zlib.crc32(np.ascontiguousarray(ids[start : start + block], dtype=np.int32).tobytes(), crc)
    return crc


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """A training run's complete state: what a checkpoint stores."""

    model: ModelConfig
    train: TrainConfig
    tokenizer_config: TokenizerConfig
    tokenizer: object
    params: M.Params
    optimizer: Optimizer
    rng: np.random.Generator
    hidden: M.ModelState | None = None
    step: int = 0
    epoch: int = 0
    chunk: int = 0
    tokens_seen: int = 0
    lr: float = 0.0
    best_val: float | None = None  # lowest validation loss of any evaluation (the best checkpoint)
    plateau_best: float | None = None  # lowest of scheduled evaluations (drives lr decay, patience)
    bad_evals: int = 0
    elapsed: float = 0.0  # training seconds over all runs
    train_loss: float | None = None  # running mean of recent training losses
    val_loss: float | None = None
    corpus: dict = field(default_factory=dict)
    history: list = field(default_factory=list)

    def checkpoint(self) -> Checkpoint:
        state = {
            "step": self.step, "epoch": self.epoch, "chunk": self.chunk, "tokens_seen": self.tokens_seen,
            "lr": self.lr, "best_val": self.best_val, "plateau_best": self.plateau_best,
            "bad_evals": self.bad_evals, "elapsed": self.elapsed, "train_loss": self.train_loss,
            "val_loss": self.val_loss, "rng": self.rng.bit_generator.state, "corpus": self.corpus,
            "history": self.history,
        }
        return Checkpoint(self.model, self.train, self.tokenizer_config, self.tokenizer, self.params,
                          self.optimizer.state, self.optimizer.step_count, self.hidden, state)


def new_run(model: ModelConfig, train: TrainConfig, tokenizer_config: TokenizerConfig, tokenizer,
            params: M.Params | None = None) -> Run:
    check_train_config(train)
    M.check_config(model)
    rng = np.random.default_rng(train.seed)
    if params is None:
        params = M.init_params(model, rng, DTYPE)
    optimizer = Optimizer(train.optimizer, params, train.lr, train.weight_decay, train.clip)
    return Run(model, train, tokenizer_config, tokenizer, params, optimizer, rng, lr=train.lr)


def run_from_checkpoint(ck: Checkpoint, train: TrainConfig) -> Run:
    """Continue the run stored in `ck` with (possibly extended) training options `train`."""
    check_train_config(train)
    s = ck.state
    if "rng" not in s or not ck.optim:
        raise RnncliError("the checkpoint holds no training state to resume (was it exported for inference?)")
    optimizer = Optimizer(train.optimizer, ck.params, train.lr, train.weight_decay, train.clip)
    if set(optimizer.state) != set(ck.optim):
        raise UsageError(f"cannot resume: the checkpoint's optimizer state is for {ck.train.optimizer}, "
                         f"not {train.optimizer}")
    optimizer.state = ck.optim
    optimizer.step_count = ck.optim_step
    try:
        rng = np.random.default_rng()
        rng.bit_generator.state = s["rng"]
        run = Run(ck.model, train, ck.tokenizer_config, ck.tokenizer, ck.params, optimizer, rng, ck.hidden,
                  step=int(s["step"]), epoch=int(s["epoch"]), chunk=int(s["chunk"]),
                  tokens_seen=int(s["tokens_seen"]), lr=float(s["lr"]), best_val=s["best_val"],
                  plateau_best=s["plateau_best"], bad_evals=int(s["bad_evals"]), elapsed=float(s["elapsed"]),
                  train_loss=s["train_loss"], val_loss=s["val_loss"], corpus=dict(s.get("corpus", {})),
                  history=list(s.get("history", [])))
    except (KeyError, TypeError, ValueError) as err:
        raise RnncliError(f"the checkpoint's training state is damaged ({err!r}); start again with "
                          "--init-from to keep the weights") from None
    if train.lr != ck.train.lr:  # the user asked for a new learning rate
        run.lr = train.lr
    optimizer.lr = run.lr
    return run


# ---------------------------------------------------------------------------------------------
# Files around a checkpoint


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


class StopFlag:
    """Set by the first Ctrl-C (SIGINT) or a SIGTERM; the loop stops after the current step."""

    def __init__(self):
        self.reason: str | None = None

    def request(self, reason: str) -> None:
        self.reason = reason


@contextlib.contextmanager
def graceful_interrupts(stop: StopFlag):
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum, frame):
        if stop.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop now
        stop.request("interrupted")

    old_int = signal.signal(signal.SIGINT, on_signal)
    old_term = signal.signal(signal.SIGTERM, on_signal)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)


class Diverged(RnncliError):
    pass


# ---------------------------------------------------------------------------------------------
# The loop


def train(run: Run, train_ids: np.ndarray, val_ids: np.ndarray | None, out: str,
          on_event: Callable[[Event], None] = lambda e: None, stop: StopFlag | None = None) -> Event:
    """Train until the first of: epochs, max_steps, max_time, early stopping, or a stop request.
    Saves `out` (last) and `best_path(out)`; returns the final summary event."""
    from rnncli.allocator import keep_freed_memory

    keep_freed_memory()
    c = run.train
    B, T = c.batch_size, c.seq_len
    streams = contiguous_streams(train_ids, B)
    n_chunks = (streams.shape[1] - 1) // T
    if n_chunks < 1:
        need = B * (T + 1)
        raise UsageError(f"{len(train_ids):,} training tokens are too few for one batch of --batch-size {B} "
                         f"x --seq-len {T} (needs {need:,}); lower --batch-size or --seq-len")
    eval_every = c.eval_every or max(1, min(250, n_chunks // 4))
    total_steps = c.epochs * n_chunks
    if c.max_steps:
        total_steps = min(total_steps, c.max_steps)
    stop = stop or StopFlag()
    run_start = time.monotonic()
    elapsed0 = run.elapsed
    recent: list[float] = []
    last_report = 0.0
    last_eval_step = -1
    if run.hidden is None or run.hidden[0][0].shape[0] != B:
        run.hidden = M.initial_state(run.model, B, DTYPE)

    def elapsed_here() -> float:
        return time.monotonic() - run_start

    def progress(kind: str, **extra) -> Event:
        here = elapsed_here()
        steps_here = max(run.step - start_step, 0)
        rate = steps_here * B * T / here if here > 0 else 0.0
        remaining = [(total_steps - run.step) * here / steps_here] if steps_here else []
        if c.max_time:
            remaining.append(max(c.max_time - here, 0.0))
        return {"event": kind, "step": run.step, "total_steps": total_steps, "epoch": run.epoch,
                "epoch_fraction": run.epoch + run.chunk / n_chunks, "train_loss": run.train_loss,
                "val_loss": run.val_loss, "best_val_loss": run.best_val, "lr": run.lr,
                "tokens_seen": run.tokens_seen, "tokens_per_s": rate, "seconds": elapsed0 + here,
                "eta": min(remaining) if remaining else None, **extra}

    def do_eval(scheduled: bool) -> None:
        nonlocal last_eval_step
        last_eval_step = run.step
        if val_ids is None:
            return
        run.val_loss = M.stream_loss(run.model, run.params, val_ids, B, T)
        improved = run.best_val is None or run.val_loss < run.best_val
        if improved:
            run.best_val = run.val_loss
        if scheduled:
            if run.plateau_best is None or run.val_loss < run.plateau_best - 1e-4:
                run.plateau_best = run.val_loss
                run.bad_evals = 0
            else:
                run.bad_evals += 1
                if c.lr_decay < 1:
                    run.lr *= c.lr_decay
                    run.optimizer.lr = run.lr
        run.elapsed = elapsed0 + elapsed_here()
        record = {"step": run.step, "epoch": run.epoch + run.chunk / n_chunks, "tokens_seen": run.tokens_seen,
                  "train_loss": run.train_loss, "val_loss": run.val_loss, "lr": run.lr, "seconds": run.elapsed}
        run.history.append(record)
        _append_metrics(out, record)
        if improved:
            save_checkpoint(best_path(out), run.checkpoint())
        on_event(progress("eval", improved=improved))

    def save_last() -> None:
        run.elapsed = elapsed0 + elapsed_here()
        save_checkpoint(out, run.checkpoint())

    start_step = run.step
    reason = "done"
    with run_lock(out), graceful_interrupts(stop):
        on_event(progress("start", steps_per_epoch=n_chunks, eval_every=eval_every,
                          train_tokens=len(train_ids), val_tokens=0 if val_ids is None else len(val_ids)))
        while True:
            if stop.reason:
                reason = stop.reason
                break
            if c.max_steps and run.step >= c.max_steps:
                break
            if c.max_time and elapsed_here() >= c.max_time:
                reason = "max_time"
                break
            if run.chunk >= n_chunks:  # epoch boundary: reset the carried state
                run.epoch += 1
                run.chunk = 0
                run.hidden = M.initial_state(run.model, B, DTYPE)
            if run.epoch >= c.epochs:
                break
            inputs, targets = chunk(streams, run.chunk, T)
            masks = M.dropout_masks(run.model, run.rng, T, B, DTYPE)
            loss, states, cache = M.forward(run.model, run.params, inputs, targets, run.hidden, masks)
            grads = M.backward(run.model, run.params, cache) if math.isfinite(loss) else None
            norm = run.optimizer.step(run.params, grads) if grads is not None else float("nan")
            if not math.isfinite(loss) or not math.isfinite(norm):
                # The update was not applied (Optimizer.step checks the norm first): params are good.
                save_last()
                raise Diverged(f"training diverged at step {run.step + 1} (loss {loss}, gradient norm {norm}); "
                               f"the last good state is saved in {out}; try a lower --lr or --clip")
            run.hidden = states
            run.step += 1
            run.chunk += 1
            run.tokens_seen += B * T
            recent.append(loss)  # training losses since the last evaluation
            run.train_loss = float(np.mean(recent))
            if run.step % eval_every == 0:
                recent.clear()
                do_eval(scheduled=True)
                save_last()
                if c.patience and run.bad_evals >= c.patience:
                    reason = "early_stop"
                    break
            elif elapsed_here() - last_report >= 0.5:
                last_report = elapsed_here()
                on_event(progress("progress"))
        if reason != "interrupted" and last_eval_step != run.step:
            do_eval(scheduled=False)
        save_last()
    return progress("end", checkpoint=out, best_checkpoint=best_path(out) if run.best_val is not None else None,
                    metrics=metrics_path(out), stop_reason=reason, steps=run.step)


def _append_metrics(out: str, record: dict) -> None:
    import json

    with contextlib.suppress(OSError), open(metrics_path(out), "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


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


# ---------------------------------------------------------------------------------------------
# From command-line options to a ready run


RESUMABLE = {"epochs", "max_steps", "max_time", "lr", "clip", "lr_decay", "patience", "eval_every",
             "weight_decay"}  # training options a resumed run may change


@dataclass
class TrainRequest:
    corpus: str
    model: ModelConfig
    train: TrainConfig
    tokenizer: TokenizerConfig
    explicit: set  # names of the options the user actually gave
    out: str | None = None
    valid: str | None = None
    resume: str | None = None
    init_from: str | None = None
    encoding: str = "utf-8"
    errors: str = "strict"


def default_out(corpus: str, cell: str) -> str:
    stem = "stdin" if corpus == "-" else os.path.splitext(os.path.basename(corpus.rstrip("/")))[0] or "corpus"
    return os.path.join(DEFAULT_RUNS_DIR, f"{stem}-{cell}.npz")


def prepare(req: TrainRequest) -> tuple[Run, np.ndarray, np.ndarray | None, str]:
    """Check everything, read and encode the data, build or restore the run. Writes nothing."""
    from rnncli.checkpoint import load_checkpoint
    from rnncli.data import Corpus, encode_corpus, split_validation
    from rnncli.tokenizers import fit_tokenizer

    if req.resume and req.init_from:
        raise UsageError("--resume and --init-from cannot be combined: resume continues a run, "
                         "init-from starts a new one from its weights")
    check_train_config(req.train)
    corpus = Corpus(req.corpus, req.encoding, req.errors)
    corpus.check_codec()
    base = load_checkpoint(req.resume or req.init_from) if (req.resume or req.init_from) else None
    if base is not None:
        _refuse_changes(req, base)
        tokenizer, tok_config, model = base.tokenizer, base.tokenizer_config, base.model
        if req.init_from and "dropout" in req.explicit:
            model.dropout = req.model.dropout
    else:
        model = req.model
        tok_config = req.tokenizer
        if "embed" not in req.explicit:
            model.embed = model.hidden if model.tie_weights else (64 if tok_config.level == "char" else 256)
        M.check_config(ModelConfig(**{**model.__dict__, "vocab_size": max(model.vocab_size, 2)}))
        tokenizer = fit_tokenizer(tok_config, corpus.blocks())
        model.vocab_size = tokenizer.vocab_size
    M.check_config(model)
    ids = encode_corpus(tokenizer, corpus)
    if req.valid:
        train_ids, val_ids = ids, encode_corpus(tokenizer, Corpus(req.valid, req.encoding, req.errors))
        if len(val_ids) < 2:
            raise RnncliError(f"{req.valid}: too short to validate on (needs at least 2 tokens)")
    else:
        train_ids, val_ids = split_validation(ids, req.train.val_fraction)
        if val_ids is not None and len(val_ids) < 2:
            val_ids = None
    B, T = req.train.batch_size, req.train.seq_len
    if len(train_ids) // B - 1 < T:
        raise UsageError(f"{corpus.name}: {len(train_ids):,} training tokens are too few for one batch of "
                         f"--batch-size {B} x --seq-len {T} (needs {B * (T + 1):,}); "
                         "lower --batch-size or --seq-len")
    check_memory(model, req.train)
    corpus_info = {"name": corpus.name, "bytes": corpus.size_bytes(), "tokens": len(ids),
                   "train_checksum": ids_checksum(train_ids)}
    if req.resume:
        old = base.state.get("corpus", {})
        if old.get("train_checksum") not in (None, corpus_info["train_checksum"]):
            raise UsageError(f"cannot resume: {corpus.name} is not the training data of {req.resume} "
                             f"(it was {old.get('name')}, {old.get('tokens', 0):,} tokens)")
        try:
            run = run_from_checkpoint(base, req.train)
        except UsageError as err:
            raise UsageError(f"{req.resume}: {err}") from None
        except RnncliError as err:
            raise RnncliError(f"{req.resume}: {err}", err.exit_code) from None
    else:
        run = new_run(model, req.train, tok_config, tokenizer, base.params if base is not None else None)
    run.corpus = corpus_info
    out = req.out or (req.resume if req.resume else default_out(req.corpus, model.cell))
    return run, train_ids, val_ids, out


MEMORY_BUDGET = 8 << 30  # bytes; well under this machine's 24 GiB, so a mistake fails fast


def estimate_memory(model: ModelConfig, train: TrainConfig) -> int:
    """Bytes a training step needs, roughly: parameters with gradients and optimizer state (x4),
    activations (B*T*H per gate and layer, see docs), and the output layer's logits (B*T*V)."""
    n_params = sum(int(np.prod(s)) for s in M.param_shapes(model).values())
    from rnncli.kernels.cells import get_cell

    G = get_cell(model.cell).gates
    BT = train.batch_size * train.seq_len
    activations = BT * model.layers * model.hidden * (G + 4) + BT * model.embed
    return 4 * (4 * n_params + activations + 2 * BT * model.vocab_size)


def check_memory(model: ModelConfig, train: TrainConfig) -> None:
    need = estimate_memory(model, train)
    if need > MEMORY_BUDGET:
        raise UsageError(f"this model would need about {need / 2**30:.1f} GiB per training step (vocabulary "
                         f"{model.vocab_size:,}, hidden {model.hidden}, batch {train.batch_size} x {train.seq_len}); "
                         "lower --max-vocab, --hidden, --batch-size or --seq-len")


def _refuse_changes(req: TrainRequest, base: Checkpoint) -> None:
    """A resumed or fine-tuned run keeps the checkpoint's model and vocabulary: options that would
    change them are refused with the reason, not silently ignored."""
    what = "--resume" if req.resume else "--init-from"
    model_opts = {"cell", "hidden", "layers", "embed", "tie_weights"} | (set() if req.init_from else {"dropout"})
    tok_opts = {"level", "min_count", "max_vocab", "vocab_size", "lowercase", "spm_type"}
    for name in sorted(req.explicit):
        if name in model_opts and getattr(req.model, name) != getattr(base.model, name):
            raise UsageError(f"{what}: --{name.replace('_', '-')} {getattr(req.model, name)} differs from the "
                             f"checkpoint's {getattr(base.model, name)}; the model's shape is fixed")
        if name in tok_opts and getattr(req.tokenizer, name) != getattr(base.tokenizer_config, name):
            raise UsageError(f"{what}: --{name.replace('_', '-')} differs from the checkpoint's tokenizer; "
                             "the vocabulary is fixed")
    if req.resume:
        for name in sorted(req.explicit):
            if hasattr(base.train, name) and name not in RESUMABLE and \
                    getattr(req.train, name) != getattr(base.train, name):
                raise UsageError(f"--resume: --{name.replace('_', '-')} {getattr(req.train, name)} differs from the "
                                 f"run's {getattr(base.train, name)}; it cannot change mid-run "
                                 "(start a new run with --init-from instead)")
        merged = TrainConfig(**base.train.__dict__)
        for name in req.explicit & RESUMABLE:
            setattr(merged, name, getattr(req.train, name))
        req.train = merged
