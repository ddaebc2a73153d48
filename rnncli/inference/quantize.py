"""`rnncli quantize`: a model's weights in eight bits (formats/int8.py), and what it costs, measured
against the float model on a text.

The measures (`compare`), over every position of a text read as `score --continuous` reads it
(contiguous streams, the state carried), p the float model's next-token distribution and p' the
quantized one's:

    perplexity of each, exp(mean -log p[y]), and the relative change ppl' / ppl - 1
    mean KL divergence  KL(p || p') = sum_v p[v] (log p[v] - log p'[v])   (llama.cpp's, in nats)
    top-token agreement: the share of positions where argmax p = argmax p' ("same top p")

for scoring (float32 activations against the int8 weights: the numbers `score` prints) and, where
the model's steps are int8 (ModelConfig.step_int8), for generation too (each position through the
single step, as `sample` draws from it).
"""

from __future__ import annotations

import math

import numpy as np

from rnncli.errors import UsageError
from rnncli.formats import int8
from rnncli.formats.checkpoint import Checkpoint
from rnncli.models.model import Model
from rnncli.text.data import chunks, contiguous_streams

ACTIVATIONS = ("int8", "float32")


def _language_model(task: str) -> bool:
    """Whether a task's model is a language model (trained on a token stream: the one with steps of
    its own to generate with)."""
    from rnncli.tasks import get_task

    return get_task(task).stream


def default_activations(task: str) -> str:
    """int8 where this CPU sums byte products natively (AVX-512 VNNI: generation 2-3x the float
    model's, bench/quantize.py), else float32 (int8 steps there compute the same numbers by exact
    float sums, slower than the float model's); a task model keeps float32 (its encoder reads whole
    chunks, which have no int8 form)."""
    from rnncli.kernels.int8 import BYTE_DOTS

    return "int8" if BYTE_DOTS and _language_model(task) else "float32"


def quantized(ck: Checkpoint, scheme: str, activations: str = "float32") -> Checkpoint:
    """The checkpoint with its weights quantized by `scheme` (its params the dequantized float32
    weights, as a loaded quantized checkpoint's are) and, with int8 `activations`, its single step
    in int8 (kernels/int8.py: generation); without the optimizer's state or the carried hidden
    state: a model to run, not to continue training."""
    from dataclasses import replace

    if scheme not in int8.SCHEMES:
        raise UsageError(f"--scheme must be one of {', '.join(int8.SCHEMES)}, not {scheme!r}")
    if activations not in ACTIVATIONS:
        raise UsageError(f"--activations must be one of {', '.join(ACTIVATIONS)}, not {activations!r}")
    if activations == "int8" and not _language_model(ck.model.task):
        raise UsageError(f"int8 activations are for a language model's generation; a {ck.model.task} model keeps "
                         "float32 activations (--activations float32)")
    pairs = int8.quantize_params(ck.params, scheme)
    params = {name: (int8.dequantized(name, *pairs[name], scheme) if name in pairs else value.astype(np.float32))
              for name, value in ck.params.items()}
    model = replace(ck.model, step_int8=scheme if activations == "int8" else "")
    return Checkpoint(model, ck.train, ck.tokenizer_config, ck.tokenizer, params, state=ck.state,
                      version=ck.version, quantization=int8.record(scheme, list(pairs)))


def _chunked(ck: Checkpoint):
    """The scoring path's next-token log-probabilities, chunk by chunk: (state, inputs) -> (lp, state)."""
    model = Model(ck.model)

    def run(state, inputs):
        state = model.initial_state(inputs.shape[1], np.float32) if state is None else state
        lp, state = model.next_token_logprobs(ck.params, inputs, state)
        return lp, state

    return run


def _stepped(ck: Checkpoint):
    """Generation's: every position through the single step (execution/steps.py's form for the model:
    int8 products where its steps are int8), as `sample` computes each next token's distribution."""
    from rnncli.execution.steps import Steps
    from rnncli.kernels.generate import model_step
    from rnncli.kernels.output import log_softmax_rows

    model = Model(ck.model)
    held = {}

    def run(state, inputs):
        T, B = inputs.shape
        if B not in held:
            held[B] = Steps(model, ck.params, B, 1 << 20).weights
        h, c = model.step_state(model.initial_state(B, np.float32)) if state is None else state
        lp = np.empty((T, B, ck.model.vocab_size), np.float32)
        for t in range(T):
            lp[t] = log_softmax_rows(model_step(*held[B], inputs[t].astype(np.int64), h, c))
        return lp, (h, c)

    return run


def compare(reference: Checkpoint, other: Checkpoint, ids: np.ndarray, streams: int = 16, seq_len: int = 100,
            generation: bool = False) -> dict:
    """The measures above for two language models of one tokenizer over a token stream `ids`: the
    reference by its scoring path, the other by its scoring path or (`generation`) its single step."""
    if len(ids) < 3:
        raise UsageError("the evaluation text needs at least three tokens")
    rows = contiguous_streams(ids, max(1, min(streams, (len(ids) - 1) // 2)))
    runs = [_chunked(reference), (_stepped if generation else _chunked)(other)]
    states = [None, None]
    nll = [0.0, 0.0]
    kl, agree, count = 0.0, 0, 0
    for inputs, targets in chunks(rows, seq_len):
        logp = []
        for i, run in enumerate(runs):
            lp, states[i] = run(states[i], inputs)
            lp = lp.astype(np.float64)
            nll[i] -= float(np.take_along_axis(lp, targets[..., None].astype(np.int64), axis=-1).sum())
            logp.append(lp)
        p, p_other = logp
        kl += float((np.exp(p) * (p - p_other)).sum())
        agree += int((p.argmax(axis=-1) == p_other.argmax(axis=-1)).sum())
        count += targets.size
    ppl, ppl_other = (math.exp(n / count) for n in nll)
    return {"tokens": count, "perplexity": ppl, "perplexity_quantized": ppl_other,
            "relative_change": ppl_other / ppl - 1.0, "mean_kl": kl / count, "same_top": agree / count}


def sizes(ck: Checkpoint, out: Checkpoint) -> dict:
    """Bytes of the weights before and after (as stored; the file's own size is the command's)."""
    return {"weight_bytes": int8.stored_bytes(ck.params, None),
            "weight_bytes_quantized": int8.stored_bytes(out.params, out.quantization["scheme"])}
