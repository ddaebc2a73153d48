"""Write the corpora rnncli ships, from fixed seeds: `python corpora/generate.py`.

markov.txt      k-th order Markov characters; its exact entropy rate goes to markov.json
agreement.txt   long-range subject/verb agreement, word level
demo.txt        short English sentences for `make demo` (and demo-parts/: the same, as compressed files)
sentiment.tsv   label<TAB>text where negation and order decide (+ sentiment-test.tsv)
ner.txt         CoNLL named entities where a word's tag depends on the next word (+ ner-test.txt)
dates.tsv       human-written dates and their ISO form, for translation (+ dates-test.tsv)
"""

import json
from pathlib import Path

from synthetic import (  # beside this file
    agreement_corpus,
    dates_corpus,
    demo_corpus,
    demo_parts,
    markov_corpus,
    ner_corpus,
    sentiment_corpus,
)

HERE = Path(__file__).resolve().parent


def main() -> None:
    text, entropy = markov_corpus()
    (HERE / "markov.txt").write_text(text, encoding="utf-8", newline="\n")
    (HERE / "markov.json").write_text(json.dumps(
        {"file": "markov.txt", "order": 2, "seed": 1234, "chars": len(text),
         "entropy_rate_nats_per_char": entropy}, indent=2) + "\n")
    (HERE / "agreement.txt").write_text(agreement_corpus(), encoding="utf-8", newline="\n")
    (HERE / "demo.txt").write_text(demo_corpus(), encoding="utf-8", newline="\n")
    (HERE / "demo-parts").mkdir(exist_ok=True)
    for name, data in demo_parts().items():
        (HERE / "demo-parts" / name).write_bytes(data)
    tasks = {"sentiment.tsv": sentiment_corpus(), "sentiment-test.tsv": sentiment_corpus(300, seed=12),
             "ner.txt": ner_corpus(), "ner-test.txt": ner_corpus(300, seed=14),
             "dates.tsv": dates_corpus(), "dates-test.tsv": dates_corpus(300, seed=18)}
    for name, text in tasks.items():
        (HERE / name).write_text(text, encoding="utf-8", newline="\n")
    for name in ("markov.txt", "agreement.txt", "demo.txt", *tasks):
        print(f"{name}: {(HERE / name).stat().st_size:,} bytes")
    print(f"markov entropy rate: {entropy:.6f} nats/char")


if __name__ == "__main__":
    main()
