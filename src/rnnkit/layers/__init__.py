"""Layers: recurrent stacks of cells, the torch.nn drop-ins built on them, and echo-state reservoirs
with their trained readouts, and tree layers (recursive networks) run level by level."""

from .readout import RidgeReadout as RidgeReadout
from .readout import RLSReadout as RLSReadout
from .recurrent import Recurrent as Recurrent
from .reservoir import Reservoir as Reservoir
from .torch_compat import GRU as GRU
from .torch_compat import LSTM as LSTM
from .torch_compat import RNN as RNN
from .tree import TreeLayer as TreeLayer
