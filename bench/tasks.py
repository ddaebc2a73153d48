"""The task models on real data, rnncli and PyTorch side by side at one wall-clock budget:
SST-2 sentiment (dev accuracy) and CoNLL-2003 named entities (testa phrase F1, conlleval's), each
bidirectional and forward-only; and an encoder–decoder on Tatoeba English–French (BLEU on 10 %
held out; rnncli only).

Both sides read the same examples through the same tokenizer, in the same batches (examples of
one length together, order from the seed and the epoch: rnncli.text.examples), with the same model:
embedding 128 (100 for tagging), one LSTM layer of 128 (bidirectional or not), Adam 2e-3, clip 5,
batch 32. The budget covers the training loop only (no validation during it on either side);
then dev is scored with rnncli's metrics for both. PyTorch runs with 2 threads.

    python bench/tasks.py [--budget 300] [--tasks classify,tag,translate] [--vs-torch] [--no-uni | --no-bi] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import ROOT, machine, torch_available, write_results

from rnncli.config import ModelConfig, SampleConfig, TokenizerConfig, TrainConfig
from rnncli.formats.checkpoint import Checkpoint
from rnncli.inference.predict import classify, tag, translate
from rnncli.tasks import (
    get_task,  # noqa: E402
    metrics,
)
from rnncli.text.data import Corpus
from rnncli.text.examples import encode_examples, epoch_batches, label_set, make_batch, read_examples, split_examples
from rnncli.text.tokenizers import fit_tokenizer
from rnncli.training.request import new_run
from rnncli.training.train import train

SHARED = ROOT.parent / "shared" / "corpora"
DATA = {"classify": ("sst2-train.tsv", "sst2-dev.tsv", 128),
        "tag": ("conll2003-train.txt", "conll2003-testa.txt", 100),
        "translate": ("tatoeba-eng-fra-5k.tsv", None, 128)}


def load(task: str, seed: int):
    train_name, dev_name, embed = DATA[task]
    path = SHARED / train_name
    if not path.exists():
        sys.exit(f"{path} not found: the task benchmarks read ../shared/corpora")
    train_ex = read_examples(get_task(task), Corpus(str(path)))
    if dev_name:
        dev_ex = read_examples(get_task(task), Corpus(str(SHARED / dev_name)))
    else:
        train_ex, dev_ex = split_examples(train_ex, 0.1, seed)
    tokenizer = fit_tokenizer(TokenizerConfig(level="word"), ["\n".join(train_ex.texts()) + "\n"])
    labels = label_set(train_ex)
    return train_ex, dev_ex, tokenizer, labels, embed


def score(task: str, ck: Checkpoint, dev_ex) -> dict:
    if task == "classify":
        predicted = [c.label for c in classify(ck, dev_ex.sources)]
        r = metrics.classification_report(dev_ex.targets, predicted, ck.model.labels)
        return {"accuracy": r["accuracy"]}
    if task == "tag":
        r = metrics.conll_report(dev_ex.targets, tag(ck, dev_ex.sources))
        return {"f1": r["f1"], "accuracy": r["accuracy"]}
    hyps = list(translate(ck, dev_ex.sources, SampleConfig(temperature=0.0, length=60)))
    r = metrics.corpus_bleu(hyps, dev_ex.targets)
    return {"bleu": r["bleu"], "exact_match": r["exact_match"],
            "examples": [f"{s} -> {h}" for s, h in zip(dev_ex.sources[:8], hyps[:8], strict=True)]}


def run_rnncli(task, bidirectional, data, args) -> dict:
    train_ex, dev_ex, tokenizer, labels, embed = data
    model = ModelConfig(cell="lstm", vocab_size=tokenizer.vocab_size, embed=embed, hidden=args.hidden,
                        layers=1, task=task, bidirectional=bidirectional, labels=labels)
    cfg = TrainConfig(batch_size=32, lr=2e-3, clip=5.0, epochs=10_000, max_time=args.budget, val_fraction=0.0,
                      seed=args.seed, schedule="constant")  # PyTorch's side runs at a constant rate
    run = new_run(model, cfg, TokenizerConfig(level="word"), tokenizer)
    encoded = encode_examples(train_ex, tokenizer, labels)
    with tempfile.TemporaryDirectory() as tmp:
        summary = train(run, encoded, None, str(Path(tmp) / "t.npz"))
    ck = Checkpoint(run.model, run.train, run.tokenizer_config, tokenizer, run.params)
    return {**score(task, ck, dev_ex), "tokens_per_s": summary["tokens_seen"] / summary["seconds"],
            "steps": summary["steps"], "tokens_seen": summary["tokens_seen"]}


def run_torch(task, bidirectional, data, args) -> dict:
    import torch

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    train_ex, dev_ex, tokenizer, labels, embed_size = data
    V, H, D = tokenizer.vocab_size, args.hidden, 2 if bidirectional else 1
    encoded = encode_examples(train_ex, tokenizer, labels)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, embed_size)
            self.rnn = torch.nn.LSTM(embed_size, H, bidirectional=bidirectional)
            if task == "translate":
                self.dec_embed = torch.nn.Embedding(V, embed_size)
                self.dec = torch.nn.LSTM(embed_size, H)
                self.out = torch.nn.Linear(H, V)
            else:
                self.out = torch.nn.Linear(D * H, len(labels))

        def encode(self, x):
            top, (h, c) = self.rnn(self.embed(x))
            return top, h, c

        def loss(self, batch):
            x = torch.from_numpy(batch.inputs)
            top, h, c = self.encode(x)
            if task == "classify":
                feats = top[-1] if not bidirectional else torch.cat([top[-1, :, :H], top[0, :, H:]], 1)
                return torch.nn.functional.cross_entropy(self.out(feats), torch.from_numpy(batch.targets))
            if task == "tag":
                logits = self.out(top).reshape(-1, len(labels))
                return torch.nn.functional.cross_entropy(logits, torch.from_numpy(batch.targets).reshape(-1),
                                                         ignore_index=-1)
            state = (h.sum(0, keepdim=True), c.sum(0, keepdim=True))
            dec, _ = self.dec(self.dec_embed(torch.from_numpy(batch.decoder_inputs)), state)
            return torch.nn.functional.cross_entropy(self.out(dec).reshape(-1, V),
                                                     torch.from_numpy(batch.targets).reshape(-1), ignore_index=-1)

    net = Net()
    params = list(net.parameters())
    opt = torch.optim.Adam(params, lr=2e-3)
    start = time.monotonic()
    tokens = steps = epoch = 0
    while time.monotonic() - start < args.budget:
        for indices in epoch_batches(encoded, 32, args.seed, epoch):
            batch = make_batch(get_task(task), encoded, indices)
            loss = net.loss(batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            opt.step()
            tokens += batch.tokens
            steps += 1
            if time.monotonic() - start >= args.budget:
                break
        epoch += 1
    seconds = time.monotonic() - start
    # Score with rnncli's code: the trained weights into an rnncli checkpoint (same maths; the
    # parity tests hold the two implementations together).
    params_np = torch_to_rnncli(net, task, bidirectional)
    model = ModelConfig(cell="lstm", vocab_size=V, embed=embed_size, hidden=H, layers=1, task=task,
                        bidirectional=bidirectional, labels=labels)
    ck = Checkpoint(model, TrainConfig(), TokenizerConfig(level="word"), tokenizer, params_np)
    return {**score(task, ck, dev_ex), "tokens_per_s": tokens / seconds, "steps": steps, "tokens_seen": tokens}


def torch_to_rnncli(net, task: str, bidirectional: bool) -> dict:
    """PyTorch's LSTM weights in rnncli's layout: W_ih (4H, D) -> Wx (D, 4H), W_hh -> Wh, one bias
    b_ih + b_hh (the gate order, i f g o, is the same)."""

    def layer(rnn, suffix):
        w = {n: getattr(rnn, f"{n}_l0{suffix}").detach().numpy() for n in ("weight_ih", "weight_hh", "bias_ih",
                                                                            "bias_hh")}
        return {"Wx": w["weight_ih"].T, "Wh": w["weight_hh"].T, "b": w["bias_ih"] + w["bias_hh"]}

    p = {"embed.weight": net.embed.weight.detach().numpy().copy()}
    p.update({f"layers.0.{k}": v for k, v in layer(net.rnn, "").items()})
    if bidirectional:
        p.update({f"layers.0.reverse.{k}": v for k, v in layer(net.rnn, "_reverse").items()})
    if task == "translate":
        p["decoder.embed.weight"] = net.dec_embed.weight.detach().numpy().copy()
        p.update({f"decoder.layers.0.{k}": v for k, v in layer(net.dec, "").items()})
        p["decoder.output.W"] = net.out.weight.detach().numpy().T.copy()
        p["decoder.output.b"] = net.out.bias.detach().numpy().copy()
    else:
        p["output.W"] = net.out.weight.detach().numpy().T.copy()
        p["output.b"] = net.out.bias.detach().numpy().copy()
    return {k: np.ascontiguousarray(v, np.float32) for k, v in p.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budget", type=float, default=300.0, help="seconds of training per run")
    p.add_argument("--tasks", default="classify,tag,translate")
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--seeds", type=int, default=1, help="runs per row, seeds --seed, --seed + 1, ... "
                                                       "(the metrics' spread between seeds is several points)")
    p.add_argument("--vs-torch", action="store_true")
    p.add_argument("--no-uni", action="store_true", help="skip the forward-only runs")
    p.add_argument("--no-bi", action="store_true", help="skip the bidirectional runs (translate keeps its own)")
    args = p.parse_args()
    result = {"benchmark": "tasks", "machine": machine(), "settings": vars(args), "runs": []}
    for task in args.tasks.split(","):
        data = load(task, args.seed)
        directions = [True] if task == "translate" or args.no_uni else [False] if args.no_bi else [True, False]
        for bidirectional in directions:
            vs_torch = args.vs_torch and torch_available() and task != "translate"  # translation: BLEU only
            systems = ["rnncli"] + (["torch"] if vs_torch else [])
            for k in range(args.seeds):
                for system in systems:  # rnncli and PyTorch back to back, seed by seed
                    runner = run_rnncli if system == "rnncli" else run_torch
                    seeded = argparse.Namespace(**{**vars(args), "seed": args.seed + k})
                    row = {"task": task, "system": system, "bidirectional": bidirectional, "seed": seeded.seed,
                           **runner(task, bidirectional, data, seeded)}
                    sys.stderr.write(json.dumps(row) + "\n")
                    result["runs"].append(row)
    write_results(f"tasks-{int(args.budget)}s", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
