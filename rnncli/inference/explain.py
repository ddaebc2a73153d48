"""Looking inside a language model on a text: the numbers behind `rnncli explain` (its page is drawn
by explain_page.py from the plain data `explain` returns; `--json` prints that data).

For a text y<1..n> (each passage scored from the start state, as `score` does):

    surprise<t> = -log ŷ<t>[y<t>]                         nats; the same numbers as score --per-token
    top-5<t>    = the five largest entries of ŷ<t>         what the model expected instead
    h[l]<t>_j   = unit j of layer l after reading y<t-1>   what cells track (Karpathy et al. 2015)
    Γ[l]<t>     = mean over units of each gate at t        GRU: update (relevance or reset), LSTM:
                                                           update, forget, output
    g<k>        = ‖∂ L<n> / ∂ h<n-k>‖,  k = 0 … K          how gradients fade (the notes' vanishing gradients)

L<n> = -log ŷ<n>[y<n>] is the loss at the last token and h<n-k> every layer's hidden state k steps
before it (an LSTM's cell state c is held fixed: the norm is over h). g<k> comes from the engine's
own backward pass: K one-step chunks run forward keeping their caches, then backward from the last
token, each step's initial-state gradient handed to the step before (exact, O(K)).

Units are proposed by their correlation with simple features of the text (inside quotes, position
in the line, inside a word, inside brackets): one unit of the chosen layer per feature, the pairs
with the largest |Pearson r| over the text's tokens first, each unit proposed once.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from rnncli.errors import UsageError
from rnncli.formats.checkpoint import Checkpoint, describe
from rnncli.inference.score import TIME_CHUNK, score_ids, sentence_ids
from rnncli.models.model import Model
from rnncli.text.tokenizers import EOS

TOP = 5  # predictions shown per position
GRADIENT_STEPS = 100  # default K
SATURATED = 0.1  # a gate value below 0.1 or above 0.9 counts as saturated
HISTOGRAM_BINS = 10


@dataclass
class Passage:
    """One text as the model reads it: its tokens, and from where it starts (its own first token)."""
    text: str
    ids: np.ndarray  # (n,) token ids, <EOS> included
    shown: list[str]  # how each token appears in the text (a newline for <EOS>)


def passage(ck: Checkpoint, text: str, whole: bool) -> Passage:
    """A sentence (`whole` False: scored as `score` scores one, ending in <EOS>) or a whole text
    (a file: lines as the model was trained on them, each line ending in <EOS>)."""
    tok = ck.tokenizer
    ids = tok.encode(text).astype(np.int64) if whole else sentence_ids(tok, text, eos=True)
    if len(ids) == 0 or (len(ids) == 1 and not text.strip()):
        raise UsageError("cannot explain an empty text")
    if tok.level == "char":  # one token per character: show the text's own (an <UNK> too)
        chars = list(text if whole else text.replace("\n", " ") + "\n")
        return Passage(text, ids, chars)
    return Passage(text, ids, shown_tokens(tok, ids))


def shown_tokens(tokenizer, ids: np.ndarray) -> list[str]:
    """Each token as it reads in running text: words followed by a space, sentencepiece pieces with
    their '▁' as a space, <EOS> as a newline, <UNK> by name."""
    names = tokenizer.token_texts(ids)
    out = []
    for i, (token_id, name) in enumerate(zip(ids.tolist(), names, strict=True)):
        if token_id == EOS:
            out.append("\n")
        elif tokenizer.level == "word":
            at_line_end = i + 1 == len(ids) or ids[i + 1] == EOS
            out.append(name if at_line_end else name + " ")
        elif tokenizer.level == "subword":
            piece = name.replace("▁", " ")
            out.append(piece.lstrip(" ") if i == 0 or ids[i - 1] == EOS else piece)  # a line starts unspaced
        else:
            out.append(name)
    return out


# ---- one pass over a passage: what the model predicts, what its cells hold ------------------------


def inputs_of(ids: np.ndarray) -> np.ndarray:
    """What the model reads before each token: <EOS> (a line's start), then the tokens themselves."""
    return np.concatenate([[EOS], ids[:-1]]).astype(np.int64)


@dataclass
class Trace:
    """One forward pass over a passage, B = 1, and what it shows at every token."""
    hidden: list[np.ndarray]  # per layer, (n, H): h[l]<t>
    gates: list[dict[str, np.ndarray]]  # per layer, gate name -> (n, H)
    logprobs: np.ndarray  # (n,) log ŷ<t>[y<t>]
    best_ids: np.ndarray  # (n, top): the most likely tokens at each position, best first
    best_lp: np.ndarray  # (n, top): their log-probabilities
    state_at_cut: list | None  # the state after `cut` tokens, when asked for


def trace(ck: Checkpoint, p: Passage, top: int = TOP, cut: int | None = None) -> Trace:
    """Every layer's hidden state and gates, and the model's predictions, at every token of the
    passage, in one forward pass (chunks of TIME_CHUNK, one of them ending after `cut` tokens)."""
    model, params = Model(ck.model), ck.params
    inputs = inputs_of(p.ids)[:, None]  # (n, 1)
    state = model.initial_state(1, params["embed.weight"].dtype)
    L, H = ck.model.layers, ck.model.hidden
    top = min(top, ck.tokenizer.vocab_size)
    hidden: list[list[np.ndarray]] = [[] for _ in range(L)]
    gates: list[dict[str, list[np.ndarray]]] = [{} for _ in range(L)]
    logprobs, best_ids, best_lp = [], [], []
    bounds = sorted({*range(0, len(inputs), TIME_CHUNK), len(inputs), *([cut] if cut is not None else [])})
    state_at_cut = state if cut == 0 else None
    for t0, t1 in zip(bounds[:-1], bounds[1:], strict=True):
        layers, state = model.activations(params, np.ascontiguousarray(inputs[t0:t1]), state)
        if t1 == cut:
            state_at_cut = state
        for level, (hs, saved) in enumerate(layers):
            hidden[level].append(hs[:, 0, :].astype(np.float64))
            for name, value in model.cell.gate_values(saved, H).items():
                gates[level].setdefault(name, []).append(value[:, 0, :].astype(np.float64))
        lp = model.head.next_token_logprobs(params, layers[-1][0])[:, 0, :]  # (T, V)
        logprobs.append(lp[np.arange(t1 - t0), p.ids[t0:t1]].astype(np.float64))
        idx = np.argpartition(-lp, top - 1, axis=1)[:, :top]
        order = np.argsort(-np.take_along_axis(lp, idx, axis=1), axis=1, kind="stable")
        idx = np.take_along_axis(idx, order, axis=1)
        best_ids.append(idx)
        best_lp.append(np.take_along_axis(lp, idx, axis=1).astype(np.float64))
    return Trace([np.concatenate(h) for h in hidden], [{k: np.concatenate(v) for k, v in g.items()} for g in gates],
                 np.concatenate(logprobs), np.concatenate(best_ids), np.concatenate(best_lp), state_at_cut)


# ---- what the cells track -------------------------------------------------------------------------


def text_features(shown: list[str]) -> dict[str, np.ndarray]:
    """Simple per-token features of the text, (n,) each: 1/0 inside quotes, inside brackets, inside
    a word (the token is letters or digits), and the position in the line (characters before it)."""
    quotes, brackets, word, position = [], [], [], []
    in_quote, depth, column = False, 0, 0
    for s in shown:
        opens_or_closes = any(ch in '"“”' for ch in s)
        quotes.append(1.0 if in_quote and not opens_or_closes else 0.0)
        for ch in s:
            if ch in '"“”':
                in_quote = not in_quote
        brackets.append(1.0 if depth > 0 and not any(ch in "()[]" for ch in s) else 0.0)
        for ch in s:
            depth = depth + 1 if ch in "([" else max(depth - 1, 0) if ch in ")]" else depth
        word.append(1.0 if s.strip() and s.strip().isalnum() else 0.0)
        position.append(float(column))
        column = 0 if s == "\n" else column + len(s)
    return {"inside quotes": np.array(quotes), "inside brackets": np.array(brackets),
            "inside a word": np.array(word), "position in the line": np.array(position)}


def correlations(hidden: np.ndarray, feature: np.ndarray) -> np.ndarray | None:
    """Pearson r of each unit's activation (n, H) with a feature (n,); None for a constant feature."""
    f = feature - feature.mean()
    if not np.any(f):
        return None
    h = hidden - hidden.mean(axis=0)
    # sums written out, not BLAS's dot products: their rounding depends on the CPU's BLAS kernels
    norms = np.sqrt((h * h).sum(axis=0) * (f * f).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (f[:, None] * h).sum(axis=0) / norms
    return np.where(norms > 0, r, 0.0)


def propose_units(hidden: np.ndarray, features: dict[str, np.ndarray]) -> list[dict]:
    """One unit per feature, each unit proposed once: the (feature, unit) pair with the largest |r|
    first, then the largest among the features and units left, and so on. Constant features are left out."""
    table = {name: r for name, f in features.items() if (r := correlations(hidden, f)) is not None}
    chosen: list[dict] = []
    while table and len(chosen) < hidden.shape[1]:
        taken = [c["unit"] for c in chosen]
        best = {name: max((u for u in range(len(r)) if u not in taken), key=lambda u, r=r: abs(r[u]))
                for name, r in table.items()}
        name = max(best, key=lambda k: abs(table[k][best[k]]))
        chosen.append({"unit": int(best[name]), "feature": name, "r": float(table[name][best[name]])})
        del table[name]
    return chosen


def gate_summary(gates: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per gate: its mean over units at each token, the share of values near 0 and near 1, and a
    histogram of all its values over [0, 1]."""
    out = {}
    for name, g in gates.items():
        counts, _ = np.histogram(g, bins=HISTOGRAM_BINS, range=(0.0, 1.0))
        out[name] = {"mean_per_token": g.mean(axis=1).tolist(),
                     "share_near_0": float((g < SATURATED).mean()),
                     "share_near_1": float((g > 1 - SATURATED).mean()),
                     "histogram": (counts / max(g.size, 1)).tolist()}
    return out


# ---- how gradients fade ---------------------------------------------------------------------------


def gradient_norms(model: Model, params: dict, ids: np.ndarray, steps: int = GRADIENT_STEPS,
                   state=None) -> np.ndarray:
    """g<k> = ‖∂ L<n> / ∂ h<n-k>‖ for k = 0 … K (K = min(steps, n)), every layer's h together;
    h<0> is the start state. In the weights' dtype (float64 weights give float64 gradients).
    `state`: the state after the first n - K tokens, when a trace already has it."""
    dtype = params["embed.weight"].dtype
    inputs, targets = inputs_of(ids)[:, None], ids[:, None].astype(np.int64)
    n = len(ids)
    K = min(steps, n)
    prefix = 0 if state is not None else n - K
    state = state if state is not None else model.initial_state(1, dtype)
    for t0 in range(0, prefix, TIME_CHUNK):  # the steps before the window: forward only
        t1 = min(t0 + TIME_CHUNK, prefix)
        _, state = model.logprobs(params, np.ascontiguousarray(inputs[t0:t1]), np.ascontiguousarray(targets[t0:t1]),
                                  state)
    caches = []
    for t in range(n - K, n):  # step t reads inputs[t] and makes h<t+1>
        _, state, cache = model.forward(params, inputs[t:t + 1], targets[t:t + 1], state)
        caches.append(cache)
    last = caches[-1]
    _, _, dtop = model.head.backward(params, last.head, 1, 1)  # ∂ L<n> / ∂ h[top]<n>
    norms = np.empty(K + 1)
    norms[0] = float(np.linalg.norm(dtop.astype(np.float64)))
    dstates = None
    for k, cache in enumerate(reversed(caches), start=1):
        dfrom_top = dtop if k == 1 else np.zeros_like(dtop)
        _, _, dstates = model.stack.backward(params, cache.layer_caches, dfrom_top, None, cache.projected,
                                             dstatesT=dstates)
        norms[k] = math.sqrt(sum(float(np.sum(d[0].astype(np.float64) ** 2)) for d in dstates))
    return norms


# ---- everything, as plain data ------------------------------------------------------------------


def model_summary(ck: Checkpoint, path: str) -> dict:
    d = describe(ck, path)
    keys = ("cell", "layers", "hidden", "embed", "level", "vocab_size", "parameters", "corpus", "steps",
            "val_loss", "best_val_loss")
    return {"model": path, "name": os.path.basename(path), **{k: d[k] for k in keys}}


def explain(ck: Checkpoint, path: str, texts: list[str], whole: bool = False, layer: int | None = None,
            units: list[int] | None = None, steps: int = GRADIENT_STEPS,
            compare: list[tuple[Checkpoint, str]] | None = None) -> dict:
    """All the page's numbers for `texts` (sentences, or with `whole` one file's text): per passage
    the tokens, their log-probabilities and top predictions, the chosen layer's units and the gates;
    the gradient norms on the first passage for this model and each of `compare`."""
    L, H = ck.model.layers, ck.model.hidden
    layer = L if layer is None else layer
    if not 1 <= layer <= L:
        raise UsageError(f"--layer must be between 1 and {L} (the model has {L} layer{'s' * (L > 1)})")
    if units is not None:
        bad = [u for u in units if not 0 <= u < H]
        if bad:
            raise UsageError(f"--units: no unit {bad[0]}; the layer has units 0 to {H - 1}")
    if steps < 1:
        raise UsageError("--steps must be at least 1")
    passages = [passage(ck, t, whole) for t in texts]
    vocab = ck.tokenizer.token_texts(range(ck.tokenizer.vocab_size))
    cut = len(passages[0].ids) - min(steps, len(passages[0].ids))  # where the gradient chart's window starts
    traces = [trace(ck, p, cut=cut if i == 0 else None) for i, p in enumerate(passages)]
    # sentences: their log-probabilities as `score` computes them (together, in its batches)
    scored = [tr.logprobs for tr in traces] if whole else score_ids(ck, [p.ids for p in passages])
    records = []
    for p, logprobs, tr in zip(passages, scored, traces, strict=True):
        best_ids, best_lp = tr.best_ids, tr.best_lp
        records.append({
            "text": p.text,
            "logprob": float(logprobs.sum()),
            "tokens": len(p.ids),
            "perplexity": math.exp(-float(logprobs.sum()) / len(p.ids)),
            "per_token": [{"token": name, "shown": s, "id": int(i), "logprob": float(lp),
                           "top": [{"token": vocab[j], "logprob": float(b)} for j, b in zip(ids, lps, strict=True)]}
                          for name, s, i, lp, ids, lps in zip(ck.tokenizer.token_texts(p.ids), p.shown, p.ids.tolist(),
                                                               logprobs, best_ids.tolist(), best_lp, strict=True)],
            "gates": [gate_summary(g) for g in tr.gates],
        })
    hidden = np.concatenate([tr.hidden[layer - 1] for tr in traces])  # (all tokens, H)
    if units is None:
        proposed = propose_units(hidden, text_features([s for p in passages for s in p.shown]))
        how = ("proposed, one per feature of the text: the unit of this layer whose activation correlates "
               "most with it (|Pearson r| over the text's tokens; each unit proposed once)")
    else:
        proposed = [{"unit": u, "feature": None, "r": None} for u in units]
        how = "chosen with --units"
    for record, tr in zip(records, traces, strict=True):
        record["units"] = {str(u["unit"]): tr.hidden[layer - 1][:, u["unit"]].tolist() for u in proposed}
    first = passages[0].text
    models = [(ck, path)] + list(compare or [])
    gradients = []
    for other, other_path in models:
        ids = passage(other, first, whole).ids
        state = traces[0].state_at_cut if other is ck else None
        norms = gradient_norms(Model(other.model), other.params, ids, steps, state)
        gradients.append({**model_summary(other, other_path), "norms": norms.tolist()})
    total = sum(r["logprob"] for r in records)
    tokens = sum(r["tokens"] for r in records)
    return {
        "model": model_summary(ck, path),
        "logprob": total,
        "tokens": tokens,
        "perplexity": math.exp(-total / tokens),
        "passages": records,
        "layer": layer,
        "units": proposed,
        "units_how": how,
        "gates_of": ck.model.cell,
        "gradient": {"text": "first", "steps": steps, "models": gradients},
    }
