"""A corpus's text to token ids, as it streams: block by block, on every core where that pays, into
memory or (past SPILL_BYTES) a memory-mapped file; and giving a mapped array's pages back as a
pass reads them, so that memory does not grow with the corpus (text/store.py keeps such ids).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from rnncli.text.data import Corpus
    from rnncli.text.tokenizers import Tokenizer

BLOCK_BYTES = 1 << 20  # read and encode 1 MiB at a time: memory stays near 4 bytes per token


SPILL_BYTES = 64 << 20  # ids beyond this many bytes go to a memory-mapped temp file


PARALLEL_BYTES = 32 << 20  # corpora from this size are encoded on every core (starting workers costs ~0.5 s)


def encoded_blocks(tokenizer: Tokenizer, corpus: Corpus, block_bytes: int = BLOCK_BYTES,
                   processes: int | None = None) -> Iterator[np.ndarray]:
    """The corpus's token ids block by block, in order, streamed: this process reads and decodes
    the blocks, `processes` workers (default: one per core, for a word or subword corpus of
    PARALLEL_BYTES or more) encode them, at most two blocks each in flight, so memory stays a few
    blocks whatever the corpus's size. Characters are encoded here: one table lookup each, faster
    than handing the text to a worker and its ids back (one process 180 MB/s, two workers 61; word
    level 17 MB/s with two workers; AMD EPYC, 2 cores, bench/encoding.py). Every tokenizer cuts
    lines alone and blocks end at line ends, so the ids are those of encoding the whole text at
    once, however many processes share the work."""
    if processes is None:
        from rnncli.execution.plan import machine_cores

        big = corpus.is_stdin or corpus.size_bytes() * (4 if corpus.compressed else 1) >= PARALLEL_BYTES
        processes = machine_cores() if big and tokenizer.level != "char" else 1
    if processes <= 1:
        for block in corpus.blocks(block_bytes):
            yield tokenizer.encode(block)
        return
    import multiprocessing
    from collections import deque

    with multiprocessing.get_context("spawn").Pool(processes, initializer=_encoder_start,
                                                   initargs=(tokenizer.to_arrays(),)) as pool:
        pending: deque = deque()
        for block in corpus.blocks(block_bytes):
            pending.append(pool.apply_async(_encode_block, (block,)))
            if len(pending) >= 2 * processes:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


_worker_tokenizer = None


def _encoder_start(arrays: dict) -> None:
    global _worker_tokenizer
    from rnncli.text.tokenizers import tokenizer_from_arrays

    _worker_tokenizer = tokenizer_from_arrays(arrays)


def _encode_block(block: str) -> np.ndarray:
    ids = _worker_tokenizer.encode(block)
    return ids.astype(np.uint16) if _worker_tokenizer.vocab_size <= 1 << 16 else ids  # half the bytes back


def encode_corpus(tokenizer: Tokenizer, corpus: Corpus, block_bytes: int = BLOCK_BYTES,
                  spill_bytes: int | None = None) -> np.ndarray:
    """All token ids of a corpus, (N,) int32, encoded block by block.

    Ids are gathered in memory (grown by doubling) until they pass `spill_bytes` (default
    SPILL_BYTES); from there on they go, block by block, to an unlinked temp file that is returned
    memory-mapped, so the ids never need to fit in memory at once (the operating system pages them
    in as training or scoring reads them), whatever the files' compressed sizes.
    """
    import tempfile

    spill = SPILL_BYTES if spill_bytes is None else spill_bytes
    ids, n, spilled = np.empty(1 << 16, dtype=np.int32), 0, None
    try:
        for chunk in encoded_blocks(tokenizer, corpus, block_bytes):
            chunk = chunk.astype(np.int32, copy=False)
            if spilled is None and 4 * (n + len(chunk)) > spill:
                spilled = tempfile.TemporaryFile(prefix="rnncli-ids-")  # unlinked: nothing is left behind
                spilled.write(ids[:n].tobytes())
                ids = ids[:0]
            if spilled is not None:
                spilled.write(chunk.tobytes())
            else:
                if n + len(chunk) > len(ids):
                    grown = np.empty(max(2 * len(ids), n + len(chunk)), dtype=np.int32)
                    grown[:n] = ids[:n]
                    ids = grown
                ids[n : n + len(chunk)] = chunk
            n += len(chunk)
        if spilled is None:
            return ids[:n].copy() if n < len(ids) // 2 else ids[:n]
        spilled.flush()
        if n == 0:
            return np.zeros(0, dtype=np.int32)
        return np.memmap(spilled, dtype=np.int32, mode="r", shape=(n,))  # the mapping outlives the file object
    finally:
        if spilled is not None:
            spilled.close()


def release_pages(ids: np.ndarray) -> None:
    """Let the system take back the pages a memory-mapped array (a token store's ids, or a slice of
    them) has brought into this process: they stay in the page cache, but no longer count as this
    process's memory, so a pass over a corpus of any size keeps the memory it started with. Nothing
    for an array in memory."""
    mapping = getattr(ids, "_mmap", None)
    if mapping is not None and hasattr(mapping, "madvise"):
        import mmap

        mapping.madvise(mmap.MADV_DONTNEED)


RELEASE_EVERY = 1 << 25  # tokens read between two release_pages
