"""N-best rescoring, the speech use of `score`: each hypothesis of an n-best list gets the
language model's cost, optionally interpolated with the acoustic and old language-model costs it
came with, and the best hypothesis per utterance can be picked.

Two input forms, line by line:
    Kaldi:  utt-id-N hypothesis text                     (space after the id)
    TSV:    id<TAB>hypothesis text<TAB>am_cost[<TAB>old_lm_cost]
Costs follow Kaldi's convention: a cost is -ln P (natural log), lower is better, and the model's
cost of a hypothesis includes ending it (-ln P(<EOS> | hypothesis)) unless eos=False, as
`rnncli score` does. With acoustic costs present:
    total = am + weight * rnn + (1 - weight) * old         (old = 0 when absent)
The utterance of hypothesis `utt-id-N` is `utt-id`; the hypotheses of one utterance are expected
on consecutive lines (as n-best lists are written), which keeps memory constant on huge lists.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rnncli.checkpoint import Checkpoint
from rnncli.errors import RnncliError, UsageError
from rnncli.score import score_ids, sentence_ids

BATCH_LINES = 4096


@dataclass
class Hypothesis:
    id: str
    text: str
    am: float | None = None  # acoustic cost
    old: float | None = None  # the old language model's cost
    rnn: float = 0.0  # this model's cost, -ln P

    @property
    def utterance(self) -> str:
        stem, _, n = self.id.rpartition("-")
        return stem if stem and n.isdigit() else self.id

    def total(self, weight: float) -> float:
        if self.am is None:
            return self.rnn
        return self.am + weight * self.rnn + (1.0 - weight) * (self.old or 0.0)


def parse_line(line: str, number: int, name: str) -> Hypothesis | None:
    """One n-best line; None for a blank one."""
    line = line.rstrip("\n")
    if not line.strip():
        return None
    if "\t" in line:
        fields = line.split("\t")
        if len(fields) not in (3, 4):
            raise RnncliError(f"{name}: line {number} has {len(fields)} tab-separated fields; expected "
                              "id, text, am_cost and optionally old_lm_cost")
        try:
            costs = [float(f) for f in fields[2:]]
        except ValueError:
            raise RnncliError(f"{name}: line {number}: the costs {fields[2:]} are not numbers") from None
        if not all(math.isfinite(c) for c in costs):
            raise RnncliError(f"{name}: line {number}: a cost is not finite")
        return Hypothesis(fields[0], fields[1], costs[0], costs[1] if len(costs) > 1 else None)
    parts = line.split(maxsplit=1)
    return Hypothesis(parts[0], parts[1] if len(parts) > 1 else "")


def rescore(ck: Checkpoint, lines: Iterable[str], name: str, eos: bool = True) -> Iterator[Hypothesis]:
    """Every hypothesis with its cost under the model, in input order, scored in batches."""
    batch: list[Hypothesis] = []
    for number, line in enumerate(lines, 1):
        hyp = parse_line(line, number, name)
        if hyp is not None:
            batch.append(hyp)
        if len(batch) >= BATCH_LINES:
            yield from _score(ck, batch, eos)
            batch = []
    if batch:
        yield from _score(ck, batch, eos)


def _score(ck: Checkpoint, batch: list[Hypothesis], eos: bool) -> list[Hypothesis]:
    ids = [sentence_ids(ck.tokenizer, h.text, eos) for h in batch]
    for h, lp in zip(batch, score_ids(ck, ids), strict=True):
        h.rnn = -float(lp.sum())
    return batch


def best_per_utterance(hyps: Iterable[Hypothesis], weight: float) -> Iterator[Hypothesis]:
    """The lowest-total hypothesis of each run of consecutive lines of one utterance."""
    best: Hypothesis | None = None
    for h in hyps:
        if best is not None and h.utterance != best.utterance:
            yield best
            best = None
        if best is None or h.total(weight) < best.total(weight):
            best = h
    if best is not None:
        yield best


def check_weight(weight: float) -> None:
    if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
        raise UsageError(f"--weight must be in [0, 1], not {weight}")
