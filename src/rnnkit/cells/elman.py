"""The Elman network: the simple recurrent network every RNN lecture starts from."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, optional_parameter

NONLINEARITIES = {"tanh": torch.tanh, "relu": torch.relu}


class ElmanCell(RecurrentCell):
    r"""Elman recurrent cell (Elman 1990), as ``torch.nn.RNN`` computes it.

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    where :math:`x_t \in \mathbb{R}^I` is the input at time t, :math:`h_t \in \mathbb{R}^H` the
    hidden state (:math:`h_0 = 0` unless given), :math:`W_{ih}` (H×I) the input weights,
    :math:`W_{hh}` (H×H) the recurrent weights, :math:`b_{ih}, b_{hh}` (H) the biases (two, as in
    torch.nn, for cuDNN compatibility) and :math:`\phi` is ``tanh`` or ``relu``. The output is
    :math:`h_t`. State: ``(h,)`` with ``h`` of shape ``(B, H)``. Every parameter is initialised
    uniform in :math:`\pm 1/\sqrt{H}`.

    Reference: J. L. Elman, "Finding structure in time", Cognitive Science 14(2), 1990.

    Example:
        >>> cell = ElmanCell(3, 5, nonlinearity="relu")
        >>> xp = cell.input_projection(torch.randn(7, 2, 3))   # (T, B, H)
        >>> y, (h,) = cell.step(xp[0], cell.init_state(2, xp.device, xp.dtype), 0)
        >>> y.shape
        torch.Size([2, 5])
    """

    kernel = "elman"  # the fused kernel family (rnnkit.engine.fused)

    def __init__(
        self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", bias: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size)
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.nonlinearity = nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = optional_parameter(bias, hidden_size)
        self.bias_hh = optional_parameter(bias, hidden_size)
        self.reset_parameters()

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        (h,) = state
        h = NONLINEARITIES[self.nonlinearity](xp_t + nn.functional.linear(h, self.weight_hh, self.bias_hh))
        return h, (h,)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, nonlinearity={self.nonlinearity!r}"
