"""Shared helpers for the benchmarks: configurations, timing, FLOP counts and the PyTorch
equivalents (PyTorch is a bench extra only: `make torch`)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rnncli.config import ModelConfig  # noqa: E402
from rnncli.kernels.cells import get_cell  # noqa: E402
from rnncli.models.model import Model  # noqa: E402
from rnncli.training.optim import Optimizer  # noqa: E402

CONFIGS = {
    "small": {"layers": 1, "hidden": 128, "embed": 64, "batch": 32, "seq": 64},
    "char-rnn": {"layers": 2, "hidden": 512, "embed": 64, "batch": 32, "seq": 100},
}
VOCAB = 65


def bench_parser(doc: str) -> argparse.ArgumentParser:
    """The options every side-by-side benchmark takes: --vs-torch and --repeats."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--vs-torch", action="store_true", help="run the same work in PyTorch, interleaved")
    parser.add_argument("--repeats", type=int, default=5, help="samples per figure (the median is kept)")
    return parser


def time_per_call(fn, min_seconds: float = 0.25) -> float:
    """Seconds per call of fn: one warm-up call, then as many calls as fill min_seconds (at least
    one). A sample lasting a quarter of a second is far less at the mercy of a passing neighbour
    on this shared host than one call of a few milliseconds."""
    fn()
    calls, start = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return elapsed / calls


def train_flops_per_token(cell: str, cfg: dict, V: int = VOCAB) -> float:
    """Matrix-product FLOPs of one training step per token: forward, and backward's two products
    per forward product (weight and input gradients)."""
    GH = get_cell(cell).gates * cfg["hidden"]
    total = 0.0
    for layer in range(cfg["layers"]):
        D = cfg["embed"] if layer == 0 else cfg["hidden"]
        total += 2 * GH * (D + cfg["hidden"])
    total += 2 * cfg["hidden"] * V
    return 3 * total


def forward_flops_per_token(cell: str, cfg: dict, V: int = VOCAB) -> float:
    return train_flops_per_token(cell, cfg, V) / 3


class RnncliModel:
    def __init__(self, cell: str, cfg: dict, V: int = VOCAB, seed: int = 0):
        from rnncli.execution.allocator import keep_freed_memory

        keep_freed_memory()  # as `rnncli train` and `score` do (it helps PyTorch in this process as much)
        self.config = ModelConfig(cell=cell, vocab_size=V, embed=cfg["embed"], hidden=cfg["hidden"],
                                  layers=cfg["layers"])
        self.rng = np.random.default_rng(seed)
        self.model = Model(self.config)
        self.params = self.model.init_params(self.rng)
        self.optimizer = Optimizer("adam", self.params, 2e-3, clip=5.0)
        B, T = cfg["batch"], cfg["seq"]
        self.inputs = self.rng.integers(0, V, (T, B))
        self.targets = self.rng.integers(0, V, (T, B))
        self.state = self.model.initial_state(B)
        self.tokens = B * T

    def train_step(self) -> None:
        loss, _, cache = self.model.forward(self.params, self.inputs, self.targets, self.state)
        self.optimizer.step(self.params, self.model.backward(self.params, cache))

    def score(self) -> None:
        self.model.logprobs(self.params, self.inputs, self.targets, self.state)

    def generate(self, n: int, temperature: float = 0.8, batch: int = 1) -> None:
        """n tokens for each of `batch` samples, generated side by side."""
        from rnncli.execution.steps import Steps

        steps = Steps(self.model, self.params, batch, n)  # as `rnncli sample -n` runs them
        h, c = self.model.step_state(self.model.initial_state(batch))
        out = np.empty((batch, n), np.int64)
        lps = np.empty((batch, n))
        settings = (np.full(batch, temperature), np.zeros(batch, np.int64), np.ones(batch))  # temperature, top-k, top-p
        steps.generate(h, c, np.ones((1, batch), np.int64), self.rng.random((batch, n)), *settings, False,
                       np.zeros(batch, np.bool_), out, lps)


class TorchModel:
    """The same model in PyTorch: nn.Embedding -> nn.RNN/GRU/LSTM -> nn.Linear, cross-entropy, Adam."""

    def __init__(self, cell: str, cfg: dict, V: int = VOCAB, seed: int = 0):
        import torch

        torch.manual_seed(seed)
        self.torch = torch
        modules = {"rnn": torch.nn.RNN, "rnn-relu": torch.nn.RNN, "gru": torch.nn.GRU, "gru-simple": torch.nn.GRU,
                   "gru-cudnn": torch.nn.GRU, "lstm": torch.nn.LSTM, "lstm-peephole": torch.nn.LSTM}
        kind = modules[cell]
        self.embed = torch.nn.Embedding(V, cfg["embed"])
        self.rnn = kind(cfg["embed"], cfg["hidden"], num_layers=cfg["layers"])
        self.out = torch.nn.Linear(cfg["hidden"], V)
        self.params = [*self.embed.parameters(), *self.rnn.parameters(), *self.out.parameters()]
        self.optimizer = torch.optim.Adam(self.params, lr=2e-3)
        B, T = cfg["batch"], cfg["seq"]
        g = torch.Generator().manual_seed(seed)
        self.inputs = torch.randint(0, V, (T, B), generator=g)
        self.targets = torch.randint(0, V, (T, B), generator=g)
        self.tokens = B * T
        self.V = V

    def _logits(self, inputs, state=None):
        y, state = self.rnn(self.embed(inputs), state)
        return self.out(y), state

    def train_step(self) -> None:
        torch = self.torch
        logits, _ = self._logits(self.inputs)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, self.V), self.targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 5.0)
        self.optimizer.step()

    def score(self) -> None:
        torch = self.torch
        with torch.no_grad():
            logits, _ = self._logits(self.inputs)
            torch.log_softmax(logits, dim=-1).gather(2, self.targets[..., None])

    def generate(self, n: int, temperature: float = 0.8) -> None:
        """The usual Python sampling loop at batch 1."""
        torch = self.torch
        with torch.no_grad():
            token = torch.tensor([[1]])
            state = None
            for _ in range(n):
                logits, state = self._logits(token, state)
                probs = torch.softmax(logits[0, 0] / temperature, dim=-1)
                token = torch.multinomial(probs, 1)[None]


def torch_available() -> bool:
    try:
        import torch

        torch.set_num_threads(2)
        return True
    except ImportError:
        return False


def sgemm_ceiling(size: int = 2048, samples: int = 5) -> float:
    """This machine's large float32 matrix-product rate, GFLOP/s: the best of `samples` quarter-second
    samples of a (size x size) @ (size x size) product through numpy's BLAS with its threads (the
    share every other figure is reported as)."""
    rng = np.random.default_rng(0)
    a, b = (rng.random((size, size), dtype=np.float32) for _ in range(2))
    return max(2 * size**3 / time_per_call(lambda: a @ b) for _ in range(samples)) / 1e9


def arithmetic_peak(samples: int = 5) -> float:
    """This machine's float32 arithmetic peak, GFLOP/s: both cores doing nothing but independent fused
    multiply-adds on 512-bit vectors (twelve chains each, more than the latency of one), through the
    vector intrinsics the engine's own products use (rnncli/kernels/packed.py). No product can go
    faster; the large sgemm above shows what a BLAS reaches of it."""
    import numba

    from rnncli.kernels.vectors import vector_fma, vector_load, vector_store

    @numba.njit(parallel=True)
    def spin(ones, out, reps):  # each thread's sums to out (parts, 16): nothing is optimised away
        for p in numba.prange(out.shape[0]):
            x = vector_load(ones[p], 0)
            w = np.float32(1e-7)
            a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = a8 = a9 = a10 = a11 = x
            for _ in range(reps):  # a += x * w, twelve independent chains
                a0, a1, a2, a3 = vector_fma(a0, x, w), vector_fma(a1, x, w), vector_fma(a2, x, w), vector_fma(a3, x, w)
                a4, a5, a6, a7 = vector_fma(a4, x, w), vector_fma(a5, x, w), vector_fma(a6, x, w), vector_fma(a7, x, w)
                a8, a9 = vector_fma(a8, x, w), vector_fma(a9, x, w)
                a10, a11 = vector_fma(a10, x, w), vector_fma(a11, x, w)
            for a in (a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11):
                a0 = vector_fma(a0, a, np.float32(1.0))
            vector_store(out[p], 0, a0)

    parts = min(2, os.cpu_count() or 1)
    ones, out = np.ones((parts, 16), np.float32), np.empty((parts, 16), np.float32)
    reps = 20_000_000
    spin(ones, out, 1000)
    flops = parts * reps * 12 * 16 * 2
    return max(flops / time_per_call(lambda: spin(ones, out, reps)) for _ in range(samples)) / 1e9


def read_bandwidth(nbytes: int, samples: int = 5) -> float:
    """Bytes per second at which both cores together read a float32 buffer of `nbytes` again and
    again (each core its half): the rate batch-1 generation can stream its weights at, whichever
    level of the memory hierarchy holds a buffer of that size here."""
    import numba

    @numba.njit(parallel=True, fastmath=True)
    def read(halves, reps):  # (parts, n): each thread sums its row `reps` times (a vectorised read)
        sums = np.zeros(halves.shape[0], np.float32)
        for p in numba.prange(halves.shape[0]):
            s = np.float32(0.0)
            for _ in range(reps):
                s += halves[p].sum()
            sums[p] = s
        return sums.sum()

    parts = min(2, os.cpu_count() or 1)
    halves = np.ones((parts, max(nbytes // 4 // parts, 16)), np.float32)
    reps = max(1, (64 << 20) // halves.nbytes)  # at least 64 MB per call: the threads' start-up is noise
    read(halves, reps)
    return max(reps * halves.nbytes / time_per_call(lambda: read(halves, reps)) for _ in range(samples))


def weight_bytes(model) -> int:
    """Bytes of the weights one generation step reads (every parameter but the embedding's unread rows)."""
    return sum(v.nbytes for k, v in model.params.items() if k != "embed.weight")


def machine() -> dict:
    import numba

    cpu = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"date": datetime.now(UTC).strftime("%Y-%m-%d"), "cpu": cpu, "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__, "numba": numba.__version__}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def write_results(name: str, payload: dict) -> Path:
    folder = ROOT / "bench" / "results"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
