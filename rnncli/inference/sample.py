"""Generating text: temperature, top-k, top-p, greedy (temperature 0) and beam search.

Sampling runs inside Numba (kernels/generate.py) in short bursts, so output streams while the
per-token work never passes through Python. Every sample starts from the state training starts a
line from: zero state, the previous token being <EOS>; a prime is fed first and then continued.
<UNK> is never produced (see `choose_token`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rnncli.config import SampleConfig
from rnncli.execution.steps import Steps
from rnncli.formats.checkpoint import Checkpoint
from rnncli.jobs.shards import Part, Task
from rnncli.models.model import Model
from rnncli.text.tokenizers import EOS, UNK


def encode_prime(tokenizer, prime: str) -> tuple[np.ndarray, int]:
    """Token ids of the prime (no trailing <EOS> unless it ends with a newline), and how many of
    them are <UNK>."""
    ids = tokenizer.encode(prime)
    if len(ids) and ids[-1] == EOS and not prime.endswith("\n"):
        ids = ids[:-1]
    return ids.astype(np.int64), int((ids == UNK).sum())


@dataclass
class Sample:
    text: str  # the prime followed by the continuation
    continuation: str
    tokens: list[int]  # generated token ids
    logprob: float  # model log-probability (temperature 1) of the generated tokens


def row_settings(configs: list[SampleConfig]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The generating kernel's sampling settings, one per row: temperature, top_k, top_p."""
    return (np.array([c.temperature for c in configs], np.float64), np.array([c.top_k for c in configs], np.int64),
            np.array([c.top_p for c in configs], np.float64))


def sample_stream(ck: Checkpoint, prime_ids: np.ndarray, c: SampleConfig,
                  rngs: list[np.random.Generator]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Generate len(rngs) samples side by side, row b drawing from rngs[b]; yield their tokens and
    log-probabilities, (N, n) each, in bursts (as long as the engine's run wants them: steps.py),
    until length, every row's <EOS> (with until_eos) or the caller stops iterating. A row's tokens
    after its <EOS> are not meaningful; the bursts' sizes do not change the samples."""
    N = len(rngs)
    model = Model(ck.model)
    steps = Steps(model, ck.params, N, c.length)
    h, cstate = model.step_state(model.initial_state(N, ck.params["embed.weight"].dtype))
    context = np.repeat(np.concatenate([[EOS], prime_ids]).astype(np.int64)[:, None], N, axis=1)  # (T, N)
    finished = np.zeros(N, np.bool_)
    done = 0
    size = 8  # a small first burst: text appears at once
    while done < c.length:
        n = min(size, c.length - done)
        out = np.empty((N, n), np.int64)
        lps = np.empty((N, n), np.float64)
        uniforms = np.stack([rng.random(n) for rng in rngs])
        got = steps.generate(h, cstate, context, uniforms, *row_settings([c] * N), c.until_eos, finished, out, lps)
        yield out[:, :got], lps[:, :got]
        done += got
        if got < n:  # every row stopped at <EOS>
            return
        context = np.ascontiguousarray(out[:, got - 1:got].T)  # (1, N)
        size = steps.burst


def beam_search(ck: Checkpoint, prime_ids: np.ndarray, c: SampleConfig) -> list[tuple[list[int], float]]:
    """The most likely continuations of `c.length` tokens (or ending in <EOS>) of the prime, best first."""
    model = Model(ck.model)
    state = model.initial_state(1, ck.params["embed.weight"].dtype)
    return beam_search_nbest(model, ck.params, state, np.concatenate([[EOS], prime_ids]).astype(np.int64), c)


def beam_search_from(model: Model, params, state, context: np.ndarray, c: SampleConfig,
                     weights=None) -> tuple[list[int], float]:
    """The best continuation of a beam search from a language model's `state` after feeding
    `context` (a translator's decoder starts from the encoder's state)."""
    return beam_search_nbest(model, params, state, context, c, weights)[0]


def beam_search_nbest(model: Model, params, state, context: np.ndarray, c: SampleConfig,
                      weights=None) -> list[tuple[list[int], float]]:
    """Beam search of width c.beam: the hypotheses (tokens, log-probability) it ends with, ranked by
    log-probability per token (length-normalised), best first. <UNK> is never extended. All beams
    advance together, one batched model step per token (its products shared with a helper on the
    second core where it can run, else on one core: execution/steps.py), and each step's choice is
    one kernel (`beam_candidates`); a hypothesis's tokens are a row of `history`, its state a row of
    h, c. `weights`: `model.step_weights(params)` (a decoder's, stepped on one core)."""
    if weights is not None:
        return _beam_search(model, state, context, c, weights)
    steps = Steps(model, params, c.beam, c.length, beam=True)
    return steps.run(lambda: _beam_search(model, state, context, c, steps.weights), model.step_state(state)[0])


MAX_BEAM_TOKENS = 1 << 26  # a beam's token history, width x length: 512 MB of int64


def _beam_search(model: Model, state, context: np.ndarray, c: SampleConfig, weights) -> list[tuple[list[int], float]]:
    from rnncli.kernels.generate import beam_candidates, model_step

    h, cell = model.step_state(state)
    for t in context:
        logits = model_step(*weights, np.array([t], np.int64), h, cell)
    width = min(c.beam, logits.shape[1] - 1)  # wider than the vocabulary less <UNK> changes nothing
    if width * c.length > MAX_BEAM_TOKENS:
        from rnncli.errors import UsageError

        raise UsageError(f"--beam {c.beam} x --length {c.length:,}: the hypotheses would hold {width * c.length:,} "
                         f"tokens (at most {MAX_BEAM_TOKENS:,}); lower --length or --beam")
    history = np.empty((width, c.length), np.int64)  # row j: the tokens of hypothesis j so far
    scores = np.zeros(1)
    finished: list[tuple[list[int], float]] = []
    steps = 0
    for steps in range(c.length):
        ending, ending_totals, rows, tokens, scores = beam_candidates(logits, scores, width, c.until_eos)
        for b, total in zip(ending.tolist(), ending_totals.tolist(), strict=True):
            finished.append((history[b, :steps].tolist() + [EOS], total))
        if rows.size == 0:
            break
        history[: rows.size, :steps] = history[rows, :steps]
        history[: rows.size, steps] = tokens
        h, cell = np.take(h, rows, axis=1), np.take(cell, rows, axis=1)
        logits = model_step(*weights, tokens, h, cell)
    else:
        steps = c.length
    finished.extend(zip(history[: scores.size, :steps].tolist(), scores.tolist(), strict=True))
    if not finished:
        return [([], 0.0)]
    return sorted(finished, key=lambda x: -x[1] / max(len(x[0]), 1))


def sample_from(model: Model, params, state, context: np.ndarray, c: SampleConfig,
                rng: np.random.Generator, weights=None) -> tuple[list[int], float]:
    """Up to `c.length` tokens sampled (greedy at temperature 0) from a language model's `state`
    (batch 1) after feeding `context`, stopping at <EOS> when `c.until_eos`; and their log-probability."""
    from rnncli.kernels.generate import generate

    h, cstate = model.step_state(state)
    out = np.empty((1, c.length), np.int64)
    lps = np.empty((1, c.length), np.float64)
    got = generate(*(weights or model.step_weights(params)), h, cstate, context.astype(np.int64)[:, None],
                   rng.random((1, c.length)), *row_settings([c]), c.until_eos, np.zeros(1, np.bool_), out, lps)
    return out[0, :got].tolist(), float(lps[0, :got].sum())


DECODE_CONTEXT = 8  # tokens of context that decide how new tokens join the text (spacing)


def continuation_text(tokenizer, context: list[int], tokens: list[int]) -> str:
    """Text of `tokens` as it continues `context` (spacing decided with the context in view).
    Only the last few context tokens matter, so streaming decodes in constant time per burst."""
    context = list(context[-DECODE_CONTEXT:])
    return tokenizer.decode(context + tokens)[len(tokenizer.decode(context)):]


class Growing:
    """One sample as its bursts arrive: its tokens, log-probabilities and text so far, and whether it
    has ended (its <EOS> with until_eos, or its stop string)."""

    def __init__(self, tokenizer, prime_ids: np.ndarray, c: SampleConfig):
        self.tokenizer, self.prime_ids, self.c = tokenizer, prime_ids, c
        self.tokens: list[int] = []
        self.logprobs: list[float] = []
        self.text = ""
        self.ended = False

    def extend(self, burst: list[int], lps: list[float]) -> str:
        """Take a burst; return the text it adds."""
        if self.c.until_eos and EOS in burst:
            end = burst.index(EOS) + 1
            burst, lps, self.ended = burst[:end], lps[:end], True
        context = self.tokens[-DECODE_CONTEXT:]
        if len(context) < DECODE_CONTEXT:
            context = list(self.prime_ids[len(self.prime_ids) - (DECODE_CONTEXT - len(context)):]) + context
        new = continuation_text(self.tokenizer, context, burst)
        start = len(self.tokens)
        self.tokens += burst
        self.logprobs += lps
        cut = _cut_at_stop(self.text + new, self.c.stop, len(self.text))
        if cut is not None:  # keep the text up to the stop string, and the tokens that made it
            new = cut[len(self.text):]
            self.tokens = _tokens_up_to_stop(self.tokenizer, self.prime_ids, self.tokens, start, self.c.stop)
            self.logprobs = self.logprobs[: len(self.tokens)]
            self.ended = True
        self.text += new
        return new


SAMPLE_GROUP = 64  # samples generated side by side, in one batched step


def generate_samples(ck: Checkpoint, prime: str, c: SampleConfig, write=None) -> Iterator[Sample]:
    """Yield `c.num_samples` samples; if `write` is given, write one sample's text through it as it
    is generated. With a beam, the beam's best `num_samples` hypotheses; else one sample draws from
    the seed's own stream, several are generated in groups of SAMPLE_GROUP (`sample_group`)."""
    tokenizer = ck.tokenizer
    prime_ids, _ = encode_prime(tokenizer, prime)
    if c.beam > 0:
        for tokens, logprob in beam_search(ck, prime_ids, c)[: c.num_samples]:
            text = continuation_text(tokenizer, list(prime_ids), tokens)
            cut = _cut_at_stop(text, c.stop, 0)
            if cut is not None:
                text, tokens = cut, _tokens_up_to_stop(tokenizer, prime_ids, tokens, 0, c.stop)
            if write:
                write(prime + text)
            yield Sample(prime + text, text, tokens, logprob)
        return
    if c.num_samples > 1:
        entropy = sample_entropy(c.seed)
        for first in range(0, c.num_samples, SAMPLE_GROUP):
            numbers = range(first, min(first + SAMPLE_GROUP, c.num_samples))
            yield from sample_group(ck, prime, c, numbers, entropy)
        return
    one = Growing(tokenizer, prime_ids, c)
    if write:
        write(prime)
    for tokens, lps in sample_stream(ck, prime_ids, c, [np.random.default_rng(c.seed)]):
        new = one.extend(tokens[0].tolist(), lps[0].tolist())
        if write and new:
            write(new)
        if one.ended:
            break
    yield Sample(prime + one.text, one.text, one.tokens, float(sum(one.logprobs)))


def sample_entropy(seed: int | None) -> int:
    """The entropy every sample's random stream derives from: the seed, or fresh entropy."""
    return seed if seed is not None else int(np.random.SeedSequence().entropy)


def sample_group(ck: Checkpoint, prime: str, c: SampleConfig, numbers: Iterable[int], entropy: int) -> list[Sample]:
    """Samples number `numbers`, generated side by side; sample i draws from its own stream, the
    i-th child of `entropy`'s seed sequence, so a sample is the same whichever group made it."""
    prime_ids, _ = encode_prime(ck.tokenizer, prime)
    rngs = [np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(i,))) for i in numbers]
    samples = [Growing(ck.tokenizer, prime_ids, c) for _ in rngs]
    for tokens, lps in sample_stream(ck, prime_ids, c, rngs):
        for b, sample in enumerate(samples):
            if not sample.ended:
                sample.extend(tokens[b].tolist(), lps[b].tolist())
        if all(s.ended for s in samples):
            break
    return [Sample(prime + s.text, s.text, s.tokens, float(sum(s.logprobs))) for s in samples]


def sample_record(s: Sample) -> dict:
    """A sample as `sample --json` prints it."""
    return {"text": s.text, "continuation": s.continuation, "tokens": len(s.tokens), "token_ids": s.tokens,
            "logprob": s.logprob}


def sample_text(s: Sample, first: bool) -> str:
    """A sample as `sample` prints it: its text ending in a newline, a blank line before all but the first."""
    return ("" if first else "\n") + s.text + ("" if s.text.endswith("\n") else "\n")


@dataclass
class SampleGroups(Task):
    """`sample -n N` over one shard of sample numbers, as printed (text or JSON lines)."""

    prime: str
    config: SampleConfig
    entropy: int
    as_json: bool = False

    def run(self, ck: Checkpoint, shard) -> Part:
        samples = sample_group(ck, self.prime, self.config, shard.items, self.entropy)
        if self.as_json:
            text = "".join(json.dumps(sample_record(s), ensure_ascii=False) + "\n" for s in samples)
        else:
            text = "".join(sample_text(s, i == 0) for i, s in zip(shard.items, samples, strict=True))
        part = Part(shard.index, shard.first, len(shard.items), text)
        part.counts = {"tokens": sum(len(s.tokens) for s in samples)}
        return part

    def describe(self) -> dict:
        return {"task": "SampleGroups", "prime": self.prime, "config": vars(self.config), "entropy": self.entropy,
                "as_json": self.as_json}


def _stops(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or [])


def _cut_at_stop(text: str, stop: str | list[str] | None, searched: int) -> str | None:
    """`text` up to and including the first stop string (one, or the earliest of several), or None;
    `text[:searched]` is known to hold none."""
    ends = []
    for s in _stops(stop):
        at = text.find(s, max(0, searched - len(s) + 1))
        if at >= 0:
            ends.append(at + len(s))
    return text[: min(ends)] if ends else None


def _tokens_up_to_stop(tokenizer, prime_ids, tokens: list[int], start: int, stop: str | list[str]) -> list[int]:
    """The shortest prefix of `tokens` (at least `start` long) whose text contains a stop string."""
    for n in range(start, len(tokens) + 1):
        text = continuation_text(tokenizer, list(prime_ids), tokens[:n])
        if any(s in text for s in _stops(stop)):
            return tokens[:n]
    return tokens


def stdout_writer(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
