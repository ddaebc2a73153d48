"""Configuration as dataclasses: one per concern, every field defaulted. CLI options map onto
fields one to one, and checkpoints store them so `sample` and `score` need nothing else.

Each configuration is checked once, where it enters (the command line's request, a checkpoint's
stored config), by its `check()`; the core then trusts it. A check names the field, not a flag:
the command line turns `hidden must be at least 1` into `--hidden must be at least 1`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from rnncli.errors import ConfigError

LEVELS = ("char", "word", "subword")
SPLITS = ("words", "whitespace")  # word level: how a line is cut into words
BLANK_LINES = ("skip", "eos")  # word and subword levels: what a blank line is
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
SOFTMAXES = ("full", "adaptive")  # the language model's output layer
MAX_LAYERS = 32
MAX_WIDTH = 1 << 16


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _whole(name: str, value, low: int, what: str = "") -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise ConfigError(name, f"must be {what or f'a whole number of at least {low}'}, not {value!r}")


def _at_least(name: str, value, low, what: str = "") -> None:
    if not _finite(value) or value < low:
        raise ConfigError(name, f"must be {what or f'at least {low}'}, not {value!r}")


@dataclass
class TokenizerConfig:
    level: str = "char"  # char | word | subword
    min_count: int = 1  # tokens seen fewer times become <UNK> (char, word)
    max_vocab: int = 0  # word: keep at most this many entries, <UNK> and <EOS> included; 0 = all
    vocab_size: int = 2000  # subword: sentencepiece vocabulary size
    lowercase: bool = False  # word: fold case at fit and encode time
    spm_type: str = "unigram"  # subword: unigram | bpe
    split: str = "words"  # word: words (words and punctuation marks) | whitespace (fields between spaces)
    blank_lines: str = "skip"  # word, subword: skip | eos (a blank line is one <EOS>, as pytorch/examples reads)

    def check(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError("level", f"must be one of {', '.join(LEVELS)}, not {self.level!r}")
        _whole("min_count", self.min_count, 1)
        _whole("max_vocab", self.max_vocab, 0)
        if 0 < self.max_vocab < 3:
            raise ConfigError("max_vocab", "must be 0 (no limit) or at least 3")
        _whole("vocab_size", self.vocab_size, 3, "at least 3 (<UNK>, <EOS> and one piece)")
        if self.spm_type not in ("unigram", "bpe"):
            raise ConfigError("spm_type", f"must be unigram or bpe, not {self.spm_type!r}")
        if not isinstance(self.lowercase, bool):
            raise ConfigError("lowercase", f"must be true or false, not {self.lowercase!r}")
        if self.split not in SPLITS:
            raise ConfigError("split", f"must be one of {', '.join(SPLITS)}, not {self.split!r}")
        if self.split != "words" and self.level != "word":
            raise ConfigError("split", f"cuts words: it applies to the word level, not {self.level}")
        if self.blank_lines not in BLANK_LINES:
            raise ConfigError("blank_lines", f"must be one of {', '.join(BLANK_LINES)}, not {self.blank_lines!r}")
        if self.blank_lines != "skip" and self.level == "char":
            raise ConfigError("blank_lines", "applies to the word and subword levels (at char level every line end, "
                                             "a blank line's too, is <EOS>)")


@dataclass
class ModelConfig:
    cell: str = "lstm"  # a name of kernels/cells.py's registry
    vocab_size: int = 0  # V, set from the tokenizer
    embed: int = 64  # D of the first layer: embedding size
    hidden: int = 256  # H of every layer
    layers: int = 2  # L stacked recurrent layers
    dropout: float = 0.0  # inverted dropout on each layer's output (training only)
    tie_weights: bool = False  # output projection = embedding^T (needs embed == hidden)
    task: str = "lm"  # lm | classify | tag | translate (the registry, which checks it: tasks/__init__.py)
    bidirectional: bool = False  # every level a forward and a reversed layer (not for lm)
    labels: list[str] = field(default_factory=list)  # classify: the classes; tag: the tags
    step_int8: str = ""  # "" | row | block32: the single step's products in int8 against weights of that scheme
    softmax: str = "full"  # full | adaptive: the output layer (models/adaptive.py)
    cutoffs: list[int] = field(default_factory=list)  # adaptive: the shortlist's end, then each cluster's; [] = by V
    div_value: float = 4.0  # adaptive: tail i projects to hidden // div_value^i dimensions

    def check(self, task_rules=None) -> None:
        """The configuration's fields; `task_rules(config)` -> a refusal (field, problem) or None: what
        its task asks of it, which the task registry knows (tasks.check_model passes it)."""
        from rnncli.kernels.cells import get_cell

        get_cell(self.cell)  # an unknown name says which exist
        if not isinstance(self.task, str):
            raise ConfigError("task", f"must be a task's name, not {self.task!r}")
        if not isinstance(self.bidirectional, bool):
            raise ConfigError("bidirectional", f"must be true or false, not {self.bidirectional!r}")
        if not isinstance(self.labels, list) or not all(isinstance(x, str) for x in self.labels):
            raise ConfigError("labels", "must be a list of strings")
        from collections import Counter

        repeated = sorted(x for x, n in Counter(self.labels).items() if n > 1)
        if repeated:
            raise ConfigError("labels", f"must be unique, but {', '.join(map(repr, repeated[:5]))} repeat")
        refused = task_rules(self) if task_rules is not None else None
        if refused:
            raise ConfigError(*refused)
        for name in ("hidden", "embed", "layers"):
            _whole(name, getattr(self, name), 1)
        if self.layers > MAX_LAYERS:
            raise ConfigError("layers", f"must be at most {MAX_LAYERS} (more than about three rarely helps)")
        for name in ("hidden", "embed"):
            if getattr(self, name) > MAX_WIDTH:
                raise ConfigError(name, f"must be at most {MAX_WIDTH:,}")
        if not _finite(self.dropout) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must be in [0, 1), not {self.dropout!r}")
        if not isinstance(self.tie_weights, bool):
            raise ConfigError("tie_weights", f"must be true or false, not {self.tie_weights!r}")
        if self.tie_weights and self.embed != self.hidden:
            raise ConfigError("tie_weights", "needs embed equal to hidden")
        _whole("vocab_size", self.vocab_size, 2, "at least 2 (<UNK> and <EOS>)")
        if self.softmax not in SOFTMAXES:
            raise ConfigError("softmax", f"must be one of {', '.join(SOFTMAXES)}, not {self.softmax!r}")
        _at_least("div_value", self.div_value, 1.0)
        if self.softmax == "adaptive":
            from rnncli.models.adaptive import cutoff_problem, default_cutoffs

            if self.tie_weights:
                raise ConfigError("tie_weights", "shares the embedding with a dense output layer; an adaptive "
                                                 "softmax has none (drop one of them)")
            if not isinstance(self.cutoffs, list):
                raise ConfigError("cutoffs", "must be a list of whole numbers")
            problem = cutoff_problem(self.vocab_size, self.hidden, self.cutoffs or default_cutoffs(self.vocab_size),
                                     self.div_value)
            if problem:
                raise ConfigError("cutoffs", problem)
        elif self.cutoffs:
            raise ConfigError("cutoffs", "are for --softmax adaptive")
        from rnncli.kernels.quantization import SCHEMES

        if self.step_int8 not in ("", *SCHEMES):
            raise ConfigError("step_int8", f"must be empty or one of {', '.join(SCHEMES)}, not {self.step_int8!r}")


@dataclass
class TrainConfig:
    seq_len: int = 100  # T: truncated-BPTT chunk length
    batch_size: int = 32  # B: parallel streams
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 2e-3  # learning rate
    weight_decay: float = 0.0  # L2 (adam, sgd, rmsprop) or decoupled (adamw)
    clip: float = 5.0  # global gradient-norm clipping; 0 = off
    lr_decay: float = 1.0  # multiply lr by this when validation loss stops improving; 1 = never
    schedule: str = "cooldown"  # constant | cooldown | cosine | linear: the decay over the budget (schedule.py)
    warmup: int = 0  # steps of linear warm-up at the start
    momentum: float = 0.9  # sgd only
    unk_dropout: float = 0.5  # task models: a word seen once in training becomes <UNK> with this probability
    epochs: int = 5  # passes over the training tokens
    max_steps: int = 0  # total optimizer steps (counting resumed ones); 0 = no limit
    max_time: float = 0.0  # seconds of training in this run; 0 = no limit
    val_fraction: float = 0.1  # validation tokens taken from the end of the corpus
    eval_every: int = 0  # steps between evaluations; 0 = about 4 per epoch, at most every 250 steps
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    seed: int = 1234  # initialisation, batching and dropout

    def check(self) -> None:
        from rnncli.training.schedule import SCHEDULES

        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", f"must be one of {', '.join(SCHEDULES)}, not {self.schedule!r}")
        _whole("warmup", self.warmup, 0, "0 or more")
        if not _finite(self.momentum) or not 0 <= self.momentum < 1:
            raise ConfigError("momentum", f"must be in [0, 1), not {self.momentum!r}")
        if not _finite(self.unk_dropout) or not 0 <= self.unk_dropout < 1:
            raise ConfigError("unk_dropout", f"must be in [0, 1), not {self.unk_dropout!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError("optimizer", f"must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        for name in ("seq_len", "batch_size", "epochs"):
            _whole(name, getattr(self, name), 1, "a positive whole number")
        if not _finite(self.lr) or self.lr <= 0:
            raise ConfigError("lr", f"must be a positive number, not {self.lr}")
        for name in ("max_steps", "eval_every", "patience"):
            _whole(name, getattr(self, name), 0, "0 or more")
        for name in ("weight_decay", "clip", "max_time"):
            _at_least(name, getattr(self, name), 0, "0 or more")
        if not _finite(self.lr_decay) or not 0 < self.lr_decay <= 1:
            raise ConfigError("lr_decay", f"must be in (0, 1], not {self.lr_decay}")
        if not _finite(self.val_fraction) or not 0 <= self.val_fraction < 1:
            raise ConfigError("val_fraction", f"must be in [0, 1), not {self.val_fraction}")
        _whole("seed", self.seed, 0, "0 or more")
        if self.lr > (100 if self.optimizer == "sgd" else 10):  # plain SGD's rates reach ~20 (word models)
            raise ConfigError("lr", f"{self.lr} is far too large (try {20 if self.optimizer == 'sgd' else 2e-3})")


@dataclass
class SampleConfig:
    length: int = 500  # tokens to generate, not counting the prime
    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens; 0 = all
    top_p: float = 1.0  # nucleus: smallest set with this much probability; 1 = all
    beam: int = 0  # beam width; 0 = sample
    until_eos: bool = False  # stop at the first <EOS>
    stop: str | list[str] | None = None  # stop once the text contains this string (or one of these)
    num_samples: int = 1
    seed: int | None = None  # None: a fresh random seed each run

    def check(self) -> None:
        _at_least("length", self.length, 0, "0 or more")
        _at_least("temperature", self.temperature, 0, "0 (greedy) or more")
        _at_least("top_k", self.top_k, 0, "at least 1 (or 0 for no limit)")
        if not _finite(self.top_p) or not 0 < self.top_p <= 1:
            raise ConfigError("top_p", f"must be in (0, 1], not {self.top_p}")
        _at_least("beam", self.beam, 0, "at least 1")
        _at_least("num_samples", self.num_samples, 1)
        if self.beam and self.num_samples > self.beam:
            raise ConfigError("num_samples", f"with a beam of {self.beam}, at most {self.beam} (its best hypotheses)")
        if self.seed is not None:
            _at_least("seed", self.seed, 0, "0 or more")
        if self.stop == "" or (isinstance(self.stop, list) and not all(self.stop)):
            raise ConfigError("stop", "must not be empty")


def to_dict(obj) -> dict:
    return asdict(obj)


def _schema_of(hint):
    """A field's annotation as a schema (formats/schema.py): int, float, str, bool, list[X], X | None."""
    import types
    import typing

    from rnncli.formats.schema import Either, ListOf

    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return Either(*(_schema_of(h) for h in typing.get_args(hint)))
    if hint is type(None):
        return None
    if typing.get_origin(hint) is list:
        return ListOf(_schema_of(typing.get_args(hint)[0]))
    return hint


def from_dict(cls, values: dict):
    """Build a config from a stored dict, ignoring keys this version does not know; a value whose
    type is not its field's (a list for an object, "x" for a size) is refused naming the field."""
    import typing

    from rnncli.errors import RnncliError
    from rnncli.formats.schema import check

    if not isinstance(values, dict):
        raise RnncliError(f"the {cls.__name__} must be a JSON object, not {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for name, value in values.items():
        if name in known:
            check(value, _schema_of(hints[name]), f"the {cls.__name__}", name)
    return cls(**{k: v for k, v in values.items() if k in known})
