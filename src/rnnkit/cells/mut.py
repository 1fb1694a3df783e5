"""MUT1, MUT2 and MUT3: the three best architectures of Jozefowicz, Zaremba & Sutskever (2015).

The paper evolved ten thousand GRU-like cells and kept three, named MUT1–3. All three share the
GRU's shape — a reset gate r, an update gate z and a candidate n — and differ in which inputs
each gate sees. Reference: R. Jozefowicz, W. Zaremba and I. Sutskever, "An empirical exploration
of recurrent network architectures", ICML 2015.

Parameter layout (rnnkit's, the paper gives none): each cell has one bias per gate, ``bias_ih``
(3H) stacked ``r, z, n``; ``weight_ih`` stacks the input matrices the cell has and ``weight_hh``
the recurrent ones, both in the order ``r, z, n``. Every parameter is initialised uniform in
±1/sqrt(H). State: ``(h,)`` of shape ``(B, H)``; the output is ``h``.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import GatedCell, State


class _MUTCell(GatedCell):
    """What the three mutants share: the parameters' shapes and the GRU-style update."""

    input_matrices: int  # how many of W_xr, W_xz, W_xh the cell has
    recurrent_matrices: int  # how many of W_hr, W_hz, W_hh the cell has
    needs_square_input = False  # MUT1 adds tanh(x) and MUT2 adds x to an H-sized sum

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        if self.needs_square_input and input_size != hidden_size:
            raise ValueError(
                f"{type(self).__name__} adds the input itself to a gate, so input_size must equal "
                f"hidden_size. Expected {hidden_size}, got {input_size}"
            )
        self.weight_ih = nn.Parameter(torch.empty(self.input_matrices * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(self.recurrent_matrices * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.reset_parameters()

    def recurrent_part(self, index: int, h: Tensor) -> Tensor:
        """``W h`` for the ``index``-th matrix stacked in ``weight_hh``: ``(B, H) -> (B, H)``."""
        H = self.hidden_size
        return nn.functional.linear(h, self.weight_hh[index * H : (index + 1) * H])

    @staticmethod
    def update(h: Tensor, z: Tensor, n: Tensor) -> Tensor:
        """h_t = n ⊙ z + h_{t-1} ⊙ (1 − z): the paper's convention (z = 1 takes the candidate)."""
        return n * z + h * (1.0 - z)


class MUT1Cell(_MUTCell):
    r"""MUT1 (Jozefowicz et al. 2015).

    .. math::
        z_t &= \sigma(W_{xz} x_t + b_z) \\
        r_t &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r_t \odot h_{t-1}) + \tanh(x_t) + b_h) \odot z_t
              + h_{t-1} \odot (1 - z_t)

    :math:`x_t` (I = H) is the input, :math:`h_t` (H) the state, :math:`\sigma` the logistic
    sigmoid. The update gate sees only the input. ``weight_ih`` = [W_xr; W_xz] (2H × H),
    ``weight_hh`` = [W_hr; W_hh] (2H × H). Requires ``input_size == hidden_size``.

    Example:
        >>> cell = MUT1Cell(4, 4)
        >>> y, (h,) = cell.step(cell.input_projection(torch.randn(1, 2, 4))[0], cell.init_state(2, None, None), 0)
    """

    input_matrices, recurrent_matrices, needs_square_input = 2, 2, True
    kernel = "mut1"

    def input_projection(self, x: Tensor) -> Tensor:
        H = self.hidden_size
        rz = nn.functional.linear(x, self.weight_ih, self.bias_ih[: 2 * H])  # (T, B, 2H)
        return torch.cat([rz, torch.tanh(x) + self.bias_ih[2 * H :]], dim=-1)  # (T, B, 3H)

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        (h,) = state
        x_r, x_z, x_n = xp_t.chunk(3, dim=1)
        r = torch.sigmoid(x_r + self.recurrent_part(0, h))
        z = torch.sigmoid(x_z)
        n = torch.tanh(self.recurrent_part(1, r * h) + x_n)
        h = self.update(h, z, n)
        return h, (h,), {"r": r, "z": z}


class MUT2Cell(_MUTCell):
    r"""MUT2 (Jozefowicz et al. 2015).

    .. math::
        z_t &= \sigma(W_{xz} x_t + W_{hz} h_{t-1} + b_z) \\
        r_t &= \sigma(x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r_t \odot h_{t-1}) + W_{xh} x_t + b_h) \odot z_t
              + h_{t-1} \odot (1 - z_t)

    :math:`x_t` (I = H) is the input, :math:`h_t` (H) the state, :math:`\sigma` the logistic
    sigmoid. The reset gate takes the raw input. ``weight_ih`` = [W_xz; W_xh] (2H × H),
    ``weight_hh`` = [W_hr; W_hz; W_hh] (3H × H). Requires ``input_size == hidden_size``.

    Example:
        >>> cell = MUT2Cell(4, 4)
        >>> y, (h,) = cell.step(cell.input_projection(torch.randn(1, 2, 4))[0], cell.init_state(2, None, None), 0)
    """

    input_matrices, recurrent_matrices, needs_square_input = 2, 3, True
    kernel = "mut2"

    def input_projection(self, x: Tensor) -> Tensor:
        H = self.hidden_size
        zn = nn.functional.linear(x, self.weight_ih, self.bias_ih[H:])  # (T, B, 2H)
        return torch.cat([x + self.bias_ih[:H], zn], dim=-1)  # (T, B, 3H)

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        (h,) = state
        H = self.hidden_size
        x_r, x_z, x_n = xp_t.chunk(3, dim=1)
        h_r, h_z = nn.functional.linear(h, self.weight_hh[: 2 * H]).chunk(2, dim=1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(self.recurrent_part(2, r * h) + x_n)
        h = self.update(h, z, n)
        return h, (h,), {"r": r, "z": z}


class MUT3Cell(_MUTCell):
    r"""MUT3 (Jozefowicz et al. 2015).

    .. math::
        z_t &= \sigma(W_{xz} x_t + W_{hz} \tanh(h_{t-1}) + b_z) \\
        r_t &= \sigma(W_{xr} x_t + W_{hr} h_{t-1} + b_r) \\
        h_t &= \tanh(W_{hh} (r_t \odot h_{t-1}) + W_{xh} x_t + b_h) \odot z_t
              + h_{t-1} \odot (1 - z_t)

    :math:`x_t` (I) is the input, :math:`h_t` (H) the state, :math:`\sigma` the logistic sigmoid.
    The update gate sees the squashed state. ``weight_ih`` = [W_xr; W_xz; W_xh] (3H × I),
    ``weight_hh`` = [W_hr; W_hz; W_hh] (3H × H).

    Example:
        >>> cell = MUT3Cell(3, 4)
        >>> y, (h,) = cell.step(cell.input_projection(torch.randn(1, 2, 3))[0], cell.init_state(2, None, None), 0)
    """

    input_matrices, recurrent_matrices = 3, 3
    kernel = "mut3"

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        (h,) = state
        x_r, x_z, x_n = xp_t.chunk(3, dim=1)
        r = torch.sigmoid(x_r + self.recurrent_part(0, h))
        z = torch.sigmoid(x_z + self.recurrent_part(1, torch.tanh(h)))
        n = torch.tanh(self.recurrent_part(2, r * h) + x_n)
        h = self.update(h, z, n)
        return h, (h,), {"r": r, "z": z}
