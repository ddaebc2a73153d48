"""Eight-bit weights in a checkpoint: which weights the rule (kernels/quantization.py) covers, the
arrays a quantized checkpoint holds, and how they are read back.

Covered: every parameter that is a matrix of products (`layers.*.Wx`, `*.Wh`, `output.W`) or an
embedding (`*embed.weight`); biases, peepholes and other vectors stay float32 (a few kilobytes).
An embedding E (V, D), read by rows, is quantized as E^T (each token's row its own column): the same
rule, the same layout as a tied output layer reads it. A quantized model *is* its dequantized
float32 model, bit for bit, on every path that reads weights, and saving a loaded one is lossless
(the rule's exactness).
"""

from __future__ import annotations

import numpy as np

from rnncli.errors import RnncliError
from rnncli.kernels.quantization import SCHEMES, dequantize, group_starts, quantize

FORMAT_VERSION = 2  # the checkpoint format of a quantized model (a float one stays at 1)


def covered(name: str, value: np.ndarray) -> str | None:
    """How a parameter is quantized: "matrix" (groups along its rows k), "embedding" (along each
    row), or None (kept in float32)."""
    last = name.rsplit(".", 1)[-1]
    if value.ndim != 2:
        return None
    if last in ("Wx", "Wh", "W"):
        return "matrix"
    if name.endswith("embed.weight"):
        return "embedding"
    return None


def scales_shape(name: str, shape: tuple[int, ...], scheme: str) -> tuple[int, ...]:
    """The shape of a covered parameter's stored scales: (groups, F) for a matrix (K, F), (V, groups)
    for an embedding (V, D)."""
    if name.endswith("embed.weight"):
        return (shape[0], len(group_starts(shape[1], scheme)) - 1)
    return (len(group_starts(shape[0], scheme)) - 1, shape[1])


def quantize_params(params: dict[str, np.ndarray], scheme: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (q, scales) of every covered parameter, q in the parameter's own shape."""
    out = {}
    for name, value in params.items():
        kind = covered(name, value)
        if kind == "matrix":
            out[name] = quantize(value, scheme)
        elif kind == "embedding":
            q, s = quantize(value.T, scheme)
            out[name] = (np.ascontiguousarray(q.T), np.ascontiguousarray(s.T))
    return out


def dequantized(name: str, q: np.ndarray, s: np.ndarray, scheme: str) -> np.ndarray:
    """The float32 weights of a stored (q, scales) pair."""
    if name.endswith("embed.weight"):
        return np.ascontiguousarray(dequantize(q.T, s.T, scheme).T)
    return dequantize(q, s, scheme)


class Int8Weights:
    """A covered weight kept as its int8 numbers and scales, read as float32 on demand (`__array__`:
    the dequantized values, made anew at each read and not kept). For a command that only builds
    a quantized model's int8 steps (`sample`): its weights stay a quarter of the bytes in memory,
    the float32 values existing only while the steps are made from them."""

    def __init__(self, name: str, q: np.ndarray, s: np.ndarray, scheme: str):
        self.name, self.q, self.s, self.scheme = name, q, s, scheme
        self.shape, self.ndim, self.size = q.shape, q.ndim, q.size
        self.dtype = np.dtype(np.float32)
        self.nbytes = 4 * q.size

    def __array__(self, dtype=None, copy=None):
        values = dequantized(self.name, self.q, self.s, self.scheme)
        return values if dtype is None else values.astype(dtype, copy=False)

    def __getitem__(self, key):
        return np.asarray(self)[key]

    @property
    def T(self) -> np.ndarray:
        return np.asarray(self).T


def check_scales(s: np.ndarray, where: str) -> None:
    """Scales are float32, finite and positive: anything else is a damaged or hostile file."""
    if s.dtype != np.float32:
        raise RnncliError(f"{where}: scales must be float32, not {s.dtype}")
    if not np.isfinite(s).all() or not (s > 0).all():
        raise RnncliError(f"{where}: scales must be finite and positive; the quantized model is damaged")


def record(scheme: str, names: list[str]) -> dict:
    """The checkpoint's `quantization` field (whether its steps are int8 too is the model's own
    configuration: ModelConfig.step_int8)."""
    return {"bits": 8, "scheme": scheme, "weights": sorted(names)}


def stored_arrays(params: dict[str, np.ndarray], record_: dict) -> dict[str, np.ndarray]:
    """The arrays a quantized checkpoint holds beyond a float one's (formats/checkpoint.py): its
    format version, the record, and each covered weight's q (as `param.<name>`) and scales."""
    import json

    arrays = {"format_version": np.array(FORMAT_VERSION), "quantization": np.array(json.dumps(record_))}
    for name, (q, s) in quantize_params(params, record_["scheme"]).items():
        arrays[f"param.{name}"], arrays[f"scale.{name}"] = q, s
    return arrays


class StoredWeights:
    """The record and the covered weights of a checkpoint being read (`reader` an NpzReader; none for
    a float model), each checked: q int8 of the layout's shape, its scales present, of their shape,
    float32, finite and positive."""

    def __init__(self, reader, path: str, shapes: dict, slack: int):
        import json

        self.reader, self.path, self.slack = reader, path, slack
        self.record = None  # a float model's
        if "quantization" in reader:
            try:
                self.record = check_record(json.loads(str(reader.get("quantization", 1 << 20))), path)
            except ValueError:
                raise RnncliError(f"{path}: damaged quantization field") from None
        self.names = set(self.record["weights"]) if self.record else set()
        if not self.names <= set(shapes) or any(k[len("scale."):] not in self.names for k in reader.keys()
                                                if k.startswith("scale.")):
            raise RnncliError(f"{path}: its quantized weights and its configuration disagree")

    def covers(self, name: str) -> bool:
        return name in self.names

    def read(self, name: str, shape: tuple[int, ...], in_memory: bool):
        """The weight's float32 values (exact), or with `in_memory` the Int8Weights that make them."""
        path, scheme = self.path, self.record["scheme"]
        q = self.reader.get(f"param.{name}", int(np.prod(shape)) + self.slack)
        if q.shape != shape or q.dtype != np.int8:
            raise RnncliError(f"{path}: param.{name} has shape {q.shape} ({q.dtype}), expected {shape} (int8)")
        s_shape = scales_shape(name, shape, scheme)
        if f"scale.{name}" not in self.reader:
            raise RnncliError(f"{path}: the scales of {name} are missing; the quantized model is damaged")
        s = self.reader.get(f"scale.{name}", 4 * int(np.prod(s_shape)) + self.slack)
        if s.shape != s_shape:
            raise RnncliError(f"{path}: scale.{name} has shape {s.shape}, expected {s_shape}")
        check_scales(s, f"{path}: scale.{name}")
        return Int8Weights(name, q, s, scheme) if in_memory else dequantized(name, q, s, scheme)


def check_record(value, path: str) -> dict:
    """A stored `quantization` field, checked."""
    if (not isinstance(value, dict) or value.get("bits") != 8 or value.get("scheme") not in SCHEMES
            or not isinstance(value.get("weights"), list) or not all(isinstance(n, str) for n in value["weights"])):
        raise RnncliError(f"{path}: damaged quantization field ({str(value)[:80]})")
    return value


def stored_bytes(params: dict[str, np.ndarray], scheme: str | None) -> int:
    """Bytes of the weights as a checkpoint stores them (float32, or quantized by `scheme`)."""
    total = 0
    for name, value in params.items():
        if scheme and covered(name, value):
            total += value.size + 4 * int(np.prod(scales_shape(name, value.shape, scheme)))
        else:
            total += value.nbytes
    return total
