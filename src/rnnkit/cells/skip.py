"""Skip connections through time: an Elman cell that also reads its own state from d steps back."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, optional_parameter
from .elman import NONLINEARITIES


class SkipCell(RecurrentCell):
    r"""Elman cell with a skip connection through time of delay d (Lin et al. 1996).

    .. math::
        h_t = \phi(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh} + W_{hd} h_{t-d})

    :math:`x_t \in \mathbb{R}^I` is the input, :math:`h_t \in \mathbb{R}^H` the hidden state and
    output, :math:`W_{ih}` (H×I) the input weights, :math:`W_{hh}` (H×H) the recurrent weights of
    the one-step path, :math:`W_{hd}` (H×H, ``weight_hd``) those of the delayed path,
    :math:`b_{ih}, b_{hh}` (H) the biases as in :class:`~rnnkit.cells.elman.ElmanCell` (the
    delayed path has none: a third bias would add nothing) and :math:`\phi` is ``tanh`` or
    ``relu``. A gradient reaches :math:`h_{t-d}` through one product by :math:`W_{hd}` instead of
    d products by :math:`W_{hh}`, so dependencies d times longer fade d times more slowly
    (Goodfellow et al. 2016, §10.9.1). ``delay`` d must be at least 2: with d = 1 the two paths
    would be one.

    State: the last d hidden states, newest first, ``(h_{t-1}, h_{t-2}, ..., h_{t-d})``, d
    tensors of shape ``(B, H)`` (``state_sizes`` is ``(H,) * d``). The zero initial state means
    :math:`h_{-1} = \dots = h_{-d} = 0`; a given initial state supplies all d of them. Because the
    whole history the cell reads lives in the state, running a sequence in chunks and carrying
    the state between them (truncated BPTT) equals running it at once, and a sequence that ends
    early (``lengths``) keeps its whole history frozen. Every parameter is initialised uniform in
    :math:`\pm 1/\sqrt{H}`.

    References: T. Lin, B. G. Horne, P. Tiňo and C. L. Giles, "Learning long-term dependencies in
    NARX recurrent neural networks", IEEE Trans. Neural Networks 7(6), 1996; Goodfellow, Bengio &
    Courville, Deep Learning, 2016, §10.9.1.

    Example:
        >>> cell = SkipCell(3, 5, delay=4)
        >>> xp = cell.input_projection(torch.randn(7, 2, 3))   # (T, B, H)
        >>> y, state = cell.step(xp[0], cell.init_state(2, xp.device, xp.dtype), 0)
        >>> y.shape, len(state)
        (torch.Size([2, 5]), 4)
    """

    kernel = None  # loop only: no fused kernel reads a delayed state

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        delay: int = 2,
        nonlinearity: str = "tanh",
        bias: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not isinstance(delay, int) or isinstance(delay, bool) or delay < 2:
            raise ValueError(f"delay must be an integer of at least 2, got {delay!r}")
        if nonlinearity not in NONLINEARITIES:
            raise ValueError(
                f"nonlinearity must be one of {sorted(NONLINEARITIES)}, got {nonlinearity!r}"
            )
        self.delay = delay
        self.nonlinearity = nonlinearity
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.weight_hd = nn.Parameter(torch.empty(hidden_size, hidden_size))
        self.bias_ih = optional_parameter(bias, hidden_size)
        self.bias_hh = optional_parameter(bias, hidden_size)
        self.reset_parameters()

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,) * self.delay

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        h_previous, h_delayed = state[0], state[-1]  # h_{t-1} and h_{t-d}, (B, H) each
        h = NONLINEARITIES[self.nonlinearity](
            xp_t
            + nn.functional.linear(h_previous, self.weight_hh, self.bias_hh)
            + nn.functional.linear(h_delayed, self.weight_hd)
        )
        return h, (h, *state[:-1])  # the history shifts by one: h_{t-d} leaves it

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, delay={self.delay}, nonlinearity={self.nonlinearity!r}"
