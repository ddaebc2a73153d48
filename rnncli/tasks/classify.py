"""Classification (the notes' many-to-one): one label per text, from the final states of the
encoder (both directions' side by side when bidirectional).

File format: `label<TAB>text` per line; a first line whose label field is `label` is a header."""

from __future__ import annotations

import numpy as np

from rnncli.tasks.base import LabelTask, tab_fields

HEADER_LABEL = "label"


class ClassifyTask(LabelTask):
    name = "classify"
    what = "a classifier"
    command = "rnncli classify"
    unit = "example"
    next_hint = 'rnncli classify --model {out} "a text to label"'
    format_hint = "expected lines of label<TAB>text"
    endpoints = ("classify",)

    def read(self, corpus) -> tuple[list, list]:
        labels, texts = [], []
        for number, parts in tab_fields(corpus, self.format_hint):
            if number == 1 and parts[0].strip() == HEADER_LABEL:
                continue
            labels.append(parts[0].strip())
            texts.append("\t".join(parts[1:]).strip())
        return texts, labels

    def label_set(self, targets: list) -> list[str]:
        return sorted(set(targets))

    def encode(self, source, target, tokenizer, index):
        from rnncli.text.examples import text_ids

        return text_ids(tokenizer, source), index.get(target, -1)

    def batch(self, inputs: np.ndarray, targets: list):
        from rnncli.tasks.models import Batch

        return Batch(inputs, np.array(targets, np.int64))

    def head_class(self):
        from rnncli.models.heads import SequenceLabelHead

        return SequenceLabelHead

    def evaluate(self, ck, corpus, config) -> dict:
        from rnncli.inference.predict import classify
        from rnncli.tasks import metrics

        sources, targets = self.read(corpus)
        predicted = [p.label for p in classify(ck, sources)]
        return {"task": self.name, **metrics.classification_report(targets, predicted, ck.model.labels)}

    def answers(self, ck, texts, config=None):
        from rnncli.inference.predict import classify

        for c in classify(ck, texts):
            yield {"text": c.text, "label": c.label, "probabilities": dict(c.probabilities)}

    def report_text(self, r: dict) -> str:
        width = max(len(name) for name in r["labels"])
        lines = [f"{r['examples']:,} examples: accuracy {100 * r['accuracy']:.2f}%, macro F1 {100 * r['macro_f1']:.2f}",
                 f"{'':{width}}  precision  recall     F1  support"]
        for name, c in r["per_class"].items():
            lines.append(f"{name:{width}}  {100 * c['precision']:9.2f}  {100 * c['recall']:6.2f}  "
                         f"{100 * c['f1']:5.2f}  {c['support']:7,}")
        if "confusion" not in r:  # too many labels for a matrix: the most frequent confusions
            lines.append(f"most frequent confusions ({len(r['labels']):,} labels: too many for a matrix)")
            lines.extend(f"{n:7,}  {g} -> {p}" for g, p, n in r["top_confusions"])
            return "\n".join(lines) + "\n"
        lines.append("confusion (rows: true label, columns: predicted)")
        lines.append(f"{'':{width}}  " + "  ".join(f"{n:>{max(len(n), 5)}}" for n in r["labels"]))
        for name, row in zip(r["labels"], r["confusion"], strict=True):
            lines.append(f"{name:{width}}  " + "  ".join(f"{v:>{max(len(n), 5)},}" for n, v in
                                                         zip(r["labels"], row, strict=True)))
        return "\n".join(lines) + "\n"

    def onnx_graph(self, graph) -> tuple[list, list]:
        return graph.label_model(from_final_states=True)


TASK = ClassifyTask()
