"""What a task model says about new text: labels, tags, translations (how good they are on a
labelled file is each task's `evaluate`, tasks/). The language model's own commands are `sample`
and `score`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rnncli.config import SampleConfig
from rnncli.errors import UsageError
from rnncli.formats.checkpoint import Checkpoint
from rnncli.tasks import build_model, get_task
from rnncli.tasks.models import Batch, sub_params
from rnncli.text.examples import length_batches, split_words, text_ids, token_pieces
from rnncli.text.tokenizers import EOS


def require_task(ck: Checkpoint, task: str | tuple, path: str) -> None:
    """Refuse a model of another task, naming the command that uses it."""
    tasks = (task,) if isinstance(task, str) else task
    if ck.model.task not in tasks:
        its = get_task(ck.model.task)
        raise UsageError(f"{path} is {its.what} (--task {its.name}), not "
                         f"{' or '.join(get_task(t).what for t in tasks)}; use {its.command}")


def _by_length(inputs: list[np.ndarray], batch_size: int = 256):
    """Batches of inputs of one length: (indices, (T, B) array)."""
    for indices in length_batches(np.array([len(x) for x in inputs]), batch_size):
        yield indices, np.stack([inputs[i] for i in indices], axis=1)


# ---- classify ------------------------------------------------------------------------------------


@dataclass
class Classification:
    text: str
    label: str
    probabilities: list[tuple[str, float]]  # every label, most likely first


def classify(ck: Checkpoint, texts: list[str]) -> list[Classification]:
    model, labels = build_model(ck.model), ck.model.labels
    inputs = [text_ids(ck.tokenizer, t) for t in texts]
    out: list[Classification | None] = [None] * len(texts)
    for indices, batch in _by_length(inputs):
        probs = np.exp(model.logprobs(ck.params, Batch(batch, None)).astype(np.float64))
        for row, i in zip(probs, indices, strict=True):
            ranked = sorted(zip(labels, row.tolist(), strict=True), key=lambda x: -x[1])
            out[i] = Classification(texts[i], ranked[0][0], ranked)
    return out


# ---- tag -----------------------------------------------------------------------------------------


def tag(ck: Checkpoint, sentences: list[list[str]]) -> list[list[str]]:
    """One tag per token of each sentence (a token's tag is its last piece's: examples.py)."""
    model, labels = build_model(ck.model), ck.model.labels
    pieces = [token_pieces(ck.tokenizer, tokens) for tokens in sentences]
    out: list[list[str]] = [[] for _ in sentences]
    for indices, batch in _by_length([ids for ids, _ in pieces]):
        best = model.logprobs(ck.params, Batch(batch, None)).argmax(axis=2)  # (T, B)
        for b, i in enumerate(indices):
            out[i] = [labels[t] for t in best[pieces[i][1], b]]
    return out


def tag_text(ck: Checkpoint, text: str) -> tuple[list[str], list[str]]:
    tokens = split_words(text)
    return tokens, (tag(ck, [tokens])[0] if tokens else [])


# ---- translate -----------------------------------------------------------------------------------


def translate(ck: Checkpoint, sources, c: SampleConfig) -> Iterator[str]:
    """Each source's translation, as soon as it is made: greedy (temperature 0), sampled, or the
    beam's best (`c.beam`), at most `c.length` tokens. The decoder's weights are stacked once."""
    from rnncli.inference.sample import beam_search_from, sample_from

    model = build_model(ck.model)
    decoder, dec_params = model.decoder, sub_params(ck.params, "decoder.")
    rng = np.random.default_rng(c.seed)
    c = SampleConfig(**{**c.__dict__, "until_eos": True})
    weights = decoder.step_weights(dec_params)
    for source in sources:
        state = model.encode(ck.params, text_ids(ck.tokenizer, source)[:, None])
        context = np.array([EOS], np.int64)
        if c.beam:
            tokens, _ = beam_search_from(decoder, dec_params, state, context, c, weights)
        else:
            tokens, _ = sample_from(decoder, dec_params, state, context, c, rng, weights)
        yield ck.tokenizer.decode([t for t in tokens if t != EOS]).strip()
