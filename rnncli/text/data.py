"""Corpora read safely (one file or many, decoded in blocks that end at line ends), a job's lines
encoded, token counts, and the id stream cut into contiguous batches for truncated
backpropagation through time. Encoding a whole corpus is encoding.py's; where the bytes come from,
sources.py's.

Dimension letters: B batch (parallel streams), T time steps per chunk, N tokens.
"""

from __future__ import annotations

import codecs
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from rnncli.errors import DATA, RnncliError, UsageError
from rnncli.jobs.shards import Part, Task
from rnncli.text.encoding import BLOCK_BYTES, RELEASE_EVERY, release_pages
from rnncli.text.sources import STDIN, compression, expand_paths, open_bytes

if TYPE_CHECKING:
    from rnncli.text.tokenizers import Tokenizer



@dataclass
class Corpus:
    """A text source with the decoding rules to read it: a path, several, or `-` for stdin. A folder
    stands for its files matching `glob`, sorted (text/sources.py); compressed files are read
    decompressed. The files follow one another as one text, each file's lines ending in `<EOS>` as
    one file's do (a file without a final newline is given one before the next file's text).

    Text is UTF-8 by default, a leading BOM is dropped and CRLF / CR line ends become LF. stdin is
    read once into memory so it can be passed over twice (fit, then encode).
    """

    path: str | list[str]
    encoding: str = "utf-8"
    errors: str = "strict"
    glob: str = "*"
    _stdin_bytes: bytes | None = None
    _files: list[str] | None = None

    @property
    def paths(self) -> list[str]:
        return [self.path] if isinstance(self.path, str) else list(self.path)

    @property
    def files(self) -> list[str]:
        """The files read, in order (folders expanded)."""
        if self._files is None:
            self._files = expand_paths(self.paths, self.glob)
        return self._files

    @property
    def is_stdin(self) -> bool:
        return self.paths == [STDIN]

    @property
    def name(self) -> str:
        if self.is_stdin:
            return "<stdin>"
        if len(self.files) == 1:
            return self.files[0]
        return f"{', '.join(self.paths)} ({len(self.files):,} files)"

    @property
    def compressed(self) -> bool:
        return any(compression(f) for f in self.files)

    def file_stats(self) -> list[list]:
        """[absolute path, size, mtime_ns] of each file: what the corpus is, short of reading it (a
        job's identity for --resume, a token store's)."""
        stats = []
        for path in self.files:
            st = os.stat(path)
            stats.append([os.path.abspath(path), st.st_size, st.st_mtime_ns])
        return stats

    def size_bytes(self) -> int:
        """Bytes on disk (a compressed file's compressed size)."""
        if self.is_stdin:
            return len(self._read_stdin())
        return sum(os.path.getsize(f) for f in self.files)

    def _read_stdin(self) -> bytes:
        if self._stdin_bytes is None:
            self._stdin_bytes = sys.stdin.buffer.read()
        return self._stdin_bytes

    def _open(self, path: str) -> io.BufferedIOBase:
        if path == STDIN:
            return io.BytesIO(self._read_stdin())
        return open_bytes(path)

    def check_codec(self) -> None:
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UsageError(f"unknown encoding {self.encoding!r} (try utf-8 or latin-1)") from None
        if self.errors not in ("strict", "replace", "ignore"):
            raise UsageError(f"--errors must be strict, replace or ignore, not {self.errors!r}")

    def blocks(self, block_bytes: int = BLOCK_BYTES) -> Iterator[str]:
        """Yield the text in blocks that each end at a line boundary (the last may not)."""
        self.check_codec()
        files = self.files
        any_text = False
        for number, path in enumerate(files, 1):
            last = ""
            with self._open(path) as f:
                for block in _decode_blocks(f, "<stdin>" if path == STDIN else path, self.encoding, self.errors,
                                            block_bytes, may_be_empty=len(files) > 1):
                    any_text = any_text or not block.isspace()
                    last = block
                    yield block
            if last and not last.endswith("\n") and number < len(files):
                yield "\n"
        if not any_text:
            raise RnncliError(f"{self.name}: the corpus is empty (no text besides whitespace)", DATA)

    def lines(self) -> Iterator[str]:
        """Yield lines without their newline."""
        for block in self.blocks():
            parts = block.split("\n")
            if block.endswith("\n"):
                parts.pop()
            yield from parts

    def decoded_lines(self, check_bytes: int = 1 << 16) -> Iterator[str | None]:
        """Each line decoded on its own (line ends dropped, a leading BOM too), None for a line that
        is not valid text; after each file's first `check_bytes` pass the whole-file checks (not
        empty, not binary, not UTF-16, this encoding). A job reads its input so: one bad line deep
        in a large file is left out and counted rather than stopping it."""
        self.check_codec()
        for path in self.files:
            with self._open(path) as head:
                for _ in _decode_blocks(head, "<stdin>" if path == STDIN else path, self.encoding, self.errors,
                                        check_bytes, may_be_empty=len(self.files) > 1):
                    break  # raises for a file that is not text of this encoding
            with self._open(path) as f:
                first = True
                for raw in f:
                    if first and raw.startswith(codecs.BOM_UTF8):
                        raw = raw[len(codecs.BOM_UTF8):]
                    first = False
                    raw = raw.rstrip(b"\n").rstrip(b"\r")
                    try:
                        yield None if b"\x00" in raw else raw.decode(self.encoding, self.errors)
                    except UnicodeDecodeError:
                        yield None

    def read_text(self) -> str:
        return "".join(self.blocks())


def _decode_blocks(f, name: str, encoding: str, errors: str, block_bytes: int,
                   may_be_empty: bool = False) -> Iterator[str]:
    decoder = codecs.getincrementaldecoder(encoding)(errors)
    consumed = 0  # bytes handed to the decoder so far
    carry = ""  # an unfinished line waiting for the next block
    first = True
    any_text = False
    while True:
        raw = f.read(block_bytes)
        final = not raw
        if first:
            if raw.startswith((b"\xff\xfe", b"\xfe\xff")) and encoding.lower().replace("-", "") == "utf8":
                raise RnncliError(
                    f"{name}: looks like UTF-16 text; convert it to UTF-8 first "
                    "(for example: iconv -f UTF-16 -t UTF-8)"
                )
            if raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8) :]
                consumed += len(codecs.BOM_UTF8)
            first = False
        nul = raw.find(b"\x00")
        if nul >= 0:
            raise RnncliError(
                f"{name}: looks like a binary file (NUL byte at offset {consumed + nul}); "
                "rnncli reads plain text"
            )
        try:
            text = decoder.decode(raw, final)
        except UnicodeDecodeError as err:
            pending = len(decoder.getstate()[0])
            offset = consumed - pending + err.start
            raise RnncliError(
                f"{name}: not valid {encoding} at byte offset {offset}; "
                "if the file uses another encoding pass --encoding latin-1, or --errors replace"
            ) from None
        consumed += len(raw)
        text = carry + text
        if not final and text.endswith("\r"):  # a CRLF may be split across two blocks
            carry, text = "\r", text[:-1]
        else:
            carry = ""
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not final:
            cut = text.rfind("\n") + 1
            carry, text = text[cut:] + carry, text[:cut]
        if text:
            any_text = any_text or not text.isspace()
            yield text
        if final:
            break
    if not any_text and not may_be_empty:
        raise RnncliError(f"{name}: the corpus is empty (no text besides whitespace)", DATA)


@dataclass
class EncodeLines(Task):
    """`tokenize --encode`: each input line's token ids, one output line per input line (a blank
    line stays blank, and so does a line that is not valid text, counted as bad): ids separated by
    spaces, or JSON lines {"line": n, "ids": [...]}. A line's end (<EOS>) is implied, not written."""

    needs = "tokenizer"
    as_json: bool = False

    def run(self, tokenizer: Tokenizer, shard) -> Part:
        from rnncli.text.tokenizers import EOS

        out = []
        tokens = 0
        part = Part(shard.index, shard.first, len(shard.items), "")
        for number, line in enumerate(shard.items, shard.first):
            if line is None:  # a bad line stays an (empty) line, so that lines keep their numbers
                part.add_bad(number)
                out.append(json.dumps({"line": number, "ids": []}) if self.as_json else "")
                continue
            ids = tokenizer.encode(line)
            ids = ids[ids != EOS].tolist()
            tokens += len(ids)
            out.append(json.dumps({"line": number, "ids": ids}) if self.as_json else " ".join(map(str, ids)))
        part.text = "".join(o + "\n" for o in out)
        part.counts = {"tokens": tokens}
        return part


@dataclass
class TokenStats:
    tokens: int
    lines: int
    unk: int
    counts: np.ndarray  # (V,) occurrences of each id

    @property
    def unk_rate(self) -> float:
        return self.unk / self.tokens if self.tokens else 0.0

    def most_frequent(self, n: int) -> list[tuple[int, int]]:
        order = np.argsort(-self.counts, kind="stable")[:n]
        return [(int(i), int(self.counts[i])) for i in order if self.counts[i] > 0]


def token_stats(ids: np.ndarray, vocab_size: int, lines: int) -> TokenStats:
    from rnncli.text.tokenizers import UNK

    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(ids), 1 << 22):  # in blocks: ids may be memory-mapped
        counts += np.bincount(ids[start : start + (1 << 22)], minlength=vocab_size)
        if (start >> 22) % (RELEASE_EVERY >> 22) == 0:
            release_pages(ids)
    return TokenStats(tokens=len(ids), lines=lines, unk=int(counts[UNK]), counts=counts)


def count_lines(corpus: Corpus) -> int:
    """Lines in the corpus, a final line without newline included."""
    n = 0
    last = ""
    for block in corpus.blocks():
        n += block.count("\n")
        last = block
    return n + (0 if last.endswith("\n") or not last else 1)


def split_validation(ids: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray | None]:
    """(train, validation): the validation part is the last `fraction` of the tokens."""
    n_val = int(len(ids) * fraction)
    if n_val == 0:
        return ids, None
    return ids[: len(ids) - n_val], ids[len(ids) - n_val :]


# ---- batching for truncated backpropagation through time (training and validation alike) ----


def contiguous_streams(ids: np.ndarray, B: int) -> np.ndarray:
    """(N,) -> (B, S): B contiguous streams of S = N // B tokens (the tail is dropped). Stream b
    continues from chunk to chunk, so the state carried across chunks belongs to it."""
    S = len(ids) // B
    return ids[: B * S].reshape(B, S)


def chunk(streams: np.ndarray, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
    """Inputs and targets (T, B) of positions [start, end) of every stream, time-major, the targets
    one token ahead (end must be below the streams' length)."""
    inputs = np.ascontiguousarray(streams[:, start:end].T, dtype=np.int32)  # a store's ids may be uint16
    targets = np.ascontiguousarray(streams[:, start + 1 : end + 1].T, dtype=np.int32)
    if start % max(1, RELEASE_EVERY // streams.shape[0]) < end - start:  # every RELEASE_EVERY tokens read
        release_pages(streams)
    return inputs, targets


def chunks(streams: np.ndarray, T: int):
    """Every chunk of T positions in order, the last one shorter: every token is predicted but the
    first of each stream."""
    S = streams.shape[1]
    for start in range(0, S - 1, T):
        yield chunk(streams, start, min(start + T, S - 1))
