"""The whole model: gradient of the loss (2-layer stacks, dropout with fixed masks, tied weights),
forward-only scoring, generation steps, and that a tiny model can learn."""

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.kernels.cells import CELL_NAMES as CELLS
from rnncli.models.model import Model
from tests.conftest import use_cores
from tests.gradcheck import assert_close_grads, numerical_grad

T, B, V = 4, 3, 7


def make(cell="lstm", tie=False, dropout=0.0, layers=2, seed=0):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=5, hidden=5 if tie else 4, layers=layers,
                      dropout=dropout, tie_weights=tie)
    rng = np.random.default_rng(seed)
    params = Model(cfg).init_params(rng, np.float64)
    inputs = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    state0 = [tuple(rng.normal(size=s.shape) for s in st) for st in Model(cfg).initial_state(B, np.float64)]
    return cfg, params, inputs, targets, state0, rng


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tie, dropout", [(False, 0.0), (True, 0.4)])
def test_model_loss_gradients(cell, tie, dropout):
    cfg, params, inputs, targets, state0, rng = make(cell, tie, dropout)
    masks = Model(cfg).dropout_masks(rng, T, B, np.float64)
    assert (masks is not None) == (dropout > 0)
    loss, _, cache = Model(cfg).forward(params, inputs, targets, state0, masks)
    grads = Model(cfg).backward(params, cache)
    assert set(grads) == set(params)
    assert ("output.W" in params) != tie

    def f():
        return Model(cfg).forward(params, inputs, targets, state0, masks)[0]

    for name, value in params.items():
        assert_close_grads(name, grads[name], numerical_grad(f, value))


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("tie", [False, True])
def test_first_layer_from_the_per_token_table_equals_projecting_each_position(cell, tie, monkeypatch):
    cfg, params, inputs, targets, state0, rng = make(cell, tie, dropout=0.4 if tie else 0.0)
    masks = Model(cfg).dropout_masks(rng, T, B, np.float64)
    loss, states, cache = Model(cfg).forward(params, inputs, targets, state0, masks)
    assert cache.layer_caches[0][0] is None  # V = 7 < T*B = 12: the table was used
    grads = Model(cfg).backward(params, cache)
    monkeypatch.setattr(Model, "_input_table", lambda *args: None)
    loss2, states2, cache2 = Model(cfg).forward(params, inputs, targets, state0, masks)
    assert cache2.layer_caches[0][0] is not None
    grads2 = Model(cfg).backward(params, cache2)
    assert loss == pytest.approx(loss2, rel=1e-13)
    for name in params:
        np.testing.assert_allclose(grads[name], grads2[name], rtol=1e-10, atol=1e-13, err_msg=name)
    for a, b in zip(cache.dstate0, cache2.dstate0, strict=True):
        np.testing.assert_allclose(a[0], b[0], rtol=1e-10, atol=1e-13)


def test_param_names_are_stable():
    cfg = ModelConfig(cell="lstm-peephole", vocab_size=V, embed=3, hidden=4, layers=2)
    names = list(Model(cfg).param_shapes())
    assert names == ["embed.weight", "layers.0.Wx", "layers.0.Wh", "layers.0.b", "layers.0.peep",
                     "layers.1.Wx", "layers.1.Wh", "layers.1.b", "layers.1.peep", "output.W", "output.b"]
    assert Model(cfg).param_shapes()["layers.1.Wx"] == (4, 16)


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_logprobs_match_forward_loss_and_steps(cell):
    cfg, params, inputs, targets, state0, _ = make(cell)
    loss, states, _ = Model(cfg).forward(params, inputs, targets, state0)
    lp, states2 = Model(cfg).logprobs(params, inputs, targets, state0)
    assert lp.shape == (T, B)
    assert -lp.mean() == pytest.approx(loss, abs=1e-12)
    state = state0
    for t in range(T):
        logits, state = Model(cfg).step(params, inputs[t], state)
        logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) \
            - logits.max(1, keepdims=True)
        np.testing.assert_allclose(logp[np.arange(B), targets[t]], lp[t], atol=1e-12)
    for a, b in zip(state, states2, strict=True):
        np.testing.assert_allclose(a[0], b[0], atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_initial_loss_near_log_vocab_and_tiny_model_overfits(cell):
    V_big = 20
    cfg = ModelConfig(cell=cell, vocab_size=V_big, embed=16, hidden=32, layers=1)
    rng = np.random.default_rng(0)
    params = Model(cfg).init_params(rng)
    inputs = rng.integers(0, V_big, (8, 4))
    targets = rng.integers(0, V_big, (8, 4))
    state0 = Model(cfg).initial_state(4)
    loss0, _, _ = Model(cfg).forward(params, inputs, targets, state0)
    assert abs(loss0 - np.log(V_big)) < 0.5
    # plain Adam on one batch
    m = {k: np.zeros_like(v) for k, v in params.items()}
    s = {k: np.zeros_like(v) for k, v in params.items()}
    for i in range(1, 301):
        loss, _, cache = Model(cfg).forward(params, inputs, targets, state0)
        for k, g in Model(cfg).backward(params, cache).items():
            g = np.asarray(g)
            m[k] = 0.9 * m[k] + 0.1 * g
            s[k] = 0.999 * s[k] + 0.001 * g * g
            params[k] -= 0.01 * (m[k] / (1 - 0.9**i)) / (np.sqrt(s[k] / (1 - 0.999**i)) + 1e-8)
    assert loss < 0.05, f"{cell} only reached {loss:.3f}"


# ---- a batch in shards, one per core -----------------------------------------------------------


def test_shards_gradients_sum_when_one_is_by_rows_and_another_dense():
    """A language model's embedding gradient comes by rows from a shard with fewer positions than
    the vocabulary and dense from one with more (its per-token table): the sum takes both."""
    from rnncli.execution.cores import weighted_sum
    from rnncli.kernels.output import RowGradient

    dense = np.arange(12, dtype=np.float32).reshape(4, 3)
    by_rows = RowGradient(np.array([1, 3]), np.ones((2, 3), np.float32), (4, 3))
    for parts, shares in (([by_rows, dense], [0.25, 0.75]), ([dense, by_rows], [0.75, 0.25])):
        total = weighted_sum([{"embed.weight": g} for g in parts], shares)["embed.weight"]
        np.testing.assert_allclose(total, 0.75 * dense + 0.25 * by_rows.dense())


def test_batch_shards_one_per_core_when_rows_allow(monkeypatch):
    """The plan's cores decide the shards (execution/plan.py), not the BLAS's thread state: a batch
    under one BLAS thread still has its shards; a core's own part of spread work has none."""
    import rnncli.execution.cores as cores
    from rnncli.kernels.blas import on_each_core, one_blas_thread

    use_cores(monkeypatch, 2)
    assert cores.batch_shards(32) == [slice(0, 16), slice(16, 32)]
    assert cores.batch_shards(15) == [slice(0, 7), slice(7, 15)]
    assert cores.batch_shards(5) == [slice(0, 2), slice(2, 5)]
    assert cores.batch_shards(4) == [slice(0, 2), slice(2, 4)]
    assert cores.batch_shards(3) == [] and cores.batch_shards(1) == []  # a shard of one row: too small
    with one_blas_thread():
        assert cores.batch_shards(32) == [slice(0, 16), slice(16, 32)]
        assert on_each_core(lambda rows: cores.batch_shards(rows), [32, 32]) == [[], []]  # within a core's part
    use_cores(monkeypatch, 3)
    assert cores.batch_shards(25) == [slice(0, 8), slice(8, 16), slice(16, 25)]
    assert cores.batch_shards(5) == [slice(0, 2), slice(2, 5)]  # two shards: a third would hold one row
    use_cores(monkeypatch, 1)  # a process given one core (a --workers worker, OPENBLAS_NUM_THREADS=1)
    assert cores.batch_shards(64) == []


def test_the_plan_is_built_from_the_environment_and_a_jobs_share(monkeypatch):
    """OPENBLAS_NUM_THREADS (or the first BLAS-thread variable set) caps the machine's cores; each
    of N worker processes gets cores / N, at least one."""
    from rnncli.execution import plan

    monkeypatch.setattr(plan, "machine_cores", lambda: 8)
    for name in plan.BLAS_THREADS:
        monkeypatch.delenv(name, raising=False)
    assert plan.Plan.from_environment() == plan.Plan(8)
    assert plan.Plan.for_workers(2) == plan.Plan(4) and plan.Plan.for_workers(3) == plan.Plan(2)
    assert plan.Plan.for_workers(100) == plan.Plan(1)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert plan.Plan.from_environment() == plan.Plan(3)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")  # read first, as OpenBLAS does
    assert plan.Plan.from_environment() == plan.Plan(1)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "junk")  # not a count: the next one
    assert plan.Plan.from_environment() == plan.Plan(3)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("vocab, tie, dropout", [(7, False, 0.3), (300, False, 0.0), (300, True, 0.0)])
def test_a_batch_in_shards_gives_the_whole_batchs_loss_gradients_and_states(cell, vocab, tie, dropout, monkeypatch):
    """Shards of 8 and 9 rows; a vocabulary of 300 > T*B takes the per-position projection and the
    embedding's row gradient (untied) or dense one (tied); some targets are ignored (negative)."""

    use_cores(monkeypatch, 2)
    B17 = 17
    cfg = ModelConfig(cell=cell, vocab_size=vocab, embed=5, hidden=5 if tie else 4, layers=2, dropout=dropout,
                      tie_weights=tie)
    rng = np.random.default_rng(3)
    model = Model(cfg)
    params = model.init_params(rng, np.float64)
    inputs, targets = rng.integers(0, vocab, (T, B17)), rng.integers(0, vocab, (T, B17))
    targets[:, 1] = -1  # a row of the first shard scores nothing: the shards' shares differ
    state0 = [tuple(rng.normal(size=s.shape) for s in st) for st in model.initial_state(B17, np.float64)]
    masks = model.dropout_masks(rng, T, B17, np.float64)

    loss, states, cache = model.forward(params, inputs, targets, state0, masks)
    assert [p.inputs.shape[1] for p in cache.parts] == [8, 9]  # it ran in shards
    grads = model.backward(params, cache)
    whole = Model(cfg, shard_batches=False)
    loss2, states2, cache2 = whole.forward(params, inputs, targets, state0, masks)
    grads2 = whole.backward(params, cache2)
    assert loss == pytest.approx(loss2, rel=1e-12)
    for name in params:
        np.testing.assert_allclose(np.asarray(grads[name]), np.asarray(grads2[name]), rtol=1e-10, atol=1e-14,
                                   err_msg=name)
    for mine, theirs in ((states, states2), (cache.dstate0, cache2.dstate0)):
        for a, b in zip(mine, theirs, strict=True):
            for x, y in zip(a, b, strict=True):
                np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-14)
    lp, s1 = model.logprobs(params, inputs, np.maximum(targets, 0), state0)
    lp2, s2 = whole.logprobs(params, inputs, np.maximum(targets, 0), state0)
    np.testing.assert_allclose(lp, lp2, rtol=1e-12)
    np.testing.assert_allclose(s1[-1][0], s2[-1][0], rtol=1e-12)
    nt, _ = model.next_token_logprobs(params, inputs, state0)
    nt2, _ = whole.next_token_logprobs(params, inputs, state0)
    np.testing.assert_allclose(nt, nt2, rtol=1e-12)


def test_loss_gradients_through_shards(monkeypatch):
    """The float64 gradient check of the sharded pass against central differences."""

    use_cores(monkeypatch, 2)
    cfg = ModelConfig(cell="lstm", vocab_size=V, embed=3, hidden=3, layers=2)
    rng = np.random.default_rng(5)
    params = Model(cfg).init_params(rng, np.float64)
    inputs, targets = rng.integers(0, V, (2, 16)), rng.integers(0, V, (2, 16))
    state0 = Model(cfg).initial_state(16, np.float64)
    loss, _, cache = Model(cfg).forward(params, inputs, targets, state0)
    assert len(cache.parts) == 2
    grads = Model(cfg).backward(params, cache)

    def f():
        return Model(cfg).forward(params, inputs, targets, state0)[0]

    for name, value in params.items():
        assert_close_grads(name, grads[name], numerical_grad(f, value))
