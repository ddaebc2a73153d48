"""Every cell's backward against central finite differences in float64, step against forward,
and float32 against float64."""


import numpy as np
import pytest

from rnncli.kernels.cells import CELL_NAMES as CELLS
from rnncli.kernels.cells import get_cell
from tests.gradcheck import assert_close_grads, numerical_grad

T, B, D, H = 4, 3, 5, 6


def setup_cell(name, seed=0, dtype=np.float64):
    cell = get_cell(name)
    rng = np.random.default_rng(seed)
    p = {k: rng.normal(0, 0.5, v.shape).astype(dtype) for k, v in cell.init_params(rng, D, H).items()}
    x = rng.normal(size=(T, B, D)).astype(dtype)
    s0 = tuple(rng.normal(size=(B, H)).astype(dtype) for _ in range(cell.state_size))  # non-zero
    return cell, p, x, s0, rng


@pytest.mark.parametrize("name", CELLS)
def test_cell_gradients_match_finite_differences(name):
    cell, p, x, s0, rng = setup_cell(name)
    R = rng.normal(size=(T, B, H))  # random upstream gradient of the outputs
    Rs = tuple(rng.normal(size=(B, H)) for _ in s0)  # and of the final state

    def loss():
        hs, sT, _ = cell.forward(p, x, s0, keep=False)
        return (hs * R).sum() + sum((s * r).sum() for s, r in zip(sT, Rs, strict=True))

    hs, sT, cache = cell.forward(p, x, s0)
    grads, dx, ds0 = cell.backward(p, cache, R, Rs)
    assert set(grads) == set(p)
    for k in p:
        assert_close_grads(f"{name} {k}", grads[k], numerical_grad(loss, p[k]))
    assert_close_grads(f"{name} x", dx, numerical_grad(loss, x))
    for i, s in enumerate(s0):
        assert_close_grads(f"{name} state0[{i}]", ds0[i], numerical_grad(loss, s))


@pytest.mark.parametrize("name", CELLS)
def test_step_repeated_equals_forward(name):
    cell, p, x, s0, _ = setup_cell(name, seed=1)
    hs, sT, _ = cell.forward(p, x, s0)
    state = s0
    for t in range(T):
        h, state = cell.step(p, x[t], state)
        np.testing.assert_allclose(h, hs[t], rtol=0, atol=1e-12)
    for a, b in zip(state, sT, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", CELLS)
def test_forward_without_keep_gives_same_outputs(name):
    cell, p, x, s0, _ = setup_cell(name, seed=2)
    hs, sT, cache = cell.forward(p, x, s0, keep=True)
    hs2, sT2, cache2 = cell.forward(p, x, s0, keep=False)
    assert cache2 is None
    np.testing.assert_array_equal(hs, hs2)


@pytest.mark.parametrize("name", CELLS)
def test_float32_agrees_with_float64(name):
    cell, p, x, s0, rng = setup_cell(name, seed=3)
    hs64, _, cache64 = cell.forward(p, x, s0)
    R = rng.normal(size=(T, B, H))
    zero = tuple(np.zeros_like(s) for s in s0)
    g64, dx64, _ = cell.backward(p, cache64, R, zero)
    f = np.float32
    p32 = {k: v.astype(f) for k, v in p.items()}
    s32 = tuple(s.astype(f) for s in s0)
    hs32, _, cache32 = cell.forward(p32, x.astype(f), s32)
    g32, dx32, _ = cell.backward(p32, cache32, R.astype(f), tuple(z.astype(f) for z in zero))
    assert hs32.dtype == np.float32 and g32["Wh"].dtype == np.float32
    np.testing.assert_allclose(hs32, hs64, atol=1e-5)
    for k in p:
        np.testing.assert_allclose(g32[k], g64[k], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(dx32, dx64, atol=1e-4, rtol=1e-4)


def test_fast_float32_activations_are_accurate():
    from rnncli.kernels.activations import sigmoid, tanh
    from rnncli.kernels.jit import kernel

    @kernel
    def apply(x):
        out = np.empty((2, x.size), dtype=x.dtype)
        for i in range(x.size):
            out[0, i] = tanh(x[i])
            out[1, i] = sigmoid(x[i])
        return out

    x = np.linspace(-20, 20, 100_001).astype(np.float32)
    out = apply(x)
    exact = x.astype(np.float64)
    assert np.abs(out[0] - np.tanh(exact)).max() < 5e-7
    assert np.abs(out[1] - 1 / (1 + np.exp(-exact))).max() < 5e-7
    assert np.all(np.abs(out[0]) <= 1) and np.all((out[1] >= 0) & (out[1] <= 1))


@pytest.mark.parametrize("shape", [(1, 1), (3, 37), (16, 16), (33, 70), (128, 512)])
def test_sum_of_squares(shape):
    from rnncli.kernels.blas import sum_squares

    rng = np.random.default_rng(sum(shape))
    for dtype in (np.float32, np.float64):
        flat = rng.standard_normal(shape).astype(dtype).reshape(-1)  # sizes that are and are not multiples of 8
        assert sum_squares(flat) == pytest.approx(float((flat.astype(np.float64) ** 2).sum()), rel=1e-12)


@pytest.mark.parametrize("B, K, F", [(1, 1, 1), (3, 4, 16), (7, 5, 20), (4, 64, 32), (33, 64, 100), (16, 128, 512)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_packed_product_equals_the_matrix_product(B, K, F, dtype):
    """Rows in tiles of four and left over; a last block of columns cut short; W as it is and as a
    transposed view (what the backward passes pack); = and +=."""
    from rnncli.kernels.jit import kernel
    from rnncli.kernels.packed import add_packed_product, packed_product
    from rnncli.kernels.packing import block_columns, pack

    @kernel
    def product(x, P, out, accumulate):
        if accumulate:
            add_packed_product(x, P, out)
        else:
            packed_product(x, P, out)

    rng = np.random.default_rng(B * K * F)
    x = rng.standard_normal((B, K)).astype(dtype)
    W = rng.standard_normal((K, F)).astype(dtype)
    exact = x.astype(np.float64) @ W.astype(np.float64)
    tol = 1e-5 * np.sqrt(K) if dtype == np.float32 else 1e-13 * np.sqrt(K)
    for weights in (W, np.ascontiguousarray(W.T).T):
        P = pack(weights)
        width = block_columns(dtype)
        assert P.shape == (-(-F // width), K, width)
        if F % width:
            assert not P[-1, :, F % width:].any()  # the padding is zeros
        out = np.full((B, F), np.nan, dtype)
        product(x, P, out, False)
        np.testing.assert_allclose(out, exact, rtol=0, atol=tol)
        start = rng.standard_normal((B, F)).astype(dtype)
        out = start.copy()
        product(x, P, out, True)
        np.testing.assert_allclose(out, start + exact, rtol=0, atol=tol)


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("K, F", [(1, 1), (7, 33), (130, 512), (301, 520), (512, 1000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_product_shared_with_the_helper_equals_the_matrix_product(K, F, dtype, rows):
    """A product of one row or a few (a beam's), its blocks split between the generating kernel and
    the helper on the second core (kernels/two_cores.py): the product, whoever computed each half,
    and the same numbers as the packed kernel on one core. With no helper
    running, the kernel claims and computes both halves itself; with one, the helper computes its
    half of products it claimed, and everything is still the product. A matrix too small to share
    is computed whole, with no request."""
    from rnncli.kernels import two_cores
    from rnncli.kernels.jit import kernel
    from rnncli.kernels.packed import product_row, product_rows
    from rnncli.kernels.packing import pack

    @kernel
    def products(xs, P, mailbox, outs, rows):
        for r in range(0, xs.shape[0], rows):
            two_cores.shared_product(xs[r : r + rows], P, mailbox, outs[r : r + rows])

    rng = np.random.default_rng(K * F)
    xs = rng.standard_normal((384, K)).astype(dtype)  # (whole groups of `rows`)
    W = rng.standard_normal((K, F)).astype(dtype)
    exact = xs.astype(np.float64) @ W.astype(np.float64)
    tol = 1e-5 * np.sqrt(K) if dtype == np.float32 else 1e-13 * np.sqrt(K)
    P = pack(W)
    mailbox = two_cores.new_mailbox()
    outs = np.full((384, F), np.nan, dtype)
    requests = 384 // rows if P.nbytes >= two_cores.SHARED_MIN_BYTES else 0
    products(xs, P, mailbox, outs, rows)  # no helper
    np.testing.assert_allclose(outs, exact, rtol=0, atol=tol)
    one_core = np.empty_like(outs)  # the packed kernel on one core (one row: its one-row form)
    for r in range(0, 384, rows):
        if rows == 1:
            product_row(xs[r], P, one_core[r])
        else:
            product_rows(xs[r : r + rows], P, one_core[r : r + rows])
    np.testing.assert_array_equal(outs, one_core)
    assert mailbox[two_cores.POSTED] == mailbox[two_cores.CLAIMED] == requests and mailbox[two_cores.DONE] == 0
    outs[:] = np.nan
    two_cores.with_helper(mailbox, lambda: products(xs, P, mailbox, outs, rows), xs)
    np.testing.assert_allclose(outs, exact, rtol=0, atol=tol)
    np.testing.assert_array_equal(outs, one_core)  # whoever computed which half
    assert mailbox[two_cores.POSTED] == requests and mailbox[two_cores.STOP] == 1
    assert mailbox[two_cores.DONE] <= requests  # the helper's requests: how many depends on when it started


@pytest.mark.parametrize("rows", [1, 3, 8])
@pytest.mark.parametrize("K, F", [(7, 33), (130, 512), (512, 1000)])
def test_the_helpers_half_is_the_product_on_one_core(K, F, rows):
    """The helper's side of a product (two_cores.requested_half, what `serve` runs for a request it
    claimed), computed here in one thread right after the post, then the generating side's half:
    bit for bit the product of the packed kernel on one core, one row by its one-row form. No
    thread, so nothing depends on when the helper would have started."""
    from rnncli.kernels import two_cores
    from rnncli.kernels.jit import kernel
    from rnncli.kernels.packed import product_row, product_rows
    from rnncli.kernels.packing import pack

    @kernel
    def helper_then_here(x, P, mailbox, out):
        blocks, K, width = P.shape
        flat = P.reshape(-1)
        request, end = two_cores.post_request(x, flat, K, width, blocks, mailbox, out)
        if two_cores.claim(mailbox, two_cores.CLAIMED, request):  # as the helper claims it
            two_cores.requested_half(mailbox, x)
            two_cores.store_release(mailbox, two_cores.DONE, request)
        two_cores.blocks_of_product(x, flat, width, out, 0, end)

    rng = np.random.default_rng(K + F + rows)
    dtype = np.float32  # the helper's type (float64 goes through the same code: the test above)
    x = rng.standard_normal((rows, K)).astype(dtype)
    P = pack(rng.standard_normal((K, F)).astype(dtype))
    mailbox = two_cores.new_mailbox()
    out = np.full((rows, F), np.nan, dtype)
    helper_then_here(x, P, mailbox, out)
    assert mailbox[two_cores.DONE] == mailbox[two_cores.POSTED] == 1
    one_core = np.empty_like(out)
    if rows == 1:
        product_row(x[0], P, one_core[0])
    else:
        product_rows(x, P, one_core)
    np.testing.assert_array_equal(out, one_core)


def test_the_helper_stops_when_the_generating_kernel_fails():
    """A failure in the generating side still stops the helper (no thread left spinning), and the
    error reaches the caller."""
    from rnncli.kernels import two_cores

    mailbox = two_cores.new_mailbox()

    def failing():
        raise ValueError("inside generation")

    with pytest.raises(ValueError, match="inside generation"):
        two_cores.with_helper(mailbox, failing, np.zeros(1, np.float32))
    assert mailbox[two_cores.STOP] == 1
    assert two_cores.with_helper(mailbox, lambda: 7, np.zeros(1, np.float32)) == 7  # and it runs again


def test_side_by_side_runs_both_at_once_only_under_one_blas_thread():
    import threading

    from rnncli.kernels import blas

    control = blas._threads_control()
    if control is None:
        pytest.skip("no OpenBLAS whose thread count can be set: side_by_side runs one after the other")
    get, _ = control
    before = get()
    meet = threading.Barrier(2, timeout=10)

    def work(x):  # returns only when the other call is running too
        meet.wait()
        return x * 10, threading.get_ident(), get()

    with blas.one_blas_thread():
        (a, ta, na), (b, tb, nb) = blas.side_by_side(work, 1, 2)
    assert (a, b) == (10, 20) and ta != tb and na == nb == 1
    assert get() == before  # restored

    def alone(x):
        return x, threading.get_ident()

    if before != 1:  # BLAS on more threads: one after the other, in this thread
        (_, ta), (_, tb) = blas.side_by_side(alone, 1, 2)
        assert ta == tb == threading.get_ident()

    def failing(x):
        if x == 1:
            raise ValueError("direction 1")
        return x

    with blas.one_blas_thread(), pytest.raises(ValueError, match="direction 1"):
        blas.side_by_side(failing, 1, 2)
    assert get() == before


def test_a_rows_packed_product_does_not_depend_on_the_rows_beside_it():
    """Each row is summed alike in a tile of 8 or 6 (where the CPU takes them: vectors.WIDE_TILES),
    of 4 and in a last tile of fewer rows (which repeats its last row): a shard of samples gives the
    numbers the whole batch would, bit for bit."""
    from rnncli.kernels.packed import product_rows
    from rnncli.kernels.packing import pack

    rng = np.random.default_rng(5)
    x = rng.standard_normal((19, 70)).astype(np.float32)
    P = pack(rng.standard_normal((70, 40)).astype(np.float32))
    whole = np.empty((19, 40), np.float32)
    product_rows(x, P, whole)
    for lo, hi in [(0, 1), (0, 2), (0, 3), (0, 5), (3, 9), (2, 4), (8, 9), (3, 19), (1, 13), (5, 18), (11, 19),
                   (2, 12), (0, 9), (4, 18), (0, 6)]:
        part = np.empty((hi - lo, 40), np.float32)
        product_rows(np.ascontiguousarray(x[lo:hi]), P, part)
        assert np.array_equal(part, whole[lo:hi]), (lo, hi)


@pytest.mark.parametrize("K, F", [(70, 40), (512, 2048), (3, 200), (130, 33), (128, 65), (128, 66), (64, 129),
                                  (64, 161), (40, 289), (9, 2)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_one_row_alone_is_summed_as_in_a_tile(K, F, dtype):
    """The one-row kernel (batch-1 generation) sums every number in k order, as the tiles of rows
    do, and so does a last block of one or two columns summed one number at a time (F = 33, 65,
    66, 129, 161, 289: after passes of two, four and five blocks; F = 2: no whole block): a row's
    numbers are the same alone, in a tile, or in the rows split over the cores (rows_product), and
    within rounding of the float64 product."""
    from rnncli.execution.cores import rows_product
    from rnncli.kernels.packed import product_row, product_rows
    from rnncli.kernels.packing import pack

    rng = np.random.default_rng(K * F)
    x = rng.standard_normal((37, K)).astype(dtype)
    W = rng.standard_normal((K, F)).astype(dtype)
    P = pack(W)
    tiles = np.empty((37, F), dtype)
    product_rows(x, P, tiles)
    for r in (0, 5, 36):
        alone = np.empty(F, dtype)
        product_row(x[r], P, alone)
        np.testing.assert_array_equal(alone, tiles[r])
    np.testing.assert_array_equal(rows_product(x, W), tiles)
    exact = x.astype(np.float64) @ W.astype(np.float64)
    tol = 1e-5 * np.sqrt(K) if dtype == np.float32 else 1e-13 * np.sqrt(K)
    np.testing.assert_allclose(tiles, exact, rtol=0, atol=tol)


def test_packed_product_refuses_rows_of_another_number_type():
    """float64 rows against float32 packed weights: refused when compiled, naming the types."""
    from numba.core.errors import TypingError

    from rnncli.kernels.jit import kernel
    from rnncli.kernels.packed import packed_product
    from rnncli.kernels.packing import pack

    @kernel
    def product(x, P, out):
        packed_product(x, P, out)

    P = pack(np.ones((8, 32), np.float32))
    with pytest.raises(TypingError, match="one number type"):
        product(np.ones((4, 8), np.float64), P, np.zeros((4, 32), np.float32))


def test_packed_product_refuses_a_strided_output():
    """The vector stores write memory as flat: a strided view is refused when compiled, not written
    in the wrong places."""
    from numba.core.errors import TypingError

    from rnncli.kernels.jit import kernel
    from rnncli.kernels.packed import packed_product
    from rnncli.kernels.packing import pack

    @kernel
    def product(x, P, out):
        packed_product(x, P, out)

    x, W = np.ones((4, 8), np.float32), np.ones((8, 32), np.float32)
    out = np.zeros((4, 64), np.float32)
    with pytest.raises(TypingError, match="C-contiguous"):
        product(x, pack(W), out[:, ::2])


def test_a_helper_never_stopped_gives_up_and_the_products_stay_right():
    """A helper whose STOP never comes returns after IDLE_CYCLES without a request (so nothing can
    wait on it forever), and the generating side, claiming what no helper takes, still computes
    every product."""
    import threading

    from rnncli.kernels import two_cores
    from rnncli.kernels.jit import kernel
    from rnncli.kernels.packing import pack

    @kernel
    def products(xs, P, mailbox, outs):
        for r in range(xs.shape[0]):
            two_cores.shared_product(xs[r : r + 1], P, mailbox, outs[r : r + 1])

    mailbox = two_cores.new_mailbox()
    two_cores.compile_helper(np.float32)
    like = np.zeros((1, 1, 1), np.float32)
    helper = threading.Thread(target=two_cores.serve, args=(mailbox, like))
    helper.start()
    helper.join(timeout=30)  # never told to stop
    assert not helper.is_alive()
    rng = np.random.default_rng(0)
    xs, W = rng.standard_normal((5, 512)).astype(np.float32), rng.standard_normal((512, 512)).astype(np.float32)
    outs = np.zeros((5, 512), np.float32)
    products(xs, pack(W), mailbox, outs)  # the helper gone: this side computes both halves
    np.testing.assert_allclose(outs, xs @ W, rtol=1e-4, atol=1e-3)
    assert mailbox[two_cores.DONE] == 0 and mailbox[two_cores.CLAIMED] == 5
