"""The large matrix products, all through the one BLAS that Numba binds (scipy's OpenBLAS), its
threads, and work spread over the cores (one piece of work per core, BLAS on one thread each). The
per-step products of a recurrence are our own kernel's (packed.py).

numpy ships its own OpenBLAS with its own thread pool. Mixing the two makes each pool's idle,
spinning threads steal the cores the other needs: measured here, a large numpy product followed by
100 small products inside Numba took 200 ms against 86 ms when both go through Numba. So every
product in the engine, large or small, is called from Numba.
"""

import contextvars
import os
import threading
from contextlib import contextmanager

import numpy as np

from rnncli.kernels.jit import kernel


@kernel
def matmul(a, b):
    """a @ b for 2-D arrays in C or Fortran order (a transposed view is fine)."""
    return np.dot(a, b)


@kernel
def sum_squares(x):
    """sum(x^2) of a flat array, in float64. Eight running sums instead of one let the additions
    overlap (with one, each addition waits for the previous): 2.8 -> 0.95 ms for the char-rnn
    lstm's 3.3M parameters."""
    sums = np.zeros(8)
    n8 = x.size - x.size % 8
    for i in range(0, n8, 8):
        for k in range(8):
            v = np.float64(x[i + k])
            sums[k] += v * v
    total = 0.0
    for i in range(n8, x.size):
        v = np.float64(x[i])
        total += v * v
    return total + sums.sum()


# ---- two independent pieces of work at once, one core each -------------------------------------
#
# A bidirectional level's two layers read the same input and do not depend on each other. Each
# runs a chain of small per-step products (32 rows) that OpenBLAS would split over both cores with
# a hand-over at every step; run side by side instead, one core each with BLAS on one thread, the
# pair finishes sooner (a tagger's two directions: forward 2.8 -> 1.9 ms, backward 3.4 -> 3.0 ms).
# It pays only when nothing between the pairs runs BLAS on two threads: after such a product
# OpenBLAS's second thread keeps spinning for a while, on the core a direction needs (measured: a
# 2-thread product before each pair made it slower than one direction after the other). So
# `side_by_side` runs the two at once only under `one_blas_thread()`, which a model holds over its
# whole forward and backward pass when its directions are what dominate (the label models); else,
# or without a BLAS whose threads can be set, one after the other.
#
# The same holds for the rows of a batch, which no recurrence mixes: every model splits its batch
# into one shard of rows per core and runs each shard's whole pass on its own core (cores.py).


def _blas_threads_control():
    """(get, set) of the thread count of the OpenBLAS that Numba calls (scipy's), or None."""
    import ctypes
    import glob

    import scipy

    for path in glob.glob(os.path.join(os.path.dirname(scipy.__file__) + ".libs", "*openblas*.so*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            get, set_ = (getattr(lib, f"{prefix}_{name}_num_threads", None) for name in ("get", "set"))
            if get is not None and set_ is not None:
                return get, set_
    return None


_control: tuple | None | bool = False  # False: not looked up yet
_workers = None
_worker_count = 0  # threads in _workers


def _threads_control():
    global _control
    if _control is False:
        _control = _blas_threads_control()
    return _control


@contextmanager
def one_blas_thread():
    """BLAS on one thread inside the block (the thread count restored after)."""
    control = _threads_control()
    if control is None:
        yield
        return
    get, set_ = control
    threads = get()
    set_(1)
    try:
        yield
    finally:
        set_(threads)


def blas_threads_settable() -> bool:
    """Whether the BLAS that Numba calls has threads that can be set (scipy's OpenBLAS)."""
    return _threads_control() is not None


def set_blas_threads(threads: int) -> None:
    """The BLAS's threads for the products outside any core's part (execution/plan.py sets them)."""
    control = _threads_control()
    if control is not None:
        control[1](threads)


_in_parallel = threading.local()  # set while a thread runs its part of `on_each_core`


def in_a_part() -> bool:
    """Whether the calling thread runs one core's part of work spread by `on_each_core`."""
    return getattr(_in_parallel, "active", False)


def _part(work, item):
    before = getattr(_in_parallel, "active", False)
    _in_parallel.active = True
    try:
        return work(item)
    finally:
        _in_parallel.active = before


def on_each_core(work, items: list) -> list:
    """[work(item) for item in items]: under `one_blas_thread()`, the first in this thread and each
    other on a worker thread of its own, all at once (one core each); else, or when called from such
    a worker (nested), one after the other."""
    global _workers, _worker_count
    control = _threads_control()
    if len(items) < 2 or control is None or control[0]() != 1 or in_a_part():
        return [work(item) for item in items]
    if _worker_count < len(items) - 1:
        from concurrent.futures import ThreadPoolExecutor

        _worker_count = len(items) - 1
        _workers = ThreadPoolExecutor(max_workers=_worker_count, thread_name_prefix="rnncli-core")
    # each part in a copy of the caller's context: what the pass keeps there (packing.keeping) it sees too
    pending = [_workers.submit(contextvars.copy_context().run, _part, work, item) for item in items[1:]]
    try:
        first = _part(work, items[0])
    finally:
        from concurrent.futures import wait

        wait(pending)  # every worker done, even when work(items[0]) raised
    return [first, *(p.result() for p in pending)]


def side_by_side(work, a, b):
    """(work(a), work(b)), at once under `one_blas_thread()` (see `on_each_core`)."""
    return tuple(on_each_core(work, [a, b]))
