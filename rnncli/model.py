"""The language model: embedding -> L stacked recurrent cells -> output projection -> softmax.

    x<t> = E[y<t-1>]                       embedding (V, D)
    h[l]<t> = cell(h[l]<t-1>, in[l]<t>)     in[0] = x, in[l] = dropout(h[l-1])
    ŷ<t> = softmax(W_y dropout(h[L-1]<t>) + b_y)

Parameters live in one flat mapping with stable dotted names, which checkpoints store as they are:
    embed.weight (V, D)
    layers.{l}.Wx (D or H, G*H), layers.{l}.Wh (H, G*H), layers.{l}.b (G*H,), layers.{l}.peep (3, H)
    output.W (H, V) and output.b (V,); with tied weights output.W is absent and E^T is used.
Dropout is inverted (masks scaled by 1 / (1 - p)) and applied to every layer's output during
training only; the masks are made by the caller from its own RNG (`dropout_masks`).
When the vocabulary is smaller than a chunk (V < T*B), the first layer's input projection is
looked up per token instead of computed per position (`_input_table`): the same maths, less work.

This module knows no files; it is pure array maths over `params`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rnncli.config import CELLS, ModelConfig
from rnncli.errors import UsageError
from rnncli.kernels.blas import matmul
from rnncli.kernels.cells import get_cell
from rnncli.kernels.output import embedding_backward, embedding_forward, softmax_cross_entropy, target_logprobs
from rnncli.kernels.recurrent import State

Params = dict[str, np.ndarray]
ModelState = list[State]  # one State per layer


MAX_LAYERS = 32
MAX_WIDTH = 1 << 16


def check_config(config: ModelConfig) -> None:
    if config.cell not in CELLS:
        raise UsageError(f"--cell must be one of {', '.join(CELLS)}, not {config.cell!r}")
    for name in ("hidden", "embed", "layers"):
        if getattr(config, name) < 1:
            raise UsageError(f"--{name} must be at least 1")
    if config.layers > MAX_LAYERS:
        raise UsageError(f"--layers must be at most {MAX_LAYERS} (more than about three rarely helps)")
    if max(config.hidden, config.embed) > MAX_WIDTH:
        raise UsageError(f"--hidden and --embed must be at most {MAX_WIDTH:,}")
    if not 0.0 <= config.dropout < 1.0:
        raise UsageError("--dropout must be in [0, 1)")
    if config.tie_weights and config.embed != config.hidden:
        raise UsageError("--tie-weights needs --embed equal to --hidden")
    if config.vocab_size < 2:
        raise UsageError("the vocabulary needs at least <UNK> and <EOS>")


def layer_input_size(config: ModelConfig, layer: int) -> int:
    return config.embed if layer == 0 else config.hidden


def param_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    cell = get_cell(config.cell)
    V, D, H = config.vocab_size, config.embed, config.hidden
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (V, D)}
    for layer in range(config.layers):
        for k, s in cell.param_shapes(layer_input_size(config, layer), H).items():
            shapes[f"layers.{layer}.{k}"] = s
    if not config.tie_weights:
        shapes["output.W"] = (H, V)
    shapes["output.b"] = (V,)
    return shapes


def init_params(config: ModelConfig, rng: np.random.Generator, dtype=np.float32) -> Params:
    check_config(config)
    cell = get_cell(config.cell)
    V, D, H = config.vocab_size, config.embed, config.hidden
    params: Params = {"embed.weight": rng.normal(0.0, 1.0 if not config.tie_weights else 0.1, (V, D)).astype(dtype)}
    for layer in range(config.layers):
        for k, v in cell.init_params(rng, layer_input_size(config, layer), H, dtype).items():
            params[f"layers.{layer}.{k}"] = v
    if not config.tie_weights:
        bound = 1.0 / np.sqrt(H)
        params["output.W"] = rng.uniform(-bound, bound, (H, V)).astype(dtype)
    params["output.b"] = np.zeros(V, dtype=dtype)
    return params


def layer_params(params: Params, layer: int) -> dict[str, np.ndarray]:
    prefix = f"layers.{layer}."
    return {k[len(prefix) :]: v for k, v in params.items() if k.startswith(prefix)}


def output_weight(config: ModelConfig, params: Params) -> np.ndarray:
    return params["embed.weight"].T if config.tie_weights else params["output.W"]  # (H, V)


def initial_state(config: ModelConfig, B: int, dtype=np.float32) -> ModelState:
    cell = get_cell(config.cell)
    return [cell.initial_state(B, config.hidden, dtype) for _ in range(config.layers)]


def dropout_masks(config: ModelConfig, rng: np.random.Generator, T: int, B: int, dtype=np.float32):
    """Inverted-dropout masks, one (T, B, H) per layer, or None when dropout is off."""
    if config.dropout <= 0.0:
        return None
    keep = 1.0 - config.dropout
    return [(rng.random((T, B, config.hidden)) < keep).astype(dtype) / dtype(keep) for _ in range(config.layers)]


@dataclass
class Cache:
    inputs: np.ndarray  # (T, B) token ids fed in
    layer_caches: list
    top: np.ndarray  # (T*B, H) input of the output layer
    dlogits: np.ndarray  # (T*B, V) gradient of the mean loss w.r.t. the logits
    masks: list | None
    dstate0: list | None = None  # filled by backward: gradient of the loss w.r.t. each layer's initial state


def _input_table(config: ModelConfig, params: Params, positions: int) -> np.ndarray | None:
    """The first layer's input projection for every vocabulary entry, E @ Wx + b (V, G*H), when
    the vocabulary is smaller than the chunk (V < T*B positions), else None. Each position's
    x<t> @ Wx + b is then its token's row: a character model projects 65 rows instead of 3,200 per
    chunk, and its backward pass sums the gradient per token before the (then small) products."""
    if config.vocab_size >= positions:
        return None
    first = layer_params(params, 0)
    table = matmul(params["embed.weight"], first["Wx"])
    table += first["b"]
    return table


def _stack_forward(config, params, inputs, state0, masks, keep):
    """Embedding and recurrent layers: -> top (T, B, H), final states, per-layer caches."""
    cell = get_cell(config.cell)
    table = _input_table(config, params, inputs.size)
    x = embedding_forward(params["embed.weight"], inputs) if table is None else None  # (T, B, D)
    states, caches = [], []
    for layer in range(config.layers):
        lp = layer_params(params, layer)
        if x is None:
            hs, stateT, cache = cell.forward_projected(lp, table[inputs], state0[0], keep)
        else:
            hs, stateT, cache = cell.forward(lp, x, state0[layer], keep)
        states.append(stateT)
        caches.append(cache)
        x = hs * masks[layer] if masks is not None else hs  # (T, B, H)
    return x, states, caches


def _logits(config, params, top):
    T, B, H = top.shape
    flat = top.reshape(T * B, H)
    logits = matmul(flat, output_weight(config, params))  # (T*B, V), one product
    logits += params["output.b"]
    return flat, logits


def forward(config: ModelConfig, params: Params, inputs: np.ndarray, targets: np.ndarray,
            state0: ModelState, masks=None) -> tuple[float, ModelState, Cache]:
    """Mean cross-entropy (nats per token) of targets (T, B) given inputs (T, B), the final states
    and the cache for `backward`."""
    top, states, caches = _stack_forward(config, params, inputs, state0, masks, keep=True)
    flat, logits = _logits(config, params, top)
    loss, dlogits = softmax_cross_entropy(logits, targets.reshape(-1))
    return loss, states, Cache(inputs, caches, flat, dlogits, masks)


def backward(config: ModelConfig, params: Params, cache: Cache) -> Params:
    """Gradients of the mean loss for every parameter (same names as `params`). The final state's
    gradient is zero: truncated BPTT stops at the chunk's end."""
    cell = get_cell(config.cell)
    grads: Params = {}
    T, B = cache.inputs.shape
    W = output_weight(config, params)
    dW = matmul(cache.top.T, cache.dlogits)  # (H, V)
    grads["output.b"] = cache.dlogits.sum(axis=0)
    dtop = matmul(cache.dlogits, W.T).reshape(T, B, -1)  # (T, B, H)
    cache.dstate0 = [None] * config.layers
    dE = None
    for layer in reversed(range(config.layers)):
        dhs = np.ascontiguousarray(dtop * cache.masks[layer] if cache.masks is not None else dtop)
        lp = layer_params(params, layer)
        layer_cache = cache.layer_caches[layer]
        zero = tuple(np.zeros_like(s) for s in layer_cache[1])
        if layer_cache[0] is None:  # the first layer's input came from the per-token table
            g, dxw, cache.dstate0[layer] = cell.backward_projected(lp, layer_cache, dhs, zero)
            dtable = embedding_backward(cache.inputs, dxw.reshape(T, B, -1), config.vocab_size)  # (V, G*H)
            g["Wx"] = matmul(params["embed.weight"].T, dtable)
            g["b"] = dtable.sum(axis=0)
            dE = matmul(dtable, lp["Wx"].T)
        else:
            g, dtop, cache.dstate0[layer] = cell.backward(lp, layer_cache, dhs, zero)
        for k, v in g.items():
            grads[f"layers.{layer}.{k}"] = v
    if dE is None:
        dE = embedding_backward(cache.inputs, np.ascontiguousarray(dtop), config.vocab_size)
    if config.tie_weights:
        dE += dW.T
    else:
        grads["output.W"] = dW
    grads["embed.weight"] = dE
    return grads


def logprobs(config: ModelConfig, params: Params, inputs: np.ndarray, targets: np.ndarray,
             state0: ModelState) -> tuple[np.ndarray, ModelState]:
    """Forward only, keeping no activations: log ŷ<t>[y<t>] for targets (T, B) -> (T, B)."""
    top, states, _ = _stack_forward(config, params, inputs, state0, None, keep=False)
    _, logits = _logits(config, params, top)
    return target_logprobs(logits, targets.reshape(-1)).reshape(targets.shape), states


def stream_loss(config: ModelConfig, params: Params, ids: np.ndarray, batch_size: int, seq_len: int) -> float:
    """Mean nats per token of a token stream (N,), cut into up to `batch_size` contiguous streams
    read in chunks of `seq_len` with the state carried (training's validation): every token is
    predicted except the first of each stream."""
    B = max(1, min(batch_size, (len(ids) - 1) // 2))
    S = len(ids) // B
    streams = ids[: B * S].reshape(B, S)
    dtype = params["embed.weight"].dtype
    state = initial_state(config, B, dtype)
    total, count = 0.0, 0
    for start in range(0, S - 1, seq_len):
        end = min(start + seq_len, S - 1)
        inputs = np.ascontiguousarray(streams[:, start:end].T)
        targets = np.ascontiguousarray(streams[:, start + 1 : end + 1].T)
        lp, state = logprobs(config, params, inputs, targets, state)
        total -= float(lp.sum(dtype=np.float64))
        count += lp.size
    return total / max(count, 1)


def next_token_logprobs(config: ModelConfig, params: Params, inputs: np.ndarray,
                        state0: ModelState) -> tuple[np.ndarray, ModelState]:
    """Forward only: the whole next-token distribution log ŷ<t> after each input, (T, B, V)."""
    from rnncli.kernels.output import log_softmax_rows

    top, states, _ = _stack_forward(config, params, inputs, state0, None, keep=False)
    _, logits = _logits(config, params, top)
    T, B = inputs.shape
    return log_softmax_rows(logits).reshape(T, B, -1), states


def step(config: ModelConfig, params: Params, tokens: np.ndarray, state: ModelState) -> tuple[np.ndarray, ModelState]:
    """One generation step: tokens (B,) -> logits (B, V), new state."""
    cell = get_cell(config.cell)
    x = params["embed.weight"][tokens]  # (B, D)
    new_state = []
    for layer in range(config.layers):
        x, s = cell.step(layer_params(params, layer), np.ascontiguousarray(x), state[layer])
        new_state.append(s)
    return matmul(x, output_weight(config, params)) + params["output.b"], new_state
