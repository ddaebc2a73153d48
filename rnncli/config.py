"""Configuration as dataclasses: one per concern, every field defaulted. CLI options map onto
fields one to one, and checkpoints store them so `sample` and `score` need nothing else."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

LEVELS = ("char", "word", "subword")
CELLS = ("rnn", "rnn-relu", "gru", "gru-simple", "gru-cudnn", "lstm", "lstm-peephole")
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


@dataclass
class TrainConfig:
    seq_len: int = 100  # T: truncated-BPTT chunk length
    batch_size: int = 32  # B: parallel streams
    optimizer: str = "adam"  # adam | adamw | sgd | rmsprop
    lr: float = 2e-3  # learning rate
    weight_decay: float = 0.0  # L2 (adam, sgd, rmsprop) or decoupled (adamw)
    clip: float = 5.0  # global gradient-norm clipping; 0 = off
    lr_decay: float = 1.0  # multiply lr by this when validation loss stops improving; 1 = never
    epochs: int = 5  # passes over the training tokens
    max_steps: int = 0  # total optimizer steps (counting resumed ones); 0 = no limit
    max_time: float = 0.0  # seconds of training in this run; 0 = no limit
    val_fraction: float = 0.1  # validation tokens taken from the end of the corpus
    eval_every: int = 0  # steps between evaluations; 0 = about 4 per epoch, at most every 250 steps
    patience: int = 0  # stop after this many evaluations without improvement; 0 = never
    seed: int = 1234  # initialisation, batching and dropout


@dataclass
class SampleConfig:
    length: int = 500  # tokens to generate, not counting the prime
    temperature: float = 1.0  # 0 = greedy (argmax)
    top_k: int = 0  # keep the k most likely tokens; 0 = all
    top_p: float = 1.0  # nucleus: smallest set with this much probability; 1 = all
    beam: int = 0  # beam width; 0 = sample
    until_eos: bool = False  # stop at the first <EOS>
    stop: str | None = None  # stop once the text contains this string
    num_samples: int = 1
    seed: int | None = None  # None: a fresh random seed each run


def to_dict(obj) -> dict:
    return asdict(obj)


def from_dict(cls, values: dict):
    """Build a config from a stored dict, ignoring keys this version does not know."""
    known = {f.name for f in fields(cls)}
    return cls(**{k: v for k, v in values.items() if k in known})
