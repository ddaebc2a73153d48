"""Eight-bit weights (`rnncli quantize`): quality against the float model, speed against it on the
same machine in one run, file size and peak memory.

Models: the tiny-shakespeare char LSTM 2 x 512 trained 300 s (`rnncli train tinyshakespeare.txt
--cell lstm --layers 2 --hidden 512 --max-time 300`, its validation split the last 10 % of the
text) and the WikiText-2 word LSTM of bench/wordlm.py's recipe (2 x 200, SGD at 20, 6 epochs on
wikitext2-valid.txt's first 90 %; its test split wikitext2-test.txt). Give them with --char/--word,
or let this script train them into bench/runs/ (~11 minutes).

Quality, per model and scheme: scoring (float32 activations) and generation (int8 activations,
every position through the single step) against the float model: perplexity of both and the
relative change, mean KL divergence, top-token agreement (inference/quantize.py).
Speed (char model; float against int8 steps, interleaved, medians of --repeats): batch-1 generation,
64 samples side by side, scoring 32 x 100; and the int8 weight-streaming bound (both cores reading
the int8 weights of a step, bench/common.py's read_bandwidth). Size: file bytes of each model saved
without training state; peak RSS of `rnncli sample --length 2000` on each.

    python bench/quantize.py [--char M.npz] [--word M.npz] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from common import ROOT, machine, read_bandwidth, time_per_call, write_results

RUNS = ROOT / "bench" / "runs"
SHAKESPEARE = ROOT.parent / "shared" / "corpora" / "tinyshakespeare.txt"


def rnncli(*args: str) -> None:
    done = subprocess.run([sys.executable, "-m", "rnncli", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"rnncli {args[0]} failed:\n{done.stderr[-2000:]}")


def train_char(out: Path) -> None:
    rnncli("train", SHAKESPEARE, "--cell", "lstm", "--layers", "2", "--hidden", "512", "--max-time", "300",
           "--seed", "1", "--out", out)


def word_data(folder: Path) -> Path:
    import wordlm

    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "test.txt").exists():
        wordlm.prepare(folder)
    return folder


def train_word(out: Path, data: Path) -> None:
    rnncli("train", data / "train.txt", "--valid", data / "valid.txt", "--level", "word", "--cell", "lstm",
           "--layers", "2", "--hidden", "200", "--embed", "200", "--dropout", "0.2", "--optimizer", "sgd",
           "--momentum", "0", "--lr", "20", "--lr-decay", "0.25", "--clip", "0.25", "--batch-size", "20",
           "--seq-len", "35", "--epochs", "6", "--seed", "1111", "--out", out)


def quality(ck, text: Path, schemes=("row", "block32")) -> list[dict]:
    from rnncli.inference.quantize import compare, quantized
    from rnncli.text.data import Corpus
    from rnncli.text.store import corpus_ids

    _, ids = corpus_ids(Corpus([str(text)]), ck.tokenizer, ck.tokenizer_config, None, lambda note: None)
    rows = []
    for scheme in schemes:
        out = quantized(ck, scheme, "int8")
        for path in ("scoring", "generation"):
            got = compare(ck, out, ids, seq_len=ck.train.seq_len, generation=path == "generation")
            rows.append({"scheme": scheme, "path": path, "file": text.name, **got})
            sys.stderr.write(f"  {scheme} {path}: {100 * got['relative_change']:+.3f} %, KL {got['mean_kl']:.6f}, "
                             f"same top {100 * got['same_top']:.2f} %\n")
    return rows


def embedding_choice(ck, text: Path) -> dict:
    """The word model's embedding (most of its weights) in int8 rows, or kept in float32: quality
    (scoring) and bytes of each."""
    from rnncli.formats import int8
    from rnncli.inference.quantize import compare, quantized
    from rnncli.text.data import Corpus
    from rnncli.text.store import corpus_ids

    _, ids = corpus_ids(Corpus([str(text)]), ck.tokenizer, ck.tokenizer_config, None, lambda note: None)
    out = {}
    for keep in (False, True):
        q = quantized(ck, "row", "float32")
        if keep:
            q.params = {**q.params, "embed.weight": ck.params["embed.weight"]}
        got = compare(ck, q, ids, seq_len=ck.train.seq_len)
        weights = {k: v for k, v in ck.params.items() if not (keep and k == "embed.weight")}
        size = int8.stored_bytes(weights, "row") + (ck.params["embed.weight"].nbytes if keep else 0)
        out["float32" if keep else "int8"] = {**got, "weight_bytes": size,
                                              "ratio": size / int8.stored_bytes(ck.params, None)}
        sys.stderr.write(f"  embedding in {'float32' if keep else 'int8'}: {100 * got['relative_change']:+.4f} %, "
                         f"KL {got['mean_kl']:.6f}, weights {out['float32' if keep else 'int8']['ratio']:.2f}x\n")
    return out


def speed(ck, repeats: int) -> dict:
    from rnncli.execution.steps import Steps
    from rnncli.inference.quantize import quantized
    from rnncli.models.model import Model

    models = {"float": ck, "int8": quantized(ck, "row", "int8")}
    rng = np.random.default_rng(0)
    V = ck.model.vocab_size

    def generate(c, rows: int, n: int):
        model = Model(c.model)
        steps = Steps(model, c.params, rows, n)

        def run():
            h, cc = model.step_state(model.initial_state(rows))
            out, lps = np.empty((rows, n), np.int64), np.empty((rows, n))
            steps.generate(h, cc, np.ones((1, rows), np.int64), rng.random((rows, n)), np.full(rows, 0.8),
                           np.zeros(rows, np.int64), np.ones(rows), False, np.zeros(rows, np.bool_), out, lps)

        return run

    def score(c):
        model = Model(c.model)
        inputs, targets = rng.integers(0, V, (100, 32)), rng.integers(0, V, (100, 32))
        return lambda: model.logprobs(c.params, inputs, targets, model.initial_state(32))

    works = {"generate batch 1": (lambda c: generate(c, 1, 4000), 4000),
             "generate x64": (lambda c: generate(c, 64, 100), 6400),
             "score 32 x 100": (score, 3200)}
    rows = {}
    for work, (make, tokens) in works.items():
        fns = {name: make(c) for name, c in models.items()}
        rates = {name: [] for name in fns}
        for _ in range(repeats):
            for name, fn in fns.items():
                rates[name].append(tokens / time_per_call(fn, 0.5))
        row = {name: statistics.median(r) for name, r in rates.items()}
        row["ratio"] = row["int8"] / row["float"]
        rows[work] = row
        sys.stderr.write(f"  {work}: float {row['float']:,.0f}, int8 {row['int8']:,.0f} tokens/s "
                         f"({row['ratio']:.2f}x)\n")
    int8_bytes = sum(v.size for k, v in ck.params.items() if k != "embed.weight" and v.ndim == 2)
    bandwidth = read_bandwidth(int8_bytes)
    rows["int8 streaming bound"] = {"bytes_per_token": int8_bytes, "read_bytes_per_s": bandwidth,
                                    "tokens_per_s": bandwidth / int8_bytes,
                                    "fraction": rows["generate batch 1"]["int8"] / (bandwidth / int8_bytes)}
    return rows


def sizes(ck, folder: Path) -> dict:
    from rnncli.formats.checkpoint import save_checkpoint
    from rnncli.inference.quantize import quantized

    float_path, int8_path = folder / "float.npz", folder / "int8.npz"
    bare = quantized(ck, "row", "int8")
    bare.quantization, bare.params = None, ck.params  # the float model without its training state
    bare.model = ck.model
    save_checkpoint(str(float_path), bare)
    save_checkpoint(str(int8_path), quantized(ck, "row", "int8"))
    out = {"float_file_bytes": os.path.getsize(float_path), "int8_file_bytes": os.path.getsize(int8_path)}
    out["file_ratio"] = out["int8_file_bytes"] / out["float_file_bytes"]
    for name, path in (("float", float_path), ("int8", int8_path)):
        out[f"{name}_sample_peak_rss_mb"] = statistics.median(peak_rss_mb("sample", "--model", path, "--length", "2000")
                                                              for _ in range(3))
    return out


# A child's peak memory counts what it was forked from: it is started from a small process of its own.
LAUNCHER = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_rss_mb(*args) -> float:
    """Peak resident memory of `rnncli ARGS`, in MB."""
    done = subprocess.run([sys.executable, "-c", LAUNCHER, sys.executable, "-m", "rnncli", *map(str, args)],
                          capture_output=True, text=True, check=True)
    return int(done.stdout.split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--char", type=Path, default=RUNS / "quantize-char.npz")
    parser.add_argument("--word", type=Path, default=RUNS / "quantize-word.npz")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from rnncli.tasks import load_model_checkpoint

    RUNS.mkdir(parents=True, exist_ok=True)
    data = word_data(RUNS / "wikitext2")
    if not args.char.exists():
        train_char(args.char)
    if not args.word.exists():
        train_word(args.word, data)
    char, word = (load_model_checkpoint(str(p), training_state=False) for p in (args.char, args.word))
    with tempfile.TemporaryDirectory() as tmp:
        valid = Path(tmp) / "shakespeare-valid.txt"
        text = SHAKESPEARE.read_text(encoding="utf-8")
        valid.write_text(text[len(text) - len(text) // 10:], encoding="utf-8")
        sys.stderr.write("quality, char LSTM 2 x 512 (validation split)\n")
        result = {"machine": machine(), "quality": {"char": quality(char, valid)}}
        sys.stderr.write("quality, word LSTM 2 x 200 (WikiText-2 test)\n")
        result["quality"]["word"] = quality(word, data / "test.txt")
        result["quality"]["word_embedding"] = embedding_choice(word, data / "test.txt")
        sys.stderr.write("speed, char LSTM 2 x 512\n")
        result["speed"] = speed(char, args.repeats)
        result["size"] = sizes(char, Path(tmp))
    sys.stderr.write(f"size: {result['size']}\n")
    print(write_results("quantize", result))


if __name__ == "__main__":
    main()
