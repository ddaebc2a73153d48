"""The training loop: steps, evaluation, checkpoints, for every task.

What a step reads is a feed's business. A language model's (`StreamFeed`): the token stream cut
into B parallel streams (B = --batch-size); each optimizer step takes the next T tokens
(T = --seq-len) of every stream, and the hidden state is carried from chunk to chunk and reset at
each epoch (char-rnn's scheme). A task's (`ExampleFeed`): batches of whole examples of one length,
in an order fixed by the seed and the epoch, nothing carried. Progress reaches the caller through
`on_event` dicts; this module prints nothing.

Exactness: everything that decides the next update (weights, optimizer state, RNG, hidden state,
data position, learning rate and plateau counters) is in the checkpoint, so N steps in one run and
k steps + resume for N - k give bit-identical weights. Only evaluations on the schedule
(`eval_every`) may change the learning rate or stop early; the extra evaluation at the end of a run
only reports.
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig
from rnncli.errors import RnncliError, UsageError
from rnncli.formats.checkpoint import Checkpoint, save_checkpoint
from rnncli.inference.score import stream_loss
from rnncli.models.model import Model, ModelState, Params
from rnncli.text.data import chunk, contiguous_streams
from rnncli.text.examples import Encoded
from rnncli.training.optim import Optimizer
from rnncli.training.runfiles import append_metrics, best_path, metrics_path, run_lock
from rnncli.training.schedule import lr_factor

DTYPE = np.float32
Event = dict
EVAL_SHARE = 0.03  # of a --max-time budget, at most, for validating on a sample during the run


# ---------------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """A training run's complete state: what a checkpoint stores."""

    model: ModelConfig
    train: TrainConfig
    tokenizer_config: TokenizerConfig
    tokenizer: object
    params: Params
    optimizer: Optimizer
    rng: np.random.Generator
    hidden: ModelState | None = None
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
    val_sample: int | None = None  # positions per stream validated during a timed run; 0 = all; None = not chosen

    def checkpoint(self) -> Checkpoint:
        state = {
            "step": self.step, "epoch": self.epoch, "chunk": self.chunk, "tokens_seen": self.tokens_seen,
            "lr": self.lr, "best_val": self.best_val, "plateau_best": self.plateau_best,
            "bad_evals": self.bad_evals, "elapsed": self.elapsed, "train_loss": self.train_loss,
            "val_loss": self.val_loss, "rng": self.rng.bit_generator.state, "corpus": self.corpus,
            "history": self.history, "val_sample": self.val_sample,
        }
        return Checkpoint(self.model, self.train, self.tokenizer_config, self.tokenizer, self.params,
                          self.optimizer.state, self.optimizer.step_count, self.hidden, state)


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
# What a step reads


class StreamFeed:
    """The language model's data: B contiguous streams of the token ids, T tokens per step, the
    hidden state carried from chunk to chunk and reset at each epoch."""

    samples_validation = True  # a timed run may validate on a sample of the streams

    def __init__(self, model: Model, run: Run, train_ids: np.ndarray, val_ids: np.ndarray | None):
        c = run.train
        self.model, self.B, self.T = model, c.batch_size, c.seq_len
        self.val_ids = val_ids
        self.train_tokens, self.val_tokens = len(train_ids), 0 if val_ids is None else len(val_ids)
        self.streams = contiguous_streams(train_ids, self.B)
        self.steps_per_epoch = (self.streams.shape[1] - 1) // self.T
        if self.steps_per_epoch < 1:
            need = self.B * (self.T + 1)
            raise UsageError(f"{len(train_ids):,} training tokens are too few for one batch of --batch-size "
                             f"{self.B} x --seq-len {self.T} (needs {need:,}); lower --batch-size or --seq-len")
        if run.hidden is None or run.hidden[0][0].shape[0] != self.B:
            run.hidden = model.initial_state(self.B, DTYPE)

    def start_epoch(self, run: Run) -> None:
        run.hidden = self.model.initial_state(self.B, DTYPE)

    def step(self, run: Run, index: int):
        """-> loss, cache, tokens read, and what to keep once the update is applied."""
        inputs, targets = chunk(self.streams, index * self.T, index * self.T + self.T)
        masks = self.model.dropout_masks(run.rng, self.T, self.B, DTYPE)
        loss, states, cache = self.model.forward(run.params, inputs, targets, run.hidden, masks)

        def keep() -> None:
            run.hidden = states

        return loss, cache, self.B * self.T, keep

    def validate(self, params: Params, positions: int | None = None) -> float:
        return stream_loss(self.model, params, self.val_ids, self.B, self.T, max_positions=positions)


class ExampleFeed:
    """A task's data (examples.py): batches of whole examples of one length, in an order fixed by
    (seed, epoch); nothing is carried between steps."""

    samples_validation = False

    def __init__(self, model, run: Run, train: Encoded, val: Encoded | None):
        from rnncli.tasks import get_task
        from rnncli.text.examples import length_batches, rare_inputs

        self.model, self.task, self.seed, self.B = model, get_task(run.model.task), run.train.seed, run.train.batch_size
        self.train, self.val = train, val
        self.train_tokens, self.val_tokens = train.tokens(), 0 if val is None else val.tokens()
        self.steps_per_epoch = len(length_batches(train.lengths(), self.B))
        self.val_batches = [] if val is None else length_batches(val.lengths(), self.B)
        self._epoch, self._order = -1, []
        self.unk_dropout = run.train.unk_dropout
        self.rare = rare_inputs(train, run.model.vocab_size) if self.unk_dropout > 0 else None
        run.hidden = None

    def start_epoch(self, run: Run) -> None:
        pass

    def step(self, run: Run, index: int):
        from rnncli.text.examples import drop_rare_inputs, epoch_batches, make_batch

        if self._epoch != run.epoch:
            self._epoch, self._order = run.epoch, epoch_batches(self.train, self.B, self.seed, run.epoch)
        batch = make_batch(self.task, self.train, self._order[index])
        if self.rare is not None:  # words seen once sometimes become <UNK>, so <UNK> is learnt (examples.py)
            batch = drop_rare_inputs(batch, self.rare, self.unk_dropout, run.rng)
        masks = self.model.dropout_masks(run.rng, batch, DTYPE)
        loss, cache = self.model.forward(run.params, batch, masks)
        return loss, cache, batch.tokens, lambda: None

    def validate(self, params: Params, positions: int | None = None) -> float:
        """Mean loss per scored target over the whole validation set."""
        from rnncli.text.examples import make_batch

        total, count = 0.0, 0
        for indices in self.val_batches:
            loss, n = self.model.loss_sum(params, make_batch(self.task, self.val, indices))
            total, count = total + loss, count + n
        return total / max(count, 1)


# ---------------------------------------------------------------------------------------------
# The loop


def train(run: Run, train_data, val_data, out: str, on_event: Callable[[Event], None] = lambda e: None,
          stop: StopFlag | None = None) -> Event:
    """Train until the first of: epochs, max_steps, max_time, early stopping, or a stop request.
    `train_data`/`val_data`: token ids for the language model, encoded examples (examples.py) for
    a task. Saves `out` (last) and `best_path(out)`; returns the final summary event."""
    from rnncli.execution.allocator import keep_freed_memory
    from rnncli.tasks import build_model, get_task

    keep_freed_memory()
    c = run.train
    model = build_model(run.model)
    feed_class = StreamFeed if get_task(run.model.task).stream else ExampleFeed
    feed = feed_class(model, run, train_data, val_data)
    has_val = val_data is not None
    n_chunks = feed.steps_per_epoch
    eval_every = c.eval_every or max(1, min(250, n_chunks // 4))
    total_steps = c.epochs * n_chunks
    if c.max_steps:
        total_steps = min(total_steps, c.max_steps)
    stop = stop or StopFlag()
    run_start = time.monotonic()
    elapsed0 = run.elapsed
    tokens0 = run.tokens_seen
    recent: list[float] = []
    last_report = 0.0
    last_eval_step = -1

    def elapsed_here() -> float:
        return time.monotonic() - run_start

    def scheduled_lr() -> float:
        """run.lr (the base rate, lowered by --lr-decay on plateaus) through the schedule."""
        spent = run.step / total_steps
        if c.max_time:
            spent = max(spent, elapsed_here() / c.max_time)
        return run.lr * lr_factor(c.schedule, c.warmup, run.step, spent)

    # Validation during a --max-time run looks at a fixed sample of the validation streams sized to
    # EVAL_SHARE of the budget (the first `run.val_sample` positions of each of the B streams, so
    # spread over the whole split); the whole split is scored once at the end. The best checkpoint
    # is chosen on the sample, the same every time (kept in the checkpoint across a resume).
    sampling = bool(c.max_time and not c.eval_every and has_val and feed.samples_validation)
    eval_seconds = 0.0

    def choose_eval_positions() -> int:
        """Positions per stream that fit the share of the budget; 0 when the whole split does."""
        B, T = feed.B, feed.T
        probe_start = time.monotonic()
        feed.validate(run.params, T)
        per_position = (time.monotonic() - probe_start) / T
        step_seconds = elapsed_here() / max(run.step - start_step, 1)
        budget = EVAL_SHARE * eval_every * step_seconds  # seconds per evaluation
        positions = max(T, int(budget / per_position) // T * T)
        return 0 if positions * B >= feed.val_tokens else positions

    def progress(kind: str, **extra) -> Event:
        here = elapsed_here()
        steps_here = max(run.step - start_step, 0)
        rate = (run.tokens_seen - tokens0) / here if here > 0 else 0.0
        remaining = [(total_steps - run.step) * here / steps_here] if steps_here else []
        if c.max_time:
            remaining.append(max(c.max_time - here, 0.0))
        return {"event": kind, "step": run.step, "total_steps": total_steps, "epoch": run.epoch,
                "epoch_fraction": run.epoch + run.chunk / n_chunks, "train_loss": run.train_loss,
                "val_loss": run.val_loss, "best_val_loss": run.best_val, "lr": run.optimizer.lr,
                "tokens_seen": run.tokens_seen, "tokens_per_s": rate, "seconds": elapsed0 + here,
                "eta": min(remaining) if remaining else None, **extra}

    def do_eval(scheduled: bool) -> None:
        nonlocal last_eval_step, eval_seconds
        last_eval_step = run.step
        if not has_val:
            return
        eval_start = time.monotonic()
        if sampling and scheduled and run.val_sample is None:
            run.val_sample = choose_eval_positions()
        sample = (run.val_sample or None) if scheduled else None  # None: the whole split
        run.val_loss = feed.validate(run.params, sample)
        if scheduled:  # the share of the training time spent validating (the final scoring comes after)
            eval_seconds += time.monotonic() - eval_start
        improved = (run.best_val is None or run.val_loss < run.best_val) and (scheduled or not run.val_sample)
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
        run.elapsed = elapsed0 + elapsed_here()
        record = {"step": run.step, "epoch": run.epoch + run.chunk / n_chunks, "tokens_seen": run.tokens_seen,
                  "train_loss": run.train_loss, "val_loss": run.val_loss, "lr": run.optimizer.lr,
                  "seconds": run.elapsed}
        if sample:
            record["val_sample_tokens"] = sample * feed.B
        run.history.append(record)
        append_metrics(out, record)
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
                          train_tokens=feed.train_tokens, val_tokens=feed.val_tokens))
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
                feed.start_epoch(run)
            if run.epoch >= c.epochs:
                break
            run.optimizer.lr = scheduled_lr()
            loss, cache, tokens, keep = feed.step(run, run.chunk)
            grads = model.backward(run.params, cache) if math.isfinite(loss) else None
            norm = run.optimizer.step(run.params, grads) if grads is not None else float("nan")
            if not math.isfinite(loss) or not math.isfinite(norm):
                # The update was not applied (Optimizer.step checks the norm first): params are good.
                save_last()
                raise Diverged(f"training diverged at step {run.step + 1} (loss {loss}, gradient norm {norm}); "
                               f"the last good state is saved in {out}; try a lower --lr or --clip")
            keep()
            run.step += 1
            run.chunk += 1
            run.tokens_seen += tokens
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
        train_seconds = elapsed_here()
        if reason != "interrupted" and last_eval_step != run.step:
            do_eval(scheduled=False)
        save_last()
    return progress("end", checkpoint=out, best_checkpoint=best_path(out) if run.best_val is not None else None,
                    metrics=metrics_path(out), stop_reason=reason, steps=run.step,
                    eval_share=eval_seconds / max(train_seconds, 1e-9),
                    val_sample_tokens=run.val_sample * feed.B if run.val_sample else None)
