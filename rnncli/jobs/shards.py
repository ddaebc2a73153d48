"""A job in shards: the same work on one process, on N local processes or on a Ray cluster, with
the same output.

A job's input is cut into shards: runs of SHARD_LINES input lines (a cut moves past lines that must
stay together, such as one utterance's hypotheses), or for `sample -n` runs of samples. A worker
that holds the loaded model turns a shard into its part: the shard's output text and the numbers a
summary adds up. Parts are put out in input order, and every path cuts the same shards, so the
output is the same byte for byte whoever runs it: one process, `--workers N` or `--ray`.

    one process      the shards in turn, here
    --workers N      N processes (spawned), each loading the model once, its BLAS limited to
                     cores / N threads; at most 2N shards in flight, parts reordered on arrival
    --ray ADDRESS    Ray tasks (rnncli/jobs/ray_jobs.py)

With an output file, each finished part is also written as a part file beside it
(`OUT.parts/00012.part`, jobs/parts.py) and recorded in `OUT.parts/manifest.json` with what identifies the job
(input, model, options); `--resume` skips the shards already done. The output file is written,
atomically, once every shard is done; a shard that failed RETRIES times is reported with its line
range and leaves the parts for a later `--resume`.

A file that is not text is refused at once (its start is checked as every command checks a corpus);
after that, a line that is not valid text, or that a task cannot use (a malformed n-best line), is
a bad line: left out, counted and reported; it never stops a job.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rnncli.errors import RnncliError, UsageError

if TYPE_CHECKING:
    from rnncli.jobs.parts import PartStore

SHARD_LINES = 8192
RETRIES = 3
BAD_SHOWN = 3  # bad lines named in the report


@dataclass
class Shard:
    index: int
    first: int  # number of its first item: an input line (1-based), or a sample (0-based)
    items: list  # input lines (without their newline; None for a line that is not valid text), or sample numbers


@dataclass
class Part:
    index: int
    first: int
    items: int  # how many items the shard had
    text: str  # the shard's output
    counts: dict[str, float] = field(default_factory=dict)  # what a summary adds up, shard by shard
    bad: list[tuple[int, str]] = field(default_factory=list)  # (line number, why), the first few
    bad_lines: int = 0

    def add_bad(self, number: int, why: str = "not valid text (an undecodable byte or a NUL)") -> None:
        self.bad_lines += 1
        if len(self.bad) < BAD_SHOWN:
            self.bad.append((number, why))

    def to_record(self) -> dict:
        return {"index": self.index, "first": self.first, "items": self.items, "counts": self.counts,
                "bad": self.bad, "bad_lines": self.bad_lines}

    @classmethod
    def from_record(cls, record: dict, text: str) -> Part:
        return cls(record["index"], record["first"], record["items"], text, record["counts"],
                   [tuple(b) for b in record["bad"]], record["bad_lines"])


class Task:
    """What a command does to one shard: `run(loaded, shard) -> Part`, `loaded` being what the job's
    file holds, loaded once per worker: a model checkpoint (`needs = "model"`) or just its tokenizer
    (`needs = "tokenizer"`: a checkpoint or a tokenizer file). A task is plain data (it travels to
    worker processes); `describe()` identifies it in a manifest."""

    needs = "model"

    def run(self, ck, shard: Shard) -> Part:
        raise NotImplementedError

    def bad_lines_fate(self) -> str:
        """What became of the bad lines, for the job's closing error."""
        return "left out of the output"

    def describe(self) -> dict:
        return {"task": type(self).__name__, **{k: v for k, v in vars(self).items()}}


# ---- cutting the input -------------------------------------------------------------------------


class LineSource:
    """The lines of an input (a Corpus: a file or stdin, read by its decoding rules) cut into shards.
    `group` gives a line's group key: a cut never falls between two lines of one group."""

    def __init__(self, corpus, shard_lines: int = SHARD_LINES, group: Callable[[str], str] | None = None):
        if shard_lines < 1:
            raise UsageError("--shard-lines must be at least 1")
        self.corpus, self.shard_lines, self.group = corpus, shard_lines, group
        plain = not corpus.is_stdin and not corpus.compressed and all(os.path.isfile(f) for f in corpus.files)
        self.size = corpus.size_bytes() if plain else None  # a compressed size would not measure progress
        self.bytes_read = 0  # about: characters and newlines read

    def identity(self) -> dict:
        if self.corpus.is_stdin:
            return {"input": "<stdin>"}  # never resumed (run_sharded refuses --resume on stdin)
        stats = self.corpus.file_stats()
        if len(stats) == 1:
            path, size, mtime = stats[0]
            return {"input": path, "bytes": size, "mtime_ns": mtime}
        return {"inputs": stats}

    def shards(self) -> Iterator[Shard]:
        lines: list[str] = []
        index, first = 0, 1
        for number, line in enumerate(self.corpus.decoded_lines(), 1):
            self.bytes_read += len(line or "") + 1
            if len(lines) >= self.shard_lines and (self.group is None or self.key(line) != self.key(lines[-1])):
                yield Shard(index, first, lines)
                index, first, lines = index + 1, number, []
            lines.append(line)
        if lines:
            yield Shard(index, first, lines)

    def key(self, line: str | None) -> str | None:
        return None if line is None else self.group(line)  # type: ignore[misc]

    def progress_total(self) -> int | None:
        return self.size


class CountSource:
    """`count` items (samples) in shards of `per_shard`."""

    def __init__(self, count: int, per_shard: int):
        self.count, self.per_shard = count, per_shard
        self.bytes_read = 0

    def identity(self) -> dict:
        return {"items": self.count}

    def shards(self) -> Iterator[Shard]:
        for index, first in enumerate(range(0, self.count, self.per_shard)):
            self.bytes_read = min(first + self.per_shard, self.count)
            yield Shard(index, first, list(range(first, min(first + self.per_shard, self.count))))

    def progress_total(self) -> int:
        return self.count


# ---- running the shards ------------------------------------------------------------------------


@dataclass
class Progress:
    """What a progress display reads: shards done, items done, input read (bytes or items) of total."""
    shards_done: int = 0
    items_done: int = 0
    read: int = 0
    total: int | None = None


@dataclass
class Outcome:
    counts: dict[str, float]  # the parts' counts, added up in input order
    bad_lines: int
    bad: list[tuple[int, str]]
    failed: list[tuple[Shard, str]]  # shards that failed RETRIES times, and the last error


def run_job(task: Task, source, runner, emit: Callable[[str], None] | None = None,
            store: PartStore | None = None, on_progress: Callable[[Progress], None] | None = None) -> Outcome:
    """Run `task` over the shards of `source` with `runner` (`local_runner`, or ray_jobs's
    `ray_runner`); each part's text goes to `emit` in input order (with a `store`, to its part file
    instead). Returns the folded counts, bad lines and failed shards."""
    progress = Progress(total=source.progress_total())
    outcome = Outcome({}, 0, [], [])
    waiting: dict[int, Part | None] = {}  # parts arrived or done before, not yet put out (None: failed)
    if store is not None:
        for index in store.done:
            waiting[index] = store.load(index, text=emit is not None)
            progress.shards_done += 1
            progress.items_done += waiting[index].items  # type: ignore[union-attr]
    expected = 0  # the next part to put out, in input order

    def put_out() -> None:
        nonlocal expected
        while expected in waiting:
            part = waiting.pop(expected)
            expected += 1
            if part is None:
                continue
            for k, v in part.counts.items():
                outcome.counts[k] = outcome.counts.get(k, 0) + v
            outcome.bad_lines += part.bad_lines
            outcome.bad.extend(part.bad[: BAD_SHOWN - len(outcome.bad)])
            if emit is not None:
                emit(part.text)

    def to_run() -> Iterator[Shard]:
        for shard in source.shards():
            progress.read = source.bytes_read
            if store is None or shard.index not in store.done:
                yield shard

    for shard, part, error in runner(task, to_run()):
        if part is None:
            outcome.failed.append((shard, error))
        else:
            if store is not None:
                store.save(part)
            progress.shards_done += 1
            progress.items_done += part.items
        waiting[shard.index] = part
        put_out()
        if on_progress is not None:
            progress.read = source.bytes_read
            on_progress(progress)
    put_out()
    return outcome


# ---- local: this process, or a pool of processes ------------------------------------------------

_worker_model: dict[tuple[str, str], object] = {}  # per worker process: the model, loaded once


def preload(path: str, needs: str, loaded) -> None:
    """What this process already loaded from `path` (the command's own model), for its shards."""
    _worker_model.clear()
    _worker_model[(path, needs)] = loaded


def _load(path: str | None, needs: str):
    """What `path` holds, loaded once per process."""
    if path is None:
        return None
    if (path, needs) not in _worker_model:
        _worker_model.clear()
        if needs == "tokenizer":
            from rnncli.formats.checkpoint import load_tokenizer

            _worker_model[(path, needs)] = load_tokenizer(path)
        else:
            from rnncli.tasks import load_model_checkpoint

            _worker_model[(path, needs)] = load_model_checkpoint(path, training_state=False)
    return _worker_model[(path, needs)]


def run_shard(task: Task, shard: Shard, path: str | None) -> Part:
    """One shard in this process, with what `path` holds loaded (once per process)."""
    from rnncli.execution.allocator import keep_freed_memory

    keep_freed_memory()
    _inject_fault(shard.index)
    return task.run(_load(path, task.needs), shard)


WORKERS_PER_CORE = 4  # beyond this, more processes add only memory (each loads the model) and hand-overs


def check_workers(workers: int) -> None:
    """Refuse a process count of 0 or less, or beyond WORKERS_PER_CORE per core this process may use."""
    from rnncli.execution.plan import machine_cores

    if workers < 1:
        raise UsageError("--workers must be at least 1")
    most = WORKERS_PER_CORE * machine_cores()
    if workers > most:
        raise UsageError(f"--workers {workers}: this machine gives rnncli {machine_cores()} core(s); more than {most} "
                         f"worker processes ({WORKERS_PER_CORE} per core) only add memory, each loading the model: "
                         f"give at most {most}")


def local_runner(workers: int, path: str | None):
    """Runs shards here (`workers` = 1) or on a pool of processes: yields (shard, part or None, error)."""
    check_workers(workers)

    def in_process(task: Task, shards: Iterable[Shard]):
        for shard in shards:
            for attempt in range(1, RETRIES + 1):
                try:
                    yield shard, run_shard(task, shard, path), None
                    break
                except RnncliError:
                    raise
                except Exception as err:  # a failure of this shard alone: tried again, then reported
                    if attempt == RETRIES:
                        yield shard, None, f"{type(err).__name__}: {err}"

    if workers == 1:
        return in_process

    def pool_runner(task: Task, shards: Iterable[Shard]):
        import multiprocessing

        from rnncli.execution.plan import BLAS_THREADS, Plan, use

        share = Plan.for_workers(workers)  # each worker's plan: cores / N, at least one
        saved = {k: os.environ.get(k) for k in BLAS_THREADS}
        os.environ.update({k: str(share.cores) for k in BLAS_THREADS})  # the BLAS's threads when a worker loads it
        try:
            pool = multiprocessing.get_context("spawn").Pool(workers, initializer=use, initargs=(share,))
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        try:
            in_flight: dict[int, object] = {}
            attempts: dict[int, int] = {}
            queue = iter(shards)
            by_index: dict[int, Shard] = {}
            exhausted = False
            while True:
                while not exhausted and len(in_flight) < 2 * workers:
                    shard = next(queue, None)
                    if shard is None:
                        exhausted = True
                        break
                    by_index[shard.index] = shard
                    in_flight[shard.index] = pool.apply_async(run_shard, (task, shard, path))
                if not in_flight:
                    return
                index = min(in_flight)  # wait for the oldest: parts come out in order anyway
                result = in_flight.pop(index)
                try:
                    part = result.get()  # type: ignore[attr-defined]
                except RnncliError:
                    raise
                except Exception as err:
                    attempts[index] = attempts.get(index, 0) + 1
                    if attempts[index] < RETRIES:
                        in_flight[index] = pool.apply_async(run_shard, (task, by_index[index], path))
                        continue
                    yield by_index.pop(index), None, f"{type(err).__name__}: {err}"
                    continue
                yield by_index.pop(index), part, None
        finally:
            pool.terminate()
            pool.join()

    return pool_runner


# ---- fault injection, for the tests of the paths above (and of ray_jobs.py's) ----------------------


def _inject_fault(index: int) -> None:
    """RNNCLI_FAULTS="kill:3:MARKER,fail:5": the worker running shard 3 kills itself with SIGKILL
    (once: it leaves MARKER); shard 5 raises, every time. Only the tests set it."""
    spec = os.environ.get("RNNCLI_FAULTS")
    if not spec:
        return
    for fault in spec.split(","):
        kind, _, rest = fault.partition(":")
        shard, _, marker = rest.partition(":")
        if not shard.isdigit() or int(shard) != index:
            continue
        if kind == "fail":
            raise RuntimeError(f"injected failure of shard {index}")
        if kind == "kill" and marker and not os.path.exists(marker):
            import signal

            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
