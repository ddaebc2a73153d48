"""Matrix products, all through the one BLAS that Numba binds (scipy's OpenBLAS), and the
transposed copies they need.

numpy ships its own OpenBLAS with its own thread pool. Mixing the two makes each pool's idle,
spinning threads steal the cores the other needs: measured here, a large numpy product followed by
100 small products inside Numba took 200 ms against 86 ms when both go through Numba. So every
product in the engine, large or small, is called from Numba.
"""

import os
from contextlib import contextmanager

import numpy as np

from rnncli.kernels.jit import kernel


@kernel
def matmul(a, b):
    """a @ b for 2-D arrays in C or Fortran order (a transposed view is fine)."""
    return np.dot(a, b)


@kernel
def transposed_copy(w):
    """A C-contiguous copy of w.T, in 16 x 16 tiles so that both sides stay in the first-level
    cache: 0.8 ms for a (512, 2048) matrix against 3.0 ms for numpy's `ascontiguousarray(w.T)`."""
    R, C = w.shape
    out = np.empty((C, R), dtype=w.dtype)
    for r0 in range(0, R, 16):
        for c0 in range(0, C, 16):
            for r in range(r0, min(r0 + 16, R)):
                for c in range(c0, min(c0 + 16, C)):
                    out[c, r] = w[r, c]
    return out


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
_worker = None


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


def side_by_side(work, a, b):
    """(work(a), work(b)): under `one_blas_thread()`, work(a) in this thread and work(b) in another
    at once; else one after the other."""
    global _worker
    control = _threads_control()
    if control is None or control[0]() != 1:
        return work(a), work(b)
    if _worker is None:
        from concurrent.futures import ThreadPoolExecutor

        _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rnncli-direction")
    pending = _worker.submit(work, b)
    try:
        done = work(a)
    finally:
        other = pending.result()  # waited for even when work(a) raised
    return done, other
