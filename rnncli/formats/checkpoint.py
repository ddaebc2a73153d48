"""Self-describing `.npz` files: tokenizers (`tokenize --save`) and model checkpoints (`train`).

The store knows no model: a loader is given the layout to check the arrays against (which
parameter shapes and how many state arrays per layer a stored configuration implies).

Everything is a plain numpy array, saved uncompressed and loaded with `allow_pickle=False`: a
downloaded file can never run code. Writes are atomic: a temp file in the same folder, fsync, then
rename, so a crash at any moment leaves the previous complete file or the new one, never a torn one.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from collections.abc import Callable
from typing import Any

import numpy as np

from rnncli.errors import RnncliError, UsageError
from rnncli.formats import int8
from rnncli.formats.files import atomic_write

FORMAT_VERSION = 1
TOKENIZER_PREFIX = "tokenizer."


def atomic_save_npz(path: str, arrays: dict[str, np.ndarray], what: str = "checkpoint") -> None:
    """Write `arrays` to `path` as an .npz, atomically (see files.py)."""
    atomic_write(path, lambda f: np.savez(f, **arrays), what)


META_LIMIT = 256 << 20  # bytes: configs, histories, tokenizers
HEADER_SLACK = 4096  # bytes an .npy header may take beyond the data


class NpzReader:
    """Read arrays from an .npz one at a time, never unpickling, and refusing any member whose
    declared size exceeds what it should hold, before reading it (no zip bombs)."""

    def __init__(self, path: str):
        if not os.path.exists(path):
            raise UsageError(f"{path}: no such file")
        if os.path.isdir(path):
            raise UsageError(f"{path}: is a directory, not a .npz file")
        self.path = path
        try:
            if not zipfile.is_zipfile(path):
                raise RnncliError(f"{path}: not an rnncli .npz file (not a zip archive)")
            self._zip = zipfile.ZipFile(path)
            self.sizes = {}
            for info in self._zip.infolist():
                ratio = info.file_size / max(info.compress_size, 1)
                if info.compress_type != zipfile.ZIP_STORED and ratio > 1000:
                    raise RnncliError(f"{path}: member {info.filename} would inflate {ratio:,.0f}-fold; "
                                      "refusing it (not a file rnncli wrote)")
                self.sizes[info.filename.removesuffix(".npy")] = info.file_size
            self._npz = np.load(path, allow_pickle=False)
        except (OSError, zipfile.BadZipFile, EOFError, ValueError, NotImplementedError, RuntimeError) as err:
            # zipfile raises NotImplementedError for a damaged version or compression field and
            # RuntimeError for a damaged encryption flag
            raise RnncliError(f"{path}: damaged .npz file ({err})") from None

    def __contains__(self, key: str) -> bool:
        return key in self.sizes

    def keys(self) -> list[str]:
        return list(self.sizes)

    def get(self, key: str, limit: int = META_LIMIT) -> np.ndarray:
        if key not in self.sizes:
            raise RnncliError(f"{self.path}: not a complete rnncli file (missing {key})")
        if self.sizes[key] > limit:
            raise RnncliError(f"{self.path}: {key} declares {self.sizes[key]:,} bytes where at most {limit:,} "
                              "fit; refusing to read it")
        try:
            return self._npz[key]
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise RnncliError(f"{self.path}: {key} is an object array, which rnncli refuses to "
                                  "unpickle") from None
            raise RnncliError(f"{self.path}: damaged array {key} ({err})") from None
        except (OSError, zipfile.BadZipFile, EOFError, KeyError, NotImplementedError, RuntimeError) as err:
            raise RnncliError(f"{self.path}: damaged array {key} ({err})") from None

    def close(self) -> None:
        self._npz.close()
        self._zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def load_npz(path: str) -> dict[str, np.ndarray]:
    """Every array of a small .npz (a tokenizer file), without pickle."""
    with NpzReader(path) as reader:
        return {k: reader.get(k) for k in reader.keys()}


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
    }, what="tokenizer")


def load_tokenizer(path: str):
    """The tokenizer stored in a vocabulary file or a model checkpoint."""
    return _tokenizer_of(load_npz(path), path)


def load_tokenizer_bytes(data: bytes, source: str):
    """The tokenizer of an .npz held in memory (a token store's), without pickle."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as err:
        raise RnncliError(f"{source}: damaged tokenizer ({err})") from None
    return _tokenizer_of(arrays, source)


def _tokenizer_of(arrays: dict[str, np.ndarray], path: str):
    from rnncli.text.tokenizers import tokenizer_from_arrays

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
        quantization, scale.<name>                 a quantized model's (formats/int8.py, format 2):
                                                   its record, and its covered param.<name> in int8
    """

    def __init__(self, model, train, tokenizer_config, tokenizer, params, optim=None, optim_step=0,
                 hidden=None, state=None, version="", quantization: dict | None = None):
        self.model, self.train, self.tokenizer_config = model, train, tokenizer_config
        self.tokenizer, self.params = tokenizer, params
        self.optim = optim or {}
        self.optim_step = optim_step
        self.hidden = hidden
        self.state = state or {}
        self.version = version
        self.quantization = quantization  # None for float weights, else int8.record(...)

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
        if self.quantization:
            arrays.update(int8.stored_arrays(self.params, self.quantization))
        arrays.update({f"optim.{k}": v for k, v in self.optim.items()})
        for layer, st in enumerate(self.hidden or []):
            for i, a in enumerate(st):
                arrays[f"hidden.{layer}.{i}"] = a
        return arrays


def save_checkpoint(path: str, ck: Checkpoint) -> None:
    atomic_save_npz(path, ck.to_arrays())


Layout = Callable[[Any], tuple[dict[str, tuple[int, ...]], int]]
"""model config -> (parameter name -> shape, arrays in each layer's state); raises RnncliError for a
configuration it cannot lay out."""


def load_checkpoint(path: str, layout: Layout, training_state: bool = True,
                    allow_nonfinite: bool = False, int8_in_memory: bool = False) -> Checkpoint:
    """Load and check a checkpoint: kind, version, every configuration field, every array's
    presence, declared size and shape against `layout`, and that the weights are finite (unless
    `allow_nonfinite`: `info` shows a broken model rather than refusing it). With
    training_state=False (sampling, scoring) the optimizer and hidden state are not read;
    `int8_in_memory`: a quantized model's weights stay int8 (int8.Int8Weights: `sample`)."""
    with NpzReader(path) as reader:
        return _read_checkpoint(reader, path, layout, training_state, allow_nonfinite, int8_in_memory)


def _check_state(state: dict, path: str) -> None:
    """The run's counters, numbers and records have the types `info`, `plot` and resume expect."""

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool)

    checks = {
        **dict.fromkeys(("step", "epoch", "chunk", "tokens_seen", "bad_evals"),
                        lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0),
        **dict.fromkeys(("lr", "elapsed"), number),
        **dict.fromkeys(("best_val", "plateau_best", "train_loss", "val_loss"), lambda v: v is None or number(v)),
        "corpus": lambda v: isinstance(v, dict),
        "history": lambda v: isinstance(v, list) and all(isinstance(r, dict) for r in v),
        "val_sample": lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 0),
    }
    for key, ok in checks.items():
        if key in state and not ok(state[key]):
            raise RnncliError(f"{path}: damaged training state ({key} = {state[key]!r:.60})")


def _read_checkpoint(reader: NpzReader, path: str, layout: Layout, training_state: bool,
                     allow_nonfinite: bool, int8_in_memory: bool = False) -> Checkpoint:
    from rnncli.config import ModelConfig, TokenizerConfig, TrainConfig, from_dict
    from rnncli.text.tokenizers import tokenizer_from_arrays

    kind = str(reader.get("kind", 4096)) if "kind" in reader else "file without a kind"
    if kind != "checkpoint":
        raise RnncliError(f"{path}: holds a {kind}, not a model checkpoint")
    try:
        version = int(reader.get("format_version", 4096))
    except (TypeError, ValueError):
        raise RnncliError(f"{path}: unreadable format_version") from None
    if version > int8.FORMAT_VERSION:
        raise RnncliError(f"{path}: checkpoint format {version} is newer than this rnncli understands "
                          f"({int8.FORMAT_VERSION}); upgrade rnncli")
    try:
        config = from_json_array(reader.get("config"))
        model = from_dict(ModelConfig, config["model"])
        # A run saved before learning-rate schedules (or <UNK> dropout) existed continues as it was.
        train = from_dict(TrainConfig, {"schedule": "constant", "unk_dropout": 0.0, **config["train"]})
        tok_config = from_dict(TokenizerConfig, config["tokenizer"])
        state = from_json_array(reader.get("state"))
        if not isinstance(state, dict):
            raise TypeError("state is not a mapping")
    except (ValueError, KeyError, TypeError, RnncliError) as err:
        raise RnncliError(f"{path}: damaged configuration ({err})") from None
    for what, part in (("training", train), ("tokenizer", tok_config)):
        try:
            part.check()
        except RnncliError as err:
            raise RnncliError(f"{path}: the stored {what} configuration is unusable: {err}") from None
    _check_state(state, path)
    sub = {k[len(TOKENIZER_PREFIX):]: reader.get(k) for k in reader.keys() if k.startswith(TOKENIZER_PREFIX)}
    try:
        tokenizer = tokenizer_from_arrays(sub)
    except (RnncliError, TypeError, ValueError) as err:
        raise RnncliError(f"{path}: {err}") from None
    try:
        shapes, state_arrays = layout(model)
    except (RnncliError, TypeError, ValueError) as err:
        raise RnncliError(f"{path}: the stored model configuration is unusable: {err}") from None
    if tokenizer.vocab_size != model.vocab_size:
        raise RnncliError(f"{path}: tokenizer has {tokenizer.vocab_size} entries but the model expects "
                          f"{model.vocab_size}")

    def array(key: str, shape: tuple[int, ...]) -> np.ndarray:
        value = reader.get(key, 8 * int(np.prod(shape)) + HEADER_SLACK)
        if value.shape != shape or value.dtype not in (np.float32, np.float64):
            raise RnncliError(f"{path}: {key} has shape {value.shape} ({value.dtype}), expected {shape} (float32)")
        return np.ascontiguousarray(value)

    unexpected = sorted(k[len("param."):] for k in reader.keys()
                        if k.startswith("param.") and k[len("param."):] not in shapes)
    if unexpected:
        raise RnncliError(f"{path}: holds weights its configuration does not describe ({', '.join(unexpected[:3])}"
                          f"{', ...' if len(unexpected) > 3 else ''}): the configuration and the arrays disagree")
    stored = int8.StoredWeights(reader, path, shapes, HEADER_SLACK)  # a quantized model's, checked
    params = {name: stored.read(name, shape, int8_in_memory) if stored.covers(name) else array(f"param.{name}", shape)
              for name, shape in shapes.items()}
    if not allow_nonfinite:
        refuse_nonfinite(params, path)
    optim = {}
    for key in reader.keys() if training_state else []:
        if key.startswith("optim.") and key != "optim.step":
            slot_name = key[len("optim."):]
            name = slot_name.split(".", 1)[1] if "." in slot_name else ""
            if name not in params:
                raise RnncliError(f"{path}: optimizer state {slot_name} matches no parameter")
            optim[slot_name] = array(key, params[name].shape)
    hidden = None
    if training_state and any(k.startswith("hidden.") for k in reader.keys()):
        hidden = []
        for layer in range(model.layers):
            st, i = [], 0
            while f"hidden.{layer}.{i}" in reader:
                st.append(_hidden(reader, f"hidden.{layer}.{i}", model.hidden, path))
                i += 1
            if len(st) != state_arrays or len({a.shape for a in st}) != 1:
                raise RnncliError(f"{path}: hidden state of layer {layer} does not fit a {model.cell} cell")
            hidden.append(tuple(st))
    step = int(reader.get("optim.step", 4096)) if "optim.step" in reader else 0
    version_text = str(reader.get("rnncli_version", 4096)) if "rnncli_version" in reader else ""
    return Checkpoint(model, train, tok_config, tokenizer, params, optim, step, hidden, state, version_text,
                      stored.record)


def nonfinite_weights(params: dict[str, np.ndarray]) -> list[str]:
    """The names of the weights that hold a NaN or an infinity."""
    return [name for name, value in params.items() if isinstance(value, np.ndarray) and not np.isfinite(value).all()]


def refuse_nonfinite(params: dict[str, np.ndarray], source: str) -> None:
    bad = nonfinite_weights(params)
    if bad:
        raise RnncliError(f"{source}: weight {bad[0]} holds NaN or infinite values; the model is unusable "
                          "(`rnncli info` shows which weights)")


def _hidden(reader: NpzReader, key: str, H: int, path: str) -> np.ndarray:
    value = reader.get(key, 8 * H * 1_000_000 + HEADER_SLACK)
    if value.ndim != 2 or value.shape[1] != H or value.dtype not in (np.float32, np.float64):
        raise RnncliError(f"{path}: {key} has shape {value.shape}, expected (batch, {H})")
    return np.ascontiguousarray(value)


def describe(ck: Checkpoint, path: str) -> dict:
    """What is inside a checkpoint, as plain data (`rnncli info`)."""
    s, m = ck.state, ck.model
    corpus = s.get("corpus", {})

    def count(value):
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def is_record(r: dict) -> bool:  # a metrics record a curve can use
        return all(isinstance(r.get(k), int | float | None) for k in ("tokens_seen", "step", "train_loss", "val_loss"))

    return {
        "checkpoint": path,
        "task": ck.model.task,
        "bidirectional": ck.model.bidirectional,
        "labels": list(ck.model.labels),
        "cell": ck.model.cell,
        "layers": ck.model.layers,
        "hidden": ck.model.hidden,
        "embed": ck.model.embed,
        "dropout": ck.model.dropout,
        "tie_weights": ck.model.tie_weights,
        "softmax": {"kind": m.softmax, "cutoffs": list(m.cutoffs), "div_value": m.div_value},
        "parameters": int(sum(p.size for p in ck.params.values())),
        "dtype": str(next(iter(ck.params.values())).dtype),
        "level": ck.tokenizer.level,
        "vocab_size": ck.tokenizer.vocab_size,
        "corpus": str(corpus.get("name")) if corpus.get("name") is not None else None,
        "corpus_bytes": count(corpus.get("bytes")),
        "corpus_tokens": count(corpus.get("tokens")),
        "steps": s.get("step", 0), "epoch": s.get("epoch", 0),
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
        "format_version": int8.FORMAT_VERSION if ck.quantization else FORMAT_VERSION,
        "quantization": ck.quantization and {k: v for k, v in ck.quantization.items() if k != "weights"},
        "step_int8": ck.model.step_int8,
        "history": [r for r in s.get("history", []) if is_record(r) and r.get("tokens_seen") is not None],
        "nonfinite_weights": nonfinite_weights(ck.params),
    }
