"""Large vocabularies (#35): the adaptive softmax against rnncli's full softmax and PyTorch's
nn.LSTM + nn.AdaptiveLogSoftmaxWithLoss, on a Zipf-distributed token stream the bench draws.

An LSTM 2 x 256 (embedding 256), batch 32 x 35, vocabularies of 50k, 250k and 1M words; cutoffs
those of rnncli's default (2000, 10000, 50000 below V), div value 4, the head with a bias, Adam,
clipping at 5, 2 threads. Training step (forward, backward, update) and scoring (each target's
log-probability) in tokens/s, the fastest call of several, the tools alternating over rounds.
The full softmax is run where the training memory check (training/request.py) lets `rnncli
train` run it, and reported as refused elsewhere. Writes bench/results/adaptive.json.

    python bench/adaptive.py [--vocabs 50000,250000,1000000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import machine, torch_available, write_results

from rnncli.config import ModelConfig, TrainConfig
from rnncli.models.adaptive import default_cutoffs
from rnncli.models.model import Model
from rnncli.training.optim import Optimizer

LAYERS, HIDDEN, EMBED, BATCH, SEQ, DIV = 2, 256, 256, 32, 35, 4.0
ZIPF = 1.0  # p(rank r) ~ 1 / r^ZIPF, as word frequencies roughly go


def zipf_stream(V: int, n: int, seed: int = 0) -> np.ndarray:
    """n token ids drawn by Zipf's law over V ranks (id = rank: the frequency order a tokenizer gives)."""
    p = 1.0 / np.arange(1, V + 1) ** ZIPF
    return np.random.default_rng(seed).choice(V, size=n, p=p / p.sum()).astype(np.int64)


def fastest(fn, calls: int) -> float:
    fn()  # warm-up (and compilation)
    best = 1e9
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


class Ours:
    def __init__(self, V: int, softmax: str, stream: np.ndarray):
        self.config = ModelConfig(vocab_size=V, embed=EMBED, hidden=HIDDEN, layers=LAYERS, softmax=softmax,
                                  cutoffs=default_cutoffs(V) if softmax == "adaptive" else [], div_value=DIV)
        self.model = Model(self.config)
        self.params = self.model.init_params(np.random.default_rng(0))
        self.optimizer = Optimizer("adam", self.params, 2e-3, clip=5.0)
        chunk = stream[: BATCH * (SEQ + 1)].reshape(BATCH, SEQ + 1).T
        self.inputs, self.targets = np.ascontiguousarray(chunk[:-1]), np.ascontiguousarray(chunk[1:])
        self.state = self.model.initial_state(BATCH)

    def train_step(self) -> None:
        _, _, cache = self.model.forward(self.params, self.inputs, self.targets, self.state)
        self.optimizer.step(self.params, self.model.backward(self.params, cache))

    def score(self) -> None:
        self.model.logprobs(self.params, self.inputs, self.targets, self.state)


class Theirs:
    def __init__(self, V: int, stream: np.ndarray):
        import torch

        torch.manual_seed(0)
        self.torch = torch
        self.embed = torch.nn.Embedding(V, EMBED)
        self.rnn = torch.nn.LSTM(EMBED, HIDDEN, num_layers=LAYERS)
        self.head = torch.nn.AdaptiveLogSoftmaxWithLoss(HIDDEN, V, default_cutoffs(V), div_value=DIV, head_bias=True)
        self.params = [*self.embed.parameters(), *self.rnn.parameters(), *self.head.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=2e-3)
        chunk = torch.from_numpy(stream[: BATCH * (SEQ + 1)].reshape(BATCH, SEQ + 1).T.copy())
        self.inputs, self.targets = chunk[:-1], chunk[1:].reshape(-1)

    def _top(self):
        y, _ = self.rnn(self.embed(self.inputs))
        return y.reshape(-1, HIDDEN)

    def train_step(self) -> None:
        loss = self.head(self._top(), self.targets).loss
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()

    def score(self) -> None:
        with self.torch.no_grad():
            self.head(self._top(), self.targets)


def full_softmax_refusal(V: int) -> str | None:
    """Why `rnncli train` would refuse the full softmax at V (its memory check), or None."""
    from rnncli.errors import UsageError
    from rnncli.training.request import check_memory

    try:
        check_memory(ModelConfig(vocab_size=V, embed=EMBED, hidden=HIDDEN, layers=LAYERS),
                     TrainConfig(batch_size=BATCH, seq_len=SEQ))
    except UsageError as e:
        return str(e)
    return None


def measure(V: int, rounds: int, vs_torch: bool) -> dict:
    stream = zipf_stream(V, BATCH * (SEQ + 1))
    tools = {"adaptive": Ours(V, "adaptive", stream)}
    refusal = full_softmax_refusal(V)
    if refusal is None:
        tools["full"] = Ours(V, "full", stream)
    if vs_torch:
        tools["torch_adaptive"] = Theirs(V, stream)
    tokens = BATCH * SEQ
    best = {name: {"train": 1e9, "score": 1e9} for name in tools}
    for _ in range(rounds):  # the tools alternate, so that the host's drift hits all alike
        for name, tool in tools.items():
            calls = 1 if name == "full" else 8
            best[name]["train"] = min(best[name]["train"], fastest(tool.train_step, calls))
            best[name]["score"] = min(best[name]["score"], fastest(tool.score, calls))
    row = {"vocab": V, "cutoffs": default_cutoffs(V),
           "tokens_per_s": {name: {k: round(tokens / s) for k, s in b.items()} for name, b in best.items()}}
    if refusal:
        row["full_refused"] = refusal
    for work in ("train", "score"):
        a = best["adaptive"][work]
        if "full" in best:
            row[f"{work}_vs_full"] = round(best["full"][work] / a, 2)
        if "torch_adaptive" in best:
            row[f"{work}_vs_torch_adaptive"] = round(best["torch_adaptive"][work] / a, 2)
    print(row, flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocabs", default="50000,250000,1000000")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    vs_torch = torch_available()
    rows = [measure(int(v), args.rounds, vs_torch) for v in args.vocabs.split(",")]
    write_results("adaptive", {"machine": machine(), "model": f"lstm {LAYERS} x {HIDDEN}, embedding {EMBED}",
                                    "batch": f"{BATCH} x {SEQ}", "div_value": DIV, "zipf": ZIPF, "rows": rows})


if __name__ == "__main__":
    main()
