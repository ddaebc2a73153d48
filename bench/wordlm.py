"""Word level against pytorch/examples' word_language_model: the same model, optimizer and epochs
on WikiText-2 (train on `wikitext2-valid.txt`, its last 10% of lines held out for validation; test
on `wikitext2-test.txt`), test perplexity on both sides.

Both sides read one token stream. The texts are tokenized once with rnncli's word tokenizer and
written as space-separated tokens, one line per non-blank line, with every word the training part
lacks written `<unk>` (word_language_model whitespace-splits and builds its vocabulary from all
three files; rnncli's reads training words only and maps the rest to <UNK>): then its tokens, its
`<eos>` per line and its vocabulary are rnncli's.

The reference's recipe, both sides: LSTM 2 x 200, embedding 200, dropout 0.2, plain SGD (no
momentum) at lr 20, divided by 4 after an epoch whose validation loss is no better, gradient norm
clipped at 0.25, batch 20 x 35, validation once per epoch, test on the best epoch's model; rnncli
also spends the epochs as its default schedule does (`--schedule constant`: the rule alone). Its
script is run as published (cloned from GitHub into bench/downloads/ unless --reference names a
copy), 2 threads.

    python bench/wordlm.py [--reference examples/word_language_model] [--epochs 6]
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, machine, write_results

from rnncli.text.tokenizers import MAX_WORD_CHARS, WordTokenizer

SHARED = ROOT.parent / "shared" / "corpora"
EXAMPLES = "https://github.com/pytorch/examples"
DOWNLOADS = ROOT / "bench" / "downloads" / "examples"


def find(name: str) -> Path:
    for folder in (ROOT / "corpora" / "downloads", SHARED):
        if (folder / name).exists():
            return folder / name
    sys.exit(f"{name} not found: run `make corpora` first")


def token_lines(path: Path) -> list[list[str]]:
    lines = (WordTokenizer.split(line, lowercase=False) for line in path.read_text(encoding="utf-8").split("\n"))
    return [[w if len(w) <= MAX_WORD_CHARS else "<unk>" for w in words] for words in lines if words]


def prepare(folder: Path) -> dict:
    """train.txt, valid.txt, test.txt in `folder`: one stream of tokens for both sides."""
    lines = token_lines(find("wikitext2-valid.txt"))
    cut = len(lines) - len(lines) // 10
    parts = {"train": lines[:cut], "valid": lines[cut:], "test": token_lines(find("wikitext2-test.txt"))}
    known = {w for words in parts["train"] for w in words}
    counts = {}
    for name, part in parts.items():
        text = "\n".join(" ".join(w if w in known else "<unk>" for w in words) for words in part) + "\n"
        (folder / f"{name}.txt").write_text(text, encoding="utf-8")
        counts[name] = sum(len(words) + 1 for words in part)  # + <eos>
    counts["vocabulary"] = len(known | {"<unk>"}) + 1
    return counts


def run_reference(script: Path, data: Path, epochs: int, seed: int) -> dict:
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        done = subprocess.run([sys.executable, "main.py", "--data", str(data), "--epochs", str(epochs),
                               "--seed", str(seed), "--save", str(Path(tmp) / "model.pt")],
                              cwd=script, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"word_language_model failed:\n{done.stderr[-2000:]}")
    tests = re.findall(r"test loss\s+([\d.]+)\s+\|\s+test ppl\s+([\d.]+)", done.stdout)
    vals = [float(v) for v in re.findall(r"valid loss\s+([\d.]+)", done.stdout)]
    return {"test_ppl": float(tests[-1][1]), "val_losses": vals, "seconds": time.monotonic() - start}


def run_rnncli(data: Path, epochs: int, seed: int, counts: dict, schedule: str) -> dict:
    steps_per_epoch = (counts["train"] // 20 - 1) // 35
    start = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "w.npz"
        train = [sys.executable, "-m", "rnncli", "train", str(data / "train.txt"), "--valid", str(data / "valid.txt"),
                 "--level", "word", "--cell", "lstm", "--layers", "2", "--hidden", "200", "--embed", "200",
                 "--dropout", "0.2", "--optimizer", "sgd", "--momentum", "0", "--lr", "20", "--lr-decay", "0.25",
                 "--clip", "0.25", "--batch-size", "20", "--seq-len", "35", "--epochs", str(epochs),
                 "--eval-every", str(steps_per_epoch), "--schedule", schedule, "--seed", str(seed), "--out", str(out),
                 "--json"]
        done = subprocess.run(train, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"rnncli train failed:\n{done.stderr[-2000:]}")
        vals = [json.loads(line)["val_loss"] for line in done.stdout.splitlines() if '"event": "eval"' in line]
        best = out.with_suffix(".best.npz")
        score = subprocess.run([sys.executable, "-m", "rnncli", "score", "--file", str(data / "test.txt"),
                                "--continuous", "--model", str(best if best.exists() else out), "--json"],
                               capture_output=True, text=True)
        if score.returncode != 0:
            sys.exit(f"rnncli score failed:\n{score.stderr[-2000:]}")
    result = json.loads(score.stdout.splitlines()[-1])
    return {"test_ppl": result["perplexity"], "val_losses": [round(v, 4) for v in vals],
            "seconds": time.monotonic() - start}


def add_reference_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", type=Path, default=DOWNLOADS / "word_language_model",
                        help="pytorch/examples' word_language_model folder (default: cloned into bench/downloads/)")


def check_reference(reference: Path) -> None:
    """The reference's folder, cloned into bench/downloads/ when it is the default and missing."""
    if not (reference / "main.py").exists() and reference == DOWNLOADS / "word_language_model":
        subprocess.run(["git", "clone", "--depth", "1", EXAMPLES, str(DOWNLOADS)], check=False)
    if not (reference / "main.py").exists():
        sys.exit(f"{reference}/main.py not found: git clone {EXAMPLES} and pass --reference "
                 "examples/word_language_model")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_reference_option(p)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--seed", type=int, default=1111)
    p.add_argument("--schedule", default="cooldown",
                   help="rnncli's schedule (its default) on top of the reference's rule; constant: that rule alone")
    p.add_argument("--skip-reference", action="store_true")
    args = p.parse_args()
    check_reference(args.reference)
    clone = args.reference.resolve().parent
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], capture_output=True, text=True) \
        if (clone / ".git").exists() else None
    result = {"benchmark": "wordlm", "machine": machine(), "reference": str(args.reference),
              "reference_commit": commit.stdout.strip() if commit else None,
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp)
        result["tokens"] = prepare(data)
        result["rnncli"] = run_rnncli(data, args.epochs, args.seed, result["tokens"], args.schedule)
        sys.stderr.write(f"rnncli: {result['rnncli']}\n")
        if not args.skip_reference:
            result["word_language_model"] = run_reference(args.reference.resolve(), data, args.epochs, args.seed)
            sys.stderr.write(f"word_language_model: {result['word_language_model']}\n")
            result["ratio"] = result["rnncli"]["test_ppl"] / result["word_language_model"]["test_ppl"]
    write_results(f"wordlm-{args.epochs}ep", result)
    print(json.dumps(result, indent=2, default=lambda o: None if isinstance(o, float) and math.isnan(o) else str(o)))


if __name__ == "__main__":
    main()
