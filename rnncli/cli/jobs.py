"""The options and the display of a job in shards (rnncli/jobs/shards.py), shared by `score --file`,
`rescore`, `tokenize --encode` and `sample -n`: --workers, --ray, --output, --resume, --shard-lines;
one progress bar on a terminal (plain lines every few seconds elsewhere); bad lines and failed
shards reported in one line each."""

from __future__ import annotations

import os
import signal
import sys
import time
from contextlib import contextmanager
from typing import Annotated

import typer

JOB_OPTIONS = "Parallel and cluster runs"

Workers = Annotated[int, typer.Option(help="Local processes sharing the work (each loads the model once; BLAS "
                                           "threads per process = cores / N). Output as with 1.",
                                      rich_help_panel=JOB_OPTIONS)]
RayAddress = Annotated[str | None, typer.Option("--ray", help="Run on a Ray cluster: its address, `auto` (the "
                                                               "running one, or $RAY_ADDRESS) or `local` (start one "
                                                               "here). Needs pip install 'rnncli[ray]'.",
                                                rich_help_panel=JOB_OPTIONS, show_default=False)]
Output = Annotated[str | None, typer.Option("--output", "-o", help="Write the output to this file (atomically, "
                                                                   "when every shard is done; parts are kept beside "
                                                                   "it until then, for --resume).",
                                           rich_help_panel=JOB_OPTIONS, show_default=False)]
Resume = Annotated[bool, typer.Option("--resume", help="Finish an interrupted job with the same -o: shards "
                                                       "already done are not run again.",
                                      rich_help_panel=JOB_OPTIONS)]
ShardLines = Annotated[int, typer.Option(help="Input lines per shard, the unit of work handed to a worker.",
                                         rich_help_panel=JOB_OPTIONS)]


def run_sharded(task, source, path: str | None, output: str | None, workers: int, ray: str | None,
                resume: bool, name: str, unit: str = "lines", quiet: bool = False, also_reads: tuple = ()):
    """Run a job and put its output where asked: stdout, a stream, or a file made from its parts.
    Bad lines are reported (and make the exit status 1 once the output is written); shards that
    failed for good are reported with their lines, and leave the parts for --resume."""
    from rnncli.errors import RnncliError, UsageError
    from rnncli.formats.files import check_writable
    from rnncli.jobs.parts import PartStore, file_digest
    from rnncli.jobs.shards import RETRIES, check_workers, local_runner, run_job

    if ray and workers != 1:
        raise UsageError("give --workers or --ray, not both (on Ray, the cluster's CPUs set the parallelism)")
    check_workers(workers)  # before anything is made on disk
    from rnncli.execution.plan import machine_cores

    if workers > machine_cores() and not quiet:
        sys.stderr.write(f"note: --workers {workers} on {machine_cores()} core(s): the processes take turns on the "
                         "cores (one BLAS thread each); more than one per core rarely helps\n")
    corpus = getattr(source, "corpus", None)
    inputs = (path, *(corpus.files if corpus is not None else ()), *also_reads)  # what -o must not be
    to_file = output not in (None, "-") and (not os.path.exists(output) or os.path.isfile(output))
    if resume and not to_file:
        raise UsageError("--resume finishes a job that writes a file: give the same -o FILE as before")
    store = None
    if to_file:
        check_writable(output, "job's output", inputs=inputs)
        if resume and corpus is not None and corpus.is_stdin:
            raise UsageError("a job that reads stdin cannot be resumed: give its input as a file")
        job = {"task": task.describe(), "source": source.identity(), "model": file_digest(path) if path else None,
               "shard_lines": getattr(source, "shard_lines", None)}
        store = PartStore(output, job, resume)
        for index, first, why in store.rejected:
            sys.stderr.write(f"note: part {index} ({unit} from {first}) failed its check ({why}): running it again\n")
        emit = None
    elif output not in (None, "-"):  # a stream: a FIFO, /dev/stdout
        check_writable(output, "job's output", streams=True, inputs=inputs)
        stream = open(output, "w", encoding="utf-8")  # noqa: SIM115 - closed below

        def emit(text: str) -> None:
            try:
                stream.write(text)
            except OSError as err:
                raise RnncliError(f"{output}: could not write ({err.strerror or err})") from None
    else:
        stream = None
        emit = sys.stdout.write
    if ray:
        from rnncli.jobs.ray_jobs import ray_runner

        runner = ray_runner(ray, path)
    else:
        runner = local_runner(workers, path)
    display = JobDisplay(unit, quiet)

    def progress(done) -> None:
        if interrupted:  # a Ctrl-C whose KeyboardInterrupt was lost on the way: stop at this shard
            raise KeyboardInterrupt
        display.update(done)

    try:
        with noted_interrupts() as interrupted:
            outcome = run_job(task, source, runner, emit, store=store, on_progress=progress)
    finally:
        display.close()
        if not to_file and output not in (None, "-"):
            try:
                stream.close()
            except OSError as err:  # what was still buffered
                raise RnncliError(f"{output}: could not write ({err.strerror or err})") from None
    for shard, error in outcome.failed:
        last = shard.first + len(shard.items) - 1
        sys.stderr.write(f"error: shard {shard.index} ({unit} {shard.first}-{last}) failed {RETRIES} times: {error}\n")
    if outcome.failed:
        keep = f"; its other parts are kept: rerun with --resume -o {output}" if store else ""
        raise RnncliError(f"{len(outcome.failed)} shard{'s' * (len(outcome.failed) > 1)} failed, the output is "
                          f"not complete{keep}")
    if store is not None:
        store.finish(output, sorted(store.done))
    if outcome.bad_lines:
        shown = "; ".join(f"line {n}: {why}" for n, why in outcome.bad)
        raise RnncliError(f"{name}: {outcome.bad_lines:,} bad line{'s' * (outcome.bad_lines > 1)} "
                          f"{task.bad_lines_fate()} ({shown})")
    return outcome


@contextmanager
def noted_interrupts():
    """SIGINT raises KeyboardInterrupt as usual and is also noted in the list this yields. Measured:
    with the default handler, a single SIGINT sent to `score --file -o F` was now and then not acted on
    (the job ran on to its end and exited 0: 4 of 14 tries, 2 of 4 on the code before this session's
    shards); the exception was lost between the handler and the job's loop, which now checks the note
    after every shard (12 of 12 tries stopped)."""
    noted: list[int] = []

    def handler(signum, frame):
        noted.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield noted
        return
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


class JobDisplay:
    """One rich bar on a terminal's stderr (read, shards done, rate, time left); elsewhere a plain
    line every PLAIN_EVERY seconds; nothing with --quiet."""

    PLAIN_EVERY = 10.0

    def __init__(self, unit: str, quiet: bool):
        self.unit, self.quiet = unit, quiet
        self.started = time.monotonic()
        self.last_plain = self.started
        self.bar = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.fields[status]}"), BarColumn(), TimeRemainingColumn(),
                                console=Console(stderr=True), transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task("job", total=None, status="starting")

    def _status(self, p) -> str:
        seconds = max(time.monotonic() - self.started, 1e-9)
        return f"{p.shards_done:,} shards, {p.items_done:,} {self.unit}, {p.items_done / seconds:,.0f} {self.unit}/s"

    def update(self, p) -> None:
        if self.quiet:
            return
        if self.bar is not None:
            self.bar.update(self.task, completed=p.read, total=p.total, status=self._status(p))
        elif time.monotonic() - self.last_plain >= self.PLAIN_EVERY:
            self.last_plain = time.monotonic()
            share = f" ({p.read / p.total:.0%} read)" if p.total else ""
            sys.stderr.write(f"{self._status(p)}{share}\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
            self.bar = None
