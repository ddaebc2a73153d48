"""Write PyTorch's adaptive softmax reference: `python tests/reference/make_torch_adaptive_reference.py`.

Needs torch (`pip install torch==2.13.0`). An nn.AdaptiveLogSoftmaxWithLoss (8 inputs, 23 classes,
cutoffs [5, 12], div_value 2, head_bias=True) in float64 with random weights: its `log_prob` of 7
rows, the mean loss of their targets and the gradient of that loss w.r.t. every weight and the
input go to tests/reference/adaptive.npz, under rnncli's parameter names (matrices transposed, as
rnncli holds them); tests/test_adaptive.py compares models/adaptive.py against them (no torch
needed there).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
H, V, CUTOFFS, DIV, ROWS = 8, 23, [5, 12], 2.0, 7


def main() -> None:
    torch.manual_seed(0)
    layer = torch.nn.AdaptiveLogSoftmaxWithLoss(H, V, CUTOFFS, div_value=DIV, head_bias=True).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.5)
    x = torch.randn(ROWS, H, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 4, 5, 11, 12, 22])  # the shortlist's edges and each cluster's
    log_prob = layer.log_prob(x)
    loss = layer(x, targets).loss
    loss.backward()
    out = {"top": x.detach().numpy(), "targets": targets.numpy(), "log_prob": log_prob.detach().numpy(),
           "loss": np.array(loss.item()), "dtop": x.grad.numpy(), "cutoffs": np.array(CUTOFFS),
           "div_value": np.array(DIV)}
    names = {"output.head.W": layer.head.weight, "output.head.b": layer.head.bias}
    for i, tail in enumerate(layer.tail):
        names[f"output.tail.{i}.proj.W"] = tail[0].weight
        names[f"output.tail.{i}.out.W"] = tail[1].weight
    for ours, p in names.items():
        value, grad = p.detach().numpy(), p.grad.numpy()
        out[ours] = value.T if ours.endswith(".W") else value
        out["grad." + ours] = grad.T if ours.endswith(".W") else grad
    np.savez(HERE / "adaptive.npz", **out)
    print(f"wrote {HERE / 'adaptive.npz'}")


if __name__ == "__main__":
    main()
