"""Generating text: temperature, top-k, top-p, greedy (temperature 0) and beam search.

Sampling runs inside Numba (kernels/generate.py) in short bursts, so output streams while the
per-token work never passes through Python. Every sample starts from the state training starts a
line from: zero state, the previous token being <EOS>; a prime is fed first and then continued.
<UNK> is never produced (see `choose_token`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rnncli.checkpoint import Checkpoint
from rnncli.config import SampleConfig
from rnncli.model import Model
from rnncli.tokenizers import EOS, UNK


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


def sample_stream(ck: Checkpoint, prime_ids: np.ndarray, c: SampleConfig, rng: np.random.Generator,
                  burst: int = 32) -> Iterator[tuple[list[int], list[float]]]:
    """Yield generated tokens (and their log-probs) in bursts, until length, <EOS> or the caller
    stops iterating."""
    from rnncli.kernels.generate import generate

    model = Model(ck.model)
    weights = model.step_weights(ck.params)
    h, cstate = model.step_state(model.initial_state(1, ck.params["embed.weight"].dtype))
    context = np.concatenate([[EOS], prime_ids]).astype(np.int64)
    done = 0
    size = 8  # a small first burst: text appears at once
    while done < c.length:
        n = min(size, c.length - done)
        out = np.empty(n, np.int64)
        lps = np.empty(n, np.float64)
        uniforms = rng.random(n)
        got = generate(*weights, h, cstate, context, uniforms, c.temperature, c.top_k, c.top_p, c.until_eos, out,
                       lps)
        yield out[:got].tolist(), lps[:got].tolist()
        done += got
        if got < n:  # stopped at <EOS>
            return
        context = out[got - 1 : got]
        size = burst


def beam_search(ck: Checkpoint, prime_ids: np.ndarray, c: SampleConfig) -> tuple[list[int], float]:
    """The most likely continuation of `c.length` tokens (or ending in <EOS>) of the prime."""
    model = Model(ck.model)
    state = model.initial_state(1, ck.params["embed.weight"].dtype)
    return beam_search_from(model, ck.params, state, np.concatenate([[EOS], prime_ids]).astype(np.int64), c)


def beam_search_from(model: Model, params, state, context: np.ndarray, c: SampleConfig,
                     weights=None) -> tuple[list[int], float]:
    """Beam search from a language model's `state` after feeding `context`: beams ranked by
    log-probability per token (length-normalised). <UNK> is never extended. (A translator's decoder
    starts from the encoder's state.) `weights`: `model.step_weights(params)`, if already stacked."""
    weights = weights or model.step_weights(params)
    logits = None
    for t in context:
        logits, state = model.step(params, np.array([t]), state, weights)
    beams = [([], 0.0, state, logits[0])]  # (tokens, logprob, state, next logits)
    finished: list[tuple[list[int], float]] = []
    width = min(c.beam, len(logits[0]) - 1)  # wider than the vocabulary less <UNK> changes nothing
    for _ in range(c.length):
        candidates = []
        for tokens, score, st, lg in beams:
            lp = lg - lg.max()
            lp = lp - np.log(np.exp(lp).sum())
            lp[UNK] = -np.inf
            for tok in np.argsort(-lp)[:width]:
                candidates.append((tokens + [int(tok)], score + float(lp[tok]), st))
        candidates.sort(key=lambda x: -x[1] / len(x[0]))
        beams = []
        for tokens, score, st in candidates:
            if c.until_eos and tokens[-1] == EOS:
                finished.append((tokens, score))
            elif len(beams) < width:
                logits_next, st_next = model.step(params, np.array([tokens[-1]]), st, weights)
                beams.append((tokens, score, st_next, logits_next[0]))
            if len(beams) >= width and len(finished) >= width:
                break
        if not beams:
            break
    finished.extend((t, s) for t, s, _, _ in beams)
    if not finished:
        return [], 0.0
    tokens, score = max(finished, key=lambda x: x[1] / max(len(x[0]), 1))
    return tokens, score


def sample_from(model: Model, params, state, context: np.ndarray, c: SampleConfig,
                rng: np.random.Generator, weights=None) -> tuple[list[int], float]:
    """Up to `c.length` tokens sampled (greedy at temperature 0) from a language model's `state`
    after feeding `context`, stopping at <EOS> when `c.until_eos`; and their log-probability."""
    from rnncli.kernels.generate import generate

    h, cstate = model.step_state(state)
    out = np.empty(c.length, np.int64)
    lps = np.empty(c.length, np.float64)
    got = generate(*(weights or model.step_weights(params)), h, cstate, context.astype(np.int64), rng.random(c.length),
                   c.temperature, c.top_k, c.top_p, c.until_eos, out, lps)
    return out[:got].tolist(), float(lps[:got].sum())


DECODE_CONTEXT = 8  # tokens of context that decide how new tokens join the text (spacing)


def continuation_text(tokenizer, context: list[int], tokens: list[int]) -> str:
    """Text of `tokens` as it continues `context` (spacing decided with the context in view).
    Only the last few context tokens matter, so streaming decodes in constant time per burst."""
    context = list(context[-DECODE_CONTEXT:])
    return tokenizer.decode(context + tokens)[len(tokenizer.decode(context)):]


def generate_samples(ck: Checkpoint, prime: str, c: SampleConfig, write=None) -> Iterator[Sample]:
    """Yield `c.num_samples` samples; if `write` is given, stream each sample's text through it."""
    tokenizer = ck.tokenizer
    prime_ids, _ = encode_prime(tokenizer, prime)
    rng = np.random.default_rng(c.seed)
    for _ in range(c.num_samples):
        if write:
            write(prime)
        if c.beam > 0:
            tokens, logprob = beam_search(ck, prime_ids, c)
            text = continuation_text(tokenizer, list(prime_ids), tokens)
            cut = _cut_at_stop(text, c.stop, 0)
            if cut is not None:
                text, tokens = cut, _tokens_up_to_stop(tokenizer, prime_ids, tokens, 0, c.stop)
            if write:
                write(text)
            yield Sample(prime + text, text, tokens, logprob)
            continue
        tokens: list[int] = []
        logprobs: list[float] = []
        text = ""
        for burst, lps in sample_stream(ck, prime_ids, c, rng):
            context = tokens[-DECODE_CONTEXT:]
            if len(context) < DECODE_CONTEXT:
                context = list(prime_ids[len(prime_ids) - (DECODE_CONTEXT - len(context)):]) + context
            new = continuation_text(tokenizer, context, burst)
            start = len(tokens)
            tokens += burst
            logprobs += lps
            cut = _cut_at_stop(text + new, c.stop, len(text))
            if cut is not None:  # keep the text up to the stop string, and the tokens that made it
                new = cut[len(text):]
                tokens = _tokens_up_to_stop(tokenizer, prime_ids, tokens, start, c.stop)
                logprobs = logprobs[: len(tokens)]
            text += new
            if write and new:
                write(new)
            if cut is not None:
                break
        yield Sample(prime + text, text, tokens, float(sum(logprobs)))


def _cut_at_stop(text: str, stop: str | None, searched: int) -> str | None:
    """`text` up to and including the first `stop`, or None; `text[:searched]` is known to hold none."""
    if not stop:
        return None
    at = text.find(stop, max(0, searched - len(stop) + 1))
    return None if at < 0 else text[: at + len(stop)]


def _tokens_up_to_stop(tokenizer, prime_ids, tokens: list[int], start: int, stop: str) -> list[int]:
    """The shortest prefix of `tokens` (at least `start` long) whose text contains `stop`."""
    for n in range(start, len(tokens) + 1):
        if stop in continuation_text(tokenizer, list(prime_ids), tokens[:n]):
            return tokens[:n]
    return tokens


def stdout_writer(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
