"""Configuration as dataclasses: one per concern, every field defaulted. CLI options map onto
fields one to one, and checkpoints store them so `sample` and `score` need nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

LEVELS = ("char", "word", "subword")
CELLS = ("rnn", "rnn-relu", "gru", "gru-simple", "lstm", "lstm-peephole")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")


@dataclass
class TokenizerConfig:
    level: str = "char"  # char | word | subword
    min_count: int = 1  # tokens seen fewer times become <UNK> (char, word)
    max_vocab: int = 0  # word: keep at most this many entries, <UNK> and <EOS> included; 0 = all
    vocab_size: int = 2000  # subword: sentencepiece vocabulary size
    lowercase: bool = False  # word: fold case at fit and encode time
    spm_type: str = "unigram"  # subword: unigram | bpe


@dataclass
class ModelConfig:
    cell: str = "lstm"  # one of CELLS
    vocab_size: int = 0  # V, set from the tokenizer
    embed: int = 64  # D of the first layer: embedding size
    hidden: int = 256  # H of every layer
    layers: int = 2  # L stacked recurrent layers
    dropout: float = 0.0  # inverted dropout on each layer's output (training only)
    tie_weights: bool = False  # output projection = embedding^T (needs embed == hidden)


def to_dict(obj) -> dict:
    return asdict(obj)


def from_dict(cls, values: dict):
    """Build a config from a stored dict, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})
