"""Continuous batching: one model's requests served together, on a thread of its own.

A language model's generating rows (one per completion choice) advance together in bursts of up to
BURST steps through the engine's many-rows path (`Steps.generate`), in lanes: one per core, each
stepping rows on a thread of its own. Rows between bursts are ready; a lane free takes its share of
them (of those running and ready, over the lanes) for its next burst, so the rows flow to the lane
that is free. Rows that ended or whose client left are dropped; new ones are ready once the
batcher's thread has fed them their prompts (prompts of one length fed together). Scoring
requests wait in one queue and are scored together, sorted by length (`score_ids`), up to
SCORE_SENTENCES at a time; any other work (rescoring, a task model's answers) runs on the
batcher's thread too, beside the lanes.

Why lanes and not one batch in shards: a batch's shards meet at the end of every burst, so whatever
else ran on a core (the event loop, the clients, a prompt being fed) held both shards back; a lane
waits for no other. Measured (AMD EPYC Zen 4, 2 cores, char-rnn lstm, 32 streaming clients of 256
tokens): one batch in shards 13.5-16.8k tokens/s (10 % of its cores' time idle at the shards'
meeting, 7 % feeding prompts while every row waited), lanes 18.0-21.7k.

A row's tokens depend only on its prompt, settings and random stream, never on the rows beside it
or on where the bursts fall (#31: a row's numbers do not depend on how the work is split), so a
seeded request gives the bytes `rnncli sample` gives with that seed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from rnncli.config import SampleConfig
from rnncli.kernels.packed import TILE_ROWS
from rnncli.text.tokenizers import EOS, UNK

BURST = 32  # steps a lane's burst runs before rows may join or leave (16: 18.3-19.7k tokens/s above, 32: 21.3-21.7k)
SCORE_SENTENCES = 512  # sentences scored between two bursts


@dataclass
class Update:
    """What a burst added to one row: its text, tokens and their log-probabilities, each token's
    likeliest alternatives (when asked), and why it ended (None while it runs)."""

    text: str
    tokens: list[int]
    logprobs: list[float]
    top: list[list[tuple[int, float]]] = field(default_factory=list)
    finish_reason: str | None = None


class Row:
    """One completion choice: its prompt's ids, settings (`config.length` tokens at most, stop
    strings, until_eos), random stream, and where its updates go (`send`, called on the batcher's
    lane's thread). `cancel()` (any thread) frees it at the next burst."""

    def __init__(self, tokenizer, prime_ids: np.ndarray, config: SampleConfig, rng: np.random.Generator,
                 send: Callable[[Update], None], top_logprobs: int = 0):
        from rnncli.inference.sample import Growing

        self.context = np.concatenate([[EOS], prime_ids]).astype(np.int64)
        self.config, self.rng, self.send, self.top_logprobs = config, rng, send, top_logprobs
        self.sample = Growing(tokenizer, prime_ids, config)
        self.left = config.length
        self.h = self.c = None  # (L, H) each, once the prompt is fed
        self.next_input = EOS
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class _Scoring:
    ids: list[np.ndarray]
    done: Callable[[list[np.ndarray] | None, BaseException | None], None]
    results: list[np.ndarray | None] = field(default_factory=list)
    next: int = 0  # sentences handed to the scorer so far


class _Lane:
    """A core's thread stepping bursts: `rows`, those of the burst it runs."""

    def __init__(self, k: int):
        self.k = k
        self.rows: list[Row] = []
        self.thread: threading.Thread | None = None


class Batcher:
    """One model's work on threads of its own: a lane per core stepping generating rows (a language
    model), and the batcher's thread that feeds new rows their prompts, scores, and runs calls.
    `rows_in_flight` counts rows waiting, joining or running; the other counts are for /metrics."""

    def __init__(self, ck, name: str):
        from rnncli.execution.plan import cores_here

        self.ck, self.name = ck, name
        self._wake = threading.Condition()
        self._joining: list[Row] = []
        self._feeding = 0  # rows taken from _joining whose prompts are being fed
        self._ready: list[Row] = []  # rows fed, between bursts: the next lane free takes its share
        self._lanes = [_Lane(k) for k in range(max(1, cores_here()))]
        self._scoring: list[_Scoring] = []
        self._calls: list[tuple[Callable, Callable]] = []
        self._stopping = False
        self.generated = self.scored = 0  # tokens, for /metrics
        self._steps = None
        self._thread = threading.Thread(target=self._serve, name=f"rnncli-batcher-{name}", daemon=True)
        self._thread.start()

    # ---- from any thread -----------------------------------------------------------------------

    # (counted under the lock: a row moves between the lists a count reads)

    @property
    def rows_in_flight(self) -> int:
        with self._wake:
            return len(self._joining) + self._feeding + self.rows_running

    @property
    def rows_running(self) -> int:
        with self._wake:
            return len(self._ready) + sum(len(lane.rows) for lane in self._lanes)

    @property
    def queued(self) -> int:
        """Rows waiting to join, sentences waiting to be scored and calls waiting to run."""
        with self._wake:
            return len(self._joining) + sum(len(s.ids) - s.next for s in self._scoring) + len(self._calls)

    def add_rows(self, rows: list[Row]) -> None:
        with self._wake:
            self._joining.extend(rows)
            self._wake.notify_all()

    def score(self, ids: list[np.ndarray], done: Callable) -> None:
        """Score `ids` (each from the start state); done(results, None) or done(None, error) on this thread."""
        with self._wake:
            self._scoring.append(_Scoring(ids, done, [None] * len(ids)))
            self._wake.notify_all()

    def call(self, fn: Callable[[], object], done: Callable) -> None:
        """Run fn() on the batcher's thread (no prompt is fed meanwhile; the lanes go on);
        done(result, None) or done(None, error)."""
        with self._wake:
            self._calls.append((fn, done))
            self._wake.notify_all()

    def stop(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        for thread in [self._thread, *(lane.thread for lane in self._lanes if lane.thread)]:
            thread.join(timeout)

    # ---- the batcher's thread ------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self._joining or self._scoring or self._calls):
                    self._wake.wait()
                if self._stopping:
                    return
                joining, self._joining = [r for r in self._joining if not r.cancelled], []
                self._feeding = len(joining)
                calls, self._calls = self._calls, []
            for fn, done in calls:
                _settle(fn, done)
            if self._scoring:
                self._score_some()
            if joining:
                self._guarded(self._join, joining)
            with self._wake:
                self._feeding = 0

    def _guarded(self, work: Callable[..., None], rows: list[Row], *args) -> None:
        """work(rows, *args); if it fails, the rows end with the error (their requests are told) and
        the batcher goes on."""
        try:
            work(rows, *args)
        except Exception as err:  # noqa: BLE001
            for r in rows:
                r.cancel()
                r.send(Update("", [], [], finish_reason=f"error: {err}"))
            with self._wake:
                self._ready = [r for r in self._ready if not r.cancelled]

    def _engine(self):
        """The language model's step weights, packed once, stepped on one core per call (each lane
        its own rows: execution/steps.py)."""
        if self._steps is None:
            from rnncli.execution.steps import Steps
            from rnncli.models.model import Model

            self._model = Model(self.ck.model)
            self._steps = Steps(self._model, self.ck.params, rows=64, tokens=1 << 30, cores=1)
        return self._steps

    def _join(self, rows: list[Row]) -> None:
        """Feed each new row its prompt (all but its last token: the first burst's input), rows of
        one prompt length together; then each is ready for a lane."""
        steps = self._engine()
        dtype = self.ck.params["embed.weight"].dtype
        by_length: dict[int, list[Row]] = {}
        for r in rows:
            by_length.setdefault(len(r.context), []).append(r)
        for group in by_length.values():
            n = len(group)
            h, c = self._model.step_state(self._model.initial_state(n, dtype))
            context = np.ascontiguousarray(np.stack([r.context for r in group], axis=1))  # (T, n)
            if len(context) > 1:  # generating no token, the kernel feeds all but the last
                from rnncli.inference.sample import row_settings

                steps.generate(h, c, context, np.zeros((n, 0)), *row_settings([r.config for r in group]), False,
                               np.zeros(n, np.bool_), np.empty((n, 0), np.int64), np.empty((n, 0)))
            for b, r in enumerate(group):
                r.h, r.c, r.next_input = h[:, b].copy(), c[:, b].copy(), int(context[-1, b])
                if r.left == 0:
                    with self._wake:
                        self._feeding -= 1
                    r.send(Update("", [], [], finish_reason="length"))
                    continue
                with self._wake:
                    self._feeding -= 1  # counted once: fed, or ready
                    self._ready.append(r)
                    for lane in self._lanes:
                        if lane.thread is None:
                            lane.thread = threading.Thread(target=self._run_lane, args=(lane,), daemon=True,
                                                           name=f"rnncli-lane-{self.name}-{lane.k}")
                            lane.thread.start()
                    self._wake.notify_all()

    # ---- a lane's thread -----------------------------------------------------------------------

    def _run_lane(self, lane: _Lane) -> None:
        while True:
            with self._wake:
                while True:
                    self._ready = [r for r in self._ready if not r.cancelled]
                    if self._stopping or self._ready:
                        break
                    self._wake.wait()
                if self._stopping:
                    return
                # its share of the rows running or ready (the others' bursts keep theirs), in whole
                # tiles of the kernel's rows: a part tile costs a whole one (lstm 2 x 512, two lanes
                # of 16 / 17 rows: 25.7-28.8k / 23.5k tokens/s; 12 / 13: 29.8k / 25.3k)
                share = -(-self.rows_running // (len(self._lanes) * TILE_ROWS)) * TILE_ROWS
                lane.rows, self._ready = self._ready[:share], self._ready[share:]
                rows = list(lane.rows)
            self._guarded(self._burst, rows, lane)
            with self._wake:
                lane.rows = []

    def _burst(self, rows: list[Row], lane: _Lane) -> None:
        """Up to BURST steps of a lane's rows; each row's update sent, those not ended ready again."""
        from rnncli.inference.sample import row_settings

        steps = self._engine()
        N = len(rows)
        n = min(BURST, max(r.left for r in rows))
        h = np.ascontiguousarray(np.stack([r.h for r in rows], axis=1))  # (L, N, H)
        c = np.ascontiguousarray(np.stack([r.c for r in rows], axis=1))
        h0, c0 = (h.copy(), c.copy()) if any(r.top_logprobs for r in rows) else (None, None)
        context = np.array([[r.next_input for r in rows]], np.int64)
        uniforms = np.stack([r.rng.random(n) for r in rows])
        out, lps = np.empty((N, n), np.int64), np.empty((N, n))
        steps.generate(h, c, context, uniforms, *row_settings([r.config for r in rows]), False, np.zeros(N, np.bool_),
                       out, lps)
        updates = []
        for b, r in enumerate(rows):
            take = min(n, r.left)
            tokens, logprobs = out[b, :take].tolist(), lps[b, :take].tolist()
            start = len(r.sample.tokens)
            text = r.sample.extend(tokens, logprobs)
            r.left -= take
            kept = r.sample.tokens[start:]
            top = []
            if r.top_logprobs and kept:
                top = self._alternatives(h0[:, b], c0[:, b], [r.next_input, *kept[:-1]], r.top_logprobs)
            r.h, r.c, r.next_input = h[:, b].copy(), c[:, b].copy(), int(out[b, n - 1])
            updates.append(Update(text, kept, r.sample.logprobs[start:], top,
                                  "stop" if r.sample.ended else ("length" if r.left <= 0 else None)))
        with self._wake:  # ended rows leave before their requests hear (a client may ask again at once)
            self.generated += sum(len(u.tokens) for u in updates)
            ended = {id(r) for r, u in zip(rows, updates, strict=True) if u.finish_reason}
            self._ready += [r for r in rows if id(r) not in ended and not r.cancelled]
            lane.rows = []
            self._wake.notify_all()
        for r, update in zip(rows, updates, strict=True):
            r.send(update)

    def _alternatives(self, h, c, inputs: list[int], k: int) -> list[list[tuple[int, float]]]:
        """The k likeliest next tokens (and their log-probabilities, as the generated tokens' are: at
        temperature 1, <UNK> never drawn) after each of `inputs`, stepped one row from the state h, c
        (L, H) the burst started from: the steps the burst took, again."""
        from rnncli.kernels.generate import model_step

        weights = self._engine().weights
        h, c = np.ascontiguousarray(h[:, None]), np.ascontiguousarray(c[:, None])
        out = []
        for token in inputs:
            logits = model_step(*weights, np.array([token], np.int64), h, c)[0].astype(np.float64)
            logits[UNK] = -np.inf
            lp = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
            best = np.argsort(-lp, kind="stable")[:k]
            out.append([(int(i), float(lp[i])) for i in best])
        return out

    def _score_some(self) -> None:
        """Up to SCORE_SENTENCES waiting sentences scored together (oldest requests first)."""
        from rnncli.inference.score import score_ids

        taken: list[tuple[_Scoring, int, int]] = []
        count = 0
        with self._wake:
            for job in self._scoring:
                if count >= SCORE_SENTENCES:
                    break
                k = min(len(job.ids) - job.next, SCORE_SENTENCES - count)
                taken.append((job, job.next, job.next + k))
                job.next += k
                count += k
        batch = [s for job, a, b in taken for s in job.ids[a:b]]
        try:
            results = score_ids(self.ck, batch) if batch else []
        except BaseException as err:  # noqa: BLE001 (the request is told; the server goes on)
            for job, _, _ in taken:
                self._drop_scoring(job)
                job.done(None, err)
            return
        at = 0
        for job, a, b in taken:
            job.results[a:b] = results[at:at + b - a]
            at += b - a
            self.scored += sum(len(s) for s in job.ids[a:b])
            if b == len(job.ids):
                self._drop_scoring(job)
                job.done(job.results, None)

    def _drop_scoring(self, job: _Scoring) -> None:
        with self._wake:
            if job in self._scoring:
                self._scoring.remove(job)


def _settle(fn: Callable[[], object], done: Callable) -> None:
    try:
        result = fn()
    except BaseException as err:  # noqa: BLE001 (the caller is told; the batcher goes on)
        done(None, err)
        return
    done(result, None)

