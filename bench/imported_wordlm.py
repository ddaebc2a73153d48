"""A model nobody here trained, scored here: pytorch/examples' word_language_model trained as
published on WikiText-2's own text, imported, and its test perplexity from `rnncli score
--continuous` against the one its `main.py` prints (#34's check: within 0.1 %).

The reference reads text its own way: each line's fields between whitespace, then `<eos>`, a blank
line included, and tests on 10 contiguous streams. rnncli reads it the same way once told:
`import` stores that tokenization for a word vocabulary list (`--split whitespace --blank-lines
eos`, its defaults) and `score --continuous --streams 10` cuts the same streams. The bench also
scores the import read by rnncli's own word rule (`--split words --blank-lines skip`) to show what
re-tokenizing does to the number.

Training data: WikiText-2's validation text (the shared corpora have no training part) as the
reference's train.txt and valid.txt, its test text as test.txt; one epoch by default (the check is
of the scoring, not of the training). Needs torch (`make torch`) and a copy of pytorch/examples
(cloned into bench/downloads/ unless --reference names one).

    python bench/imported_wordlm.py [--reference examples/word_language_model] [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine, write_results
from wordlm import add_reference_option, check_reference, find

CONVERT = """
import json, sys, torch
import data  # the reference's own, from its folder (the pickled model needs its model.py too)
from rnncli.formats import safetensors
model = torch.load(sys.argv[1], weights_only=False, map_location="cpu")
safetensors.write(sys.argv[2], {k: v.detach().numpy() for k, v in model.state_dict().items()})
with open(sys.argv[4], "w", encoding="utf-8") as f:
    json.dump(data.Corpus(sys.argv[3]).dictionary.idx2word, f, ensure_ascii=False)
"""


def run(command: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed:\n{done.stderr[-2000:]}")
    return done.stdout


def rnncli_perplexity(safetensors: Path, vocab: Path, test: Path, folder: Path, *reading: str) -> float:
    imported = folder / f"imported{'-'.join(reading)}.npz"
    run([sys.executable, "-m", "rnncli", "import", str(safetensors), "--vocab", str(vocab), "-o", str(imported),
         *reading])
    out = run([sys.executable, "-m", "rnncli", "score", "--file", str(test), "--continuous", "--streams", "10",
               "--model", str(imported), "--json"])
    return json.loads(out.splitlines()[-1])["perplexity"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_reference_option(p)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=1111)
    args = p.parse_args()
    check_reference(args.reference)
    reference = args.reference.resolve()
    result = {"benchmark": "imported_wordlm", "machine": machine(), "reference": str(args.reference),
              "epochs": args.epochs, "seed": args.seed}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        data = folder / "data"
        data.mkdir()
        shutil.copy(find("wikitext2-valid.txt"), data / "train.txt")
        shutil.copy(find("wikitext2-valid.txt"), data / "valid.txt")
        shutil.copy(find("wikitext2-test.txt"), data / "test.txt")
        start = time.monotonic()
        printed = run([sys.executable, "main.py", "--data", str(data), "--epochs", str(args.epochs), "--seed",
                       str(args.seed), "--save", str(folder / "model.pt")], cwd=reference)
        tests = re.findall(r"test loss\s+([\d.]+)\s+\|\s+test ppl\s+([\d.]+)", printed)
        result["word_language_model"] = {"test_ppl": float(tests[-1][1]), "seconds": time.monotonic() - start}
        weights, vocab = folder / "model.safetensors", folder / "vocab.json"
        run([sys.executable, "-c", CONVERT, str(folder / "model.pt"), str(weights), str(data), str(vocab)],
            cwd=reference)
        ppl = rnncli_perplexity(weights, vocab, data / "test.txt", folder)
        ours = rnncli_perplexity(weights, vocab, data / "test.txt", folder, "--split", "words", "--blank-lines",
                                 "skip")
    reference_ppl = result["word_language_model"]["test_ppl"]
    result["rnncli"] = {"test_ppl": ppl, "relative": ppl / reference_ppl - 1,
                        "within_0.1_percent": abs(ppl / reference_ppl - 1) <= 0.001,
                        "read_by_rnnclis_word_rule": ours}
    write_results("imported-wordlm", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
