"""rnnkit: the classic recurrent-neural-network syllabus on PyTorch."""

from . import cells as cells
from .layers import GRU as GRU
from .layers import LSTM as LSTM
from .layers import RNN as RNN
from .layers import Recurrent as Recurrent

__version__ = "0.1.0"
