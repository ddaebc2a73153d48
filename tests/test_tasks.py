"""The task models (classify, tag, translate): float64 finite-difference checks of every gradient,
bidirectional, for every cell; the encoder–decoder's through the decoder's initial state."""

from dataclasses import replace

import numpy as np
import pytest

from rnncli.config import ModelConfig
from rnncli.kernels.cells import CELL_NAMES
from rnncli.tasks import build_model
from rnncli.tasks.models import Batch
from tests.conftest import use_cores
from tests.gradcheck import assert_close_grads, numerical_grad

V, T, B = 7, 4, 3


def config(cell, task, **kw):
    labels = {"classify": ["neg", "pos", "mixed"], "tag": ["O", "B-PER", "I-PER"]}.get(task, [])
    return ModelConfig(cell=cell, vocab_size=V, embed=3, hidden=4, layers=2, dropout=0.25, task=task,
                       bidirectional=True, labels=labels, **kw)


def batch(task, rng, B=B):
    inputs = rng.integers(0, V, (T, B))
    if task == "classify":
        return Batch(inputs, rng.integers(0, 3, B))
    if task == "tag":
        tags = rng.integers(0, 3, (T, B))
        tags[1, 0] = -1  # a piece that carries no tag
        return Batch(inputs, tags)
    targets = rng.integers(2, V, (5, B))
    targets[3:, 0] = -1  # the first target ends early
    decoder_inputs = np.vstack([np.ones((1, B), int), np.maximum(targets[:-1], 1)])
    return Batch(inputs, targets, decoder_inputs)


def check_gradients(model, params, b, masks):
    def loss():
        return model.forward(params, b, masks)[0]

    _, cache = model.forward(params, b, masks)
    grads = model.backward(params, cache)
    assert set(grads) == set(params)
    for k in params:
        assert_close_grads(k, grads[k], numerical_grad(loss, params[k]))


@pytest.mark.parametrize("cell", CELL_NAMES)
@pytest.mark.parametrize("task", ["classify", "tag", "translate"])
def test_task_gradients_match_finite_differences(cell, task):
    rng = np.random.default_rng(5)
    model = build_model(config(cell, task))
    params = model.init_params(rng, np.float64)
    b = batch(task, rng)
    check_gradients(model, params, b, model.dropout_masks(rng, b, np.float64))


def test_the_classifier_reads_each_direction_final_state():
    """Changing the last token moves the forward direction's feature only through h<T>; changing
    the first, the reversed direction's: the label depends on both ends."""
    rng = np.random.default_rng(6)
    model = build_model(config("gru", "classify"))
    params = model.init_params(rng, np.float64)
    b = batch("classify", rng)
    top, _, _ = model.encoder.forward(params, b.inputs, keep=False)
    f = model.head.features(top)
    np.testing.assert_array_equal(f[:, :4], top[-1, :, :4])
    np.testing.assert_array_equal(f[:, 4:], top[0, :, 4:])


def test_padded_targets_do_not_count():
    rng = np.random.default_rng(7)
    model = build_model(config("lstm", "translate"))
    params = model.init_params(rng, np.float64)
    b = batch("translate", rng)
    total, scored = model.loss_sum(params, b)
    assert scored == int((b.targets >= 0).sum())
    loss, _ = model.forward(params, b)
    assert loss == pytest.approx(total / scored)
    changed = Batch(b.inputs, b.targets, b.decoder_inputs.copy())
    changed.decoder_inputs[4, 0] = 5  # after the first target's end: changes nothing scored
    assert model.loss_sum(params, changed)[0] == pytest.approx(total)


@pytest.mark.parametrize("task", ["classify", "tag", "translate"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_a_batch_in_shards_gives_the_whole_batchs_loss_and_gradients(task, bidirectional, monkeypatch):
    """17 examples as shards of 8 and 9, one per core (cores.py), against the whole batch: loss,
    gradients and label log-probabilities; padded targets (tag, translate) weigh each shard's share.
    Then the float64 gradient check through the shards."""

    use_cores(monkeypatch, 2)
    rng = np.random.default_rng(9)
    model = build_model(replace(config("lstm", task), bidirectional=bidirectional))
    params = model.init_params(rng, np.float64)
    b = batch(task, rng, B=17)
    masks = model.dropout_masks(rng, b, np.float64)
    loss, cache = model.forward(params, b, masks)
    assert [len(range(17)[s]) for s in cache.shards] == [8, 9]
    grads = model.backward(params, cache)
    use_cores(monkeypatch, 1)  # the same batch whole
    loss2, cache2 = model.forward(params, b, masks)
    assert not hasattr(cache2, "shards")
    grads2 = model.backward(params, cache2)
    assert loss == pytest.approx(loss2, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(np.asarray(grads[k]), np.asarray(grads2[k]), rtol=1e-9, atol=1e-13, err_msg=k)
    if task != "translate":
        whole = model.logprobs(params, b)
        use_cores(monkeypatch, 2)
        np.testing.assert_allclose(model.logprobs(params, b), whole, rtol=1e-12, atol=1e-13)
    use_cores(monkeypatch, 2)
    check_gradients(model, params, b, masks)
