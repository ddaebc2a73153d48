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

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from rnncli.errors import UsageError
from rnncli.formats.checkpoint import Checkpoint
from rnncli.inference.score import score_ids, sentence_ids
from rnncli.jobs.shards import Part, Shard, Task


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


def parse_line(line: str) -> Hypothesis | None:
    """One n-best line; None for a blank one. A malformed line raises ValueError saying why."""
    line = line.rstrip("\n")
    if not line.strip():
        return None
    if "\t" in line:
        fields = line.split("\t")
        if len(fields) not in (3, 4):
            raise ValueError(f"{len(fields)} tab-separated fields; expected id, text, am_cost and optionally "
                             "old_lm_cost")
        try:
            costs = [float(f) for f in fields[2:]]
        except ValueError:
            raise ValueError(f"the costs {fields[2:]} are not numbers") from None
        if not all(math.isfinite(c) for c in costs):
            raise ValueError("a cost is not finite")
        return Hypothesis(fields[0], fields[1], costs[0], costs[1] if len(costs) > 1 else None)
    parts = line.split(maxsplit=1)
    return Hypothesis(parts[0], parts[1] if len(parts) > 1 else "")


def utterance_of(line: str) -> str:
    """The utterance of a line's hypothesis ("" for a blank line): a shard is never cut inside one."""
    fields = line.split("\t", 1)[0].split(maxsplit=1)
    return Hypothesis(fields[0], "").utterance if fields else ""


@dataclass
class Rescore(Task):
    """`rescore` over one shard (whole utterances): each hypothesis's cost, or with `best` each
    utterance's best hypothesis, as the output lines (`text` or `json`). Malformed lines are bad lines."""

    eos: bool = True
    weight: float = 0.5
    best: bool = False
    as_json: bool = False

    def run(self, ck: Checkpoint, shard: Shard) -> Part:
        part = Part(shard.index, shard.first, len(shard.items), "")
        hyps: list[Hypothesis] = []
        for number, line in enumerate(shard.items, shard.first):
            if line is None:
                part.add_bad(number)
                continue
            try:
                hyp = parse_line(line)
            except ValueError as err:
                part.add_bad(number, str(err))
                continue
            if hyp is not None:
                hyps.append(hyp)
        ids = [sentence_ids(ck.tokenizer, h.text, self.eos) for h in hyps]
        for h, lp in zip(hyps, score_ids(ck, ids) if ids else [], strict=True):
            h.rnn = -float(lp.sum())
        chosen = list(best_per_utterance(hyps, self.weight)) if self.best else hyps
        part.counts = {"hypotheses": len(hyps)}
        part.text = "".join(self.line(h) + "\n" for h in chosen)
        return part

    def line(self, h: Hypothesis) -> str:
        if self.as_json:
            record = {"id": h.id, "utterance": h.utterance, "text": h.text, "rnn_cost": h.rnn}
            if h.am is not None:
                record.update(am_cost=h.am, old_lm_cost=h.old, total=h.total(self.weight))
            return json.dumps(record, ensure_ascii=False)
        if self.best:
            return f"{h.utterance} {h.text}"
        if h.am is not None:
            return f"{h.id}\t{h.rnn:.6f}\t{h.total(self.weight):.6f}"
        return f"{h.id} {h.rnn:.6f}"


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
