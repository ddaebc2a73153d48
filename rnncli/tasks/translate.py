"""Translation (the notes' many-to-many, T_x != T_y): an encoder reads the source; its final states
(both directions' summed when bidirectional) start a decoder, a language model of the target
(models.Translator).

File format: `source<TAB>target` per line; further columns are ignored."""

from __future__ import annotations

import numpy as np

from rnncli.tasks.base import Task, tab_fields


class TranslateTask(Task):
    name = "translate"
    what = "a translator"
    command = "rnncli translate"
    unit = "target token"
    next_hint = 'rnncli translate --model {out} "a text to translate"'
    format_hint = "expected lines of source<TAB>target"
    endpoints = ("translate",)
    decodes = True

    def read(self, corpus) -> tuple[list, list]:
        sources, targets = [], []
        for _, parts in tab_fields(corpus, self.format_hint):
            sources.append(parts[0].strip())
            targets.append(parts[1].strip())
        return sources, targets

    def texts(self, source, target):
        yield source
        yield target

    def encode(self, source, target, tokenizer, index):
        from rnncli.text.examples import text_ids
        from rnncli.text.tokenizers import EOS

        return text_ids(tokenizer, source), np.append(text_ids(tokenizer, target), EOS)

    def batch(self, inputs: np.ndarray, targets: list):
        """Targets padded with -1 after each one's end; decoder inputs the targets shifted right
        behind <EOS>."""
        from rnncli.tasks.models import Batch
        from rnncli.text.tokenizers import EOS

        longest = max(len(y) for y in targets)
        padded = np.full((longest, len(targets)), -1, np.int64)
        decoder_inputs = np.full((longest, len(targets)), EOS, np.int64)
        for b, y in enumerate(targets):
            padded[:len(y), b] = y
            decoder_inputs[1:len(y), b] = y[:-1]  # <EOS>, y<1>, ..., y<n-1>
        return Batch(inputs, padded, decoder_inputs)

    def build(self, config):
        from rnncli.tasks.models import Translator

        return Translator(config)

    def evaluate(self, ck, corpus, config) -> dict:
        from rnncli.config import SampleConfig
        from rnncli.inference.predict import translate
        from rnncli.tasks import metrics

        sources, targets = self.read(corpus)
        hypotheses = list(translate(ck, sources, config or SampleConfig(temperature=0.0, length=200)))
        return {"task": self.name, **metrics.corpus_bleu(hypotheses, targets),
                "examples": [{"source": s, "reference": r, "translation": h}
                             for s, r, h in list(zip(sources, targets, hypotheses, strict=True))[:5]]}

    def answers(self, ck, texts, config):
        from rnncli.inference.predict import translate

        for source, target in zip(texts, translate(ck, texts, config), strict=True):
            yield {"source": source, "translation": target}

    def report_text(self, r: dict) -> str:
        lines = [f"{r['sentences']:,} sentences: BLEU {r['bleu']:.2f} "
                 f"({'/'.join(f'{p:.1f}' for p in r['precisions'])}, brevity penalty {r['brevity_penalty']:.3f}, "
                 f"length {r['hypothesis_length']:,}/{r['reference_length']:,}), "
                 f"exact match {100 * r['exact_match']:.1f}%"]
        for e in r["examples"]:
            lines.append(f"  {e['source']}  ->  {e['translation']}   (reference: {e['reference']})")
        return "\n".join(lines) + "\n"

    def torch_names(self, config) -> list[tuple[str, str]]:
        return [("embed.weight", "embedding.weight"), ("decoder.embed.weight", "decoder_embedding.weight"),
                ("decoder.output.W", "output.weight"), ("decoder.output.b", "output.bias")]

    def stacks(self) -> list[tuple[str, str, bool]]:
        return [("", "rnn", True), ("decoder.", "decoder_rnn", False)]

    def onnx_graph(self, graph) -> tuple[list, list]:
        return graph.translator()


TASK = TranslateTask()
