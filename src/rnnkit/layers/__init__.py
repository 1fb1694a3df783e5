"""Layers: recurrent stacks of cells and the torch.nn drop-ins built on them."""

from .recurrent import Recurrent as Recurrent
from .torch_compat import GRU as GRU
from .torch_compat import LSTM as LSTM
from .torch_compat import RNN as RNN
