"""The per-step products against packed weights, computed by our own kernel.

Each step of a recurrence multiplies a few rows by the same weight matrix: h<t-1> (B, K) @ W (K, F)
with W = Wh (forward) or Wh^T (backward), T times per chunk. A BLAS call repacks W into its own
blocks at every one of those calls and, on two threads, hands the product over to the other core
and back. Here W is packed (packing.py) once per pass into blocks of 2V columns (V = the lanes of a vector:
512 bits where the CPU has AVX-512, else 256: 16 or 8 float32, 8 or 4 float64), each block stored
k by k:

    P[c, k, :] = W[k, c*2V : (c+1)*2V]          P (ceil(F / 2V), K, 2V), zero-padded

and the product runs over tiles of 4 rows x 2V columns (8 rows, and 6 for the last few, where the
core runs 512-bit vectors at full width: vectors.WIDE_TILES): eight (sixteen, twelve) vector
accumulators stay in registers while k runs over K, each step loading two vectors of P (contiguous: the block streams
from memory in order) and one number of each row of x, broadcast into a fused multiply-add. The
vectors are LLVM vector types, built by the intrinsics of vectors.py (Numba has no vector type of its own).

Measured (AMD EPYC, one core; `bench/README.md`): (16 x 128) @ (128 x 512) 84 -> 114 GFLOP/s,
(16 x 512) @ (512 x 2048) 78 -> 115 GFLOP/s against OpenBLAS computing the transposed result (the
faster of its two forms); the core's peak is ~117. Exact arithmetic in the array's own type (fused
multiply-adds, summed in k order), float64 too: the gradient checks run through the same code.
The 256-bit form, compiled for an AVX2 CPU (NUMBA_CPU_NAME=haswell), passes the same tests and ran
as fast here (this AMD core splits 512-bit work in two anyway). On a Zen 5, which does not, the
tiles of 8 rows: (16 x 512) @ (512 x 2048) 192-201 -> 224-235 GFLOP/s (OpenBLAS's sgemm 2048^3: 227).
"""

from __future__ import annotations

import numpy as np

from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.vectors import WIDE_TILES, scalar_fma, vector_fma, vector_load, vector_store, vector_zero

TILE_ROWS = 4


@inline
def _finish_block(tile, out, row, col, F, accumulate):
    """out[row, col : col + 2V] (=, or += when `accumulate`) the tile row held in `tile` (2V,),
    cut at F (a last block may be part padding)."""
    for j in range(min(tile.size, F - col)):
        if accumulate:
            out[row, col + j] += tile[j]
        else:
            out[row, col + j] = tile[j]


@inline
def _tile_sums(x, flat, base, width, r0, r1, r2, r3, r4, r5, r6, r7):
    """The accumulators of rows r0..r7 of x against the packed block at flat[base]: (a, b) per row,
    its block's two vectors of columns. Sixteen where the CPU runs 512-bit vectors at full width
    (vectors.WIDE_TILES), each loaded pair of vectors serving eight rows. A tile of 6 or 4 passes
    its last row for the others and leaves their sums unused: LLVM drops their multiply-adds, and
    the tile keeps twelve or eight accumulators (one core: 6 rows 230 GFLOP/s; 4 rows as fast as a
    function written for 4, 174.7 against 174.3, and compiled for AVX2 106 against 104). Every
    number is one chain of fused multiply-adds in k order, whichever tile computes it."""
    K = x.shape[1]
    V = width // 2
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = vector_zero(flat)  # values: sixteen accumulators
    b0 = b1 = b2 = b3 = b4 = b5 = b6 = b7 = a0
    for k in range(K):
        w0 = vector_load(flat, base + k * width)
        w1 = vector_load(flat, base + k * width + V)
        s = x[r0, k]
        a0 = vector_fma(a0, w0, s)
        b0 = vector_fma(b0, w1, s)
        s = x[r1, k]
        a1 = vector_fma(a1, w0, s)
        b1 = vector_fma(b1, w1, s)
        s = x[r2, k]
        a2 = vector_fma(a2, w0, s)
        b2 = vector_fma(b2, w1, s)
        s = x[r3, k]
        a3 = vector_fma(a3, w0, s)
        b3 = vector_fma(b3, w1, s)
        s = x[r4, k]
        a4 = vector_fma(a4, w0, s)
        b4 = vector_fma(b4, w1, s)
        s = x[r5, k]
        a5 = vector_fma(a5, w0, s)
        b5 = vector_fma(b5, w1, s)
        s = x[r6, k]
        a6 = vector_fma(a6, w0, s)
        b6 = vector_fma(b6, w1, s)
        s = x[r7, k]
        a7 = vector_fma(a7, w0, s)
        b7 = vector_fma(b7, w1, s)
    return a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7


@inline
def _store_row(a, b, out, row, col, tile, accumulate):
    """out[row, col : col + 2V] (=, or += when `accumulate`) a row's two vectors, cut at out's width."""
    F = out.shape[1]
    V = tile.size // 2
    row_out = out[row]  # (F,), contiguous
    if col + tile.size <= F and accumulate:  # + 1 * what is there: an exact addition
        one = out.dtype.type(1.0)
        vector_store(row_out, col, vector_fma(vector_load(row_out, col), a, one))
        vector_store(row_out, col + V, vector_fma(vector_load(row_out, col + V), b, one))
    elif col + tile.size <= F:
        vector_store(row_out, col, a)
        vector_store(row_out, col + V, b)
    else:
        vector_store(tile, 0, a)
        vector_store(tile, V, b)
        _finish_block(tile, out, row, col, F, accumulate)


@inline
def _product(x, P, out, accumulate):
    """out (B, F) (=, or += when `accumulate`) x (B, K) @ W for P = pack(W); out C-contiguous."""
    _product_blocks(x, P.reshape(-1), P.shape[2], out, accumulate, 0, P.shape[0])


@inline
def product_blocks(x, flat, width, out, c_lo, c_hi):
    """out (B, F) = x (B, K) @ W for the columns of blocks c_lo .. c_hi - 1 of P = pack(W), given as
    P.reshape(-1) (`flat`, blocks of `width` columns): a share of the product (two_cores.py)."""
    _product_blocks(x, flat, width, out, False, c_lo, c_hi)


TAIL_COLUMNS = 2  # a last block of at most this many columns is summed one number at a time


@inline
def _tail_columns(x, flat, base, width, out, col, n, accumulate):
    """out[:, col : col + n] (=, or += when `accumulate`) x @ W's last n columns (n <= TAIL_COLUMNS,
    the packed block at flat[base]), each number one scalar chain of fused multiply-adds in k order:
    a vector lane's arithmetic, without a whole block of 2V columns for one or two (a character
    vocabulary of 65 is two blocks and one column: the small lstm's output layer, 1024 x 128 @ 128 x
    65 on one core, 260 us by blocks, OpenBLAS 205). Eight rows at a time: eight chains in flight."""
    B, K = x.shape
    for j in range(n):
        r = 0
        while r < B:
            rows = min(8, B - r)
            s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = out.dtype.type(0.0)
            last = r + rows - 1
            r1, r2, r3 = min(r + 1, last), min(r + 2, last), min(r + 3, last)
            r4, r5, r6, r7 = min(r + 4, last), min(r + 5, last), min(r + 6, last), min(r + 7, last)
            for k in range(K):
                w = flat[base + k * width + j]
                s0 = scalar_fma(x[r, k], w, s0)
                s1 = scalar_fma(x[r1, k], w, s1)
                s2 = scalar_fma(x[r2, k], w, s2)
                s3 = scalar_fma(x[r3, k], w, s3)
                s4 = scalar_fma(x[r4, k], w, s4)
                s5 = scalar_fma(x[r5, k], w, s5)
                s6 = scalar_fma(x[r6, k], w, s6)
                s7 = scalar_fma(x[r7, k], w, s7)
            sums = (s0, s1, s2, s3, s4, s5, s6, s7)
            for i in range(rows):
                if accumulate:
                    out[r + i, col + j] += sums[i]
                else:
                    out[r + i, col + j] = sums[i]
            r += rows


@kernel
def _product_blocks(x, flat, width, out, accumulate, c_lo, c_hi):
    """`_product` over blocks c_lo .. c_hi - 1 only. Rows in tiles of 8 where the CPU runs 512-bit
    vectors at full width (`_tile_sums`), a last 5-6 rows (or 9-10, as 6 + 4) by a tile of 6,
    then tiles of 4; the last 1-3 rows as a tile
    that repeats its last row in the missing places and stores only its own, so that the block
    streams once for them (each on its own, with two accumulators whose sums waited on each other:
    6 samples of the char-rnn lstm on one core 11.1k -> 12.7k tokens/s; the same numbers).

    A kernel the others call, not a helper inlined into them (and so is `row_product_blocks`): Numba
    types and lowers an inlined helper again at every call site, and every cell's chunk kernels, its
    step and generation call the product at several. Measured cold (AMD EPYC, one core beside a
    busy one): the lstm's training kernels 43 -> 22 s, its generation kernels 67 -> 41 s, a first
    lstm forward pass 27 -> 8 s; run time the same within the host's noise (small and char-rnn
    sizes, train, score and generate, alternating runs: 0.95-1.14x)."""
    B, K = x.shape
    tile = np.empty(width, dtype=out.dtype)  # the last block of a row when it is cut short
    wide = six = 0  # rows taken 8 at a time from row 0, then 6 (or 5, one repeated) by one tile
    if WIDE_TILES:
        wide, left = B - B % 8, B % 8
        if left in (1, 2) and wide:  # 9 or 10 rows as 6 + 4, not 8 + a tile of 4 holding 1 or 2
            wide, left = wide - 8, left + 8
        if left in (5, 6, 9, 10):
            six = min(left, 6)
    whole = wide + six + (B - wide - six) // TILE_ROWS * TILE_ROWS  # the end of the tiles of 4
    for c in range(c_lo, c_hi):
        col = c * width
        base = c * K * width
        if col + width > out.shape[1] and out.shape[1] - col <= TAIL_COLUMNS:
            _tail_columns(x, flat, base, width, out, col, out.shape[1] - col, accumulate)
            continue
        for r0 in range(0, wide, 8):
            a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, a6, b6, a7, b7 = _tile_sums(
                x, flat, base, width, r0, r0 + 1, r0 + 2, r0 + 3, r0 + 4, r0 + 5, r0 + 6, r0 + 7)
            _store_row(a0, b0, out, r0, col, tile, accumulate)
            _store_row(a1, b1, out, r0 + 1, col, tile, accumulate)
            _store_row(a2, b2, out, r0 + 2, col, tile, accumulate)
            _store_row(a3, b3, out, r0 + 3, col, tile, accumulate)
            _store_row(a4, b4, out, r0 + 4, col, tile, accumulate)
            _store_row(a5, b5, out, r0 + 5, col, tile, accumulate)
            _store_row(a6, b6, out, r0 + 6, col, tile, accumulate)
            _store_row(a7, b7, out, r0 + 7, col, tile, accumulate)
        if six:
            r0, last = wide, wide + six - 1
            a0, b0, a1, b1, a2, b2, a3, b3, a4, b4, a5, b5, _, _, _, _ = _tile_sums(
                x, flat, base, width, r0, r0 + 1, r0 + 2, r0 + 3, r0 + 4, last, last, last)
            _store_row(a0, b0, out, r0, col, tile, accumulate)
            _store_row(a1, b1, out, r0 + 1, col, tile, accumulate)
            _store_row(a2, b2, out, r0 + 2, col, tile, accumulate)
            _store_row(a3, b3, out, r0 + 3, col, tile, accumulate)
            _store_row(a4, b4, out, r0 + 4, col, tile, accumulate)
            if six == 6:
                _store_row(a5, b5, out, last, col, tile, accumulate)
        for r0 in range(wide + six, whole, TILE_ROWS):
            a0, b0, a1, b1, a2, b2, a3, b3, _, _, _, _, _, _, _, _ = _tile_sums(
                x, flat, base, width, r0, r0 + 1, r0 + 2, r0 + 3, r0 + 3, r0 + 3, r0 + 3, r0 + 3)
            _store_row(a0, b0, out, r0, col, tile, accumulate)
            _store_row(a1, b1, out, r0 + 1, col, tile, accumulate)
            _store_row(a2, b2, out, r0 + 2, col, tile, accumulate)
            _store_row(a3, b3, out, r0 + 3, col, tile, accumulate)
        if whole < B:
            last = B - 1
            a0, b0, a1, b1, a2, b2, _, _, _, _, _, _, _, _, _, _ = _tile_sums(
                x, flat, base, width, whole, min(whole + 1, last), min(whole + 2, last), last, last, last, last, last)
            _store_row(a0, b0, out, whole, col, tile, accumulate)
            if whole + 1 <= last:
                _store_row(a1, b1, out, whole + 1, col, tile, accumulate)
            if whole + 2 <= last:
                _store_row(a2, b2, out, whole + 2, col, tile, accumulate)


@inline
def packed_product(x, P, out):
    """out (B, F) = x (B, K) @ W, for P = pack(W) (see the module's docstring)."""
    _product(x, P, out, False)


@inline
def add_packed_product(x, P, out):
    """out (B, F) += x (B, K) @ W, for P = pack(W)."""
    _product(x, P, out, True)


@kernel
def product_rows(x, P, out):
    """`packed_product` as a kernel of its own: the single step calls it at several places, and a
    called kernel is compiled once where an inlined helper is compiled at every call site."""
    _product(x, P, out, False)


GROUP_ROWS = 16  # the rows of a large product taken against all of P's blocks at a time


@kernel
def product_in_groups(x, P, out):
    """out (M, F) = x (M, K) @ W for P = pack(W), M large: 16 rows at a time against every block
    (the per-step product's shape), which keeps the 16 rows in the first-level cache while P streams."""
    M = x.shape[0]
    for q0 in range(0, M, GROUP_ROWS):
        q1 = min(M, q0 + GROUP_ROWS)
        _product(x[q0:q1], P, out[q0:q1], False)


@inline
def _store_row_vector(a, b, out, col, width):
    """out[col : col + 2V] = a row's two vectors, cut at out's size (a last block part padding)."""
    F = out.shape[0]
    V = width // 2
    if col + width <= F:
        vector_store(out, col, a)
        vector_store(out, col + V, b)
    else:
        tile = np.empty(width, dtype=out.dtype)
        vector_store(tile, 0, a)
        vector_store(tile, V, b)
        for j in range(F - col):
            out[col + j] = tile[j]


@kernel
def row_product_blocks(x, flat, width, out, c_lo, c_hi):
    """out (F,) = x (K,) @ W for the columns of blocks c_lo .. c_hi - 1 of P = pack(W), given as
    P.reshape(-1) (`flat`, blocks of `width` columns). Every number is summed in k order, as in a
    tile of rows: a row's numbers never depend on whether it was computed alone or beside others.
    One row has no tile of rows to reuse each loaded vector, so four blocks run at once (eight
    accumulators: enough independent fused multiply-adds to keep four streams of the matrix
    loading), a last two as one pass of four, a last five as one pass of ten, and a last block of
    at most TAIL_COLUMNS columns as one chain per number inside the pass before it (as the tiles
    of rows sum it, `_tail_columns`: a character vocabulary of 65 is two or four whole blocks and
    one column, which cost a block's vectors for one number)."""
    K = x.shape[0]
    F = out.shape[0]
    V = width // 2
    step = K * width
    zero = out.dtype.type(0.0)
    tail = 0  # columns of a last block summed one number at a time
    if c_hi > c_lo and (c_hi - 1) * width + width > F and F - (c_hi - 1) * width <= TAIL_COLUMNS:
        tail = F - (c_hi - 1) * width
    hi = c_hi - (1 if tail else 0)  # the blocks summed as vectors
    t_base = (c_hi - 1) * step
    t1 = min(1, tail - 1)  # the tail's second column, or its first again
    c = c_lo
    if c == hi and tail:  # no whole block: the tail alone
        s0 = s1 = zero
        for k in range(K):
            s0 = scalar_fma(x[k], flat[t_base + k * width], s0)
            s1 = scalar_fma(x[k], flat[t_base + k * width + t1], s1)
        out[hi * width] = s0
        if tail == 2:
            out[hi * width + 1] = s1
    while c < hi:
        s0 = s1 = zero
        last_pass = hi - c <= 4 or hi - c == 5
        if hi - c == 5:  # four blocks and one: one pass of ten chains, not two passes
            a0 = a1 = a2 = a3 = a4 = b0 = b1 = b2 = b3 = b4 = vector_zero(flat)  # values: ten accumulators
            base = c * step
            for k in range(K):
                i = base + k * width
                s = x[k]
                a0 = vector_fma(a0, vector_load(flat, i), s)
                b0 = vector_fma(b0, vector_load(flat, i + V), s)
                a1 = vector_fma(a1, vector_load(flat, i + step), s)
                b1 = vector_fma(b1, vector_load(flat, i + step + V), s)
                a2 = vector_fma(a2, vector_load(flat, i + 2 * step), s)
                b2 = vector_fma(b2, vector_load(flat, i + 2 * step + V), s)
                a3 = vector_fma(a3, vector_load(flat, i + 3 * step), s)
                b3 = vector_fma(b3, vector_load(flat, i + 3 * step + V), s)
                a4 = vector_fma(a4, vector_load(flat, i + 4 * step), s)
                b4 = vector_fma(b4, vector_load(flat, i + 4 * step + V), s)
                if tail:
                    s0 = scalar_fma(s, flat[t_base + k * width], s0)
                    s1 = scalar_fma(s, flat[t_base + k * width + t1], s1)
            _store_row_vector(a4, b4, out, (c + 4) * width, width)
        elif hi - c <= 2:  # one or two blocks: one pass of four chains (the last repeated)
            a0 = a1 = b0 = b1 = vector_zero(flat)
            base, s1_base = c * step, min(c + 1, hi - 1) * step
            a2 = a3 = b2 = b3 = a0  # (not stored)
            for k in range(K):
                o = k * width
                s = x[k]
                a0 = vector_fma(a0, vector_load(flat, base + o), s)
                b0 = vector_fma(b0, vector_load(flat, base + o + V), s)
                a1 = vector_fma(a1, vector_load(flat, s1_base + o), s)
                b1 = vector_fma(b1, vector_load(flat, s1_base + o + V), s)
                if tail:
                    s0 = scalar_fma(s, flat[t_base + o], s0)
                    s1 = scalar_fma(s, flat[t_base + o + t1], s1)
        else:  # four blocks, or the last three as four with the last repeated (one pass: each chain
            # waits K fused multiply-adds whatever the number of blocks, so fewer passes is what pays)
            a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = vector_zero(flat)  # values: eight accumulators
            last = hi - 1
            p1, p2, p3 = min(c + 1, last) * step, min(c + 2, last) * step, min(c + 3, last) * step
            base = c * step
            for k in range(K):
                o = k * width
                s = x[k]
                a0 = vector_fma(a0, vector_load(flat, base + o), s)
                b0 = vector_fma(b0, vector_load(flat, base + o + V), s)
                a1 = vector_fma(a1, vector_load(flat, p1 + o), s)
                b1 = vector_fma(b1, vector_load(flat, p1 + o + V), s)
                a2 = vector_fma(a2, vector_load(flat, p2 + o), s)
                b2 = vector_fma(b2, vector_load(flat, p2 + o + V), s)
                a3 = vector_fma(a3, vector_load(flat, p3 + o), s)
                b3 = vector_fma(b3, vector_load(flat, p3 + o + V), s)
                if tail and last_pass:
                    s0 = scalar_fma(s, flat[t_base + o], s0)
                    s1 = scalar_fma(s, flat[t_base + o + t1], s1)
        _store_row_vector(a0, b0, out, c * width, width)
        if c + 1 < hi:
            _store_row_vector(a1, b1, out, (c + 1) * width, width)
        if c + 2 < hi:
            _store_row_vector(a2, b2, out, (c + 2) * width, width)
        if c + 3 < hi:
            _store_row_vector(a3, b3, out, (c + 3) * width, width)
        if tail and last_pass:
            out[hi * width] = s0
            if tail == 2:
                out[hi * width + 1] = s1
        c += 5 if hi - c == 5 else 4


@kernel
def product_row(x, P, out):
    """out (F,) = x (K,) @ W for P = pack(W): `row_product_blocks` over every block (one row on one
    core: batch-1 generation where no helper shares the product)."""
    row_product_blocks(x, P.reshape(-1), P.shape[2], out, 0, P.shape[0])
