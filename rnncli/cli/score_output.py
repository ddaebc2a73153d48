"""How the command line prints scores: a ranked rich table, TSV, JSON or JSON lines.
Part of the CLI layer (rnncli/cli/)."""

from __future__ import annotations

import json
import math
import sys

from rich.console import Console
from rich.table import Table

from rnncli.inference.score import UNIT_FACTOR, sentence_record

UNIT_NAME = {"ln": "logprob", "log10": "log10prob", "bits": "log2prob"}


def _emit(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def print_sentence_scores(ck, scores, fmt: str, unit: str, per_token: bool) -> None:
    ranked = sorted(scores, key=lambda s: -s.logprob)
    records = [{"rank": rank + 1, **sentence_record(ck, s, per_token)} for rank, s in enumerate(ranked)]
    f = UNIT_FACTOR[unit]
    col = UNIT_NAME[unit]
    if fmt == "json":
        _emit(records)
        return
    if fmt == "jsonl":
        for r in records:
            _emit(r)
        return
    if fmt == "tsv":
        print(f"rank\t{col}\tprobability\ttokens\toov\tperplexity\ttext")
        for r in records:
            print(f"{r['rank']}\t{r['logprob'] * f:.6f}\t{r['probability']:.6g}\t{r['tokens']}\t{r['oov']}\t"
                  f"{r['perplexity']:.4f}\t{r['text']}")
            for t in r.get("per_token", []):
                print(f"\t{t['logprob'] * f:.6f}\t{t['probability']:.6g}\t\t\t\t{t['token']} ({t['id']})")
        return
    console = Console(soft_wrap=True)
    if not console.is_terminal:  # plain text for pipes and files: one line per sentence, no wrapping
        print(f"{'rank':>4}  {col:>10}  {'P(sentence)':>11}  {'tokens':>6}  {'<UNK>':>5}  {'perplexity':>10}  sentence")
        for r in records:
            print(f"{r['rank']:>4}  {r['logprob'] * f:>10.3f}  {r['probability']:>11.3g}  {r['tokens']:>6}  "
                  f"{r['oov']:>5}  {r['perplexity']:>10.2f}  {r['text']}")
            for t in r.get("per_token", []):
                name = t["token"].replace("\n", "\\n")
                print(f"{'':>4}  {t['logprob'] * f:>10.3f}  {t['probability']:>11.4g}  {'':>6}  {'':>5}  {'':>10}  "
                      f"{name} = {t['id']}")
        return
    table = Table("rank", "sentence", col, "P(sentence)", "tokens", "<UNK>", "perplexity")
    for r in records:
        table.add_row(str(r["rank"]), r["text"], f"{r['logprob'] * f:.3f}", f"{r['probability']:.3g}",
                      str(r["tokens"]), str(r["oov"]), f"{r['perplexity']:.2f}")
    console.print(table)
    for r in records:
        if "per_token" in r:
            detail = Table("token", "id", "P(token | before)", col, title=r["text"], title_justify="left")
            for t in r["per_token"]:
                name = t["token"].replace("\n", "\\n")
                style = "red" if t["id"] == 0 else None
                detail.add_row(name, str(t["id"]), f"{t['probability']:.4g}", f"{t['logprob'] * f:.3f}", style=style)
            console.print(detail)


def print_file_score(result, fmt: str, unit: str) -> None:
    f = UNIT_FACTOR[unit]
    record = {"file": result.name, "sentences": result.sentences, "tokens": result.tokens, "oov": result.oov,
              "logprob": result.logprob, "log10prob": result.logprob / math.log(10),
              "log2prob": result.logprob / math.log(2), "perplexity": result.perplexity,
              "perplexity_without_unk": result.perplexity_known, "ppl1": result.ppl1,
              "bits_per_char": result.bits_per_char, "chars": result.chars}
    if fmt in ("json", "jsonl"):
        _emit(record)
        return
    if fmt == "tsv":
        print("\t".join(record))
        print("\t".join(str(v) for v in record.values()))
        return
    console = Console(soft_wrap=True)
    console.print(f"[bold]{result.name}[/]: {result.sentences:,} sentences, {result.tokens:,} tokens, "
                  f"{result.oov:,} <UNK>", highlight=False)
    console.print(f"{UNIT_NAME[unit]} = {result.logprob * f:.3f}   perplexity = {result.perplexity:.3f}   "
                  f"without <UNK>: {result.perplexity_known:.3f}   ppl1 = {result.ppl1:.3f}   "
                  f"bits/char = {result.bits_per_char:.4f}", highlight=False)


def continuous_text(r: dict) -> str:
    """One line for a file scored as one stream (`score --file --continuous`, `evaluate`)."""
    return f"{r['file']}: {r['tokens']:,} tokens, {r['loss']:.4f} nats/token, perplexity {r['perplexity']:.3f}"
