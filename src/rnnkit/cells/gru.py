"""Gated recurrent unit, with both placements of the reset gate."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import GatedCell, State, optional_parameter


class GRUCell(GatedCell):
    r"""GRU cell (Cho et al. 2014).

    .. math::
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
            \quad \text{(reset\_after=True, torch.nn.GRU and cuDNN)} \\
        n_t &= \tanh(W_{in} x_t + b_{in} + W_{hn} (r_t \odot h_{t-1}) + b_{hn})
            \quad \text{(reset\_after=False, Cho et al. 2014 and the lectures)} \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}

    :math:`x_t` (I) is the input, :math:`h_t` (H) the hidden state and output, :math:`r` the reset
    gate, :math:`z` the update gate, :math:`n` the candidate state, :math:`\sigma` the logistic
    sigmoid and :math:`\odot` the elementwise product. ``weight_ih`` (3H × I), ``weight_hh``
    (3H × H), ``bias_ih`` and ``bias_hh`` (3H) stack the gates in torch's order ``r, z, n``.

    ``reset_after`` chooses where the reset gate acts: after the recurrent product (torch's
    variant, one matrix product per step) or on the state before it (the original formulation,
    whose candidate needs a second, dependent product). State: ``(h,)`` of shape ``(B, H)``.
    Every parameter is initialised uniform in :math:`\pm 1/\sqrt{H}`.

    Reference: K. Cho et al., "Learning phrase representations using RNN encoder-decoder for
    statistical machine translation", EMNLP 2014.

    Example:
        >>> cell = GRUCell(3, 5, reset_after=False)
        >>> xp = cell.input_projection(torch.randn(7, 2, 3))   # (T, B, 3H)
        >>> y, (h,) = cell.step(xp[0], cell.init_state(2, xp.device, xp.dtype), 0)
    """

    kernel = "gru"  # the fused kernel family (rnnkit.engine.fused)

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, reset_after: bool = True
    ) -> None:
        super().__init__(input_size, hidden_size)
        self.reset_after = reset_after
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = optional_parameter(bias, 3 * hidden_size)
        self.bias_hh = optional_parameter(bias, 3 * hidden_size)
        self.reset_parameters()

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        (h,) = state
        x_r, x_z, x_n = xp_t.chunk(3, dim=1)
        if self.reset_after:
            h_r, h_z, h_n = nn.functional.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=1)
            r = torch.sigmoid(x_r + h_r)
            n = torch.tanh(x_n + r * h_n)
        else:
            H = self.hidden_size
            b_rz, b_n = (None, None) if self.bias_hh is None else (self.bias_hh[: 2 * H], self.bias_hh[2 * H :])
            h_r, h_z = nn.functional.linear(h, self.weight_hh[: 2 * H], b_rz).chunk(2, dim=1)
            r = torch.sigmoid(x_r + h_r)
            n = torch.tanh(x_n + nn.functional.linear(r * h, self.weight_hh[2 * H :], b_n))
        z = torch.sigmoid(x_z + h_z)
        h = (1.0 - z) * n + z * h
        return h, (h,), {"r": r, "z": z}

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, reset_after={self.reset_after}"
