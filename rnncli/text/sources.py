"""Where a corpus's bytes come from: the paths given (files, folders walked in sorted order and
filtered by a glob, `-` for stdin) expanded into a list of files, and each file opened as a byte
stream, decompressed by its suffix (`.gz`, `.bz2`, `.xz`; `.zst` with the `zstandard` package).

A damaged compressed file is one clear error naming it, never a traceback or a silent short read.
"""

from __future__ import annotations

import bz2
import fnmatch
import gzip
import io
import lzma
import os
import zlib

from rnncli.errors import RnncliError, UsageError

STDIN = "-"
COMPRESSED = {".gz": "gzip", ".bz2": "bzip2", ".xz": "xz", ".zst": "zstandard"}
ZSTD_HINT = "pip install 'rnncli[zstd]'"


def compression(path: str) -> str | None:
    """The compression a file's suffix names, or None for plain text."""
    return COMPRESSED.get(os.path.splitext(path)[1].lower())


def expand_paths(paths: list[str], glob: str = "*") -> list[str]:
    """The files the paths name, in order: a file as itself, a folder as every file under it whose
    name matches `glob` (hidden files and folders left out), sorted by path. A folder with no such
    file, a path that does not exist, and `-` beside other paths are refused."""
    if STDIN in paths and len(paths) > 1:
        raise UsageError("`-` (standard input) cannot be read beside other inputs: give it alone")
    files: list[str] = []
    for path in paths:
        if path == STDIN:
            files.append(path)
        elif os.path.isdir(path):
            found = sorted((os.path.relpath(os.path.join(root, name), path).split(os.sep), os.path.join(root, name))
                           for root, dirs, names in _walk(path) for name in names
                           if not name.startswith(".") and fnmatch.fnmatch(name, glob))
            if not found:
                raise UsageError(f"{path}: a directory with no files matching --glob {glob!r} (a folder stands "
                                 "for its files)")
            files.extend(f for _, f in found)
        elif os.path.exists(path):
            files.append(path)
        else:
            raise UsageError(f"{path}: no such file")
    return files


def _walk(folder: str):
    for root, dirs, names in os.walk(folder, onerror=_walk_error):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        yield root, dirs, names


def _walk_error(err: OSError) -> None:
    raise RnncliError(f"{err.filename}: cannot read this folder ({err.strerror})")


class DamagedStream(io.RawIOBase):
    """A decompressing stream whose read errors (a truncated or corrupt file) become one RnncliError
    naming the file."""

    def __init__(self, inner, path: str, kind: str):
        self.inner, self.path, self.kind = inner, path, kind

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        try:
            data = self.inner.read(len(buffer))
        except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as err:
            raise RnncliError(f"{self.path}: not a complete {self.kind} file ({err}); "
                              "check it with its own tool (for example gzip -t)") from None
        except Exception as err:  # zstandard's own error type
            if type(err).__name__ != "ZstdError":
                raise
            raise RnncliError(f"{self.path}: not a complete zstandard file ({err})") from None
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self.inner.close()
        super().close()


def open_bytes(path: str) -> io.BufferedIOBase:
    """A file's bytes, decompressed when its suffix says it is compressed."""
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, not a text file")
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    kind = compression(path)
    try:
        if kind is None:
            return open(path, "rb")  # noqa: SIM115 - closed by the caller's `with`
        if kind == "zstandard":
            try:
                import zstandard
            except ImportError:
                raise UsageError(f"{path}: reading .zst files needs the zstandard package: {ZSTD_HINT}") from None
            inner = zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)  # noqa: SIM115
        else:
            inner = {"gzip": gzip.open, "bzip2": bz2.open, "xz": lzma.open}[kind](path, "rb")
    except OSError as err:
        raise RnncliError(f"{path}: cannot read ({err.strerror or err})") from None
    return io.BufferedReader(DamagedStream(inner, path, kind), 1 << 20)
