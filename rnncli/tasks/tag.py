"""Tagging (the notes' many-to-many, T_x = T_y): a tag at every token, from the encoder's output
there (both directions' side by side when bidirectional).

File format: CoNLL columns, the token first and its tag last (whitespace-separated); a blank line
ends a sentence; `-DOCSTART-` lines are skipped. A token's tag is learnt and predicted at its last
piece (examples.py)."""

from __future__ import annotations

import numpy as np

from rnncli.errors import RnncliError
from rnncli.tasks.base import LabelTask


class TagTask(LabelTask):
    name = "tag"
    what = "a tagger"
    command = "rnncli tag"
    unit = "tag"
    next_hint = 'rnncli tag --model {out} "A sentence to tag."'
    format_hint = "expected CoNLL lines: token ... tag, a blank line between sentences"
    endpoints = ("tag",)

    def read(self, corpus) -> tuple[list, list]:
        sentences, tags = [], []
        tokens: list[str] = []
        labels: list[str] = []
        for number, line in enumerate(list(corpus.lines()) + [""], 1):
            columns = line.split()
            if not columns:
                if tokens:
                    sentences.append(tokens)
                    tags.append(labels)
                tokens, labels = [], []
                continue
            if columns[0] == "-DOCSTART-":
                continue
            if len(columns) < 2:
                raise RnncliError(f"{corpus.name}:{number}: {self.format_hint}")
            tokens.append(columns[0])
            labels.append(columns[-1])
        return sentences, tags

    def texts(self, source, target):
        yield " ".join(source)

    def label_set(self, targets: list) -> list[str]:
        """Sorted, `O` first."""
        tags = {t for sentence in targets for t in sentence}
        return sorted(tags, key=lambda t: (t != "O", t))

    def encode(self, source, target, tokenizer, index):
        from rnncli.text.examples import token_pieces

        ids, last = token_pieces(tokenizer, source)
        tags = np.full(len(ids), -1, np.int64)
        tags[last] = [index.get(t, -1) for t in target]
        return ids, tags

    def batch(self, inputs: np.ndarray, targets: list):
        from rnncli.tasks.models import Batch

        return Batch(inputs, np.stack(targets, axis=1))

    def head_class(self):
        from rnncli.models.heads import TagHead

        return TagHead

    def evaluate(self, ck, corpus, config) -> dict:
        from rnncli.inference.predict import tag
        from rnncli.tasks import metrics

        sources, targets = self.read(corpus)
        return {"task": self.name, **metrics.conll_report(targets, tag(ck, sources))}

    def answers(self, ck, texts, config=None):
        from rnncli.inference.predict import tag_text

        for text in texts:
            tokens, tags = tag_text(ck, text)
            yield {"text": text, "tokens": tokens, "tags": tags}

    def report_text(self, r: dict) -> str:
        lines = [f"processed {r['tokens']:,} tokens with {r['phrases']:,} phrases; found: {r['found']:,} phrases; "
                 f"correct: {r['correct']:,}.",
                 f"accuracy: {100 * r['accuracy']:6.2f}%; precision: {100 * r['precision']:6.2f}%; "
                 f"recall: {100 * r['recall']:6.2f}%; FB1: {100 * r['f1']:6.2f}"]
        for name, t in r["per_type"].items():
            lines.append(f"{name:>17}: precision: {100 * t['precision']:6.2f}%; recall: {100 * t['recall']:6.2f}%; "
                         f"FB1: {100 * t['f1']:6.2f}  {t['predicted']}")
        return "\n".join(lines) + "\n"

    def onnx_graph(self, graph) -> tuple[list, list]:
        return graph.label_model(from_final_states=False)


TASK = TagTask()
