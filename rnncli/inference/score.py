"""Scoring text: P(sentence) as the product of the model's conditional probabilities,

    log P(y<1>, ..., y<n>, <EOS>) = sum_t log ŷ<t>[y<t>]

where every sentence starts from the state training starts a line from (zero state, the previous
token being <EOS>) and, unless `eos=False`, includes P(<EOS> | sentence). Sentences are scored in
padded batches through the forward-only path (model.logprobs), long ones in time chunks with the
state carried, never token by token.

Units: natural log by default; log10 and bits are conversions. Perplexity = exp(-logprob / tokens).
File summaries follow KenLM/SRILM: perplexity with and without <UNK> tokens (OOVs), ppl1 without
<EOS>, and bits per character of the text (newlines counted), comparable across tokenizer levels.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

from rnncli.errors import UsageError
from rnncli.formats.checkpoint import Checkpoint
from rnncli.jobs.shards import Part, Shard, Task
from rnncli.models.model import Model, Params
from rnncli.text.data import chunks, contiguous_streams
from rnncli.text.tokenizers import EOS, UNK

BATCH_SENTENCES = 64
TIME_CHUNK = 256
UNIT_FACTOR = {"ln": 1.0, "log10": 1 / math.log(10), "bits": 1 / math.log(2)}


@dataclass
class SentenceScore:
    text: str
    ids: list[int]
    logprobs: list[float]  # natural log of each token's probability, <EOS> last when included

    @property
    def logprob(self) -> float:
        return float(sum(self.logprobs))

    @property
    def tokens(self) -> int:
        return len(self.ids)

    @property
    def oov(self) -> int:
        return sum(1 for i in self.ids if i == UNK)

    @property
    def perplexity(self) -> float:
        return math.exp(-self.logprob / self.tokens) if self.tokens else float("nan")


def sentence_record(ck: Checkpoint, s: SentenceScore, per_token: bool) -> dict:
    """A sentence's score as `score --json` prints it (and the server's /v1/score answers)."""
    record = {"text": s.text, "logprob": s.logprob, "log10prob": s.logprob / math.log(10),
              "log2prob": s.logprob / math.log(2), "probability": math.exp(s.logprob), "tokens": s.tokens,
              "oov": s.oov, "perplexity": s.perplexity}
    if per_token:
        names = ck.tokenizer.token_texts(s.ids)
        record["per_token"] = [{"token": n, "id": i, "probability": math.exp(lp), "logprob": lp}
                               for n, i, lp in zip(names, s.ids, s.logprobs, strict=True)]
    return record


def sentence_ids(tokenizer, text: str, eos: bool) -> np.ndarray:
    """Token ids of one sentence (newlines inside it are treated as spaces), ending in <EOS> if eos."""
    text = text.replace("\n", " ")
    ids = tokenizer.encode(text if tokenizer.level == "char" else text.strip())
    ids = ids[ids != EOS] if tokenizer.level != "char" else ids
    if eos:
        ids = np.append(ids, EOS)
    return ids.astype(np.int64)


def score_ids(ck: Checkpoint, sentences: list[np.ndarray]) -> list[np.ndarray]:
    """Per-token log-probabilities of each id sequence, each scored from the start state."""
    from rnncli.execution.allocator import keep_freed_memory

    keep_freed_memory()
    model, params = Model(ck.model), ck.params
    dtype = params["embed.weight"].dtype
    results: list[np.ndarray | None] = [None] * len(sentences)
    order = sorted(range(len(sentences)), key=lambda i: len(sentences[i]))
    for start in range(0, len(order), BATCH_SENTENCES):
        batch = order[start : start + BATCH_SENTENCES]
        lengths = [len(sentences[i]) for i in batch]
        T, B = max(lengths), len(batch)
        if T == 0:
            for i in batch:
                results[i] = np.zeros(0)
            continue
        targets = np.zeros((T, B), np.int64)  # padding after a sentence's end is never read back
        for b, i in enumerate(batch):
            targets[: lengths[b], b] = sentences[i]
        inputs = np.empty_like(targets)
        inputs[0] = EOS
        inputs[1:] = targets[:-1]
        state = model.initial_state(B, dtype)
        lp = np.empty((T, B))
        for t0 in range(0, T, TIME_CHUNK):
            t1 = min(t0 + TIME_CHUNK, T)
            lp[t0:t1], state = model.logprobs(params, np.ascontiguousarray(inputs[t0:t1]),
                                              np.ascontiguousarray(targets[t0:t1]), state)
        for b, i in enumerate(batch):
            results[i] = lp[: lengths[b], b].astype(np.float64)
    return results  # type: ignore[return-value]


def score_sentences(ck: Checkpoint, texts: list[str], eos: bool = True) -> list[SentenceScore]:
    ids = [sentence_ids(ck.tokenizer, t, eos) for t in texts]
    for text, s in zip(texts, ids, strict=True):
        if len(s) == 0 or (eos and len(s) == 1 and not text.strip()):
            raise UsageError("cannot score an empty sentence")
    lps = score_ids(ck, ids)
    return [SentenceScore(t, s.tolist(), lp.tolist()) for t, s, lp in zip(texts, ids, lps, strict=True)]


@dataclass
class FileScore:
    name: str
    sentences: int
    tokens: int  # scored tokens, <EOS> included when scored
    oov: int
    eos: int  # <EOS> tokens scored
    logprob: float  # natural log, all tokens
    logprob_known: float  # natural log, <UNK> tokens left out
    chars: int  # characters of the scored text, one newline per sentence included
    eos_logprob: float = 0.0  # natural log, the <EOS> tokens only

    @property
    def perplexity(self) -> float:
        return math.exp(-self.logprob / self.tokens) if self.tokens else float("nan")

    @property
    def perplexity_known(self) -> float:
        n = self.tokens - self.oov
        return math.exp(-self.logprob_known / n) if n else float("nan")

    @property
    def ppl1(self) -> float:
        """Perplexity without the <EOS> tokens (SRILM's ppl1), <UNK> tokens left out."""
        n = self.tokens - self.oov - self.eos
        return math.exp(-(self.logprob_known - self.eos_logprob) / n) if n > 0 else float("nan")

    @property
    def bits_per_char(self) -> float:
        return -self.logprob / math.log(2) / self.chars if self.chars else float("nan")


@dataclass
class ScoreLines(Task):
    """`score --file` over one shard: every non-blank line scored as a sentence. Its part holds the
    file summary's sums and, unless `output` is "summary", one output line per scored line:
        tsv     line number, log-probability (`unit`), tokens, perplexity, tab-separated
        jsonl   the same as JSON lines
        keep    the line itself, when its perplexity is below `keep_below` / above `keep_above`"""

    eos: bool = True
    output: str = "summary"
    unit: str = "ln"
    keep_below: float | None = None
    keep_above: float | None = None

    def run(self, ck: Checkpoint, shard: Shard) -> Part:
        part = Part(shard.index, shard.first, len(shard.items), "")
        numbered = []
        for number, line in enumerate(shard.items, shard.first):
            if line is None:
                part.add_bad(number)
            elif line.strip():
                numbered.append((number, line))
        ids = [sentence_ids(ck.tokenizer, line, self.eos) for _, line in numbered]
        sums = dict.fromkeys(("sentences", "tokens", "oov", "eos", "logprob", "logprob_known", "chars",
                              "eos_logprob", "kept"), 0.0)
        out = []
        for (number, line), s, lp in zip(numbered, ids, score_ids(ck, ids) if ids else [], strict=True):
            unk = s == UNK
            logprob = float(lp.sum())
            sums["sentences"] += 1
            sums["tokens"] += len(s)
            sums["oov"] += int(unk.sum())
            sums["logprob"] += logprob
            sums["logprob_known"] += float(lp[~unk].sum())
            if self.eos and len(s):
                sums["eos"] += 1
                sums["eos_logprob"] += float(lp[-1])
            sums["chars"] += len(line) + (1 if self.eos else 0)
            ppl = math.exp(-logprob / len(s)) if len(s) else float("nan")
            if self.output == "tsv":
                out.append(f"{number}\t{logprob * UNIT_FACTOR[self.unit]:.6f}\t{len(s)}\t{ppl:.4f}\n")
            elif self.output == "jsonl":
                out.append(json.dumps({"id": number, "logprob": logprob * UNIT_FACTOR[self.unit], "tokens": len(s),
                                       "perplexity": ppl}) + "\n")
            elif self.output == "keep" and (self.keep_below is None or ppl < self.keep_below) \
                    and (self.keep_above is None or ppl > self.keep_above):
                sums["kept"] += 1
                out.append(line + "\n")
        part.counts, part.text = sums, "".join(out)
        return part


def file_score(name: str, counts: dict[str, float]) -> FileScore:
    """The file summary from the sums of ScoreLines's parts."""
    if not counts.get("sentences"):
        raise UsageError(f"{name}: no sentences to score (only blank lines)")
    c = {k: counts.get(k, 0) for k in ("sentences", "tokens", "oov", "eos", "chars")}
    return FileScore(name, int(c["sentences"]), int(c["tokens"]), int(c["oov"]), int(c["eos"]), counts["logprob"],
                     counts["logprob_known"], int(c["chars"]), counts["eos_logprob"])


def continuous_loss(ck: Checkpoint, ids: np.ndarray, batch_size: int, seq_len: int) -> float:
    """Mean nats per token of a whole token stream, scored the way training validates
    (contiguous streams, state carried across lines): the same number `train` reports."""
    if len(ids) < 2:
        raise UsageError("need at least two tokens to score a stream")
    from rnncli.execution.allocator import keep_freed_memory

    keep_freed_memory()
    return stream_loss(Model(ck.model), ck.params, ids, batch_size, seq_len)


def continuous_report(ck: Checkpoint, corpus, streams: int | None = None, store: str | None = None,
                      on_note=lambda note: None) -> dict:
    """`score --file --continuous` (and `evaluate` of a language model): a whole file as one stream,
    cut into `streams` contiguous streams (default: as the model trained, its batch size); its ids
    from the token store `store` when it holds them (else encoded into it)."""
    from rnncli.text.store import corpus_ids

    _, ids = corpus_ids(corpus, ck.tokenizer, ck.tokenizer_config, store, on_note)
    loss = continuous_loss(ck, ids, streams or ck.train.batch_size, ck.train.seq_len)
    return {"file": corpus.name, "tokens": int(len(ids)), "loss": loss, "perplexity": math.exp(loss)}


def stream_loss(model: Model, params: Params, ids: np.ndarray, batch_size: int, seq_len: int,
                max_positions: int | None = None) -> float:
    """Mean nats per token of a token stream (N,), cut into up to `batch_size` contiguous streams
    read in chunks of `seq_len` with the state carried, as training batches (training's
    validation): every token is predicted except the first of each stream. `max_positions` reads
    only that many positions of each stream (a sample spread over the whole stream)."""
    streams = contiguous_streams(ids, max(1, min(batch_size, (len(ids) - 1) // 2)))
    if max_positions is not None:
        streams = streams[:, : max_positions + 1]
    state = model.initial_state(streams.shape[0], params["embed.weight"].dtype)
    total, count = 0.0, 0
    for inputs, targets in chunks(streams, seq_len):
        lp, state = model.logprobs(params, inputs, targets, state)
        total -= float(lp.sum(dtype=np.float64))
        count += lp.size
    return total / max(count, 1)
