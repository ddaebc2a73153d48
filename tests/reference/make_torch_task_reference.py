"""Write PyTorch reference results for the task models: `python tests/reference/make_torch_task_reference.py`.

Needs torch (`pip install torch==2.13.0`). For each cell PyTorch has a module for (lstm, gru-cudnn,
rnn, rnn-relu), float64, rnncli's weights copied into:
  - tag: nn.Embedding -> nn.LSTM/GRU/RNN(num_layers=2, bidirectional=True) -> nn.Linear at every
    position -> cross-entropy, some targets ignored (-1);
  - classify: the same stack -> nn.Linear over [h_n forward; h_n reverse] of the top layer;
  - translate: a bidirectional encoder whose final states, both directions summed per layer, start
    a 2-layer decoder (its own embedding) -> nn.Linear -> cross-entropy, padded targets ignored.
Inputs, loss and every gradient go to tests/reference/task-<task>-<cell>.npz under rnncli's
names; tests/test_parity.py compares rnncli's task models against them (no torch needed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent))

from rnncli.config import ModelConfig  # noqa: E402
from rnncli.tasks import build_model  # noqa: E402

T, B, V, D, H, L, C, T_OUT = 5, 3, 11, 4, 6, 2, 3, 4
CELLS = ("lstm", "gru-cudnn", "rnn", "rnn-relu")
TASKS = ("tag", "classify", "translate")


def config(task: str, cell: str) -> ModelConfig:
    return ModelConfig(cell=cell, vocab_size=V, embed=D, hidden=H, layers=L, task=task, bidirectional=True,
                       labels=[f"L{i}" for i in range(C)] if task != "translate" else [])


def make_inputs(task: str, cell: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    model = build_model(config(task, cell))
    params = {k: rng.normal(0, 0.4, v.shape) for k, v in model.init_params(rng, np.float64).items()}
    inputs = rng.integers(0, V, (T, B))
    data = {"inputs": inputs}
    if task == "tag":
        targets = rng.integers(0, C, (T, B))
        targets[2, 1] = -1
        data["targets"] = targets
    elif task == "classify":
        data["targets"] = rng.integers(0, C, B)
    else:
        targets = rng.integers(2, V, (T_OUT, B))
        targets[2:, 0] = -1
        data["targets"] = targets
        data["decoder_inputs"] = np.vstack([np.ones((1, B), np.int64), np.maximum(targets[:-1], 1)])
    return params, data


def module(cell: str, Din: int, bidirectional: bool):
    kind = {"lstm": torch.nn.LSTM, "gru-cudnn": torch.nn.GRU}.get(cell, torch.nn.RNN)
    extra = {"nonlinearity": "relu" if cell == "rnn-relu" else "tanh"} if kind is torch.nn.RNN else {}
    return kind(Din, H, num_layers=L, bidirectional=bidirectional, dtype=torch.float64, **extra)


def torch_weights(cell: str, tp: dict, prefix: str, directions: int) -> dict:
    """rnncli's layers.{l}[.reverse].* as the module's weight_ih_l{l}[_reverse], ... (bias_hh = 0,
    but for nn.GRU's b_hn, rnncli's bhn)."""
    weights = {}
    for level in range(L):
        for d in range(directions):
            ours = f"{prefix}layers.{level}." + ("reverse." if d else "")
            theirs = f"_l{level}" + ("_reverse" if d else "")
            b = tp[ours + "b"]
            bias_hh = torch.zeros_like(b)
            if cell == "gru-cudnn":
                bias_hh = torch.cat([torch.zeros(2 * H, dtype=b.dtype), tp[ours + "bhn"]])
            weights.update({"weight_ih" + theirs: tp[ours + "Wx"].T, "weight_hh" + theirs: tp[ours + "Wh"].T,
                            "bias_ih" + theirs: b, "bias_hh" + theirs: bias_hh})
    return weights


def run_torch(task: str, cell: str, params: dict, data: dict) -> dict:
    tp = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
    x = tp["embed.weight"][torch.tensor(data["inputs"])]
    enc = module(cell, D, True)
    top, final = torch.func.functional_call(enc, torch_weights(cell, tp, "", 2), (x,))
    ce = torch.nn.functional.cross_entropy
    if task == "tag":
        logits = top.reshape(T * B, 2 * H) @ tp["output.W"] + tp["output.b"]
        loss = ce(logits, torch.tensor(data["targets"].reshape(-1)), ignore_index=-1)
    elif task == "classify":
        h_n = final[0] if cell == "lstm" else final  # (L * 2, B, H)
        feats = torch.cat([h_n[-2], h_n[-1]], dim=1)
        loss = ce(feats @ tp["output.W"] + tp["output.b"], torch.tensor(data["targets"]))
    else:
        def per_layer(s):  # (L * 2, B, H) -> (L, B, H): both directions summed
            return s.reshape(L, 2, B, H).sum(1)

        state = (per_layer(final[0]), per_layer(final[1])) if cell == "lstm" else per_layer(final)
        dec = module(cell, D, False)
        y = tp["decoder.embed.weight"][torch.tensor(data["decoder_inputs"])]
        out, _ = torch.func.functional_call(dec, torch_weights(cell, tp, "decoder.", 1), (y, state))
        logits = out.reshape(-1, H) @ tp["decoder.output.W"] + tp["decoder.output.b"]
        loss = ce(logits, torch.tensor(data["targets"].reshape(-1)), ignore_index=-1)
    loss.backward()
    return {"loss": np.array(loss.item()), **{f"grad.{k}": v.grad.numpy() for k, v in tp.items()}}


def main() -> None:
    torch.set_num_threads(1)
    for task in TASKS:
        for cell in CELLS:
            params, data = make_inputs(task, cell)
            ref = run_torch(task, cell, params, data)
            np.savez(HERE / f"task-{task}-{cell}.npz", **{f"param.{k}": v for k, v in params.items()}, **data, **ref)
            print(f"{task} {cell}: loss {float(ref['loss']):.12f}")


if __name__ == "__main__":
    main()
