"""Write PyTorch reference results for every cell: `python tests/reference/make_torch_reference.py`.

Needs torch (`pip install torch==2.13.0`). For each cell, a small 2-layer model (embedding ->
2 recurrent layers from a non-zero initial state -> linear -> mean cross-entropy) is run in float64
by PyTorch: `rnn`, `rnn-relu`, `gru-cudnn` and `lstm` through torch.nn.RNN / nn.GRU / nn.LSTM with
our weights copied in, `gru`, `gru-simple` and `lstm-peephole` through the same equations written with torch
autograd ops. The inputs, the top layer's outputs, the final states, the loss and every gradient go
to tests/reference/<cell>.npz under rnncli's parameter names; tests/test_parity.py compares the
Numba engine against these files (no torch needed), and against live PyTorch when it is installed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from rnncli.config import ModelConfig  # noqa: E402
from rnncli.kernels.cells import CELL_NAMES as CELLS  # noqa: E402
from rnncli.models.model import Model  # noqa: E402

T, B, V, D, H, L = 5, 3, 11, 4, 6, 2


def make_inputs(cell: str, seed: int = 0):
    cfg = ModelConfig(cell=cell, vocab_size=V, embed=D, hidden=H, layers=L)
    rng = np.random.default_rng(seed)
    params = {k: rng.normal(0, 0.4, v.shape) for k, v in Model(cfg).init_params(rng, np.float64).items()}
    inputs = rng.integers(0, V, (T, B))
    targets = rng.integers(0, V, (T, B))
    state0 = [tuple(rng.normal(0, 0.5, (B, H)) for _ in st) for st in Model(cfg).initial_state(B, np.float64)]
    return cfg, params, inputs, targets, state0


def _sig(x):
    return torch.sigmoid(x)


def torch_layer_equations(cell: str, p: dict, x, state):
    """The notes' equations with torch ops: x (T, B, D) -> hs (T, B, H), final state."""
    Wx, Wh, b = p["Wx"], p["Wh"], p["b"]
    h = state[0]
    c = state[1] if len(state) > 1 else None
    outs = []
    for t in range(x.shape[0]):
        xw = x[t] @ Wx + b
        if cell == "gru-simple":
            pre = xw + h @ Wh
            u, cand = _sig(pre[:, :H]), torch.tanh(pre[:, H:])
            h = u * cand + (1 - u) * h
        elif cell == "gru":
            ur = _sig(xw[:, : 2 * H] + h @ Wh[:, : 2 * H])
            u, r = ur[:, :H], ur[:, H:]
            cand = torch.tanh(xw[:, 2 * H :] + (r * h) @ Wh[:, 2 * H :])
            h = u * cand + (1 - u) * h
        elif cell == "lstm-peephole":
            pre = xw + h @ Wh
            peep = p["peep"]
            i = _sig(pre[:, :H] + peep[0] * c)
            f = _sig(pre[:, H : 2 * H] + peep[1] * c)
            g = torch.tanh(pre[:, 2 * H : 3 * H])
            c = i * g + f * c
            o = _sig(pre[:, 3 * H :] + peep[2] * c)
            h = o * torch.tanh(c)
        else:
            raise ValueError(cell)
        outs.append(h)
    return torch.stack(outs), ((h,) if c is None else (h, c))


def torch_layer_module(cell: str, p: dict, x, state):
    """torch.nn.RNN / nn.LSTM with rnncli's weights: weight_ih = Wx^T, weight_hh = Wh^T,
    bias_ih = b, bias_hh = 0 (its gradient equals b's)."""
    Din = x.shape[2]
    if cell == "lstm":
        module = torch.nn.LSTM(Din, H, dtype=torch.float64)
    elif cell == "gru-cudnn":
        module = torch.nn.GRU(Din, H, dtype=torch.float64)
    else:
        module = torch.nn.RNN(Din, H, nonlinearity="relu" if cell == "rnn-relu" else "tanh", dtype=torch.float64)
    # Call the module with our tensors as its parameters, so gradients flow back to them.
    bias_hh = torch.zeros_like(p["b"])
    if cell == "gru-cudnn":  # nn.GRU's b_hn is our bhn; its b_hr, b_hz add to b and stay zero
        bias_hh = torch.cat([torch.zeros(2 * H, dtype=p["b"].dtype), p["bhn"]])
    weights = {"weight_ih_l0": p["Wx"].T, "weight_hh_l0": p["Wh"].T, "bias_ih_l0": p["b"], "bias_hh_l0": bias_hh}
    out, final = torch.func.functional_call(
        module, weights, (x, (state[0][None], state[1][None]) if cell == "lstm" else state[0][None]))
    if cell == "lstm":
        return out, (final[0][0], final[1][0])
    return out, (final[0],)


def run_torch(cell: str, params: dict, inputs, targets, state0, dtype=torch.float64):
    tp = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in params.items()}
    ts0 = [tuple(torch.tensor(s, dtype=dtype, requires_grad=True) for s in st) for st in state0]
    x = tp["embed.weight"][torch.tensor(inputs)]
    finals = []
    layer_fn = torch_layer_module if cell in ("rnn", "rnn-relu", "gru-cudnn", "lstm") else torch_layer_equations
    for layer in range(L):
        lp = {k.split(".", 2)[2]: v for k, v in tp.items() if k.startswith(f"layers.{layer}.")}
        x, final = layer_fn(cell, lp, x, ts0[layer])
        finals.append(final)
    x.retain_grad()
    logits = x.reshape(T * B, H) @ tp["output.W"] + tp["output.b"]
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor(targets.reshape(-1)))
    loss.backward()
    out = {"loss": np.array(loss.item()), "top": x.detach().numpy()}
    for k, v in tp.items():
        out[f"grad.{k}"] = v.grad.numpy()
    for layer, final in enumerate(finals):
        for i, s in enumerate(final):
            out[f"final.{layer}.{i}"] = s.detach().numpy()
    for layer, st in enumerate(ts0):
        for i, s in enumerate(st):
            out[f"grad.state0.{layer}.{i}"] = s.grad.numpy()
    return out


def main() -> None:
    torch.set_num_threads(1)
    for cell in CELLS:
        cfg, params, inputs, targets, state0 = make_inputs(cell)
        ref = run_torch(cell, params, inputs, targets, state0)
        arrays = {f"param.{k}": v for k, v in params.items()}
        arrays.update(inputs=inputs, targets=targets, **ref)
        for layer, st in enumerate(state0):
            for i, s in enumerate(st):
                arrays[f"state0.{layer}.{i}"] = s
        np.savez(HERE / f"{cell}.npz", **arrays)
        print(f"{cell}: loss {float(ref['loss']):.12f}")


if __name__ == "__main__":
    main()
