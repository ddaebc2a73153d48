"""Quality at a fixed wall-clock budget: train on tiny-shakespeare (first 90%), report the
validation loss (nats/char) on the last 10% and the tokens seen; with --vs-torch, the same model,
optimizer, batching and budget in PyTorch (2 threads), run right after; with --defaults, also
`rnncli train tinyshakespeare.txt --max-time BUDGET` with every other option at its default.

Clock convention, both sides: the budget covers the training loop (rnncli's periodic validation on
a sample included, at most 3% of it); the final validation on the whole split comes after the
budget and is not counted.

    python bench/quality.py [--budget 300] [--cell lstm --layers 2 --hidden 512] [--batch 50 --seq 50]
                            [--schedule cooldown] [--vs-torch] [--defaults]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, torch_available, write_results

from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig
from rnncli.text.data import Corpus, split_validation
from rnncli.text.encoding import encode_corpus
from rnncli.text.tokenizers import fit_tokenizer
from rnncli.training.request import TrainRequest, new_run, prepare
from rnncli.training.train import train

CANDIDATES = [ROOT / "corpora" / "downloads" / "tinyshakespeare.txt",
              ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"]


def find_corpus() -> Path:
    for path in CANDIDATES:
        if path.exists():
            return path
    sys.exit("tinyshakespeare.txt not found: run `make corpora` first")


def run_rnncli(args, train_ids, val_ids, vocab_size, tokenizer) -> dict:
    model = ModelConfig(cell=args.cell, vocab_size=vocab_size, embed=args.embed, hidden=args.hidden,
                        layers=args.layers, dropout=args.dropout)
    cfg = TrainConfig(seq_len=args.seq, batch_size=args.batch, lr=args.lr, clip=5.0, epochs=10_000,
                      max_time=args.budget, val_fraction=0.0, seed=args.seed, schedule=args.schedule)
    run = new_run(model, cfg, TokenizerConfig(level="char"), tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(run, train_ids, val_ids, str(Path(tmp) / "q.npz"))
    return summary_of(summary)


def summary_of(summary: dict) -> dict:
    return {k: summary[k] for k in ("val_loss", "best_val_loss", "train_loss", "tokens_seen", "seconds", "eval_share",
                                     "val_sample_tokens")}


def run_defaults(args, corpus: Path) -> dict:
    """`rnncli train CORPUS --max-time BUDGET` and nothing else (the same split: its last 10%)."""
    request = TrainRequest(corpus=str(corpus), model=ModelConfig(), train=TrainConfig(max_time=args.budget),
                           tokenizer=TokenizerConfig(), explicit={"max_time"})
    with tempfile.TemporaryDirectory() as tmp:
        request.out = str(Path(tmp) / "defaults.npz")
        run, train_ids, val_ids, out = prepare(request)
        summary = train(run, train_ids, val_ids, out)
    m = run.model
    return {**summary_of(summary), "model": f"{m.cell} {m.layers}x{m.hidden}",
            "batch": f"{run.train.batch_size}x{run.train.seq_len}", "lr": run.train.lr}


def run_torch(args, train_ids, val_ids, vocab_size) -> dict:
    import torch

    torch.manual_seed(args.seed)
    kind = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "gru-cudnn": torch.nn.GRU, "lstm": torch.nn.LSTM}[args.cell]
    embed = torch.nn.Embedding(vocab_size, args.embed)
    rnn = kind(args.embed, args.hidden, num_layers=args.layers, dropout=args.dropout if args.layers > 1 else 0)
    out = torch.nn.Linear(args.hidden, vocab_size)
    params = [*embed.parameters(), *rnn.parameters(), *out.parameters()]
    opt = torch.optim.Adam(params, lr=args.lr)
    B, T = args.batch, args.seq
    S = len(train_ids) // B
    streams = torch.from_numpy(train_ids[: B * S].reshape(B, S).astype(np.int64))
    n_chunks = (S - 1) // T
    start = time.monotonic()
    tokens = 0
    state = None
    k = 0
    while time.monotonic() - start < args.budget:
        if k == n_chunks:
            k, state = 0, None
        x = streams[:, k * T : (k + 1) * T].T
        y = streams[:, k * T + 1 : (k + 1) * T + 1].T
        h, state = rnn(embed(x), state)
        state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        loss = torch.nn.functional.cross_entropy(out(h).reshape(-1, vocab_size), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        tokens += B * T
        k += 1
    seconds = time.monotonic() - start
    rnn.eval()
    with torch.no_grad():  # validation exactly as rnncli does it (model.stream_loss)
        Bv = max(1, min(B, (len(val_ids) - 1) // 2))
        Sv = len(val_ids) // Bv
        v = torch.from_numpy(val_ids[: Bv * Sv].reshape(Bv, Sv).astype(np.int64))
        total, count, state = 0.0, 0, None
        for s0 in range(0, Sv - 1, T):
            s1 = min(s0 + T, Sv - 1)
            h, state = rnn(embed(v[:, s0:s1].T), state)
            lp = torch.log_softmax(out(h), -1).gather(2, v[:, s0 + 1 : s1 + 1].T[..., None])
            total -= float(lp.sum())
            count += lp.numel()
    return {"val_loss": total / count, "tokens_seen": tokens, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=300.0, help="seconds of training per side")
    p.add_argument("--cell", default="lstm", choices=["rnn", "gru", "gru-cudnn", "lstm"])
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--hidden", type=int, default=512)
    p.add_argument("--embed", type=int, default=64)
    p.add_argument("--batch", type=int, default=50)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--schedule", default="cooldown",
                   help="rnncli's learning-rate schedule (default: rnncli's default; the script's rate is constant)")
    p.add_argument("--vs-torch", action="store_true")
    p.add_argument("--defaults", action="store_true", help="also train with rnncli's defaults and --max-time only")
    p.add_argument("--skip-rnncli", action="store_true")
    args = p.parse_args()
    corpus = Corpus(str(find_corpus()))
    tokenizer = fit_tokenizer(TokenizerConfig(level="char"), corpus.blocks())
    ids = encode_corpus(tokenizer, corpus)
    train_ids, val_ids = split_validation(ids, 0.1)
    result = {"benchmark": "quality", "machine": machine(), "settings": vars(args)}
    if not args.skip_rnncli:
        result["rnncli"] = run_rnncli(args, train_ids, val_ids, tokenizer.vocab_size, tokenizer)
        sys.stderr.write(f"rnncli: {result['rnncli']}\n")
    if args.vs_torch and torch_available():
        result["torch"] = run_torch(args, train_ids, val_ids, tokenizer.vocab_size)
        sys.stderr.write(f"torch:  {result['torch']}\n")
    if args.defaults:
        result["rnncli_defaults"] = run_defaults(args, find_corpus())
        sys.stderr.write(f"rnncli defaults: {result['rnncli_defaults']}\n")
    name = f"quality-{args.cell}-{args.layers}x{args.hidden}-{int(args.budget)}s"
    write_results(name, result)
    print(json.dumps(result, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))


if __name__ == "__main__":
    main()
