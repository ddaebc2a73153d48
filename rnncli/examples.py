"""Labelled examples for the task models (tasks.py): reading the three formats, encoding them with
the model's tokenizer, and batching them by length.

Formats (UTF-8 text, `-` for stdin, as for a corpus):
  classify   `label<TAB>text` per line; a first line whose label field is `label` is a header.
  tag        CoNLL columns: the token first, its tag last (whitespace-separated); a blank line ends
             a sentence; `-DOCSTART-` lines are skipped.
  translate  `source<TAB>target` per line; further columns are ignored.
Blank lines (outside tagging) are skipped; a line that does not fit its format is an error naming it.

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
padded (tasks.py relies on it); a batch's order and content come from (seed, epoch) alone, so a
resumed run replays the same batches from its batch index.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from rnncli.data import Corpus
from rnncli.errors import RnncliError
from rnncli.tasks import Batch
from rnncli.tokenizers import EOS, UNK, WordTokenizer

HEADER_LABEL = "label"


@dataclass
class Examples:
    """Raw examples of one task: sources (text; for tagging, the list of tokens) and targets (a
    label; a list of tags; a target text)."""

    task: str
    sources: list
    targets: list

    def __len__(self) -> int:
        return len(self.sources)

    def subset(self, indices) -> Examples:
        return Examples(self.task, [self.sources[i] for i in indices], [self.targets[i] for i in indices])

    def texts(self):
        """Every text a tokenizer should know, one per line."""
        for source, target in zip(self.sources, self.targets, strict=True):
            yield " ".join(source) if self.task == "tag" else source
            if self.task == "translate":
                yield target


def read_examples(task: str, corpus: Corpus) -> Examples:
    """Every example in `corpus`; raises RnncliError naming the first line that does not fit."""
    reader = {"classify": _read_classify, "tag": _read_tagged, "translate": _read_pairs}[task]
    sources, targets = reader(corpus)
    if not sources:
        raise RnncliError(f"{corpus.name}: holds no {task} examples ({FORMAT_HINT[task]})")
    return Examples(task, sources, targets)


FORMAT_HINT = {
    "classify": "expected lines of label<TAB>text",
    "tag": "expected CoNLL lines: token ... tag, a blank line between sentences",
    "translate": "expected lines of source<TAB>target",
}


def _fields(corpus: Corpus, task: str):
    for number, line in enumerate(corpus.lines(), 1):
        if line.strip():
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                raise RnncliError(f"{corpus.name}:{number}: {FORMAT_HINT[task]}")
            yield number, parts


def _read_classify(corpus: Corpus):
    labels, texts = [], []
    for number, parts in _fields(corpus, "classify"):
        if number == 1 and parts[0].strip() == HEADER_LABEL:
            continue
        labels.append(parts[0].strip())
        texts.append("\t".join(parts[1:]).strip())
    return texts, labels


def _read_pairs(corpus: Corpus):
    sources, targets = [], []
    for _, parts in _fields(corpus, "translate"):
        sources.append(parts[0].strip())
        targets.append(parts[1].strip())
    return sources, targets


def _read_tagged(corpus: Corpus):
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
            raise RnncliError(f"{corpus.name}:{number}: {FORMAT_HINT['tag']}")
        tokens.append(columns[0])
        labels.append(columns[-1])
    return sentences, tags


def label_set(examples: Examples) -> list[str]:
    """The labels a model learns: sorted; for tagging, `O` first."""
    if examples.task == "classify":
        return sorted(set(examples.targets))
    tags = {t for sentence in examples.targets for t in sentence}
    return sorted(tags, key=lambda t: (t != "O", t))


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
        if examples.task == "classify":
            inputs.append(text_ids(tokenizer, source))
            targets.append(index.get(target, -1))
        elif examples.task == "tag":
            ids, last = token_pieces(tokenizer, source)
            tags = np.full(len(ids), -1, np.int64)
            tags[last] = [index.get(t, -1) for t in target]
            inputs.append(ids)
            targets.append(tags)
        else:
            inputs.append(text_ids(tokenizer, source))
            targets.append(np.append(text_ids(tokenizer, target), EOS))
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


def make_batch(task: str, encoded: Encoded, indices: np.ndarray) -> Batch:
    """A Batch (tasks.py) of examples with one input length."""
    inputs = np.stack([encoded.inputs[i] for i in indices], axis=1)  # (T, B)
    if task == "classify":
        return Batch(inputs, np.array([encoded.targets[i] for i in indices], np.int64))
    if task == "tag":
        return Batch(inputs, np.stack([encoded.targets[i] for i in indices], axis=1))
    longest = max(len(encoded.targets[i]) for i in indices)
    targets = np.full((longest, len(indices)), -1, np.int64)
    decoder_inputs = np.full((longest, len(indices)), EOS, np.int64)
    for b, i in enumerate(indices):
        y = encoded.targets[i]
        targets[:len(y), b] = y
        decoder_inputs[1:len(y), b] = y[:-1]  # <EOS>, y<1>, ..., y<n-1>: the target shifted right
    return Batch(inputs, targets, decoder_inputs)


def split_examples(examples: Examples, fraction: float, seed: int) -> tuple[Examples, Examples | None]:
    """Training and validation examples: a seeded random `fraction` held out (none when 0)."""
    n_val = int(len(examples) * fraction)
    if n_val < 1 or len(examples) - n_val < 1:
        return examples, None
    order = np.random.default_rng(seed).permutation(len(examples))
    return examples.subset(np.sort(order[n_val:])), examples.subset(np.sort(order[:n_val]))
