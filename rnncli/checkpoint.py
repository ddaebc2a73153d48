"""Self-describing `.npz` files: tokenizers (`tokenize --save`) and model checkpoints (`train`).

Everything is a plain numpy array, saved uncompressed and loaded with `allow_pickle=False`: a
downloaded file can never run code. Writes are atomic: a temp file in the same folder, fsync, then
rename, so a crash at any moment leaves the previous complete file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from typing import Any

import numpy as np

from rnncli.errors import RnncliError, UsageError

FORMAT_VERSION = 1
TOKENIZER_PREFIX = "tokenizer."


def atomic_save_npz(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write `arrays` to `path` as an .npz, atomically (temp file, fsync, rename)."""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise UsageError(f"{path}: folder {folder} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(err, OSError):
            raise RnncliError(f"{path}: could not write ({err.strerror or err})") from None
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Read every array of an .npz without pickle; any damage becomes a clean RnncliError."""
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file")
    if os.path.isdir(path):
        raise UsageError(f"{path}: is a directory, not a .npz file")
    if not zipfile.is_zipfile(path):
        raise RnncliError(f"{path}: not an rnncli .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise RnncliError(f"{path}: holds object arrays, which rnncli refuses to unpickle") from None
        raise RnncliError(f"{path}: damaged .npz file ({err})") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise RnncliError(f"{path}: damaged .npz file ({err})") from None


def json_array(value: Any) -> np.ndarray:
    """A JSON document stored as a 0-d unicode array (configs, histories)."""
    return np.array(json.dumps(value))


def from_json_array(array: np.ndarray) -> Any:
    return json.loads(str(array))


def tokenizer_arrays(tokenizer) -> dict[str, np.ndarray]:
    return {TOKENIZER_PREFIX + k: v for k, v in tokenizer.to_arrays().items()}


def save_tokenizer(path: str, tokenizer) -> None:
    atomic_save_npz(path, {
        "kind": np.array("tokenizer"), "format_version": np.array(FORMAT_VERSION),
        **tokenizer_arrays(tokenizer),
    })


def load_tokenizer(path: str):
    """The tokenizer stored in a vocabulary file or a model checkpoint."""
    from rnncli.tokenizers import tokenizer_from_arrays

    arrays = load_npz(path)
    sub = {k[len(TOKENIZER_PREFIX):]: v for k, v in arrays.items() if k.startswith(TOKENIZER_PREFIX)}
    if not sub:
        raise RnncliError(f"{path}: holds no tokenizer (expected a file from `rnncli tokenize --save` "
                          "or `rnncli train`)")
    try:
        return tokenizer_from_arrays(sub)
    except RnncliError as err:
        raise RnncliError(f"{path}: {err}") from None
