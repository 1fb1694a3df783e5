"""Drop-in replacements for ``torch.nn.RNN``, ``torch.nn.LSTM`` and ``torch.nn.GRU``.

Same constructor arguments, same ``forward(input, hx)`` (padded, batch-first, unbatched or packed
input), same ``state_dict`` keys — so ``rnnkit.LSTM(...).load_state_dict(torch_lstm.state_dict())``
works and the outputs match — plus the syllabus options of the underlying cells.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence

from .recurrent import Recurrent

Input = Tensor | PackedSequence


class _TorchCompatible(Recurrent):
    """Constructor plumbing shared by the three drop-ins."""

    def __init__(
        self,
        cell: str,
        input_size: int,
        hidden_size: int,
        num_layers: int,
        bias: bool,
        batch_first: bool,
        dropout: float,
        bidirectional: bool,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
        executor: str,
        **cell_options: Any,
    ) -> None:
        super().__init__(
            cell, input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            batch_first=batch_first, dropout=dropout, executor=executor, bias=bias, **cell_options,
        )
        self.to(device=device, dtype=dtype)

    def forward(self, input: Input, hx: Tensor | tuple[Tensor, ...] | None = None) -> tuple[Input, Any]:
        """torch.nn's convention: a one-tensor state (RNN, GRU) is returned bare, LSTM's as (h, c)."""
        output, state = super().forward(input, hx)
        return output, state[0] if len(state) == 1 else state


class RNN(_TorchCompatible):
    """``torch.nn.RNN`` on rnnkit's Elman cell (:class:`rnnkit.cells.ElmanCell`).

    ``forward(input, hx=None) -> (output, h_n)`` with ``h_n`` of shape
    ``(num_layers * num_directions, B, hidden_size)``.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, nonlinearity: str = "tanh",
        bias: bool = True, batch_first: bool = False, dropout: float = 0.0,
        bidirectional: bool = False, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None, *, executor: str = "auto",
    ) -> None:
        super().__init__(
            "elman", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, device, dtype, executor, nonlinearity=nonlinearity,
        )


class LSTM(_TorchCompatible):
    """``torch.nn.LSTM`` on rnnkit's LSTM cell (:class:`rnnkit.cells.LSTMCell`).

    ``forward(input, hx=None) -> (output, (h_n, c_n))``, ``hx = (h_0, c_0)``. Beyond torch's
    arguments: ``forget_bias`` (initial forget-gate bias, default 1.0), ``peephole`` and
    ``coupled`` (CIFG). Loading a torch.nn.LSTM ``state_dict`` replaces the initial forget bias.
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
        proj_size: int = 0, device: torch.device | str | None = None,
        dtype: torch.dtype | None = None, *, executor: str = "auto", forget_bias: float = 1.0,
        peephole: bool = False, coupled: bool = False,
    ) -> None:
        super().__init__(
            "lstm", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, device, dtype, executor, proj_size=proj_size,
            forget_bias=forget_bias, peephole=peephole, coupled=coupled,
        )


class GRU(_TorchCompatible):
    """``torch.nn.GRU`` on rnnkit's GRU cell (:class:`rnnkit.cells.GRUCell`).

    ``forward(input, hx=None) -> (output, h_n)``. Beyond torch's arguments: ``reset_after``
    (default True, torch's placement of the reset gate; False for Cho et al.'s).
    """

    def __init__(
        self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
        batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
        device: torch.device | str | None = None, dtype: torch.dtype | None = None, *,
        executor: str = "auto", reset_after: bool = True,
    ) -> None:
        super().__init__(
            "gru", input_size, hidden_size, num_layers, bias, batch_first, dropout,
            bidirectional, device, dtype, executor, reset_after=reset_after,
        )
