"""Character, word and sentencepiece-subword tokenizers behind one interface.

Every level reserves the same two ids: `<UNK>` = 0 (anything outside the vocabulary) and
`<EOS>` = 1 (end of a line, i.e. of a sentence). A tokenizer is fitted on a corpus, then
`encode(text) -> (N,) int32` and `decode(ids) -> str`; `to_arrays()` / `from_arrays()` turn it into
plain numpy arrays (unicode vocabulary, sentencepiece model as uint8) for a pickle-free `.npz`.
"""

from __future__ import annotations

import io
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from rnncli.config import BLANK_LINES, SPLITS, TokenizerConfig
from rnncli.errors import RnncliError, UsageError

UNK = 0
EOS = 1
UNK_TOKEN = "<UNK>"
EOS_TOKEN = "<EOS>"
RESERVED = (UNK_TOKEN, EOS_TOKEN)


class Tokenizer(ABC):
    level: str

    def __init__(self, vocab: Sequence[str]):
        self.vocab = list(vocab)  # id -> token string; vocab[0] = <UNK>, vocab[1] = <EOS>

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @abstractmethod
    def encode(self, text: str) -> np.ndarray:
        """Token ids of `text`, (N,) int32."""

    @abstractmethod
    def decode(self, ids: Iterable[int]) -> str:
        """Text of token ids; `<EOS>` becomes a newline."""

    def pieces(self, text: str) -> list[tuple[str, int]]:
        """Each token of `text` as (the text it covers, its id), for showing a tokenization."""
        return [(self.vocab[i], int(i)) for i in self.encode(text)]

    def token_texts(self, ids: Iterable[int]) -> list[str]:
        """One display string per token id (`<UNK>` and `<EOS>` shown by name)."""
        return [self.vocab[int(i)] for i in ids]

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {"level": np.array(self.level), "vocab": np.array(self.vocab, dtype=np.str_)}

    def config(self) -> TokenizerConfig:
        """The settings this tokenizer cuts text by."""
        return TokenizerConfig(level=self.level)


def text_lines(text: str) -> list[str]:
    """The lines of `text`: what lies between its line ends, a last line end ending the last line
    (not starting an empty one), as Python reads a file's lines."""
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


# ---------------------------------------------------------------------------------------------
# char


class CharTokenizer(Tokenizer):
    """Every character seen, case kept. Newline is `<EOS>` and decodes back to a newline."""

    level = "char"

    def __init__(self, vocab: Sequence[str]):
        super().__init__(vocab)
        chars = self.vocab[2:]
        codes = np.array([ord(c) for c in chars], dtype=np.uint32)
        order = np.argsort(codes)
        # id of every code point up to the vocabulary's largest (<UNK> where it has none, the newline
        # <EOS>), and <UNK> in one slot past it for every code point beyond: one lookup a character
        top = int(codes.max()) + 1 if len(codes) else 1
        self._table = np.full(max(top, ord("\n") + 1) + 1, UNK, dtype=np.int32)
        self._table[codes[order]] = (order + 2).astype(np.int32)
        self._table[ord("\n")] = EOS
        self._text = np.array([UNK_TOKEN, "\n", *chars], dtype=object)

    @classmethod
    def fit(cls, blocks: Iterable[str], min_count: int = 1) -> CharTokenizer:
        counts = np.zeros(0, dtype=np.int64)  # occurrences of each code point
        for block in blocks:
            seen = np.bincount(_code_points(block))
            if len(seen) > len(counts):
                counts = np.concatenate([counts, np.zeros(len(seen) - len(counts), np.int64)])
            counts[: len(seen)] += seen
        if len(counts) > ord("\n"):
            counts[ord("\n")] = 0
        chars = [chr(c) for c in np.flatnonzero(counts >= max(min_count, 1)).tolist()]
        return cls([*RESERVED, *chars])

    def encode(self, text: str) -> np.ndarray:
        cps = _code_points(text)
        return self._table[np.minimum(cps, len(self._table) - 1)]

    def pieces(self, text: str) -> list[tuple[str, int]]:
        return list(zip(text, self.encode(text).tolist(), strict=True))

    def decode(self, ids: Iterable[int]) -> str:
        ids = np.asarray(ids if isinstance(ids, np.ndarray) else list(ids), dtype=np.int64)
        return "".join(self._text[ids])


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


# ---------------------------------------------------------------------------------------------
# word

# A word (letters/digits, with inner apostrophes as in "don't"), or one punctuation mark.
# A corpus's own unknown-word marker (WikiText writes `<unk>`) is kept whole and mapped to <UNK>.
WORD_PATTERN = re.compile(r"<unk>|<UNK>|\w+(?:['’]\w+)*|[^\w\s]")
NO_SPACE_BEFORE = set(".,;:!?)]}%'’”")
MAX_WORD_CHARS = 64  # longer "words" (URLs, base64, runs of digits) are not kept: they read as <UNK>
NO_SPACE_AFTER = set("([{“$")


class WordTokenizer(Tokenizer):
    """Words as tokens; every line ends in `<EOS>`.

    `split` cuts a line: "words", words (letters and digits, inner apostrophes kept) and each
    punctuation mark apart; or "whitespace", every field between spaces whole, as pytorch/examples'
    word_language_model, KenLM and SRILM read text (`[noise]`, `@-@`, `No.` stay one token each).
    `blank_lines`: "skip" (a blank line carries no sentence) or "eos" (it is one `<EOS>`, as those
    tools count it). With `lowercase`, text is folded at fit and at encode time alike, so a prime or
    a scored sentence gets the same treatment.
    """

    level = "word"

    def __init__(self, vocab: Sequence[str], lowercase: bool = False, split: str = "words",
                 blank_lines: str = "skip"):
        super().__init__(vocab)
        self.lowercase, self.rule, self.blank_lines = lowercase, split, blank_lines
        self._index = {w: i for i, w in enumerate(self.vocab)}
        self._index["<unk>"] = UNK
        self._index.pop(EOS_TOKEN, None)  # a literal "<EOS>" in text is not the end of a line

    @classmethod
    def split(cls, line: str, lowercase: bool, rule: str = "words") -> list[str]:
        words = line.split() if rule == "whitespace" else WORD_PATTERN.findall(line)
        if lowercase:
            words = [w if w in ("<unk>", "<UNK>") else w.lower() for w in words]
        return words

    @classmethod
    def fit(cls, blocks: Iterable[str], min_count: int = 1, max_vocab: int = 0, lowercase: bool = False,
            split: str = "words", blank_lines: str = "skip") -> WordTokenizer:
        counts: Counter[str] = Counter()
        for block in blocks:
            for line in block.split("\n"):
                counts.update(cls.split(line, lowercase, split))
        for marker in ("<unk>", "<UNK>", EOS_TOKEN):
            counts.pop(marker, None)
        longest = MAX_WORD_CHARS if split == "words" else 1 << 30  # a whitespace field is kept whole, any length
        ranked = sorted((w for w, n in counts.items() if n >= min_count and len(w) <= longest),
                        key=lambda w: (-counts[w], w))
        if max_vocab:
            ranked = ranked[: max(0, max_vocab - len(RESERVED))]
        return cls([*RESERVED, *ranked], lowercase, split, blank_lines)

    def _lines(self, text: str):
        """Each line's words, a line with none only when blank lines are `<EOS>`."""
        for line in text_lines(text):
            words = self.split(line, self.lowercase, self.rule)
            if words or self.blank_lines == "eos":
                yield words

    def encode(self, text: str) -> np.ndarray:
        ids: list[int] = []
        get = self._index.get
        for words in self._lines(text):
            ids.extend(get(w, UNK) for w in words)
            ids.append(EOS)
        return np.array(ids, dtype=np.int32)

    def pieces(self, text: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for words in self._lines(text):
            out.extend((w, self._index.get(w, UNK)) for w in words)
            out.append((EOS_TOKEN, EOS))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        out: list[str] = []
        at_line_start = True
        for i in ids:
            i = int(i)
            if i == EOS:
                out.append("\n")
                at_line_start = True
                continue
            word = self.vocab[i]
            if not at_line_start and (self.rule == "whitespace" or (word not in NO_SPACE_BEFORE
                                                                    and out[-1] not in NO_SPACE_AFTER)):
                out.append(" ")
            out.append(word)
            at_line_start = False
        return "".join(out)

    def config(self) -> TokenizerConfig:
        return TokenizerConfig(level=self.level, lowercase=self.lowercase, split=self.rule,
                               blank_lines=self.blank_lines)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**super().to_arrays(), "lowercase": np.array(self.lowercase), "split": np.array(self.rule),
                "blank_lines": np.array(self.blank_lines)}


# ---------------------------------------------------------------------------------------------
# subword (sentencepiece)


class SubwordTokenizer(Tokenizer):
    """A sentencepiece model (unigram or BPE) trained in-process; kept as bytes.

    The model is trained with unk_id=0 and eos_id=1, so its ids are ours directly. `blank_lines` as
    for words: "skip" or "eos" (a blank line is one `<EOS>`).
    """

    level = "subword"

    def __init__(self, model: bytes, blank_lines: str = "skip"):
        import sentencepiece as spm

        self.blank_lines = blank_lines
        self.model = bytes(model)
        self._sp = spm.SentencePieceProcessor(model_proto=self.model)
        super().__init__([self._sp.id_to_piece(i) for i in range(self._sp.get_piece_size())])

    @classmethod
    def fit(cls, blocks: Iterable[str], vocab_size: int = 2000, spm_type: str = "unigram",
            blank_lines: str = "skip") -> SubwordTokenizer:
        import sentencepiece as spm

        lines = [line for block in blocks for line in block.split("\n") if line.strip()]
        buf = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=iter(lines), model_writer=buf, vocab_size=vocab_size,
                model_type=spm_type, unk_id=UNK, eos_id=EOS, bos_id=-1, pad_id=-1,
                unk_piece=UNK_TOKEN, eos_piece=EOS_TOKEN, character_coverage=1.0,
                max_sentence_length=1 << 20, minloglevel=2, num_threads=2,
            )
        except RuntimeError as err:
            m = re.search(r"value <= (\d+)", str(err))
            if m:
                raise UsageError(
                    f"the corpus is too small for --vocab-size {vocab_size}; "
                    f"the largest size that works is {m.group(1)}: pass --vocab-size {m.group(1)}"
                ) from None
            raise RnncliError(f"sentencepiece could not train: {str(err).splitlines()[0]}") from None
        return cls(buf.getvalue(), blank_lines)

    def _lines(self, text: str) -> list[str]:
        """The lines that are sentences: every line when blank lines are `<EOS>`, else the non-blank."""
        lines = text_lines(text)
        return lines if self.blank_lines == "eos" else [line for line in lines if line.strip()]

    def encode(self, text: str) -> np.ndarray:
        ids: list[int] = []
        for pieces in self._sp.encode(self._lines(text)):
            ids.extend(pieces)
            ids.append(EOS)
        return np.array(ids, dtype=np.int32)

    def pieces(self, text: str) -> list[tuple[str, int]]:
        out: list[tuple[str, int]] = []
        for line in self._lines(text):
            ids = self._sp.encode(line)
            out.extend((self._sp.id_to_piece(i), i) for i in ids)
            out.append((EOS_TOKEN, EOS))
        return out

    def decode(self, ids: Iterable[int]) -> str:
        out: list[str] = []
        line: list[int] = []
        for i in ids:
            i = int(i)
            if i == EOS:
                out.append(self._sp.decode(line) + "\n")
                line = []
            else:
                line.append(i)
        if line:
            out.append(self._sp.decode(line))
        return "".join(out)

    def config(self) -> TokenizerConfig:
        return TokenizerConfig(level=self.level, vocab_size=self.vocab_size, blank_lines=self.blank_lines)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {**super().to_arrays(), "spm_model": np.frombuffer(self.model, dtype=np.uint8),
                "blank_lines": np.array(self.blank_lines)}


# ---------------------------------------------------------------------------------------------


def fit_tokenizer(config: TokenizerConfig, blocks: Iterable[str]) -> Tokenizer:
    """A tokenizer fitted to the text (`config` is checked already)."""
    if config.level == "char":
        return CharTokenizer.fit(blocks, config.min_count)
    if config.level == "word":
        return WordTokenizer.fit(blocks, config.min_count, config.max_vocab, config.lowercase, config.split,
                                 config.blank_lines)
    return SubwordTokenizer.fit(blocks, config.vocab_size, config.spm_type, config.blank_lines)


def tokenizer_from_arrays(arrays: dict[str, np.ndarray]) -> Tokenizer:
    """Rebuild a tokenizer from `to_arrays()` output (keys without any prefix)."""
    try:
        level = str(arrays["level"])
        vocab = [str(v) for v in arrays["vocab"]]
        split = str(arrays["split"]) if "split" in arrays else "words"  # (saved before rnncli had the choice)
        blank_lines = str(arrays["blank_lines"]) if "blank_lines" in arrays else "skip"
        if split not in SPLITS or blank_lines not in BLANK_LINES:
            raise RnncliError(f"tokenizer data is damaged (split {split!r}, blank lines {blank_lines!r})")
        if level == "char":
            tok: Tokenizer = CharTokenizer(vocab)
        elif level == "word":
            tok = WordTokenizer(vocab, bool(arrays["lowercase"]), split, blank_lines)
        elif level == "subword":
            tok = SubwordTokenizer(np.asarray(arrays["spm_model"], dtype=np.uint8).tobytes(), blank_lines)
        else:
            raise RnncliError(f"unknown tokenizer level {level!r}")
    except KeyError as err:
        raise RnncliError(f"tokenizer data is incomplete (missing {err})") from None
    except (RuntimeError, OSError, TypeError, ValueError) as err:  # sentencepiece's parse errors among them
        raise RnncliError(f"tokenizer data is damaged ({str(err).splitlines()[0] if str(err) else type(err).__name__})"
                          ) from None
    if tok.vocab[: len(RESERVED)] != list(RESERVED):
        raise RnncliError("tokenizer data is inconsistent: the vocabulary does not start with <UNK>, <EOS>")
    if len(set(tok.vocab)) != len(tok.vocab):
        duplicate = next(v for i, v in enumerate(tok.vocab) if v in tok.vocab[:i])
        raise RnncliError(f"tokenizer data is inconsistent: {duplicate!r} appears twice in the vocabulary")
    if level != "subword" and tok.vocab != vocab:
        raise RnncliError("tokenizer data is inconsistent")
    return tok
