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

As speech pipelines need it:
- Symbols that are not words (`[noise]`, `<SPOKEN_NOISE>`) can be removed from a hypothesis before
  it is scored (`ignore`: whole fields between spaces).
- A word outside the vocabulary costs what the model gives <UNK> plus an out-of-vocabulary cost:
  one for every such word (`unk_cost`), or each word's own (`unk_costs`, from a file of `word
  probability` lines as Kaldi's `unk.probs`: -ln p; a word the file lacks costs the file's
  largest), so that a hypothesis with an unknown word does not beat the same one with the right,
  known word for free.
- The utterance of a hypothesis is found from its id by a rule (`utterance`, a regular expression
  whose first group is the utterance id; an id it does not match is its own utterance): by default
  Kaldi's `utt-id-N` (a last `-N` dropped), which LibriSpeech-style utterance ids (`1089-134686-0000`)
  also match: give `^(.*)$` when each id is already an utterance's. The hypotheses of one utterance
  are expected on consecutive lines (as n-best lists are written), which keeps memory constant on
  huge lists.
- Every input line gets exactly one output line (blank for a blank one), in order, so that Kaldi's
  scripts' line-for-line checks hold: a bad line is named on stderr and given LOSING_COST, and the
  command exits with status 1.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache

from rnncli.errors import RnncliError, UsageError
from rnncli.formats.checkpoint import Checkpoint
from rnncli.inference.score import score_ids, sentence_ids
from rnncli.jobs.shards import Part, Shard, Task
from rnncli.text.tokenizers import UNK

KALDI_UTTERANCE = r"^(.*)-\d+$"
LOSING_COST = 1e30  # a bad line's cost: finite (awk reads "inf" as 0), and no hypothesis's is near it


@lru_cache(maxsize=8)
def _rule(pattern: str) -> re.Pattern:
    return re.compile(pattern)


def utterance_id(hypothesis_id: str, pattern: str = KALDI_UTTERANCE) -> str:
    """The utterance a hypothesis id belongs to: the rule's first group, else the id itself."""
    m = _rule(pattern).match(hypothesis_id)
    return m.group(1) if m and m.group(1) else hypothesis_id


def check_utterance_rule(pattern: str) -> None:
    try:
        rule = re.compile(pattern)
    except re.error as err:
        raise UsageError(f"--utterance {pattern!r} is not a regular expression ({err})") from None
    if rule.groups < 1:
        raise UsageError(f"--utterance {pattern!r} needs a group, (...), that holds the utterance id")


@dataclass
class Hypothesis:
    id: str
    text: str
    am: float | None = None  # acoustic cost
    old: float | None = None  # the old language model's cost
    rnn: float = 0.0  # this model's cost, -ln P, with the out-of-vocabulary costs
    oov: int = 0  # words outside the vocabulary
    bad: bool = False  # a line that could not be read: given LOSING_COST
    tsv: bool = False  # a line of the TSV form (a bad one's output line keeps its form)

    def total(self, weight: float) -> float:
        if self.bad:
            return LOSING_COST
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


def utterance_of(line: str, pattern: str = KALDI_UTTERANCE) -> str:
    """The utterance of a line's hypothesis ("" for a blank line): a shard is never cut inside one."""
    fields = line.split("\t", 1)[0].split(maxsplit=1)
    return utterance_id(fields[0], pattern) if fields else ""


def read_unk_costs(path: str) -> dict[str, float]:
    """Per-word out-of-vocabulary costs from a file of `word probability` lines (Kaldi's unk.probs):
    -ln p each. A line that is not one word and a probability in (0, 1] is refused, naming it."""
    costs: dict[str, float] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                fields = line.split()
                if not fields:
                    continue
                try:
                    p = float(fields[1]) if len(fields) == 2 else math.nan
                except ValueError:
                    p = math.nan
                if not 0.0 < p <= 1.0:
                    raise RnncliError(f"{path}: line {number} is not `word probability` with a probability in "
                                      f"(0, 1]: {line.strip()[:80]!r}")
                costs[fields[0]] = -math.log(p)
    except (OSError, UnicodeDecodeError) as err:
        raise RnncliError(f"{path}: cannot read the out-of-vocabulary costs ({err})") from None
    if not costs:
        raise RnncliError(f"{path}: no `word probability` lines")
    return costs


def unk_cost_option(value: str) -> tuple[float, dict[str, float] | None]:
    """--unk-cost: a number (the cost of every out-of-vocabulary word), or a file of per-word ones."""
    try:
        cost = float(value)
    except ValueError:
        costs = read_unk_costs(value)
        return max(costs.values()), costs
    if not math.isfinite(cost) or cost < 0:
        raise UsageError(f"--unk-cost must be a cost of at least 0 or a file of `word probability` lines, not {value}")
    return cost, None


@dataclass
class Rescore(Task):
    """`rescore` over one shard (whole utterances): each hypothesis's cost, or with `best` each
    utterance's best hypothesis, as the output lines (`text` or `json`). Malformed lines are bad
    lines, and without `best` still get their output line, at LOSING_COST."""

    eos: bool = True
    weight: float = 0.5
    best: bool = False
    as_json: bool = False
    unk_cost: float = 0.0  # each out-of-vocabulary word's cost beyond P(<UNK>) ...
    unk_costs: dict[str, float] | None = None  # ... or each one's own (a word not in it: unk_cost)
    ignore: list[str] = field(default_factory=list)  # symbols removed before scoring
    utterance: str = KALDI_UTTERANCE

    def run(self, ck: Checkpoint, shard: Shard) -> Part:
        part = Part(shard.index, shard.first, len(shard.items), "")
        lines: list[Hypothesis | None] = []  # one per input line: None for a blank one
        for number, line in enumerate(shard.items, shard.first):
            try:
                if line is None:
                    raise ValueError("not valid text (an undecodable byte or a NUL)")
                lines.append(parse_line(line))
            except ValueError as err:
                part.add_bad(number, str(err))
                fields = (line or "").split("\t", 1)[0].split(maxsplit=1)
                lines.append(Hypothesis(fields[0] if fields else f"line-{number}", "", bad=True,
                                        tsv="\t" in (line or "")))
        hyps = [h for h in lines if h is not None and not h.bad]
        ignored = set(self.ignore)
        texts = [" ".join(w for w in h.text.split() if w not in ignored) if ignored else h.text for h in hyps]
        ids = [sentence_ids(ck.tokenizer, text, self.eos) for text in texts]
        for h, text, lp in zip(hyps, texts, score_ids(ck, ids) if ids else [], strict=True):
            h.rnn = -float(lp.sum())
            if self.unk_cost or self.unk_costs:
                unknown = [w for w, i in ck.tokenizer.pieces(text) if i == UNK]
                h.oov = len(unknown)
                h.rnn += sum((self.unk_costs or {}).get(w, self.unk_cost) for w in unknown)
        if self.best:
            chosen = list(best_per_utterance((h for h in lines if h is not None and not h.bad), self.weight,
                                             self.utterance))
            part.text = "".join(self.line(h) + "\n" for h in chosen)
        else:
            part.text = "".join(("" if h is None else self.line(h)) + "\n" for h in lines)
        part.counts = {"hypotheses": len(hyps)}
        return part

    def bad_lines_fate(self) -> str:
        return "left out of the output" if self.best else f"each given the cost {LOSING_COST:g}"

    def line(self, h: Hypothesis) -> str:
        cost = LOSING_COST if h.bad else h.rnn
        if self.as_json:
            record = {"id": h.id, "utterance": utterance_id(h.id, self.utterance), "text": h.text, "rnn_cost": cost}
            if self.unk_cost or self.unk_costs:
                record["oov_words"] = h.oov
            if h.am is not None or h.bad:
                record.update(am_cost=h.am, old_lm_cost=h.old, total=h.total(self.weight))
            if h.bad:
                record["bad"] = True
            return json.dumps(record, ensure_ascii=False)
        if self.best:
            return f"{utterance_id(h.id, self.utterance)} {h.text}"
        if h.bad:
            return f"{h.id}\t{LOSING_COST:g}\t{LOSING_COST:g}" if h.tsv else f"{h.id} {LOSING_COST:g}"
        if h.am is not None:
            return f"{h.id}\t{cost:.6f}\t{h.total(self.weight):.6f}"
        return f"{h.id} {cost:.6f}"


def best_per_utterance(hyps: Iterable[Hypothesis], weight: float,
                       pattern: str = KALDI_UTTERANCE) -> Iterator[Hypothesis]:
    """The lowest-total hypothesis of each run of consecutive lines of one utterance."""
    best: Hypothesis | None = None
    for h in hyps:
        if best is not None and utterance_id(h.id, pattern) != utterance_id(best.id, pattern):
            yield best
            best = None
        if best is None or h.total(weight) < best.total(weight):
            best = h
    if best is not None:
        yield best


def check_weight(weight: float) -> None:
    if not math.isfinite(weight) or not 0.0 <= weight <= 1.0:
        raise UsageError(f"--weight must be in [0, 1], not {weight}")
