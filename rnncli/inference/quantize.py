"""`rnncli quantize`: a model's weights in eight bits (formats/int8.py), and what it costs, measured
against the float model on a text.

The measures (`compare`), over every position of a text read as `score --continuous` reads it
(contiguous streams, the state carried), p the float model's next-token distribution and p' the
quantized one's:

    perplexity of each, exp(mean -log p[y]), and the relative change ppl' / ppl - 1
    mean KL divergence  KL(p || p') = sum_v p[v] (log p[v] - log p'[v])   (llama.cpp's, in nats)
    top-token agreement: the share of positions where argmax p = argmax p' ("same top p")
"""

from __future__ import annotations

import math

import numpy as np

from rnncli.errors import UsageError
from rnncli.formats import int8
from rnncli.formats.checkpoint import Checkpoint
from rnncli.models.model import Model
from rnncli.text.data import chunks, contiguous_streams


def quantized(ck: Checkpoint, scheme: str) -> Checkpoint:
    """The checkpoint with its weights quantized by `scheme` (its params the dequantized float32
    weights, as a loaded quantized checkpoint's are), without the optimizer's state or the carried
    hidden state: a model to run, not to continue training."""
    if scheme not in int8.SCHEMES:
        raise UsageError(f"--scheme must be one of {', '.join(int8.SCHEMES)}, not {scheme!r}")
    pairs = int8.quantize_params(ck.params, scheme)
    params = {name: (int8.dequantized(name, *pairs[name], scheme) if name in pairs else value.astype(np.float32))
              for name, value in ck.params.items()}
    return Checkpoint(ck.model, ck.train, ck.tokenizer_config, ck.tokenizer, params, state=ck.state,
                      version=ck.version, quantization=int8.record(scheme, list(pairs)))


def compare(reference: Checkpoint, other: Checkpoint, ids: np.ndarray, streams: int = 16,
            seq_len: int = 100) -> dict:
    """The measures above for two language models of one tokenizer over a token stream `ids`."""
    if len(ids) < 2 * streams + 2:
        streams = max(1, (len(ids) - 1) // 2)
    if len(ids) < 3:
        raise UsageError("the evaluation text needs at least three tokens")
    rows = contiguous_streams(ids, streams)
    models = [Model(ck.model) for ck in (reference, other)]
    states = [m.initial_state(rows.shape[0], np.float32) for m in models]
    nll = [0.0, 0.0]
    kl, agree, count = 0.0, 0, 0
    for inputs, targets in chunks(rows, seq_len):
        logp = []
        for i, (model, ck) in enumerate(zip(models, (reference, other), strict=True)):
            lp, states[i] = model.next_token_logprobs(ck.params, inputs, states[i])
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
