"""Text in, token ids out: reading corpora safely, streaming them through a tokenizer, and cutting
the id stream into contiguous batches for truncated backpropagation through time.

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

if TYPE_CHECKING:
    from rnncli.text.tokenizers import Tokenizer

BLOCK_BYTES = 1 << 20  # read and encode 1 MiB at a time: memory stays near 4 bytes per token
STDIN = "-"


@dataclass
class Corpus:
    """A text source (a path, or `-` for stdin) with the decoding rules to read it.

    Text is UTF-8 by default, a leading BOM is dropped and CRLF / CR line ends become LF. stdin is
    read once into memory so it can be passed over twice (fit, then encode).
    """

    path: str
    encoding: str = "utf-8"
    errors: str = "strict"
    _stdin_bytes: bytes | None = None

    @property
    def name(self) -> str:
        return "<stdin>" if self.path == STDIN else self.path

    def size_bytes(self) -> int:
        if self.path == STDIN:
            return len(self._read_stdin())
        return os.path.getsize(self.path)

    def _read_stdin(self) -> bytes:
        if self._stdin_bytes is None:
            self._stdin_bytes = sys.stdin.buffer.read()
        return self._stdin_bytes

    def _open(self) -> io.BufferedIOBase:
        if self.path == STDIN:
            return io.BytesIO(self._read_stdin())
        if not os.path.exists(self.path):
            raise UsageError(f"{self.path}: no such file")
        if os.path.isdir(self.path):
            raise UsageError(f"{self.path}: is a directory, not a text file")
        try:
            return open(self.path, "rb")  # noqa: SIM115 - closed by the caller's `with`
        except OSError as err:
            raise RnncliError(f"{self.path}: cannot read ({err.strerror})") from None

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
        with self._open() as f:
            yield from _decode_blocks(f, self.name, self.encoding, self.errors, block_bytes)

    def lines(self) -> Iterator[str]:
        """Yield lines without their newline."""
        for block in self.blocks():
            parts = block.split("\n")
            if block.endswith("\n"):
                parts.pop()
            yield from parts

    def decoded_lines(self, check_bytes: int = 1 << 16) -> Iterator[str | None]:
        """Each line decoded on its own (line ends dropped, a leading BOM too), None for a line that
        is not valid text; after the first `check_bytes` pass the whole-file checks (not empty, not
        binary, not UTF-16, this encoding). A job reads its input so: one bad line deep in a large
        file is left out and counted rather than stopping it."""
        head = self.blocks(check_bytes)
        try:
            next(head, None)  # raises for a file that is not text of this encoding
        finally:
            head.close()
        with self._open() as f:
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


def _decode_blocks(f, name: str, encoding: str, errors: str, block_bytes: int) -> Iterator[str]:
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
    if not any_text:
        raise RnncliError(f"{name}: the corpus is empty (no text besides whitespace)", DATA)


# ---------------------------------------------------------------------------------------------
# Encoding a whole corpus into one int32 array, block by block.


SPILL_BYTES = 64 << 20  # corpora larger than this are encoded to a memory-mapped temp file


def encode_corpus(tokenizer: Tokenizer, corpus: Corpus, block_bytes: int = BLOCK_BYTES,
                  spill_bytes: int | None = None) -> np.ndarray:
    """All token ids of a corpus, (N,) int32, encoded block by block.

    Small corpora end up in one in-memory array (grown by doubling). A corpus larger than
    `spill_bytes` (default SPILL_BYTES) is written block by block to an unlinked temp file and
    returned memory-mapped, so the ids never need to fit in memory at once: the operating system
    pages them in as training or scoring reads them.
    """
    spill = SPILL_BYTES if spill_bytes is None else spill_bytes
    if corpus.path != STDIN and corpus.size_bytes() > spill:
        return _encode_to_memmap(tokenizer, corpus, block_bytes)
    ids = np.empty(1 << 16, dtype=np.int32)
    n = 0
    for block in corpus.blocks(block_bytes):
        chunk = tokenizer.encode(block)
        if n + len(chunk) > len(ids):
            grown = np.empty(max(2 * len(ids), n + len(chunk)), dtype=np.int32)
            grown[:n] = ids[:n]
            ids = grown
        ids[n : n + len(chunk)] = chunk
        n += len(chunk)
    return ids[:n].copy() if n < len(ids) // 2 else ids[:n]


def _encode_to_memmap(tokenizer: Tokenizer, corpus: Corpus, block_bytes: int) -> np.ndarray:
    import tempfile

    with tempfile.TemporaryFile(prefix="rnncli-ids-") as f:  # unlinked: nothing is left behind
        n = 0
        for block in corpus.blocks(block_bytes):
            chunk = tokenizer.encode(block)
            f.write(chunk.astype(np.int32).tobytes())
            n += len(chunk)
        f.flush()
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        return np.memmap(f, dtype=np.int32, mode="r", shape=(n,))  # the mapping outlives the file object


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
    inputs = np.ascontiguousarray(streams[:, start:end].T)
    targets = np.ascontiguousarray(streams[:, start + 1 : end + 1].T)
    return inputs, targets


def chunks(streams: np.ndarray, T: int):
    """Every chunk of T positions in order, the last one shorter: every token is predicted but the
    first of each stream."""
    S = streams.shape[1]
    for start in range(0, S - 1, T):
        yield chunk(streams, start, min(start + T, S - 1))
