"""The safetensors file format, read and written without the `safetensors` package (the format is
small and fixed: https://github.com/huggingface/safetensors, "Format"):

    8 bytes      N, the header's length, unsigned little-endian
    N bytes      a JSON object: {name: {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, ...,
                 "__metadata__": {string: string}}
    the rest     the tensors' bytes, little-endian, C order; offsets count from the end of the header

Like rnncli's own checkpoints it holds only numbers and text: loading never runs code. A reader
checks the header's size, every offset and every shape before it reads a byte of a tensor.
"""

from __future__ import annotations

import json
import os
import struct

import numpy as np

from rnncli.errors import RnncliError
from rnncli.formats.files import atomic_write

DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
          "U8": np.uint8, "BF16": None}  # bfloat16: the top half of a float32, widened on reading
CODES = {np.dtype(v): k for k, v in DTYPES.items() if v is not None}
MAX_HEADER = 100 << 20


def write(path: str, tensors: dict[str, np.ndarray], metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (and string metadata) as a safetensors file, atomically."""
    header: dict = {"__metadata__": dict(metadata or {})} if metadata else {}
    offset = 0
    arrays = []
    for name, value in tensors.items():
        a = np.ascontiguousarray(value)
        if a.dtype not in CODES:
            raise ValueError(f"{name}: dtype {a.dtype} has no safetensors code")
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {"dtype": CODES[a.dtype], "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
        offset += a.nbytes
        arrays.append(a)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data then starts 8-aligned

    def emit(f) -> None:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for a in arrays:
            f.write(a.tobytes())

    atomic_write(path, emit, "safetensors file")


def read(path: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Every tensor of a safetensors file (floats as float32 or float64) and its metadata."""
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise RnncliError(f"{path}: not a safetensors file (too short)")
            (n,) = struct.unpack("<Q", head)
            if n > min(MAX_HEADER, size - 8):
                raise RnncliError(f"{path}: not a safetensors file (header of {n:,} bytes)")
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError):
                raise RnncliError(f"{path}: not a safetensors file (its header is not JSON)") from None
            if not isinstance(header, dict):
                raise RnncliError(f"{path}: not a safetensors file (its header is not a JSON object)")
            metadata = header.pop("__metadata__", {}) or {}
            if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
                raise RnncliError(f"{path}: damaged safetensors metadata")
            data_size = size - 8 - n
            tensors = {}
            for name, info in header.items():
                tensors[name] = _read_tensor(f, 8 + n, data_size, name, info, path)
    except OSError as err:
        raise RnncliError(f"{path}: cannot read ({err.strerror or err})") from None
    return tensors, metadata


def _read_tensor(f, start: int, data_size: int, name: str, info, path: str) -> np.ndarray:
    from rnncli.formats.schema import ListOf, Pair, check

    check(info, {"dtype": str, "shape": ListOf(int), "data_offsets": Pair(int, int)}, path, name)
    code, shape, (begin, end) = info["dtype"], info["shape"], info["data_offsets"]
    if code not in DTYPES:
        raise RnncliError(f"{path}: {name} has dtype {code}, which rnncli does not read")
    width = 2 if code == "BF16" else np.dtype(DTYPES[code]).itemsize
    count = int(np.prod(shape)) if shape else 1
    if any(d < 0 for d in shape) or not (0 <= begin <= end <= data_size) or end - begin != count * width:
        raise RnncliError(f"{path}: {name} declares a shape or offsets that do not fit the file")
    f.seek(start + begin)
    raw = f.read(end - begin)
    if code == "BF16":
        return (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return np.frombuffer(raw, np.dtype(DTYPES[code]).newbyteorder("<")).reshape(shape).astype(DTYPES[code])
