"""The Jordan network: recurrence through the previous output only, trained with teacher forcing."""

from __future__ import annotations

import torch
from torch import Tensor, nn

OUTPUT_ACTIVATIONS = ("identity", "sigmoid", "tanh", "softmax")


class JordanNetwork(nn.Module):
    r"""Jordan (1986), in the form of Goodfellow, Bengio & Courville (2016), section 10.2,
    figure 10.4, and its teacher forcing, section 10.2.1: the hidden units see the previous *output*, not the previous hidden state.

    .. math::
        h_t = \tanh(W x_t + R y_{t-1} + b), \qquad a_t = V h_t + c, \qquad y_t = g(a_t)

    :math:`x_t` (I) is the input, :math:`h_t` (H) the hidden units, :math:`a_t` (O) the output
    scores (logits) and :math:`y_t = g(a_t)` the output, with :math:`g` the ``output_activation``
    (``"identity"``, ``"sigmoid"``, ``"tanh"`` or ``"softmax"``). :math:`W` (H × I) and
    :math:`b` are ``input_to_hidden``, :math:`R` (H × O) is ``output_to_hidden``, :math:`V`
    (O × H) and :math:`c` are ``hidden_to_output``; :math:`y_0` is given (zeros by default).
    Initialisation: torch.nn.Linear's.

    Because the only recurrence goes through :math:`y`, *teacher forcing* makes training
    parallel over time: with the previous target :math:`\hat y_{t-1}` in place of
    :math:`y_{t-1}`, :math:`h_t` depends on no other :math:`h`, so :meth:`forward` shifts the
    targets by one step and computes every step at once with two Linears and a tanh. The hidden
    map is therefore not a recurrence in :math:`h` and is built from ``nn.Linear`` directly, not
    from a cell and ``Recurrent``. At test time there are no targets: :meth:`run_free` feeds back
    the network's own outputs one step at a time, a loop over outputs as in decoding. The
    mismatch between the two regimes is the price of parallel training (Goodfellow et al. 10.2.1).

    Example:
        >>> import torch
        >>> net = JordanNetwork(input_size=3, output_size=2, hidden_size=8)
        >>> x, targets = torch.randn(6, 4, 3), torch.rand(6, 4, 2)
        >>> net(x, targets).shape                     # teacher forced, all steps at once
        torch.Size([6, 4, 2])
        >>> scores, outputs = net.run_free(x)        # feeding back its own outputs
        >>> outputs.shape
        torch.Size([6, 4, 2])
    """

    def __init__(
        self, input_size: int, output_size: int, hidden_size: int, output_activation: str = "sigmoid"
    ) -> None:
        super().__init__()
        if output_activation not in OUTPUT_ACTIVATIONS:
            raise ValueError(
                f"output_activation must be one of {', '.join(OUTPUT_ACTIVATIONS)}, got {output_activation!r}"
            )
        self.input_size = input_size
        self.output_size = output_size
        self.output_activation = output_activation
        self.input_to_hidden = nn.Linear(input_size, hidden_size)  # W, b
        self.output_to_hidden = nn.Linear(output_size, hidden_size, bias=False)  # R
        self.hidden_to_output = nn.Linear(hidden_size, output_size)  # V, c

    def forward(self, inputs: Tensor, targets: Tensor, initial_output: Tensor | None = None) -> Tensor:
        """Teacher-forced scores ``a_t`` ``(T, B, O)`` for ``inputs`` ``(T, B, I)`` and
        ``targets`` ``(T, B, O)``: step t reads ``targets[t - 1]`` (``initial_output`` at t = 0)."""
        y0 = self._initial_output(inputs, initial_output)
        if targets.shape != (*inputs.shape[:2], self.output_size):
            raise ValueError(
                f"targets must have shape {(*inputs.shape[:2], self.output_size)}, got {tuple(targets.shape)}"
            )
        previous = torch.cat([y0.unsqueeze(0), targets[:-1]])  # (T, B, O): y_{t-1} for every t
        return self.step(inputs, previous)

    def step(self, x: Tensor, previous_output: Tensor) -> Tensor:
        """``a_t = V tanh(W x_t + R y_{t-1} + b) + c``, for ``(..., I)`` and ``(..., O)`` inputs:
        one step ``(B, ·)`` or, with the previous outputs known, every step ``(T, B, ·)``."""
        hidden = torch.tanh(self.input_to_hidden(x) + self.output_to_hidden(previous_output))
        return self.hidden_to_output(hidden)

    def activation(self, scores: Tensor) -> Tensor:
        """The output ``y = g(a)`` from the scores, over the last dimension."""
        if self.output_activation == "sigmoid":
            return torch.sigmoid(scores)
        if self.output_activation == "tanh":
            return torch.tanh(scores)
        if self.output_activation == "softmax":
            return torch.softmax(scores, dim=-1)
        return scores

    def run_free(self, inputs: Tensor, initial_output: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Run on ``inputs`` ``(T, B, I)`` feeding back the network's own outputs ``y_t = g(a_t)``.

        Returns the scores and the outputs, both ``(T, B, O)``. The loop over steps is inherent:
        step t needs the output of step t - 1.
        """
        output = self._initial_output(inputs, initial_output)  # (B, O)
        scores = []
        for x_t in inputs.unbind(0):  # (B, I) each
            scores.append(self.step(x_t, output))
            output = self.activation(scores[-1])
        stacked = torch.stack(scores)  # (T, B, O)
        return stacked, self.activation(stacked)

    def _initial_output(self, inputs: Tensor, initial_output: Tensor | None) -> Tensor:
        """Check ``inputs`` and return ``y_0`` ``(B, O)``: the given one, or zeros."""
        if inputs.dim() != 3 or inputs.size(-1) != self.input_size:
            raise ValueError(f"inputs must be (T, B, {self.input_size}), got shape {tuple(inputs.shape)}")
        expected = (inputs.size(1), self.output_size)
        if initial_output is None:
            return inputs.new_zeros(expected)
        if initial_output.shape != expected:
            raise ValueError(f"initial_output must have shape {expected}, got {tuple(initial_output.shape)}")
        return initial_output
