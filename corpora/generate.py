"""Write the corpora rnncli ships, from fixed seeds: `python corpora/generate.py`.

markov.txt      k-th order Markov characters; its exact entropy rate goes to markov.json
agreement.txt   long-range subject/verb agreement, word level
demo.txt        short English sentences for `make demo`
"""

import json
from pathlib import Path

from synthetic import agreement_corpus, demo_corpus, markov_corpus  # beside this file

HERE = Path(__file__).resolve().parent


def main() -> None:
    text, entropy = markov_corpus()
    (HERE / "markov.txt").write_text(text, encoding="utf-8", newline="\n")
    (HERE / "markov.json").write_text(json.dumps(
        {"file": "markov.txt", "order": 2, "seed": 1234, "chars": len(text),
         "entropy_rate_nats_per_char": entropy}, indent=2) + "\n")
    (HERE / "agreement.txt").write_text(agreement_corpus(), encoding="utf-8", newline="\n")
    (HERE / "demo.txt").write_text(demo_corpus(), encoding="utf-8", newline="\n")
    for name in ("markov.txt", "agreement.txt", "demo.txt"):
        print(f"{name}: {(HERE / name).stat().st_size:,} bytes")
    print(f"markov entropy rate: {entropy:.6f} nats/char")


if __name__ == "__main__":
    main()
