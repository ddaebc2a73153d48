"""The engine's plan: how many cores this process's work may spread over, decided once and given to
the engine, never read back from the BLAS's thread state (which the engine itself changes while a
batch's shards run, blas.one_blas_thread).

Built from the machine (the cores this process may run on) and the user's choice of BLAS threads
(OPENBLAS_NUM_THREADS, or OMP_ / MKL_ / NUMBA_NUM_THREADS); a job's worker processes are each
given their share (`for_workers`: cores / N, at least one), a Ray task one core. Everything that
spreads work over cores asks the plan: a batch's shards (`Plan.shards`), the rows of a large
product (cores.rows_product), a helper on the second core for a few rows' steps (steps.py). A
row's numbers never depend on the plan (every product is the packed kernel's, summed in k order):
only where it runs does.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")

# A shard of 2 rows or more pays, for training, scoring and samples alike: the per-step products run
# in our packed kernel (a last tile of 1-3 rows included) and the input-side products too
# (recurrent.input_product). Measured (AMD EPYC, char-rnn lstm), tokens/s, two shards against the
# batch whole on OpenBLAS's two threads: batch 4 train 5.3-6.0k -> 6.5k, score 16.2-17.2k -> 20.6-21.3k;
# batch 6 train 5.4-5.8k -> 7.9-8.2k, score 15.4-15.9k -> 27.3-27.7k; batch 8 train 6.0-6.4k -> 8.6-8.8k,
# score 17.1-17.3k -> 28.7-29.2k. Samples (`sample -n`), tokens/s over all rows, one core against two
# shards: lstm -n 4 / 6 / 8 / 15 14.9k / 12.7k / 15.0k / 11.3k -> 18.7k / 27.0k / 30.1k / 22.0k, gru
# 19.9k / 17.5k / 20.4k / 16.8k -> 26.6k / 36.6k / 40.1k / 28.8k.
MIN_SHARD_ROWS = 2


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Plan:
    """The cores a batch of this process may spread over (its shards, one per core)."""

    cores: int = 1

    @classmethod
    def from_environment(cls) -> Plan:
        """The machine's cores, fewer where the user's BLAS-thread variable says so; one core where
        the BLAS's threads cannot be set (its own threads would then fight the shards')."""
        from rnncli.kernels.blas import blas_threads_settable

        if not blas_threads_settable():
            return cls(1)
        cores = machine_cores()
        for name in BLAS_THREADS:
            value = os.environ.get(name, "").strip()
            if value.isdigit() and int(value) >= 1:
                cores = min(cores, int(value))
                break  # the first one set is the one OpenBLAS reads
        return cls(max(1, cores))

    @classmethod
    def for_workers(cls, workers: int) -> Plan:
        """Each of `workers` processes' share of this process's cores (at least one)."""
        return cls(max(1, cls.from_environment().cores // workers))

    def shards(self, rows: int) -> list[slice]:
        """A batch of `rows` rows in shards, one per core, each of MIN_SHARD_ROWS rows or more; []
        when it stays whole (one core, or too few rows)."""
        n = min(self.cores, rows // MIN_SHARD_ROWS)
        if n < 2:
            return []
        bounds = [rows * k // n for k in range(n + 1)]
        return [slice(bounds[k], bounds[k + 1]) for k in range(n)]


_plan: Plan | None = None


def current() -> Plan:
    """This process's plan: the one given (`use`), else built from the environment once."""
    global _plan
    if _plan is None:
        use(Plan.from_environment())
    return _plan


def use(plan: Plan) -> None:
    """Run this process's work as `plan` says (a job's worker is given its share at its start); the
    BLAS's own threads (the weight gradients' products) set to the plan's cores."""
    global _plan
    from rnncli.kernels.blas import set_blas_threads

    _plan = plan
    set_blas_threads(plan.cores)


@contextmanager
def planned(plan: Plan) -> Iterator[Plan]:
    """`plan` inside the block, the one before restored after (tests, benchmarks)."""
    before = current()
    use(plan)
    try:
        yield plan
    finally:
        use(before)


def cores_here() -> int:
    """The cores the work of the calling thread may spread over: one inside a core's part of work
    already spread (blas.on_each_core), else the plan's."""
    from rnncli.kernels.blas import in_a_part

    return 1 if in_a_part() else current().cores
