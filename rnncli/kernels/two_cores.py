"""A few rows' products on both cores: generation of one sample (or a few, or a beam) with a helper
on the second core.

At batch 1 every token reads all the weights (13 MB for the char-rnn lstm) for a few FLOPs each,
so the speed is the rate at which the cores read them: both cores must stream, each its half of
every product (its blocks of columns). OpenBLAS does that by handing each product to its second
thread and back, through its own queue; here a helper runs on the second core for the whole
generation call, waiting for products in a mailbox (a small int64 array, one cache line per
writer):

    the generating kernel, per product        the helper (`serve`), until told to stop
    writes x, P, out and the block range,     sees a new request number,
    posts the request number (release)        claims it (compare-and-swap) and computes its half
    computes its own half of the blocks       (reading x, P and out by their addresses),
    claims the other half if still unclaimed  posts the request number as done (release)
    (then computes it itself) or waits for
    it to be done

The claim makes it safe whatever the helper does: when no helper runs (nested inside another
parallel part, or the worker thread busy), the generating kernel claims and computes every half
itself, and the helper, started later, sees the stop and returns. The product itself is
packed.py's one-row kernel over a range of packed blocks, or for a few rows (samples side by side,
a beam's hypotheses) its tiles of rows, which read the blocks once for all the rows: each row's
numbers are those of the packed kernel on one core, whichever side computed which blocks.

Measured (AMD EPYC, 2 cores), 1 x 512 @ 512 x 2048 (4.2 MB) a product, with a request and its
wait: 24.5 us (171 GB/s) against 31.6 us through OpenBLAS's two threads and 50 us on one core;
both cores reading a buffer of that size: 180 GB/s. Whole batch-1 generation at the char-rnn size
(2 x 512), tokens/s: rnn 23.9k -> 33-39k, gru 8.2k -> 11.4-12.7k, lstm 7.3k -> 9.3-10.5k
(bench/README.md); lstm -n 2 / 3 11.9k / 12.0k (a request per row) -> 16.7-18.7k / 23.2-26.2k
(one for all rows). Chosen by execution/steps.py.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import carray, types
from numba.core import cgutils
from numba.extending import intrinsic

from rnncli.kernels.int8 import blocks_shape, finish_columns, integer_sums, quantize_rows
from rnncli.kernels.jit import inline, kernel
from rnncli.kernels.packed import product_blocks, row_product_blocks

# The mailbox's slots (int64), each writer's on a cache line of its own. The request, written by the
# generating kernel: its number, the addresses of x, P and out, K, F, the block width, the helper's
# blocks, the rows of x.
POSTED, X_AT, P_AT, OUT_AT, INNER, COLUMNS, WIDTH, FIRST, END, ROWS = range(10)
# An int8 product's (kernels/int8.py; KIND 1): x is the rows' bytes (ROWS, INNER), P its Q, and these.
KIND, S_AT, OFFSET_AT, STARTS_AT, GROUPS, SUMS_AT, SX_AT = 40, 41, 42, 43, 44, 45, 46
CLAIMED = 16  # the last request claimed (by either side)
DONE = 24  # the last request the helper computed
STOP = 32  # set when the generating kernel is finished
MAILBOX_SIZE = 48
SHARED_MIN_BYTES = 1 << 19  # a smaller matrix is read faster by one core than shared (measured below)
IDLE_CYCLES = 1 << 31  # ~0.5-1 s: a helper with no request for that long returns (`serve`)


def new_mailbox() -> np.ndarray:
    return np.zeros(MAILBOX_SIZE, np.int64)


# ---- atomics and addresses (LLVM instructions Numba does not offer) -------------------------------


def _slot(context, builder, array_type, array, index):
    data = cgutils.create_struct_proxy(array_type)(context, builder, value=array).data
    return builder.gep(data, [index])


@intrinsic
def load_acquire(typingctx, mailbox, index):
    """mailbox[index], read after every write the writer made before its `store_release`."""

    def codegen(context, builder, sig, args):
        return builder.load_atomic(_slot(context, builder, sig.args[0], *args), "acquire", 8)

    return types.int64(mailbox, index), codegen


@intrinsic
def store_release(typingctx, mailbox, index, value):
    """mailbox[index] = value, after (as any other core sees it) every write made before it."""

    def codegen(context, builder, sig, args):
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, _slot(context, builder, sig.args[0], args[0], args[1]), "release", 8)
        return context.get_dummy_value()

    return types.none(mailbox, index, value), codegen


@intrinsic
def claim(typingctx, mailbox, index, request):
    """Set mailbox[index] from request - 1 to request, atomically: True for the one side that did."""

    def codegen(context, builder, sig, args):
        request = context.cast(builder, args[2], sig.args[2], types.int64)
        before = builder.sub(request, ir.Constant(ir.IntType(64), 1))
        slot = _slot(context, builder, sig.args[0], args[0], args[1])
        result = builder.cmpxchg(slot, before, request, "acq_rel", "acquire")
        return builder.extract_value(result, 1)

    return types.boolean(mailbox, index, request), codegen


def _x86() -> bool:
    import llvmlite.binding as llvm

    return llvm.get_process_triple().split("-")[0] in ("x86_64", "i386", "i686")


@intrinsic
def spin_pause(typingctx):
    """The CPU's hint that this is a wait loop (x86 `pause`: it frees the core's shared resources);
    nothing on other CPUs."""

    def codegen(context, builder, sig, args):
        if _x86():
            pause = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                   "llvm.x86.sse2.pause")
            builder.call(pause, [])
        return context.get_dummy_value()

    return types.none(), codegen


@intrinsic
def cycle_count(typingctx):
    """The CPU's cycle counter (x86 `rdtsc`; LLVM's portable form): a clock for the helper's patience,
    no system call."""

    def codegen(context, builder, sig, args):
        counter = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.IntType(64), []),
                                                 "llvm.readcyclecounter")
        return builder.call(counter, [])

    return types.int64(), codegen


@intrinsic
def address(typingctx, array):
    """The address of an array's first element."""

    def codegen(context, builder, sig, args):
        data = cgutils.create_struct_proxy(sig.args[0])(context, builder, value=args[0]).data
        return builder.ptrtoint(data, ir.IntType(64))

    return types.int64(array), codegen


@intrinsic
def _pointer(typingctx, at, like):
    """The address `at` as a pointer to numbers of `like`'s type."""

    def codegen(context, builder, sig, args):
        return builder.inttoptr(args[0], context.get_value_type(sig.return_type))

    return types.CPointer(like.dtype)(at, like), codegen


@inline
def _numbers_at(at, shape, like):
    """The numbers of `like`'s type at address `at`, as an array of `shape` (the memory is the caller's)."""
    return carray(_pointer(at, like), shape)


# ---- the two sides --------------------------------------------------------------------------------


@inline
def blocks_of_product(x, flat, width, out, c_lo, c_hi):
    """out (B, F) = x (B, K) @ W for blocks c_lo .. c_hi - 1 of the packed W (`flat`): one row by
    the one-row kernel, more by the tiles of rows (packed.py)."""
    if x.shape[0] == 1:
        row_product_blocks(x[0], flat, width, out[0], c_lo, c_hi)
    else:
        product_blocks(x, flat, width, out, c_lo, c_hi)


@inline
def _requested_int8_half(mailbox, like):
    """The helper's half of a posted int8 product (kernels/int8.py): the integer sums of its blocks,
    then its columns."""
    B, K4, width, first, blocks = mailbox[ROWS], mailbox[INNER], mailbox[WIDTH], mailbox[FIRST], mailbox[END]
    groups, padded = mailbox[GROUPS], blocks * width
    xu = _numbers_at(mailbox[X_AT], (B, K4), np.empty(0, np.uint8))
    Q = _numbers_at(mailbox[P_AT], blocks_shape(blocks, K4, width), np.empty(0, np.int8))
    starts = _numbers_at(mailbox[STARTS_AT], groups + 1, np.empty(0, np.int64))
    sums = _numbers_at(mailbox[SUMS_AT], (B, groups, padded), np.empty(0, np.int32))
    S = _numbers_at(mailbox[S_AT], (groups, padded), np.empty(0, np.float32))
    offset = _numbers_at(mailbox[OFFSET_AT], (groups, padded), np.empty(0, np.int32))
    sx = _numbers_at(mailbox[SX_AT], B, like)
    out = _numbers_at(mailbox[OUT_AT], (B, mailbox[COLUMNS]), like)
    integer_sums(xu, Q, starts, sums, first, blocks)
    finish_columns(sums, S, offset, sx, out, first * width, blocks * width)


@inline
def requested_half(mailbox, like):
    """The helper's half of the posted request, computed from the addresses in the mailbox."""
    if mailbox[KIND] == 1:
        _requested_int8_half(mailbox, like)
        return
    B, K, width, end = mailbox[ROWS], mailbox[INNER], mailbox[WIDTH], mailbox[END]
    x = _numbers_at(mailbox[X_AT], (B, K), like)
    out = _numbers_at(mailbox[OUT_AT], (B, mailbox[COLUMNS]), like)
    flat = _numbers_at(mailbox[P_AT], end * K * width, like)  # the blocks up to the last one
    blocks_of_product(x, flat, width, out, mailbox[FIRST], end)


@kernel
def serve(mailbox, like):
    """The helper: compute the second half of each product posted in `mailbox`, until its STOP, or
    until no request has come for IDLE_CYCLES (the generating side claims whatever is left to it,
    so giving up is always safe; it bounds a helper whose STOP could never come). `like`: any array
    of the products' number type."""
    seen = load_acquire(mailbox, POSTED)
    since = cycle_count()
    while load_acquire(mailbox, STOP) == 0:
        request = load_acquire(mailbox, POSTED)
        if request == seen:
            if cycle_count() - since > IDLE_CYCLES:
                return
            spin_pause()
            continue
        seen = request
        if claim(mailbox, CLAIMED, request):
            requested_half(mailbox, like)
            store_release(mailbox, DONE, request)
        since = cycle_count()


@inline
def post_request(x, flat, K, width, blocks, mailbox, out):
    """Post the product x @ W (W packed as `flat`, `blocks` of `width` columns) for the helper: its
    half is the second half of the blocks. -> (the request's number, the first of its blocks)."""
    end = (blocks + 1) // 2
    request = mailbox[POSTED] + 1
    mailbox[KIND] = 0
    mailbox[X_AT] = address(x)
    mailbox[P_AT] = address(flat)
    mailbox[OUT_AT] = address(out)
    mailbox[INNER] = K
    mailbox[COLUMNS] = out.shape[1]
    mailbox[WIDTH] = width
    mailbox[FIRST] = end
    mailbox[END] = blocks
    mailbox[ROWS] = x.shape[0]
    store_release(mailbox, POSTED, request)
    return request, end


@kernel
def shared_product(x, P, mailbox, out):
    """out (B, F) = x (B, K) @ W for P = pack(W) (P (blocks, K, width)), x and out C-contiguous: the
    first half of the blocks here and the second by the helper (or here too, when no helper has
    claimed it). A matrix under SHARED_MIN_BYTES is computed here whole: one row against 256 KB took
    3.3 us shared and 2.5 on one core, 512 KB 4.2 and 5.0 us, 1 MB 7.3-7.8 and 11.1-11.4 us (AMD
    EPYC, the matrix in cache). Whoever computes a block, its numbers are the same (packed.py)."""
    blocks, K, width = P.shape
    flat = P.reshape(-1)
    request = -1  # none: a matrix under SHARED_MIN_BYTES is computed here whole
    end = blocks
    if P.size * P.itemsize >= SHARED_MIN_BYTES:
        request, end = post_request(x, flat, K, width, blocks, mailbox, out)
    lo, hi = 0, end
    while True:  # this side's blocks, then the helper's if no helper claimed them: one call site of
        # the product, which Numba would compile anew at each (three: 14.1 s against 4.5)
        blocks_of_product(x, flat, width, out, lo, hi)
        if request < 0 or lo > 0:
            return
        if not claim(mailbox, CLAIMED, request):  # the helper took them
            break
        lo, hi = end, blocks
    while load_acquire(mailbox, DONE) != request:
        spin_pause()


@kernel
def shared_int8_product(x, Q, S, offset, where, starts, mailbox, out):
    """out (B, F) = x (B, K) @ W' for the int8 form of W' (kernels/int8.py): the rows quantized here,
    the integer sums and the columns of the first half of the blocks here and of the second by the
    helper (or here too, when no helper claimed them). Whoever computes a block, its numbers are the
    same (exact integers, then one formula per column)."""
    B = x.shape[0]
    xu, sx = quantize_rows(x, where, starts[-1])
    blocks = Q.shape[0]
    width = S.shape[1] // blocks
    sums = np.empty((B, S.shape[0], S.shape[1]), np.int32)
    request = -1
    end = blocks
    if Q.size >= SHARED_MIN_BYTES:
        end = (blocks + 1) // 2
        request = mailbox[POSTED] + 1
        mailbox[KIND] = 1
        mailbox[X_AT], mailbox[P_AT], mailbox[OUT_AT] = address(xu), address(Q), address(out)
        mailbox[S_AT], mailbox[OFFSET_AT], mailbox[STARTS_AT] = address(S), address(offset), address(starts)
        mailbox[SUMS_AT], mailbox[SX_AT] = address(sums), address(sx)
        mailbox[INNER], mailbox[COLUMNS], mailbox[WIDTH] = xu.shape[1], out.shape[1], width
        mailbox[FIRST], mailbox[END], mailbox[ROWS], mailbox[GROUPS] = end, blocks, B, S.shape[0]
        store_release(mailbox, POSTED, request)
    lo, hi = 0, end
    while True:  # as shared_product: this side's blocks, then the helper's if it did not claim them
        integer_sums(xu, Q, starts, sums, lo, hi)
        finish_columns(sums, S, offset, sx, out, lo * width, hi * width)
        if request < 0 or lo > 0:
            return
        if not claim(mailbox, CLAIMED, request):
            break
        lo, hi = end, blocks
    while load_acquire(mailbox, DONE) != request:
        spin_pause()


def stop(mailbox: np.ndarray) -> None:
    """Tell the helper the generating kernel is finished (it returns at its next look)."""
    mailbox[STOP] = 1


def compile_helper(dtype=np.float32) -> None:
    """Compile the helper's kernel for numbers of `dtype` (or load it from Numba's cache): call it
    told to stop, so that it returns at once (`make install` runs this, precompile.py)."""
    stopped = new_mailbox()
    stop(stopped)
    serve(stopped, np.zeros((1, 1, 1), dtype))
    _compiled[np.dtype(dtype).str] = True


_compiled: dict[str, bool] = {}  # by number type: the answer of `helper_compiled`, asked once per process


def helper_compiled(dtype) -> bool:
    """Whether the helper's kernel for numbers of `dtype` is compiled in Numba's cache: `make
    install` compiles it, with the generation kernels of every cell in this form (precompile.py).
    A cold cache (cleared, or a fresh NUMBA_CACHE_DIR) makes batch 1 keep OpenBLAS's products
    instead: this form compiles ~1.5 s longer (measured, the lstm: generate 3.5 -> 4.5 s, the helper
    0.55 s), and a first sample must start within 4 s. Asks the dispatcher's cache directly (a Numba
    internal: anything unexpected counts as not compiled). Asked once per process and number type:
    the probe loads the kernel from the cache, ~6 ms, which a caller stepping rows again and again
    (a benchmark, a server) paid at every run of steps."""
    key = np.dtype(dtype).str
    if key not in _compiled:
        try:
            like = np.zeros((1, 1, 1), dtype)  # the state h (L, B, H), which the helper is given
            signature = (serve.typeof_pyval(new_mailbox()), serve.typeof_pyval(like))
            _compiled[key] = (signature in serve.overloads
                              or serve._cache.load_overload(signature, serve.targetctx) is not None)
        except Exception:  # noqa: BLE001 - a probe only: the other form is always correct
            _compiled[key] = False
    return _compiled[key]


def with_helper(mailbox: np.ndarray, work, like: np.ndarray):
    """work() (a call of a kernel whose products share `mailbox`) with the helper serving on the
    second core meanwhile, BLAS on one thread; -> what work returned. `like`: an array of the
    products' number type."""
    from rnncli.kernels.blas import on_each_core, one_blas_thread

    mailbox[:] = 0

    def side(helper: bool):
        if helper:
            return serve(mailbox, like)
        try:
            return work()
        finally:
            stop(mailbox)  # the helper returns while this side's result goes back

    with one_blas_thread():
        try:
            return on_each_core(side, [False, True])[0]
        finally:  # whatever happened (a Ctrl-C before work() began; the helper would also give up)
            stop(mailbox)
