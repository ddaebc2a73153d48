"""What every task answers: one object per task (lm.py, classify.py, tag.py, translate.py), resolved
once from its name (`rnncli.tasks.get_task`). The code around asks the task, never its name.

A task owns: what it is (`what`, the command that uses it, the unit of its loss), which model
options it allows, how its training data is read (a token stream, or examples in its own file
format), how an example is encoded and batched, its model, head and evaluation, how its report is
printed, and its output side in an ONNX graph and under PyTorch's names.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from rnncli.errors import RnncliError


def tab_fields(corpus, hint: str):
    """(line number, tab-separated fields) of each non-blank line; a line with fewer than two
    non-blank fields is an error naming it."""
    for number, line in enumerate(corpus.lines(), 1):
        if line.strip():
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                raise RnncliError(f"{corpus.name}:{number}: {hint}")
            yield number, parts


class Task:
    name: str = ""
    what: str = ""  # "a language model": in messages
    command: str = ""  # the command that uses such a model
    unit: str = ""  # what the validation loss is per: nats/<unit>
    next_hint: str = ""  # printed after training, with {out} the checkpoint
    stream: bool = False  # trained on one token stream (the language model), else on examples
    labelled: bool = False  # learns a set of labels from its training examples
    bidirectional: bool = True  # its layers may read both ways
    ties_weights: bool = False  # its output layer may share the embedding
    default_level: str = "word"  # the tokenizer's level unless --level is given
    format_hint: str = ""  # what a line of its examples looks like, for errors
    endpoints: tuple[str, ...] = ()  # what `rnncli serve` answers with such a model: /v1/<endpoint>
    decodes: bool = False  # its answers are generated (temperature, beam, length: a SampleConfig)

    # ---- configuration -------------------------------------------------------------------------

    def check_config(self, config) -> tuple[str, str] | None:
        """None, or (field, reason) for a ModelConfig this task refuses."""
        if config.bidirectional and not self.bidirectional:
            return ("bidirectional", f"is not for {self.what}, which must not see the tokens it predicts "
                                     "(use it with --task classify, tag or translate)")
        if config.tie_weights and not self.ties_weights:
            return ("tie_weights", "is for the language model only")
        if config.softmax != "full" and not self.stream:
            return ("softmax", f"{config.softmax} is for the language model's vocabulary, not {self.what}'s labels")
        if self.labelled and len(config.labels) < 2:
            return ("labels", f"a {self.name} model needs at least 2 labels, not {len(config.labels)}")
        return None

    # ---- examples (tasks with `stream` False) --------------------------------------------------

    def read(self, corpus) -> tuple[list, list]:
        """Every (source, target) of a Corpus in this task's format, as two lists."""
        raise NotImplementedError(f"{self.name} is not trained on examples")

    def texts(self, source, target):
        """The texts of one example a tokenizer should know."""
        yield source

    def label_set(self, targets: list) -> list[str]:
        """The labels a model learns from the training targets."""
        return []

    def encode(self, source, target, tokenizer, index: dict[str, int]) -> tuple[np.ndarray, object]:
        """One example as ids: (input ids, target ids or class id); a label not in `index` counts
        for nothing (-1)."""
        raise NotImplementedError

    def batch(self, inputs: np.ndarray, targets: list):
        """A Batch (models.py) of examples of one input length: inputs (T, B), their targets."""
        raise NotImplementedError

    def head_class(self):
        """The label head over the encoder's output (heads.py), for a task model with labels."""
        raise NotImplementedError

    # ---- the model -----------------------------------------------------------------------------

    def build(self, config):
        """The model of a configuration of this task."""
        raise NotImplementedError

    def evaluate(self, ck, corpus, config) -> dict:
        """The task's figures on a labelled file (a Corpus), `"task"` included."""
        raise NotImplementedError

    def report_text(self, report: dict) -> str:
        """`evaluate`'s report as the lines `rnncli evaluate` prints."""
        raise NotImplementedError

    def answers(self, ck, texts: list[str], config) -> Iterator[dict]:
        """Each text's answer as the task's command prints it with --json (and `serve` answers it),
        as soon as it is made; `config` a SampleConfig for a task that `decodes`."""
        raise NotImplementedError(f"{self.name} has no answers of its own")

    # ---- export --------------------------------------------------------------------------------

    def torch_names(self, config) -> list[tuple[str, str]]:
        """(rnncli name, PyTorch name) of the embeddings and the output layer; W matrices transpose."""
        return [("embed.weight", "embedding.weight"), ("output.W", "output.weight"), ("output.b", "output.bias")]

    def stacks(self) -> list[tuple[str, str, bool]]:
        """(rnncli prefix, PyTorch module name, whether it may be bidirectional) of each recurrent stack."""
        return [("", "rnn", True)]

    def onnx_graph(self, graph) -> tuple[list, list]:
        """This task's inputs and outputs in an ONNX graph (onnx_export.Graph's task forms)."""
        raise NotImplementedError


class LabelTask(Task):
    """A task whose model is an encoder and a label head (tasks/models.py's LabelModel): classify, tag."""

    labelled = True

    def build(self, config):
        from rnncli.tasks.models import LabelModel

        return LabelModel(config, self.head_class())
