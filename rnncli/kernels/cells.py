"""The six cells by name."""

from rnncli.kernels.gru import CudnnGRUCell, GRUCell, SimpleGRUCell
from rnncli.kernels.lstm import LSTMCell
from rnncli.kernels.recurrent import Cell
from rnncli.kernels.rnn import RNNCell

CELLS: dict[str, Cell] = {
    "rnn": RNNCell(relu=False),
    "rnn-relu": RNNCell(relu=True),
    "gru": GRUCell(),
    "gru-simple": SimpleGRUCell(),
    "gru-cudnn": CudnnGRUCell(),
    "lstm": LSTMCell(peephole=False),
    "lstm-peephole": LSTMCell(peephole=True),
}


def get_cell(name: str) -> Cell:
    return CELLS[name]
