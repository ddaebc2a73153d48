"""Evaluation metrics of the tasks, each as its reference implementation computes it.

  classification  accuracy; per class precision = TP / (TP + FP), recall = TP / (TP + FN),
                  F1 = 2PR / (P + R) (0 when P + R = 0); macro averages; the confusion matrix
                  (rows: gold, columns: predicted).
  tagging         CoNLL's conlleval: token accuracy, and phrase ("entity") precision, recall and F1
                  per type and overall. A phrase counts as correct only when its type and both its
                  boundaries match. Phrases are read with conlleval's own rules (its endOfChunk and
                  startOfChunk, version 2004-01-26), which cover IOB1 and IOB2: a phrase starts at
                  B-, at I- after O, or at a change of type; it ends before O, B- or a change of type.
  translation     corpus BLEU as sacrebleu computes it by default: 13a tokenization, n-grams up to 4,
                  clipped counts summed over the corpus, brevity penalty exp(1 - r/c) when c < r,
                  'exp' smoothing (an order with no match counts as 1 / (2^k * total), k = 1, 2, ...);
                  and the exact-match rate.
"""

from __future__ import annotations

import math
import re
from collections import Counter

# ---- classification -------------------------------------------------------------------------------


def _prf(tp: int, fp: int, fn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}


CONFUSION_MAX_LABELS = 30  # beyond this many labels, the most frequent confusions instead of the matrix
TOP_CONFUSIONS = 20


def classification_report(gold: list[str], predicted: list[str], labels: list[str]) -> dict:
    """Accuracy, each label's precision, recall, F1 and support, macro F1, and the confusion matrix
    (rows: true label, columns: predicted) up to CONFUSION_MAX_LABELS labels, else the
    TOP_CONFUSIONS most frequent (true, predicted, count) pairs: counted pair by pair, so the time
    and the size grow with the examples, never with the square of the labels."""
    names = list(labels) + sorted(set(gold) - set(labels))
    pairs = Counter(zip(gold, predicted, strict=True))
    support, chosen = Counter(gold), Counter(predicted)
    per_class = {}
    for name in names:
        tp = pairs[(name, name)]
        per_class[name] = {**_prf(tp, chosen[name] - tp, support[name] - tp), "support": support[name]}
    correct = sum(pairs[(name, name)] for name in names)
    report = {"examples": len(gold), "accuracy": correct / max(len(gold), 1),
              "macro_f1": sum(c["f1"] for c in per_class.values()) / max(len(per_class), 1),
              "per_class": per_class, "labels": names}
    if len(names) <= CONFUSION_MAX_LABELS:
        report["confusion"] = [[pairs[(g, p)] for p in names] for g in names]
    else:
        wrong = sorted(((n, g, p) for (g, p), n in pairs.items() if g != p), key=lambda x: (-x[0], x[1], x[2]))
        report["top_confusions"] = [[g, p, n] for n, g, p in wrong[:TOP_CONFUSIONS]]
    return report


# ---- tagging (conlleval) ---------------------------------------------------------------------------


def _split_tag(tag: str) -> tuple[str, str]:
    """'B-PER' -> ('B', 'PER'), 'O' -> ('O', ''): the part before the first '-' and the rest."""
    prefix, dash, type_ = tag.partition("-")
    return (prefix, type_) if dash else (tag, "")


def _chunk_end(prev: str, tag: str, prev_type: str, type_: str) -> bool:
    """Did a phrase end between the previous token and this one? (conlleval's endOfChunk)"""
    return ((prev in ("B", "I") and tag in ("B", "O"))
            or (prev == "E" and tag in ("E", "I", "O"))
            or (prev not in ("O", ".") and prev_type != type_)
            or prev in ("[", "]"))


def _chunk_start(prev: str, tag: str, prev_type: str, type_: str) -> bool:
    """Does a phrase start at this token? (conlleval's startOfChunk)"""
    return ((tag == "B" and prev in ("B", "I", "O"))
            or (prev == "O" and tag in ("I", "E"))
            or (prev == "E" and tag in ("E", "I"))
            or (tag not in ("O", ".") and prev_type != type_)
            or tag in ("[", "]"))


def chunks(tags: list[str]) -> set[tuple[int, int, str]]:
    """The phrases of one sentence's tags as (start, end exclusive, type)."""
    found = set()
    prev, prev_type = "O", ""
    start = None
    for i, tag in enumerate([*tags, "O"]):  # a sentence ends as if followed by O
        t, type_ = _split_tag(tag)
        if start is not None and _chunk_end(prev, t, prev_type, type_):
            found.add((start, i, prev_type))
            start = None
        if _chunk_start(prev, t, prev_type, type_):
            start = i
        prev, prev_type = t, type_
    return found


def conll_report(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """conlleval's figures over sentences of gold and predicted tags."""
    tokens = correct_tokens = 0
    found_gold: Counter = Counter()
    found_pred: Counter = Counter()
    correct: Counter = Counter()
    for g, p in zip(gold, predicted, strict=True):
        tokens += len(g)
        correct_tokens += sum(a == b for a, b in zip(g, p, strict=True))
        gc, pc = chunks(g), chunks(p)
        found_gold.update(c[2] for c in gc)
        found_pred.update(c[2] for c in pc)
        correct.update(c[2] for c in gc & pc)
    types = sorted(set(found_gold) | set(found_pred))
    per_type = {t: {**_prf(correct[t], found_pred[t] - correct[t], found_gold[t] - correct[t]),
                    "gold": found_gold[t], "predicted": found_pred[t]} for t in types}
    total_correct = sum(correct.values())
    overall = _prf(total_correct, sum(found_pred.values()) - total_correct, sum(found_gold.values()) - total_correct)
    return {"sentences": len(gold), "tokens": tokens, "accuracy": correct_tokens / max(tokens, 1),
            "phrases": sum(found_gold.values()), "found": sum(found_pred.values()), "correct": total_correct,
            **overall, "per_type": per_type}


# ---- translation (sacrebleu's corpus BLEU) ---------------------------------------------------------

_13A_RULES = [
    (re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])"), r" \1 "),  # punctuation and symbols apart
    (re.compile(r"([^0-9])([\.,])"), r"\1 \2 "),  # period and comma, unless after a digit
    (re.compile(r"([\.,])([^0-9])"), r" \1 \2"),  # ... or unless before one
    (re.compile(r"([0-9])(-)"), r"\1 \2 "),  # a dash after a digit
]


def tokenize_13a(line: str) -> list[str]:
    """mteval-v13a's tokenization (sacrebleu's default)."""
    line = line.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    if "&" in line:
        line = line.replace("&quot;", '"').replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
    line = f" {line} "
    for pattern, replacement in _13A_RULES:
        line = pattern.sub(replacement, line)
    return line.split()


def _ngrams(tokens: list[str], order: int) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, order + 1) for i in range(len(tokens) - n + 1))


def corpus_bleu(hypotheses: list[str], references: list[str], order: int = 4) -> dict:
    """BLEU (0-100) of hypotheses against one reference each, with its parts."""
    correct, total = [0] * order, [0] * order
    sys_len = ref_len = 0
    for hyp, ref in zip(hypotheses, references, strict=True):
        h, r = tokenize_13a(hyp.rstrip()), tokenize_13a(ref.rstrip())
        sys_len, ref_len = sys_len + len(h), ref_len + len(r)
        ref_counts = _ngrams(r, order)
        for gram, count in _ngrams(h, order).items():
            total[len(gram) - 1] += count
            correct[len(gram) - 1] += min(count, ref_counts.get(gram, 0))
    bp = 1.0 if sys_len >= ref_len else (math.exp(1 - ref_len / sys_len) if sys_len else 0.0)
    precisions = [0.0] * order
    score = 0.0
    if any(correct):
        halvings = 1.0
        for n in range(order):
            if total[n] == 0:
                break
            if correct[n] == 0:
                halvings *= 2
                precisions[n] = 100.0 / (halvings * total[n])
            else:
                precisions[n] = 100.0 * correct[n] / total[n]
        score = bp * math.exp(sum(math.log(p) if p > 0 else -9999999999 for p in precisions) / order)
    exact = sum(h.strip() == r.strip() for h, r in zip(hypotheses, references, strict=True))
    return {"bleu": score, "precisions": precisions, "brevity_penalty": bp, "hypothesis_length": sys_len,
            "reference_length": ref_len, "exact_match": exact / max(len(hypotheses), 1),
            "sentences": len(hypotheses)}
