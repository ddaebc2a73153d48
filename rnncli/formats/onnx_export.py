"""An rnncli model as an ONNX graph, in the operators ONNX defines for recurrent layers.

    tokens (T, B) int64 -> Gather(E) -> [LSTM | GRU | RNN] x L -> MatMul(W_y) + b_y -> LogSoftmax
    inputs:  tokens, h0 (L, B, H) [, c0 (L, B, H) for the lstm]
    outputs: logprobs (T, B, V) [log ŷ<t> after each token], hT (L, B, H) [, cT (L, B, H)]

so a user can step it: feed a chunk with the states the previous chunk returned. Bidirectional
layers are the operators' `direction="bidirectional"`; the task models' graphs are in `to_onnx`. Each
cell maps its own layer to its ONNX operator (`Cell.onnx_layer`: the gates reordered to ONNX's
orders) or says why it has none (`Cell.not_in_onnx`: gru-simple), and is then refused. Needs the
`onnx` package (`pip install 'rnncli[export]'`).
"""

from __future__ import annotations

import numpy as np

from rnncli.errors import UsageError
from rnncli.formats.checkpoint import Checkpoint
from rnncli.kernels.cells import get_cell
from rnncli.tasks import get_task

OPSET = 17


def _layer_weights(cell: str, p: dict, H: int) -> tuple[str, dict, dict]:
    """(operator, its W/R/B (/P) arrays, its attributes) for one layer: the cell's own mapping
    (Cell.onnx_layer in kernels/)."""
    return get_cell(cell).onnx_layer(p, H)


class _Graph:
    """Nodes and initializers being built; `add` names a constant."""

    def __init__(self, helper, numpy_helper):
        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes, self.inits = [], []

    def const(self, name: str, value: np.ndarray) -> str:
        self.inits.append(self.numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], **attrs) -> str:
        self.nodes.append(self.helper.make_node(op, inputs, outputs, **attrs))
        return outputs[0]


def _stack(g: _Graph, m, p: dict, prefix: str, x: str, directions: int, h0: list[str] | None,
           c0: list[str] | None) -> tuple[str, list[str], list[str]]:
    """The recurrent layers of a stack (rnncli parameters under `prefix`) over x (T, B, D): returns
    the top's output (T, B, directions*H) and each level's final h and c (directions, B, H).
    h0/c0: each level's initial states (directions, B, H), or None for zeros."""
    H, lstm = m.hidden, m.cell.startswith("lstm")
    finals_h, finals_c = [], []
    for level in range(m.layers):
        per_direction = []
        for d in range(directions):
            q = f"{prefix}layers.{level}." + ("reverse." if d else "")
            lp = {k[len(q):]: v for k, v in p.items() if k.startswith(q) and "." not in k[len(q):]}
            per_direction.append(_layer_weights(m.cell, lp, H))
        op, _, attrs = per_direction[0]
        if "activations" in attrs:  # one per direction
            attrs = {**attrs, "activations": attrs["activations"] * directions}
        tag = f"{prefix.rstrip('.') or 'enc'}{level}"
        names = {key: g.const(f"{key}_{tag}", np.stack([np.asarray(a[key], np.float32) for _, a, _ in per_direction]))
                 for key in per_direction[0][1]}
        inputs = [x, names["W"], names["R"], names["B"], "", h0[level] if h0 else ""]
        outputs = [f"y_{tag}", f"hT_{tag}"]
        if lstm:
            inputs += [c0[level] if c0 else "", names.get("P", "")]
            outputs.append(f"cT_{tag}")
            finals_c.append(f"cT_{tag}")
        while inputs[-1] == "":  # optional inputs left out at the end
            inputs.pop()
        direction = "bidirectional" if directions == 2 else "forward"
        g.node(op, inputs, outputs, hidden_size=H, direction=direction, **attrs)
        finals_h.append(f"hT_{tag}")
        # Y is (T, directions, B, H): the next level reads (T, B, directions*H), forward then reversed
        y = g.node("Transpose", [f"y_{tag}"], [f"yt_{tag}"], perm=[0, 2, 1, 3])
        x = g.node("Reshape", [y, "keep2"], [f"x_{tag}"])
    return x, finals_h, finals_c


class _TaskGraph:
    """The forms of graph the tasks build (each task's `onnx_graph` picks its own): the embedding,
    the stack and a log-softmax head, wired for a language model, a label model or a translator.
    Each returns the graph's (inputs, outputs)."""

    def __init__(self, g: _Graph, m, p: dict, helper, TensorProto):
        self.g, self.m, self.p, self.helper, self.TensorProto = g, m, p, helper, TensorProto
        self.H, self.L, self.V = m.hidden, m.layers, m.vocab_size
        self.lstm = m.cell.startswith("lstm")
        self.directions = 2 if m.bidirectional else 1
        g.const("keep2", np.array([0, 0, -1], np.int64))
        g.const("E", np.asarray(p["embed.weight"], np.float32))

    def tensor(self, name, dtype, shape):
        return self.helper.make_tensor_value_info(name, dtype, shape)

    def log_softmax_of(self, x: str, W: np.ndarray, b: np.ndarray) -> str:
        g = self.g
        g.const("Wy", np.ascontiguousarray(W, np.float32))
        g.const("by", np.asarray(b, np.float32))
        logits = g.node("Add", [g.node("MatMul", [x, "Wy"], ["logits0"]), "by"], ["logits"])
        return g.node("LogSoftmax", [logits], ["logprobs"], axis=-1)

    def adaptive_log_softmax_of(self, x: str) -> str:
        """An adaptive softmax's whole log-distribution (models/adaptive.py) from ONNX's own operators:
        the head's LogSoftmax, its shortlist sliced out, each tail's LogSoftmax plus its cluster's
        entry of the head, concatenated in vocabulary order."""
        from rnncli.models.adaptive import AdaptiveHead

        g, m, p = self.g, self.m, self.p
        head = AdaptiveHead(m.hidden, m.vocab_size, m.cutoffs, m.div_value)
        g.const("Wy", np.asarray(p["output.head.W"], np.float32))
        g.const("by", np.asarray(p["output.head.b"], np.float32))
        logits = g.node("Add", [g.node("MatMul", [x, "Wy"], ["head0"]), "by"], ["head_logits"])
        head_lp = g.node("LogSoftmax", [logits], ["head_logprobs"], axis=-1)
        last = g.const("last_axis", np.array([-1], np.int64))

        def entries(start: int, stop: int, name: str) -> str:
            return g.node("Slice", [head_lp, g.const(f"{name}_from", np.array([start], np.int64)),
                                    g.const(f"{name}_to", np.array([stop], np.int64)), last], [name])

        parts = [entries(0, head.shortlist, "shortlist")]
        for i in range(head.K):
            proj = g.node("MatMul", [x, g.const(f"P{i}", np.asarray(p[f"output.tail.{i}.proj.W"], np.float32))],
                          [f"tail{i}_projected"])
            tail = g.node("MatMul", [proj, g.const(f"O{i}", np.asarray(p[f"output.tail.{i}.out.W"], np.float32))],
                          [f"tail{i}_logits"])
            tail_lp = g.node("LogSoftmax", [tail], [f"tail{i}_logprobs"], axis=-1)
            entry = entries(head.shortlist + i, head.shortlist + i + 1, f"cluster{i}")
            parts.append(g.node("Add", [tail_lp, entry], [f"tail{i}_words"]))
        return g.node("Concat", parts, ["logprobs"], axis=-1)

    def language_model(self) -> tuple[list, list]:
        """tokens (T, B), h0 [, c0] (L, B, H) -> logprobs (T, B, V), hT [, cT] (L, B, H)."""
        g, m, p, L, H, V, T = self.g, self.m, self.p, self.L, self.H, self.V, self.TensorProto
        g.node("Gather", ["E", "tokens"], ["x0"], axis=0)
        h0 = [g.node("Slice", ["h0", g.const(f"from{i}", np.array([i], np.int64)),
                               g.const(f"to{i}", np.array([i + 1], np.int64))], [f"h0_{i}"]) for i in range(L)]
        c0 = [g.node("Slice", ["c0", f"from{i}", f"to{i}"], [f"c0_{i}"]) for i in range(L)] if self.lstm else None
        top, finals_h, finals_c = _stack(g, m, p, "", "x0", 1, h0, c0)
        if m.softmax == "adaptive":
            self.adaptive_log_softmax_of(top)
        else:
            self.log_softmax_of(top, p["embed.weight"].T if m.tie_weights else p["output.W"], p["output.b"])
        g.node("Concat", finals_h, ["hT"], axis=0)
        inputs = [self.tensor("tokens", T.INT64, ["T", "B"]), self.tensor("h0", T.FLOAT, [L, "B", H])]
        outputs = [self.tensor("logprobs", T.FLOAT, ["T", "B", V]), self.tensor("hT", T.FLOAT, [L, "B", H])]
        if self.lstm:
            g.node("Concat", finals_c, ["cT"], axis=0)
            inputs.append(self.tensor("c0", T.FLOAT, [L, "B", H]))
            outputs.append(self.tensor("cT", T.FLOAT, [L, "B", H]))
        return inputs, outputs

    def label_model(self, from_final_states: bool) -> tuple[list, list]:
        """tokens (T, B) -> logprobs (B, C) from the top level's final states (forward and reversed
        side by side), or (T, B, C) from the stack's output at every position."""
        g, m, p, T = self.g, self.m, self.p, self.TensorProto
        g.node("Gather", ["E", "tokens"], ["x0"], axis=0)
        top, finals_h, _ = _stack(g, m, p, "", "x0", self.directions, None, None)
        C = len(m.labels)
        if from_final_states:  # the top level's final states (directions, B, H) -> (B, directions*H)
            t = g.node("Transpose", [finals_h[-1]], ["final_t"], perm=[1, 0, 2])
            top = g.node("Reshape", [t, g.const("rows", np.array([0, -1], np.int64))], ["features"])
        self.log_softmax_of(top, p["output.W"], p["output.b"])
        shape = ["B", C] if from_final_states else ["T", "B", C]
        return [self.tensor("tokens", T.INT64, ["T", "B"])], [self.tensor("logprobs", T.FLOAT, shape)]

    def translator(self) -> tuple[list, list]:
        """source (T, B) and target_in (T', B) -> logprobs (T', B, V); each encoder level's final
        states (both directions summed) start the decoder's."""
        g, m, p, T = self.g, self.m, self.p, self.TensorProto
        g.node("Gather", ["E", "source"], ["x0"], axis=0)
        _, finals_h, finals_c = _stack(g, m, p, "", "x0", self.directions, None, None)
        axis0 = g.const("axis0", np.array([0], np.int64))
        h0 = [g.node("ReduceSum", [h, axis0], [f"dec_h0_{i}"], keepdims=1) for i, h in enumerate(finals_h)]
        c0 = [g.node("ReduceSum", [c, axis0], [f"dec_c0_{i}"], keepdims=1) for i, c in enumerate(finals_c)] \
            if self.lstm else None
        g.const("E_dec", np.asarray(p["decoder.embed.weight"], np.float32))
        g.node("Gather", ["E_dec", "target_in"], ["y0"], axis=0)
        top, _, _ = _stack(g, m, p, "decoder.", "y0", 1, h0, c0)
        self.log_softmax_of(top, p["decoder.output.W"], p["decoder.output.b"])
        inputs = [self.tensor("source", T.INT64, ["T", "B"]), self.tensor("target_in", T.INT64, ["U", "B"])]
        return inputs, [self.tensor("logprobs", T.FLOAT, ["U", "B", self.V])]


def to_onnx(ck: Checkpoint):
    """The model as an onnx.ModelProto. A language model:
        tokens (T, B), h0 [, c0] (L, B, H) -> logprobs (T, B, V), hT [, cT] (L, B, H)
    A classifier: tokens (T, B) -> logprobs (B, C), from the top level's final states (forward and
    reversed side by side). A tagger: tokens (T, B) -> logprobs (T, B, C). A translator: source
    (T, B) and target_in (T', B) (<EOS> then the target so far) -> logprobs (T', B, V) of each next
    target token; each encoder level's final states (both directions summed) start the decoder's."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        raise UsageError("exporting to ONNX needs the onnx package: pip install 'rnncli[export]'") from None
    m = ck.model
    if get_cell(m.cell).not_in_onnx:
        raise UsageError(f"a {m.cell} model cannot be exported to ONNX: {get_cell(m.cell).not_in_onnx}")
    g = _Graph(helper, numpy_helper)
    inputs, outputs = get_task(m.task).onnx_graph(_TaskGraph(g, m, ck.params, helper, TensorProto))
    L, H = m.layers, m.hidden
    graph = helper.make_graph(g.nodes, f"rnncli-{m.task}-{m.cell}-{L}x{H}", inputs, outputs, g.inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="rnncli")
    onnx.checker.check_model(model)
    return model
