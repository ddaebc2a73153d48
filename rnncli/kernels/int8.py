"""The single step's products in eight bits: int8 weights times int8 activations, summed exactly as
integers (a quantized model's generation; kernels/quantization.py has the weights' rule).

For a row x (K,) and a matrix W' = q * s (kernels/quantization.py: int8 q (K, F), a float32 scale per column
and group of k), the product quantizes the row on the fly, with one scale of its own:

    sx = max_k |x[k]| / 127 (1 for a zero row),   xq[k] = round(x[k] / sx)  in [-127, 127]
    out[j] = sx * sum_g s[g, j] * n[g, j],   n[g, j] = sum_{k in g} xq[k] q[k, j]  (int32, exact)

the sum over the groups g in order, each term by one fused multiply-add, then one product by sx
(`finish_columns`). The integer sums are exact, so every number depends only on its row and the
weights: not on the rows beside it, the kernel, the thread or the CPU. Two kernels compute them and
agree to the bit (tests/test_quantize.py): `_byte_dot_row`/`_byte_dot_tile` with AVX-512 VNNI's
`vpdpbusd` (sixteen lanes, each four byte products: 64 multiply-adds an instruction against a
float32 fused multiply-add's 16), and `_exact_float_sums` on any other CPU (the integers as float32,
each partial sum below 2**24, so exact). `vpdpbusd` multiplies unsigned by signed bytes, so the row
goes in as xq + 128 and 128 * sum_k q[k, j] is taken off again (`offset`).

The form of W (`int8_form`): each group's k padded to a multiple of 4 (zero weights; its padded
inputs are 128, i.e. xq = 0), then blocked for this CPU's kernel:
    Q (blocks, K4 / 4, 16, 4) int8, Q[c, i, j, r] = q[k, 16 c + j] for k the (4 i + r)-th padded
    row (byte dot products), or Q (blocks, K4, 2V) int8 as packed.py blocks floats (the others);
    S (groups, padded F) float32 and offset (groups, padded F) int32: scales and 128 * sum_k q;
    where (K,) int64: the padded row of each row k; starts (groups + 1,): the groups' padded rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.errors import RnncliError
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.packing import block_columns
from rnncli.kernels.quantization import QMAX, group_starts
from rnncli.kernels.vectors import (
    byte_dots,
    has_byte_dot_products,
    int_vector_store,
    int_vector_zero,
    scalar_fma,
    vector_fma,
    vector_load_int8,
    vector_store,
    vector_zero,
)

LANES = 16  # int32 lanes of a vector of byte dot products: the columns of a block
BYTE_DOTS = has_byte_dot_products()


RECOVER_COLUMNS = 256  # columns read back at a time: the temporaries stay small beside the matrix


def _recover(W: np.ndarray, starts: np.ndarray):
    """(q, s) of W' = q * s read back from W' alone (kernels/quantization.py: each nonzero group's largest
    |q| is 127, so s = max|W'| / 127 exactly), or None when W' is not exactly such a matrix."""
    q = np.empty(W.shape, np.int8)
    s = np.empty((len(starts) - 1, W.shape[1]), np.float32)
    lengths = np.diff(starts)
    for j0 in range(0, W.shape[1], RECOVER_COLUMNS):
        part = np.asarray(W[:, j0 : j0 + RECOVER_COLUMNS], np.float32)
        amax = np.maximum.reduceat(np.abs(part), starts[:-1], axis=0)
        scale = np.where(amax > 0, amax / np.float32(QMAX), np.float32(1))  # exact: amax is 127 s
        if not np.where(amax > 0, scale.astype(np.float64) * QMAX == amax, True).all():
            return None
        per_row = np.repeat(scale, lengths, axis=0)
        ints = np.rint(part / per_row)  # exact: W / s is q
        if np.abs(ints).max(initial=0) > QMAX or not np.array_equal(ints * per_row, part):
            return None
        q[:, j0 : j0 + RECOVER_COLUMNS], s[:, j0 : j0 + RECOVER_COLUMNS] = ints, scale
    return q, s


def int8_form(W: np.ndarray, scheme: str, pieces: int = 1, byte_dot_products: bool = BYTE_DOTS):
    """(Q, S, offset, where, starts) of W' (K, F) made of `pieces` equal pieces along k, each quantized
    by `scheme` (the single step's [Wx; Wh] is two), or None where W' is not exactly such a matrix;
    Q blocked for byte dot products, or for `_exact_float_sums`."""
    K, F = W.shape
    if K == 0 or K % pieces:
        return None
    size = K // pieces
    starts = np.concatenate([group_starts(size, scheme)[:-1] + p * size for p in range(pieces)] + [[K]])
    got = _recover(W, starts)
    if got is None:
        return None
    q, s = got
    lengths = np.diff(starts)
    padded = -(-lengths // 4) * 4
    new_starts = np.concatenate([[0], np.cumsum(padded)]).astype(np.int64)
    where = np.concatenate([new_starts[g] + np.arange(n) for g, n in enumerate(lengths)]).astype(np.int64)
    width = LANES if byte_dot_products else block_columns(np.float32)
    blocks = -(-F // width)
    q_padded = np.zeros((new_starts[-1], blocks * width), np.int8)
    q_padded[where, :F] = q
    if byte_dot_products:
        Q = np.ascontiguousarray(q_padded.reshape(-1, 4, blocks, LANES).transpose(2, 0, 3, 1))
    else:
        Q = np.ascontiguousarray(q_padded.reshape(-1, blocks, width).transpose(1, 0, 2))
    S = np.zeros((len(lengths), blocks * width), np.float32)
    S[:, :F] = s
    offset = np.zeros((len(lengths), blocks * width), np.int32)
    if byte_dot_products:
        offset[:, :F] = 128 * np.add.reduceat(q, starts[:-1], axis=0, dtype=np.int32)
    return Q, S, offset, where, new_starts


@dataclass(frozen=True, eq=False)
class Int8Steps:
    """The single step's products in eight bits, weights quantized by `scheme` (recurrent.Packing's
    third form): a model's own arithmetic (ModelConfig.step_int8), not a speed choice; on one core
    a shard, or each product shared with a helper on the second core through `mailbox` (the
    engine's choice, execution/steps.py)."""

    scheme: str
    mailbox: np.ndarray | None = None


def held_int8(W: np.ndarray, form: Int8Steps, pieces: int = 1) -> tuple:
    """W (K, F) or a stack (L, K, F) as the single step holds it in `form` (recurrent.hold): (a
    placeholder of W's shape, whose values are not read, then its int8 form [, the mailbox])."""
    held = (int8_form if W.ndim == 2 else stacked_form)(W, form.scheme, pieces)
    if held is None:
        raise RnncliError(f"weights of {W.shape} are not int8 weights of the {form.scheme} scheme, which this "
                          "model's steps expect: the checkpoint is damaged")
    shape_only = np.lib.stride_tricks.as_strided(np.zeros(1, W.dtype), W.shape, (0,) * W.ndim, writeable=False)
    return (shape_only, *held) + (() if form.mailbox is None else (form.mailbox,))


def stacked_form(W: np.ndarray, scheme: str, pieces: int = 1, byte_dot_products: bool = BYTE_DOTS):
    """`int8_form` of a stack (L, K, F): its arrays stacked (where and starts are one for all), or None."""
    forms = [int8_form(w, scheme, pieces, byte_dot_products) for w in W]
    if any(f is None for f in forms):
        return None
    return tuple(np.ascontiguousarray(np.stack([f[i] for f in forms])) for i in range(3)) + forms[0][3:]


@inline
def _quantize_rows(x, where, K4):
    """The rows of x (B, K) as bytes xq + 128 at their padded places (B, K4) (128 in the padding),
    and each row's scale sx (B,)."""
    B, K = x.shape
    xu = np.full((B, K4), 128, np.uint8)
    sx = np.empty(B, x.dtype)
    for b in range(B):
        m = x.dtype.type(0.0)
        for k in range(K):
            m = max(m, abs(x[b, k]))
        s = m / x.dtype.type(QMAX) if m > 0 else x.dtype.type(1.0)
        sx[b] = s
        for k in range(K):
            v = min(max(np.rint(x[b, k] / s), -QMAX), QMAX)
            xu[b, where[k]] = np.uint8(np.int32(v) + 128)
    return xu, sx


@kernel
def _byte_dot_row(words, Q, starts, sums, c_lo, c_hi):
    """sums (groups, 16 blocks) = each group's byte dot products of one row (`words`: its bytes as
    int32, four a word) with blocks c_lo .. c_hi - 1 of Q: eight blocks at a time (a last pass of
    fewer repeats its last block)."""
    quads = Q.shape[1]
    q = Q.reshape(-1)
    step = quads * 64
    flat = sums.reshape(-1)
    width = sums.shape[1]
    for c in range(c_lo, c_hi, 8):
        last = c_hi - 1
        c1, c2, c3 = min(c + 1, last), min(c + 2, last), min(c + 3, last)
        c4, c5, c6, c7 = min(c + 4, last), min(c + 5, last), min(c + 6, last), min(c + 7, last)
        for g in range(starts.shape[0] - 1):
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = int_vector_zero()
            for i in range(starts[g] // 4, starts[g + 1] // 4):
                w = words[i]
                o = i * 64
                a0 = byte_dots(a0, q, c * step + o, w)
                a1 = byte_dots(a1, q, c1 * step + o, w)
                a2 = byte_dots(a2, q, c2 * step + o, w)
                a3 = byte_dots(a3, q, c3 * step + o, w)
                a4 = byte_dots(a4, q, c4 * step + o, w)
                a5 = byte_dots(a5, q, c5 * step + o, w)
                a6 = byte_dots(a6, q, c6 * step + o, w)
                a7 = byte_dots(a7, q, c7 * step + o, w)
            row = g * width
            int_vector_store(flat, row + c * LANES, a0)
            int_vector_store(flat, row + c1 * LANES, a1)
            int_vector_store(flat, row + c2 * LANES, a2)
            int_vector_store(flat, row + c3 * LANES, a3)
            int_vector_store(flat, row + c4 * LANES, a4)
            int_vector_store(flat, row + c5 * LANES, a5)
            int_vector_store(flat, row + c6 * LANES, a6)
            int_vector_store(flat, row + c7 * LANES, a7)


@kernel
def _byte_dot_tile(words, Q, starts, sums, c_lo, c_hi):
    """sums (B, groups, 16 blocks) for rows (B, K4 / 4) of words and blocks c_lo .. c_hi - 1: tiles
    of four rows x two blocks, each loaded weight vector used by the four rows (a last tile of fewer
    repeats its last row)."""
    B = words.shape[0]
    quads = Q.shape[1]
    q = Q.reshape(-1)
    step = quads * 64
    flat = sums.reshape(-1)
    per_row, width = sums.shape[1] * sums.shape[2], sums.shape[2]
    last_row, last = B - 1, c_hi - 1
    for c in range(c_lo, c_hi, 2):
        c1 = min(c + 1, last)
        for r0 in range(0, B, 4):
            r1, r2, r3 = min(r0 + 1, last_row), min(r0 + 2, last_row), min(r0 + 3, last_row)
            for g in range(starts.shape[0] - 1):
                a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = int_vector_zero()
                for i in range(starts[g] // 4, starts[g + 1] // 4):
                    o = i * 64
                    a0 = byte_dots(a0, q, c * step + o, words[r0, i])
                    b0 = byte_dots(b0, q, c1 * step + o, words[r0, i])
                    a1 = byte_dots(a1, q, c * step + o, words[r1, i])
                    b1 = byte_dots(b1, q, c1 * step + o, words[r1, i])
                    a2 = byte_dots(a2, q, c * step + o, words[r2, i])
                    b2 = byte_dots(b2, q, c1 * step + o, words[r2, i])
                    a3 = byte_dots(a3, q, c * step + o, words[r3, i])
                    b3 = byte_dots(b3, q, c1 * step + o, words[r3, i])
                for r, a, b in ((r0, a0, b0), (r1, a1, b1), (r2, a2, b2), (r3, a3, b3)):
                    at = r * per_row + g * width
                    int_vector_store(flat, at + c * LANES, a)
                    int_vector_store(flat, at + c1 * LANES, b)


EXACT_RUN = 1024  # k summed in float32 before the sum moves to an int32: 127 * 127 * 1024 < 2**24, exact


@inline
def _add_exact(a, b, sums, at, tile):
    """sums[at : at + 2V] += a chunk's two float vectors of exact integer sums (cut at sums' width)."""
    V = tile.size // 2
    vector_store(tile, 0, a)
    vector_store(tile, V, b)
    for j in range(min(tile.size, sums.shape[0] - at)):
        sums[at + j] += np.int32(tile[j])


@kernel
def _exact_float_sums(xq, Qp, starts, sums, c_lo, c_hi):
    """The same integer sums (B, groups, F) without byte dot products: xq (B, K4) the rows' integers
    as floats, Qp (blocks, K4, 2V) the weights blocked as packed.py's, converted in register; every
    partial sum an integer below 2**24 (EXACT_RUN), so float32's fused multiply-adds are exact. Tiles
    of four rows x one block (a last tile repeats its last row)."""
    B = xq.shape[0]
    blocks, K4, width = Qp.shape
    V = width // 2
    q = Qp.reshape(-1)
    tile = np.empty(width, xq.dtype)
    last = B - 1
    for b in range(B):
        for g in range(sums.shape[1]):
            for j in range(c_lo * width, c_hi * width):
                sums[b, g, j] = 0
    for c in range(c_lo, c_hi):
        base, col = c * K4 * width, c * width
        for r0 in range(0, B, 4):
            r1, r2, r3 = min(r0 + 1, last), min(r0 + 2, last), min(r0 + 3, last)
            for g in range(starts.shape[0] - 1):
                for k0 in range(starts[g], starts[g + 1], EXACT_RUN):
                    a0 = a1 = a2 = a3 = b0 = b1 = b2 = b3 = vector_zero(xq)
                    for k in range(k0, min(k0 + EXACT_RUN, starts[g + 1])):
                        w0 = vector_load_int8(q, base + k * width, xq)
                        w1 = vector_load_int8(q, base + k * width + V, xq)
                        a0 = vector_fma(a0, w0, xq[r0, k])
                        b0 = vector_fma(b0, w1, xq[r0, k])
                        a1 = vector_fma(a1, w0, xq[r1, k])
                        b1 = vector_fma(b1, w1, xq[r1, k])
                        a2 = vector_fma(a2, w0, xq[r2, k])
                        b2 = vector_fma(b2, w1, xq[r2, k])
                        a3 = vector_fma(a3, w0, xq[r3, k])
                        b3 = vector_fma(b3, w1, xq[r3, k])
                    _add_exact(a0, b0, sums[r0, g], col, tile)
                    if r0 + 1 <= last:
                        _add_exact(a1, b1, sums[r1, g], col, tile)
                    if r0 + 2 <= last:
                        _add_exact(a2, b2, sums[r2, g], col, tile)
                    if r0 + 3 <= last:
                        _add_exact(a3, b3, sums[r3, g], col, tile)


@kernel
def finish_columns(sums, S, offset, sx, out, j_lo, j_hi):
    """out[:, j_lo : j_hi] = sx * sum_g s[g, j] * (sums - offset), the groups in order, each term by
    one fused multiply-add."""
    zero = out.dtype.type(0.0)
    for b in range(out.shape[0]):
        for j in range(j_lo, min(j_hi, out.shape[1])):
            acc = zero
            for g in range(S.shape[0]):
                acc = scalar_fma(out.dtype.type(sums[b, g, j] - offset[g, j]), out.dtype.type(S[g, j]), acc)
            out[b, j] = scalar_fma(acc, sx[b], zero)


@kernel
def _byte_dot_sums(xu, Q, starts, sums, c_lo, c_hi):
    """The integer sums of blocks c_lo .. c_hi - 1 by AVX-512 VNNI, from the rows' bytes xu (B, K4)."""
    words = xu.view(np.int32)  # (B, K4 / 4): four bytes a word, little-endian as vpdpbusd reads them
    if xu.shape[0] == 1:
        _byte_dot_row(words[0], Q, starts, sums[0], c_lo, c_hi)
    else:
        _byte_dot_tile(words, Q, starts, sums, c_lo, c_hi)


@kernel
def _float_sums(xu, Q, starts, sums, c_lo, c_hi):
    """The same integer sums on any CPU, by exact float32 sums (`_exact_float_sums`)."""
    xq = np.empty(xu.shape, np.float32)
    for b in range(xu.shape[0]):
        for k in range(xu.shape[1]):
            xq[b, k] = np.float32(np.int32(xu[b, k]) - 128)
    _exact_float_sums(xq, Q, starts, sums, c_lo, c_hi)


integer_sums = _byte_dot_sums if BYTE_DOTS else _float_sums
"""The integer sums of this CPU's form (`int8_form`): the single step's, on one core or two."""


@inline
def _byte_dot_blocks_shape(blocks, K4, width):
    return (blocks, K4 // 4, LANES, 4)


@inline
def _float_blocks_shape(blocks, K4, width):
    return (blocks, K4, width)


blocks_shape = _byte_dot_blocks_shape if BYTE_DOTS else _float_blocks_shape
"""The shape of Q in this CPU's form, from its blocks, padded rows and block width."""


@kernel
def quantize_rows(x, where, K4):
    """(xu (B, K4) uint8, sx (B,)): `_quantize_rows` as a kernel of its own."""
    return _quantize_rows(x, where, K4)


# (Each kernel below calls its sums by name: a kernel given another as a value holds its address,
# which a kernel cached by Numba carries into the next process, where it points elsewhere.)


@kernel
def byte_dot_product(x, Q, S, offset, where, starts, out):
    """out (B, F) = x (B, K) @ W' for the int8 form of W' (`int8_form`, blocked for byte dot
    products), x quantized per row (above), on one core: the integer sums by AVX-512 VNNI."""
    xu, sx = _quantize_rows(x, where, starts[-1])
    sums = np.empty((x.shape[0], S.shape[0], S.shape[1]), np.int32)
    _byte_dot_sums(xu, Q, starts, sums, 0, Q.shape[0])
    finish_columns(sums, S, offset, sx, out, 0, out.shape[1])


@kernel
def exact_float_product(x, Q, S, offset, where, starts, out):
    """The same numbers as `byte_dot_product` on any CPU: the integer sums by exact float32 sums."""
    xu, sx = _quantize_rows(x, where, starts[-1])
    sums = np.empty((x.shape[0], S.shape[0], S.shape[1]), np.int32)
    _float_sums(xu, Q, starts, sums, 0, Q.shape[0])
    finish_columns(sums, S, offset, sx, out, 0, out.shape[1])


one_core_product = byte_dot_product if BYTE_DOTS else exact_float_product


def int8_product(x, form, out) -> None:
    """out = x @ W' for an int8 form of W' (`int8_form`), by the kernel of its layout: Python's entry
    (the single step calls the kernels directly, recurrent.step_times)."""
    (byte_dot_product if form[0].ndim == 4 else exact_float_product)(x, *form, out)
