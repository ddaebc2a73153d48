"""A token store: a corpus encoded once into a file of ids that training, validation, `--resume`
and `score --continuous` memory-map, so that memory does not grow with the corpus and the work
of encoding is done once.

The file (written atomically, streamed: the ids are written as they are encoded):

    bytes 0-7    b"RNNCLITK"
    bytes 8-23   the offset of the trailer and the length of its tokenizer (little-endian uint64s)
    bytes 64-    the ids, uint16 when the vocabulary fits (V <= 65,536), else uint32
    trailer      the tokenizer (an .npz, as `tokenize --save` writes), then a JSON object: format,
                 dtype, tokens, the tokenizer's length, the configuration it was fitted with, and the
                 corpus's identity (each file's absolute path, size and modification time; the
                 decoding rules)

A store is used only for the corpus it was made from, cut by the same tokenizer: a file changed,
added or removed, or other tokenizer options, and the corpus is encoded again into it (with a note
saying why), never silently reused.
"""

from __future__ import annotations

import io
import json
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rnncli.config import TokenizerConfig, from_dict, to_dict
from rnncli.errors import RnncliError, UsageError

MAGIC = b"RNNCLITK"
FORMAT = 1
IDS_OFFSET = 64


def ids_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def corpus_identity(corpus) -> dict:
    """What a corpus is, as far as a store can tell without reading it: its files and how they are
    decoded. Taken before the corpus is read, so that a file changed while it was being encoded
    shows up as a change the next time."""
    if corpus.is_stdin:
        raise UsageError("--store keeps the ids of files it can recognise again: give the corpus as files, not `-`")
    return {"files": corpus.file_stats(), "encoding": corpus.encoding, "errors": corpus.errors}


def same_tokenizer(a, b) -> bool:
    x, y = a.to_arrays(), b.to_arrays()
    return x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


@dataclass
class TokenStore:
    path: str
    ids: np.ndarray  # (N,) memory-mapped, read-only
    tokenizer: object
    config: TokenizerConfig  # the options the tokenizer was fitted with
    identity: dict

    def why_not(self, identity: dict, tokenizer=None, config: TokenizerConfig | None = None) -> str | None:
        """Why this store cannot stand for the corpus `identity` cut by `tokenizer` (or one fitted
        with `config`), or None when it can."""
        if identity != self.identity:
            old = {f[0]: f[1:] for f in self.identity["files"]}
            new = {f[0]: f[1:] for f in identity["files"]}
            changed = sorted(set(old) ^ set(new)) or sorted(p for p in new if old[p] != new[p])
            if changed:
                verb = "added or removed" if set(old) ^ set(new) else "changed"
                return f"{changed[0]} was {verb} since it was stored" + (
                    f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
            return "the corpus is decoded by other rules (--encoding, --errors) or read in another order"
        if tokenizer is not None and not same_tokenizer(tokenizer, self.tokenizer):
            return "it was cut by another tokenizer"
        if tokenizer is None and config is not None and to_dict(config) != to_dict(self.config):
            return "it was cut by a tokenizer of other options"
        return None


def write_store(path: str, tokenizer, config: TokenizerConfig, identity: dict, encoded) -> TokenStore:
    """Write the store of the corpus `identity` names (corpus_identity, taken before it was first
    read) at `path`: `encoded` yields its ids block by block (as encoding.encoded_blocks does), written
    as they come."""
    from rnncli.formats.checkpoint import FORMAT_VERSION, tokenizer_arrays
    from rnncli.formats.files import atomic_write

    dtype = ids_dtype(tokenizer.vocab_size)

    def write(f) -> None:
        f.write(MAGIC + bytes(IDS_OFFSET - len(MAGIC)))
        n = 0
        for chunk in encoded:
            f.write(np.asarray(chunk).astype(dtype, copy=False).tobytes())
            n += len(chunk)
        trailer = f.tell()
        buffer = io.BytesIO()
        np.savez(buffer, kind=np.array("tokenizer"), format_version=np.array(FORMAT_VERSION),
                 **tokenizer_arrays(tokenizer))
        f.write(buffer.getvalue())
        f.write(json.dumps({"format": FORMAT, "dtype": dtype.name, "tokens": n,
                            "tokenizer_bytes": len(buffer.getvalue()), "config": to_dict(config),
                            "corpus": identity}).encode())
        f.seek(len(MAGIC))
        f.write(struct.pack("<QQ", trailer, len(buffer.getvalue())))

    atomic_write(path, write, "token store")
    return open_store(path)


def is_store(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def open_store(path: str) -> TokenStore:
    """A store's ids (memory-mapped), tokenizer and what it was made from; a damaged or foreign file
    is refused naming what is wrong."""
    from rnncli.formats.checkpoint import load_tokenizer_bytes
    from rnncli.formats.schema import Either, ListOf, check

    def damaged(why: str) -> RnncliError:
        return RnncliError(f"{path}: not a complete rnncli token store ({why}); delete it to make it again")

    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(IDS_OFFSET)
            if len(head) < IDS_OFFSET or head[: len(MAGIC)] != MAGIC:
                raise RnncliError(f"{path}: not an rnncli token store (made by `rnncli tokenize --store` or "
                                  "`train --store`)")
            trailer, tokenizer_bytes = struct.unpack("<QQ", head[len(MAGIC): len(MAGIC) + 16])
            if not (IDS_OFFSET <= trailer <= size and tokenizer_bytes <= size - trailer):
                raise damaged("no trailer")
            f.seek(trailer)
            rest = f.read(min(size - trailer, 512 << 20))
    except OSError as err:
        raise RnncliError(f"{path}: cannot read ({err.strerror or err})") from None
    try:
        meta_start = tokenizer_bytes
        meta = json.loads(rest[meta_start:])
        corpus = {"files": ListOf(ListOf(Either(str, int))), "encoding": str, "errors": str}
        check(meta, {"format": int, "dtype": str, "tokens": int, "tokenizer_bytes": int, "config": dict,
                     "corpus": corpus}, path, "trailer")
    except (ValueError, RnncliError) as err:
        raise damaged(f"its trailer: {err}") from None
    if meta["format"] != FORMAT or meta["dtype"] not in ("uint16", "uint32"):
        raise damaged(f"format {meta['format']}, ids {meta['dtype']}")
    dtype = np.dtype(meta["dtype"])
    if trailer != IDS_OFFSET + meta["tokens"] * dtype.itemsize or meta["tokenizer_bytes"] != meta_start:
        raise damaged("its sizes disagree")
    tokenizer = load_tokenizer_bytes(rest[:meta_start], path)
    if ids_dtype(tokenizer.vocab_size).itemsize > dtype.itemsize:
        raise damaged("ids narrower than its vocabulary")
    config = from_dict(TokenizerConfig, meta["config"])
    ids = (np.memmap(path, dtype=dtype, mode="r", offset=IDS_OFFSET, shape=(meta["tokens"],))
           if meta["tokens"] else np.zeros(0, dtype))
    return TokenStore(path, ids, tokenizer, config, meta["corpus"])


def corpus_ids(corpus, tokenizer, config: TokenizerConfig, store: str | None = None,
               on_note: Callable[[str], None] = lambda note: None) -> tuple[object, np.ndarray]:
    """A corpus's tokenizer (`tokenizer`, or one fitted with `config` when None) and its ids: from
    (or into) the token store at `store` when one is given, else encoded here."""
    if store:
        kept = stored_corpus(store, corpus, tokenizer, config, on_note)
        return kept.tokenizer, kept.ids
    from rnncli.text.encoding import encode_corpus
    from rnncli.text.tokenizers import fit_tokenizer

    if tokenizer is None:
        tokenizer = fit_tokenizer(config, corpus.blocks())
    return tokenizer, encode_corpus(tokenizer, corpus)


def stored_corpus(path: str, corpus, tokenizer, config: TokenizerConfig,
                  on_note: Callable[[str], None]) -> TokenStore:
    """The store at `path` of `corpus` cut by `tokenizer` (or, when None, by one fitted with
    `config`): the one there when it holds exactly that, else made (again) there, with a note."""
    from rnncli.formats.files import check_writable
    from rnncli.text.encoding import encoded_blocks
    from rnncli.text.tokenizers import fit_tokenizer

    identity = corpus_identity(corpus)
    check_writable(path, "token store", inputs=tuple(corpus.files))  # before any work
    if os.path.exists(path):
        if not is_store(path):
            raise UsageError(f"--store {path}: is not a token store; give a new path (or a store's)")
        store = open_store(path)
        why = store.why_not(identity, tokenizer, config)
        if why is None:
            return store
        on_note(f"note: {path}: {why}: encoding the corpus again")
    if tokenizer is None:
        tokenizer = fit_tokenizer(config, corpus.blocks())
    return write_store(path, tokenizer, config, identity, encoded_blocks(tokenizer, corpus))
