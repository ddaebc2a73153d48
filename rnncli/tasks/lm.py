"""The language model (the notes' one-to-many): the next token at every position of one token
stream. Its model is model.Model; it is scored, sampled and rescored by the commands of its own."""

from __future__ import annotations

from rnncli.tasks.base import Task


class LanguageModelTask(Task):
    name = "lm"
    what = "a language model"
    command = "rnncli sample (or score)"
    unit = "token"
    next_hint = "rnncli sample --model {out}"
    stream = True
    bidirectional = False
    ties_weights = True
    default_level = "char"
    endpoints = ("completions", "score", "rescore")

    def build(self, config):
        from rnncli.models.model import Model

        return Model(config)

    def evaluate(self, ck, corpus, config) -> dict:
        from rnncli.inference.score import continuous_report

        return {"task": self.name, **continuous_report(ck, corpus)}

    def report_text(self, report: dict) -> str:
        return (f"{report['file']}: {report['tokens']:,} tokens, {report['loss']:.4f} nats/token, "
                f"perplexity {report['perplexity']:.3f}\n")

    def torch_names(self, config) -> list[tuple[str, str]]:
        """pytorch/examples' names; an adaptive softmax's as nn.AdaptiveLogSoftmaxWithLoss names them."""
        if config.softmax == "adaptive":
            from rnncli.models.adaptive import torch_names

            return [("embed.weight", "embedding.weight"), *torch_names(config, "decoder")]
        return [("embed.weight", "embedding.weight"), ("output.W", "decoder.weight"), ("output.b", "decoder.bias")]

    def onnx_graph(self, graph) -> tuple[list, list]:
        return graph.language_model()


TASK = LanguageModelTask()
