"""The cells by name: the one registry.

Each line maps a name to the module and class that define the cell, and the class's arguments.
Adding a cell is one module in this package plus one line here; the command line's help, the
configuration checks and the tests all read this table. Resolving a name imports only that cell's
module, so a run compiles only that cell's kernels (and listing the names imports no Numba).
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from rnncli.errors import ConfigError

if TYPE_CHECKING:
    from rnncli.kernels.recurrent import Cell

REGISTRY: dict[str, tuple[str, str, dict]] = {
    "rnn": ("rnn", "RNNCell", {"relu": False}),
    "rnn-relu": ("rnn", "RNNCell", {"relu": True}),
    "gru": ("gru", "GRUCell", {}),
    "gru-simple": ("gru", "SimpleGRUCell", {}),
    "gru-cudnn": ("gru_cudnn", "CudnnGRUCell", {}),
    "lstm": ("lstm", "LSTMCell", {"peephole": False}),
    "lstm-peephole": ("lstm", "LSTMCell", {"peephole": True}),
}
CELL_NAMES = tuple(REGISTRY)
_resolved: dict[str, Cell] = {}


def get_cell(name: str) -> Cell:
    """The cell object for a name (one instance per name and process)."""
    if name not in _resolved:
        if name not in REGISTRY:
            raise ConfigError("cell", f"must be one of {', '.join(CELL_NAMES)}, not {name!r}")
        module, cls, kwargs = REGISTRY[name]
        _resolved[name] = getattr(import_module(f"rnncli.kernels.{module}"), cls)(**kwargs)
    return _resolved[name]
