"""The clockwork RNN: groups of units that tick at different periods, slow ones feeding fast ones."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, optional_parameter

DEFAULT_MODULES = 4  # periods 1, 2, 4, 8 when none are given


class ClockworkCell(RecurrentCell):
    r"""Clockwork RNN cell (Koutník, Greff, Gomez & Schmidhuber 2014).

    The H hidden units are split into g modules of H/g consecutive units; module i has the
    period :math:`T_i` (by default :math:`T_i = 2^i`). At step t only the modules whose period
    divides t update; the others keep their value:

    .. math::
        \tilde h_t &= \tanh(W_{ih} x_t + b_{ih} + (M \odot W_{hh}) h_{t-1} + b_{hh}) \\
        h_{t,i} &= \begin{cases} \tilde h_{t,i} & \text{if } t \bmod T_i = 0 \\
                                 h_{t-1,i} & \text{otherwise} \end{cases}

    :math:`x_t` (I) is the input, :math:`h_t` (H) the hidden state and output, :math:`h_{t,i}`
    the units of module i, :math:`W_{ih}` (H×I), :math:`W_{hh}` (H×H), :math:`b_{ih}, b_{hh}`
    (H) the weights and biases laid out as in :class:`~rnnkit.cells.elman.ElmanCell`, and
    :math:`M` (H×H, the buffer ``weight_hh_mask``) the connectivity: block (i, j) of M is 1 where
    :math:`T_j \ge T_i` and 0 elsewhere. With the periods increasing, M is block upper
    triangular: each module reads itself and the slower modules, never a faster one, so a slow
    module's state carries no trace of the fast modules' (Koutník et al.'s "connections from
    slower to faster modules"). The masked entries of ``weight_hh`` are set to 0 at
    initialisation and never matter: the step multiplies by M, so they get no gradient and
    loading other values there changes nothing. Every other parameter is initialised uniform in
    :math:`\pm 1/\sqrt{H}`.

    Options: ``modules`` g (H must be a multiple of g; default ``len(periods)`` when periods are
    given, else 4) and ``periods``, g positive and strictly increasing integers (default
    :math:`1, 2, 4, \dots, 2^{g-1}`).

    The clock is the ``t`` of :meth:`step`: the number of steps the executor has run in this
    call, from 0, when every module updates. The phase is therefore per call: with truncated
    BPTT, each chunk starts its clocks afresh at t = 0 (the state carries the values, not the
    phase), and a reversed direction of a bidirectional layer counts from each sequence's last
    step. State: ``(h,)`` of shape ``(B, H)``. The reference step computes every module and
    keeps the idle ones, rather than the paper's saving of computing only the active rows.

    Reference: J. Koutník, K. Greff, F. Gomez and J. Schmidhuber, "A Clockwork RNN", ICML 2014.

    Example:
        >>> cell = ClockworkCell(3, 6, modules=3)   # periods 1, 2, 4; two units each
        >>> cell.periods.tolist()
        [1, 2, 4]
        >>> xp = cell.input_projection(torch.randn(7, 2, 3))   # (T, B, H)
        >>> y, (h,) = cell.step(xp[1], cell.init_state(2, xp.device, xp.dtype), 1)
        >>> bool(h[:, 2:].eq(0).all())   # at t = 1 the modules of period 2 and 4 keep their 0
        True
    """

    kernel = None  # loop only: no fused kernel knows the clock

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        modules: int | None = None,
        periods: Sequence[int] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if modules is None:
            modules = DEFAULT_MODULES if periods is None else len(periods)
        if not isinstance(modules, int) or isinstance(modules, bool) or modules < 1:
            raise ValueError(f"modules must be a positive integer, got {modules!r}")
        if hidden_size % modules:
            raise ValueError(
                f"hidden_size must be a multiple of modules. Expected a multiple of {modules}, "
                f"got {hidden_size}"
            )
        periods = [2**i for i in range(modules)] if periods is None else list(periods)
        if len(periods) != modules:
            raise ValueError(
                f"periods needs one entry per module. Expected {modules}, got {len(periods)}"
            )
        if not all(isinstance(p, int) and not isinstance(p, bool) and p > 0 for p in periods):
            raise ValueError(f"periods must be positive integers, got {periods}")
        if any(later <= earlier for earlier, later in pairwise(periods)):
            raise ValueError(f"periods must be strictly increasing, got {periods}")
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = optional_parameter(bias, hidden_size)
        self.bias_hh = optional_parameter(bias, hidden_size)
        # Derived from the options, so not saved with the weights (persistent=False).
        self.register_buffer("periods", torch.tensor(periods), persistent=False)  # (g,) int64
        unit_periods = self.periods.repeat_interleave(hidden_size // modules)  # (H,): T of each unit
        self.register_buffer("unit_periods", unit_periods, persistent=False)
        # M[u, v] = 1 where unit v's module is at least as slow as unit u's: (H, H)
        mask = (unit_periods.unsqueeze(0) >= unit_periods.unsqueeze(1)).to(torch.get_default_dtype())
        self.register_buffer("weight_hh_mask", mask, persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.weight_hh.mul_(self.weight_hh_mask)  # the absent connections read as 0

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        (h,) = state
        candidate = torch.tanh(
            xp_t + nn.functional.linear(h, self.weight_hh * self.weight_hh_mask, self.bias_hh)
        )
        active = t % self.unit_periods == 0  # (H,): the units whose module ticks at t
        h = torch.where(active, candidate, h)
        return h, (h,)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, periods={self.periods.tolist()}"
