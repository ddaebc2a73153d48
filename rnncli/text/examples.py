"""Labelled examples for the task models (tasks/): reading them in their task's format (each task's
module: classify.py, tag.py, translate.py), encoding them with the model's tokenizer, and batching
them by length. Files are UTF-8 text, `-` for stdin, as for a corpus; blank lines (outside tagging)
are skipped; a line that does not fit its format is an error naming it.

Tags and pieces: at the word level each CoNLL token is one token (or a few, when the word
tokenizer splits it); at the char and subword levels a token is several pieces. Either way a
token's tag is learnt and predicted at its **last** piece, which has read the whole token even in a
forward-only model; the other pieces carry no tag (target -1). At the char level the tokens of a
sentence are joined by spaces, so the model sees word boundaries.

Unseen words: every word of the training examples has its own entry, so <UNK> (which every word
unseen in training becomes at prediction: 5.8% of CoNLL-2003 testa's tokens, mostly names) never
occurs in training and its embedding would stay a random draw, which decided several points of F1
from one seed to the next. So while a task model trains, each occurrence of a word seen only once
in the training inputs becomes <UNK> with probability `unk_dropout` (0.5 by default: the
singleton replacement of Lample et al. 2016), drawn from the run's RNG (a resumed run draws the
same): the model learns what to make of a word it does not know.

Batches hold examples of one input length (translation: one source length), so inputs are never
padded (tasks/models.py relies on it); a batch's order and content come from (seed, epoch) alone, so a
resumed run replays the same batches from its batch index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rnncli.errors import RnncliError
from rnncli.tasks.base import Task
from rnncli.tasks.models import Batch
from rnncli.text.data import Corpus
from rnncli.text.tokenizers import EOS, UNK, WordTokenizer


@dataclass
class Examples:
    """Raw examples of one task: sources (text; for tagging, the list of tokens) and targets (a
    label; a list of tags; a target text)."""

    task: Task
    sources: list
    targets: list

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices) -> Examples:
        return Examples(self.task, [self.sources[i] for i in indices], [self.targets[i] for i in indices])

    def texts(self):
        """Every text a tokenizer should know, one per line."""
        for source, target in zip(self.sources, self.targets, strict=True):
            yield from self.task.texts(source, target)


def read_examples(task: Task, corpus: Corpus) -> Examples:
    """Every example in `corpus`; raises RnncliError naming the first line that does not fit."""
    sources, targets = task.read(corpus)
    if not sources:
        raise RnncliError(f"{corpus.name}: holds no {task.name} examples ({task.format_hint})")
    return Examples(task, sources, targets)


def label_set(examples: Examples) -> list[str]:
    """The labels a model learns (sorted; for tagging, `O` first)."""
    return examples.task.label_set(examples.targets)


# ---- encoding --------------------------------------------------------------------------------------


def text_ids(tokenizer, text: str) -> np.ndarray:
    """Token ids of one line of text, without <EOS>; an empty text is the one token <EOS>."""
    ids = tokenizer.encode(text.replace("\n", " "))
    ids = ids[ids != EOS]
    return (ids if len(ids) else np.array([EOS])).astype(np.int64)


def split_words(text: str) -> list[str]:
    """A sentence as tokens to tag: words and punctuation marks, as the word level splits them."""
    return WordTokenizer.split(text, lowercase=False)


def token_pieces(tokenizer, tokens: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The piece ids of a tokenized sentence and, for each token, the position of its last piece."""
    ids: list[int] = []
    last = []
    for i, token in enumerate(tokens):
        piece = tokenizer.encode(" " + token if i and tokenizer.level == "char" else token)
        piece = [int(p) for p in piece if p != EOS] or [UNK]
        ids.extend(piece)
        last.append(len(ids) - 1)
    return np.array(ids, np.int64), np.array(last, np.int64)


@dataclass
class Encoded:
    """Examples as ids: inputs (one array each) and targets (a class id; a tag id per input piece,
    -1 where none is scored; the target's ids followed by <EOS>)."""

    inputs: list[np.ndarray]
    targets: list

    def lengths(self) -> np.ndarray:
        return np.array([len(x) for x in self.inputs])

    def tokens(self) -> int:
        return int(self.lengths().sum())


def encode_examples(examples: Examples, tokenizer, labels: list[str]) -> Encoded:
    """Examples -> ids. A label the model does not know counts for nothing (target -1)."""
    index = {label: i for i, label in enumerate(labels)}
    inputs, targets = [], []
    for source, target in zip(examples.sources, examples.targets, strict=True):
        ids, target_ids = examples.task.encode(source, target, tokenizer, index)
        inputs.append(ids)
        targets.append(target_ids)
    return Encoded(inputs, targets)


def checksum(encoded: Encoded) -> int:
    """CRC-32 of inputs and targets (a resumed run must read the same examples)."""
    import zlib

    crc = 0
    for x, y in zip(encoded.inputs, encoded.targets, strict=True):
        crc = zlib.crc32(np.asarray(x, np.int64).tobytes(), crc)
        crc = zlib.crc32(np.asarray(y, np.int64).tobytes(), crc)
    return crc


# ---- batching --------------------------------------------------------------------------------------


def length_batches(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None) -> list[np.ndarray]:
    """Indices grouped by length, at most `batch_size` per batch. With `rng`, examples are shuffled
    within each length and the batches' order is shuffled; without, the order is the file's."""
    batches = []
    for length in np.unique(lengths):
        members = np.flatnonzero(lengths == length)
        if rng is not None:
            members = rng.permutation(members)
        batches.extend(members[i:i + batch_size] for i in range(0, len(members), batch_size))
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


def epoch_batches(encoded: Encoded, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The batches of one training epoch: a function of (seed, epoch) only."""
    return length_batches(encoded.lengths(), batch_size, np.random.default_rng([seed, epoch]))


def rare_inputs(encoded: Encoded, vocab_size: int) -> np.ndarray:
    """(vocab_size,) bool: the ids that occur exactly once in the inputs."""
    counts = np.bincount(np.concatenate([np.asarray(x, np.int64) for x in encoded.inputs]), minlength=vocab_size)
    return counts[:vocab_size] == 1


def drop_rare_inputs(batch: Batch, rare: np.ndarray, p: float, rng: np.random.Generator) -> Batch:
    """The batch with each input whose id is `rare` replaced by <UNK> with probability p."""
    hit = rare[batch.inputs] & (rng.random(batch.inputs.shape) < p)
    return replace(batch, inputs=np.where(hit, UNK, batch.inputs))


def make_batch(task: Task, encoded: Encoded, indices: np.ndarray) -> Batch:
    """A Batch (tasks/models.py) of examples with one input length."""
    inputs = np.stack([encoded.inputs[i] for i in indices], axis=1)  # (T, B)
    return task.batch(inputs, [encoded.targets[i] for i in indices])


def split_examples(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples | None]:
    """Training and validation examples: a seeded random `fraction` held out (none when 0)."""
    n_val = int(len(examples) * fraction)
    if n_val < 1 or len(examples) - n_val < 1:
        return examples, None
    order = np.random.default_rng(seed).permutation(len(examples))
    return examples.subset(np.sort(order[n_val:])), examples.subset(np.sort(order[:n_val]))
