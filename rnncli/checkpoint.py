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
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; a checkpoint is an ordinary file
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


# ---------------------------------------------------------------------------------------------
# Model checkpoints


class Checkpoint:
    """Everything a training run needs to continue exactly, and sample/score need to run.

    Arrays in the file:
        kind, format_version, rnncli_version       identification
        config                                     JSON: {"model", "train", "tokenizer"} dataclasses
        tokenizer.*                                the fitted tokenizer (see tokenizers.py)
        param.<name>                               weights, named as in model.py
        optim.<slot>.<name>, optim.step            optimizer state
        hidden.<layer>.<i>                         recurrent state carried at the data position
        state                                      JSON: step, epoch, chunk, tokens seen, lr, losses,
                                                   RNG state, corpus identity, metrics history
    """

    def __init__(self, model, train, tokenizer_config, tokenizer, params, optim=None, optim_step=0,
                 hidden=None, state=None, version=""):
        self.model, self.train, self.tokenizer_config = model, train, tokenizer_config
        self.tokenizer, self.params = tokenizer, params
        self.optim = optim or {}
        self.optim_step = optim_step
        self.hidden = hidden
        self.state = state or {}
        self.version = version

    def to_arrays(self) -> dict[str, np.ndarray]:
        from rnncli import __version__
        from rnncli.config import to_dict

        arrays: dict[str, np.ndarray] = {
            "kind": np.array("checkpoint"),
            "format_version": np.array(FORMAT_VERSION),
            "rnncli_version": np.array(__version__),
            "config": json_array({"model": to_dict(self.model), "train": to_dict(self.train),
                                  "tokenizer": to_dict(self.tokenizer_config)}),
            **tokenizer_arrays(self.tokenizer),
            "state": json_array(self.state),
            "optim.step": np.array(self.optim_step),
        }
        arrays.update({f"param.{k}": v for k, v in self.params.items()})
        arrays.update({f"optim.{k}": v for k, v in self.optim.items()})
        for layer, st in enumerate(self.hidden or []):
            for i, a in enumerate(st):
                arrays[f"hidden.{layer}.{i}"] = a
        return arrays


def save_checkpoint(path: str, ck: Checkpoint) -> None:
    atomic_save_npz(path, ck.to_arrays())


MAX_MEMBER_BYTES = 8 << 30  # no array in a checkpoint we write comes near this


def _check_zip(path: str) -> None:
    """Refuse archives whose members would inflate to absurd sizes, before reading any."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                ratio = info.file_size / max(info.compress_size, 1)
                inflates = info.compress_type != zipfile.ZIP_STORED and ratio > 1000
                if info.file_size > MAX_MEMBER_BYTES or inflates:
                    raise RnncliError(f"{path}: member {info.filename} declares {info.file_size:,} bytes; "
                                      "refusing to inflate it (not a checkpoint rnncli wrote)")
    except zipfile.BadZipFile as err:
        raise RnncliError(f"{path}: damaged .npz file ({err})") from None


def load_checkpoint(path: str) -> Checkpoint:
    """Load and check a checkpoint: kind, version, every array's presence and shape."""
    from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig, from_dict
    from rnncli.model import param_shapes
    from rnncli.tokenizers import tokenizer_from_arrays

    if os.path.exists(path) and zipfile.is_zipfile(path):
        _check_zip(path)
    arrays = load_npz(path)

    def need(key: str) -> np.ndarray:
        if key not in arrays:
            raise RnncliError(f"{path}: not a complete rnncli checkpoint (missing {key})")
        return arrays[key]

    kind = str(need("kind"))
    if kind != "checkpoint":
        raise RnncliError(f"{path}: holds a {kind}, not a model checkpoint")
    try:
        version = int(need("format_version"))
    except (TypeError, ValueError):
        raise RnncliError(f"{path}: unreadable format_version") from None
    if version > FORMAT_VERSION:
        raise RnncliError(f"{path}: checkpoint format {version} is newer than this rnncli understands "
                          f"({FORMAT_VERSION}); upgrade rnncli")
    try:
        config = from_json_array(need("config"))
        model = from_dict(ModelConfig, config["model"])
        train = from_dict(TrainConfig, config["train"])
        tok_config = from_dict(TokenizerConfig, config["tokenizer"])
        state = from_json_array(need("state"))
    except (ValueError, KeyError, TypeError) as err:
        raise RnncliError(f"{path}: damaged configuration ({err})") from None
    sub = {k[len(TOKENIZER_PREFIX):]: v for k, v in arrays.items() if k.startswith(TOKENIZER_PREFIX)}
    try:
        tokenizer = tokenizer_from_arrays(sub)
        shapes = param_shapes(model)
    except RnncliError as err:
        raise RnncliError(f"{path}: {err}") from None
    if tokenizer.vocab_size != model.vocab_size:
        raise RnncliError(f"{path}: tokenizer has {tokenizer.vocab_size} entries but the model expects "
                          f"{model.vocab_size}")
    params = {}
    for name, shape in shapes.items():
        value = need(f"param.{name}")
        if value.shape != shape or value.dtype not in (np.float32, np.float64):
            raise RnncliError(f"{path}: parameter {name} has shape {value.shape} ({value.dtype}), "
                              f"expected {shape} (float32)")
        params[name] = np.ascontiguousarray(value)
    optim = {}
    for key, value in arrays.items():
        if key.startswith("optim.") and key != "optim.step":
            slot_name = key[len("optim."):]
            name = slot_name.split(".", 1)[1] if "." in slot_name else ""
            if name not in params or value.shape != params[name].shape:
                raise RnncliError(f"{path}: optimizer state {slot_name} does not match the parameters")
            optim[slot_name] = np.ascontiguousarray(value)
    hidden = None
    hidden_keys = [k for k in arrays if k.startswith("hidden.")]
    if hidden_keys:
        hidden = []
        for layer in range(model.layers):
            st = []
            i = 0
            while f"hidden.{layer}.{i}" in arrays:
                a = arrays[f"hidden.{layer}.{i}"]
                if a.ndim != 2 or a.shape[1] != model.hidden:
                    raise RnncliError(f"{path}: hidden state {layer}.{i} has shape {a.shape}")
                st.append(np.ascontiguousarray(a))
                i += 1
            hidden.append(tuple(st))
    return Checkpoint(model, train, tok_config, tokenizer, params, optim, int(arrays.get("optim.step", 0)),
                      hidden, state, str(arrays.get("rnncli_version", "")))


def describe(ck: Checkpoint, path: str) -> dict:
    """What is inside a checkpoint, as plain data (`rnncli info`)."""
    s = ck.state
    corpus = s.get("corpus", {})
    return {
        "checkpoint": path,
        "cell": ck.model.cell,
        "layers": ck.model.layers,
        "hidden": ck.model.hidden,
        "embed": ck.model.embed,
        "dropout": ck.model.dropout,
        "tie_weights": ck.model.tie_weights,
        "parameters": int(sum(p.size for p in ck.params.values())),
        "dtype": str(next(iter(ck.params.values())).dtype),
        "level": ck.tokenizer.level,
        "vocab_size": ck.tokenizer.vocab_size,
        "corpus": corpus.get("name"),
        "corpus_bytes": corpus.get("bytes"),
        "corpus_tokens": corpus.get("tokens"),
        "steps": s.get("step", 0),
        "epoch": s.get("epoch", 0),
        "tokens_seen": s.get("tokens_seen", 0),
        "seconds": s.get("elapsed", 0.0),
        "train_loss": s.get("train_loss"),
        "val_loss": s.get("val_loss"),
        "best_val_loss": s.get("best_val"),
        "optimizer": ck.train.optimizer,
        "lr": s.get("lr", ck.train.lr),
        "batch_size": ck.train.batch_size,
        "seq_len": ck.train.seq_len,
        "rnncli_version": ck.version,
        "format_version": FORMAT_VERSION,
        "history": s.get("history", []),
    }
