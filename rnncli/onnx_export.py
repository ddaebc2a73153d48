"""An rnncli language model as an ONNX graph, in the operators ONNX defines for recurrent layers.

    tokens (T, B) int64 -> Gather(E) -> [LSTM | GRU | RNN] x L -> MatMul(W_y) + b_y -> LogSoftmax
    inputs:  tokens, h0 (L, B, H) [, c0 (L, B, H) for the lstm]
    outputs: logprobs (T, B, V) [log ŷ<t> after each token], hT (L, B, H) [, cT (L, B, H)]

so a user can step it: feed a chunk with the states the previous chunk returned. Gates are
reordered to ONNX's orders: the LSTM's [i, f, g, o] become `iofc` (peepholes `P` in `iof`); the
GRU's become `zrh`, with `linear_before_reset=1` for gru-cudnn (PyTorch's form) and 0 for the notes'
gru, whose update gate Γ_u is ONNX's 1 - z (so its rows are negated: σ(-a) = 1 - σ(a)). gru-simple
has no ONNX operator and is refused. Needs the `onnx` package (`pip install 'rnncli[export]'`).
"""

from __future__ import annotations

import numpy as np

from rnncli.checkpoint import Checkpoint
from rnncli.errors import UsageError

OPSET = 17
NOT_IN_ONNX = {"gru-simple": "ONNX's GRU always has a reset gate (gru-simple has only the update gate)"}


def _blocks(a: np.ndarray, H: int, order: list[int], axis: int = 0) -> np.ndarray:
    """The gate blocks of `a` (each H wide along `axis`) in another order."""
    parts = np.split(a, a.shape[axis] // H, axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


def _layer_weights(cell: str, p: dict, H: int) -> tuple[str, dict, dict]:
    """(operator, its W/R/B (/P) arrays with the direction axis, its attributes) for one layer."""
    Wx, Wh, b = p["Wx"].T, p["Wh"].T, p["b"]  # (G*H, D), (G*H, H), (G*H,)
    zeros = np.zeros_like(b)
    if cell.startswith("lstm"):
        order = [0, 3, 1, 2]  # rnncli [i, f, g, o] -> ONNX [i, o, f, c]
        arrays = {"W": _blocks(Wx, H, order), "R": _blocks(Wh, H, order),
                  "B": np.concatenate([_blocks(b, H, order), zeros])}
        if cell == "lstm-peephole":
            arrays["P"] = np.concatenate([p["peep"][0], p["peep"][2], p["peep"][1]])  # [p_i, p_o, p_f]
        return "LSTM", arrays, {}
    if cell == "gru-cudnn":
        order = [1, 0, 2]  # [r, z, n] -> [z, r, h]
        rb = np.concatenate([np.zeros(2 * H, b.dtype), p["bhn"]])  # R's bias: only b_hn, inside the reset
        arrays = {"W": _blocks(Wx, H, order), "R": _blocks(Wh, H, order),
                  "B": np.concatenate([_blocks(b, H, order), rb])}
        return "GRU", arrays, {"linear_before_reset": 1}
    if cell == "gru":
        sign = np.concatenate([-np.ones(H), np.ones(2 * H)]).astype(b.dtype)  # z = 1 - Γ_u
        arrays = {"W": Wx * sign[:, None], "R": Wh * sign[:, None], "B": np.concatenate([b * sign, zeros])}
        return "GRU", arrays, {"linear_before_reset": 0}
    return "RNN", {"W": Wx, "R": Wh, "B": np.concatenate([b, zeros])}, \
        {"activations": ["Relu" if cell == "rnn-relu" else "Tanh"]}


def to_onnx(ck: Checkpoint):
    """The model as an onnx.ModelProto."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise UsageError("exporting to ONNX needs the onnx package: pip install 'rnncli[export]'") from None
    m = ck.model
    if m.cell in NOT_IN_ONNX:
        raise UsageError(f"a {m.cell} model cannot be exported to ONNX: {NOT_IN_ONNX[m.cell]}")
    H, L, V = m.hidden, m.layers, m.vocab_size
    lstm = m.cell.startswith("lstm")
    p = ck.params
    inits = [numpy_helper.from_array(np.asarray(p["embed.weight"], np.float32), "E"),
             numpy_helper.from_array(np.ascontiguousarray((p["embed.weight"].T if m.tie_weights else p["output.W"]),
                                                          np.float32), "Wy"),
             numpy_helper.from_array(np.asarray(p["output.b"], np.float32), "by"),
             numpy_helper.from_array(np.array([1], np.int64), "axis1")]
    nodes = [helper.make_node("Gather", ["E", "tokens"], ["x0"], axis=0)]
    finals_h, finals_c = [], []
    x = "x0"
    for layer in range(L):
        lp = {k[len(f"layers.{layer}."):]: v for k, v in p.items() if k.startswith(f"layers.{layer}.")}
        op, arrays, attrs = _layer_weights(m.cell, lp, H)
        names = {}
        for key, value in arrays.items():
            names[key] = f"{key}{layer}"
            inits.append(numpy_helper.from_array(np.asarray(value, np.float32)[None], names[key]))  # direction axis
        nodes.append(helper.make_node("Gather", ["h0", f"layer{layer}"], [f"h0_{layer}"], axis=0))
        inits.append(numpy_helper.from_array(np.array([layer], np.int64), f"layer{layer}"))
        inputs = [x, names["W"], names["R"], names["B"], "", f"h0_{layer}"]
        outputs = [f"y{layer}", f"hT{layer}"]
        if lstm:
            nodes.append(helper.make_node("Gather", ["c0", f"layer{layer}"], [f"c0_{layer}"], axis=0))
            inputs += [f"c0_{layer}", names.get("P", "")]
            outputs.append(f"cT{layer}")
            finals_c.append(f"cT{layer}")
        while inputs[-1] == "":  # optional inputs left out at the end
            inputs.pop()
        nodes.append(helper.make_node(op, inputs, outputs, hidden_size=H, **attrs))
        # Y is (T, directions, B, H): the next layer reads (T, B, H)
        nodes.append(helper.make_node("Squeeze", [f"y{layer}", "axis1"], [f"x{layer + 1}"]))
        finals_h.append(f"hT{layer}")
        x = f"x{layer + 1}"
    nodes += [helper.make_node("MatMul", [x, "Wy"], ["logits0"]),
              helper.make_node("Add", ["logits0", "by"], ["logits"]),
              helper.make_node("LogSoftmax", ["logits"], ["logprobs"], axis=-1),
              helper.make_node("Concat", finals_h, ["hT"], axis=0)]
    state_inputs = [helper.make_tensor_value_info("h0", TensorProto.FLOAT, [L, "B", H])]
    state_outputs = [helper.make_tensor_value_info("hT", TensorProto.FLOAT, [L, "B", H])]
    if lstm:
        nodes.append(helper.make_node("Concat", finals_c, ["cT"], axis=0))
        state_inputs.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, [L, "B", H]))
        state_outputs.append(helper.make_tensor_value_info("cT", TensorProto.FLOAT, [L, "B", H]))
    graph = helper.make_graph(
        nodes, f"rnncli-{m.cell}-{L}x{H}",
        [helper.make_tensor_value_info("tokens", TensorProto.INT64, ["T", "B"]), *state_inputs],
        [helper.make_tensor_value_info("logprobs", TensorProto.FLOAT, ["T", "B", V]), *state_outputs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnncli")
    onnx.checker.check_model(model)
    return model
