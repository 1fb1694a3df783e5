"""Long short-term memory, with the syllabus variants: forget bias, peepholes, coupled gates."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import GatedCell, State, optional_parameter


class LSTMCell(GatedCell):
    r"""LSTM cell (Hochreiter & Schmidhuber 1997, with the forget gate of Gers et al. 2000).

    .. math::
        i_t &= \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi} + w_{ci} \odot c_{t-1}) \\
        f_t &= \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf} + w_{cf} \odot c_{t-1}) \\
        g_t &= \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        c_t &= f_t \odot c_{t-1} + i_t \odot g_t \\
        o_t &= \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho} + w_{co} \odot c_t) \\
        h_t &= W_{hr} (o_t \odot \tanh(c_t))

    :math:`x_t` (I) is the input, :math:`h_t` the hidden state and output, :math:`c_t` (H) the
    cell state, :math:`i, f, o` the input, forget and output gates, :math:`g` the candidate,
    :math:`\sigma` the logistic sigmoid and :math:`\odot` the elementwise product. The weights
    ``weight_ih`` (G·H × I) and ``weight_hh`` (G·H × P) stack the gates in torch's order
    ``i, f, g, o``; ``bias_ih`` and ``bias_hh`` likewise.

    Options:

    - ``forget_bias`` (default 1.0): the forget gate's bias is initialised to this value, so that
      an untrained cell remembers (Jozefowicz, Zaremba & Sutskever 2015; Gers et al. 2000). It is
      an initialisation, not a constant of the equations: loading weights overrides it.
    - ``peephole=True``: the diagonal peephole weights :math:`w_{ci}, w_{cf}, w_{co}` (H each,
      ``weight_ci``, ``weight_cf``, ``weight_co``) let the gates see the cell state (Gers &
      Schmidhuber 2000). Without peepholes these terms are absent.
    - ``coupled=True`` (CIFG, Greff et al. 2017): the forget gate is tied to the input gate,
      :math:`f_t = 1 - i_t`, and has no weights of its own; the gates are stacked ``i, g, o``
      (G = 3). ``forget_bias`` then initialises the input gate's bias to ``-forget_bias``, which
      gives the same initial forget gate.
    - ``proj_size`` P > 0 (as in torch.nn.LSTM, Sak et al. 2014): :math:`h_t` is projected to P
      units by ``weight_hr`` (P × H); without projection :math:`W_{hr}` is the identity and P = H.

    State: ``(h, c)`` with shapes ``(B, P)`` and ``(B, H)``. Every parameter is initialised
    uniform in :math:`\pm 1/\sqrt{H}` as in torch.nn, then the forget bias is applied.

    Example:
        >>> cell = LSTMCell(3, 5, peephole=True)
        >>> xp = cell.input_projection(torch.randn(7, 2, 3))   # (T, B, 4H)
        >>> y, (h, c) = cell.step(xp[0], cell.init_state(2, xp.device, xp.dtype), 0)
        >>> y, (h, c), gates = cell.step_and_gates(xp[0], (h, c), 1)   # gates: i, f, o (B, H)
    """

    kernel = "lstm"  # the fused kernel family (rnnkit.engine.fused)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        forget_bias: float = 1.0,
        peephole: bool = False,
        coupled: bool = False,
        proj_size: int = 0,
    ) -> None:
        super().__init__(input_size, hidden_size)
        if not 0 <= proj_size < hidden_size:
            raise ValueError(f"proj_size must be in [0, hidden_size={hidden_size}), got {proj_size}")
        self.forget_bias = forget_bias
        self.peephole = peephole
        self.coupled = coupled
        self.proj_size = proj_size
        gates = 3 if coupled else 4
        self.weight_ih = nn.Parameter(torch.empty(gates * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.empty(gates * hidden_size, self.output_size))
        self.bias_ih = optional_parameter(bias, gates * hidden_size)
        self.bias_hh = optional_parameter(bias, gates * hidden_size)
        self.weight_ci = optional_parameter(peephole, hidden_size)
        self.weight_cf = optional_parameter(peephole and not coupled, hidden_size)
        self.weight_co = optional_parameter(peephole, hidden_size)
        self.weight_hr = optional_parameter(proj_size > 0, proj_size, hidden_size)
        self.reset_parameters()

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.output_size, self.hidden_size)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.bias_ih is None:
            return
        with torch.no_grad():
            H = self.hidden_size
            # Coupled gates: f = 1 - sigmoid(a_i) = sigmoid(-a_i), so b_i = -forget_bias.
            gate, value = (slice(0, H), -self.forget_bias) if self.coupled else (slice(H, 2 * H), self.forget_bias)
            self.bias_ih[gate] = value
            self.bias_hh[gate] = 0.0

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        h, c = state
        gates = xp_t + nn.functional.linear(h, self.weight_hh, self.bias_hh)  # (B, G*H)
        if self.coupled:
            i, g, o = gates.chunk(3, dim=1)
        else:
            i, f, g, o = gates.chunk(4, dim=1)
        if self.peephole:
            i = i + self.weight_ci * c
        i = torch.sigmoid(i)
        if self.coupled:
            f = 1.0 - i
        else:
            f = torch.sigmoid(f + self.weight_cf * c if self.peephole else f)
        c = f * c + i * torch.tanh(g)
        if self.peephole:
            o = o + self.weight_co * c
        o = torch.sigmoid(o)
        h = o * torch.tanh(c)
        if self.proj_size:
            h = nn.functional.linear(h, self.weight_hr)
        return h, (h, c), {"i": i, "f": f, "o": o}

    def extra_repr(self) -> str:
        options = [f"forget_bias={self.forget_bias}"]
        options += [name for name in ("peephole", "coupled") if getattr(self, name)]
        if self.proj_size:
            options.append(f"proj_size={self.proj_size}")
        return ", ".join([super().extra_repr(), *options])
