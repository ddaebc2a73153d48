"""Matrix products, all through the one BLAS that Numba binds (scipy's OpenBLAS).

numpy ships its own OpenBLAS with its own thread pool. Mixing the two makes each pool's idle,
spinning threads steal the cores the other needs: measured here, a large numpy product followed by
100 small products inside Numba took 200 ms against 86 ms when both go through Numba. So every
product in the engine, large or small, is called from Numba.
"""

import numpy as np

from rnncli.kernels.jit import kernel


@kernel
def matmul(a, b):
    """a @ b for 2-D arrays in C or Fortran order (a transposed view is fine)."""
    return np.dot(a, b)


@kernel
def sum_squares(x):
    """sum(x^2) of a flat array, in float64."""
    total = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        total += v * v
    return total
