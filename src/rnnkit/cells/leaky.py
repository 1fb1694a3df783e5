"""Leaky-integrator units: an Elman cell whose state decays with a per-unit time constant."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .base import RecurrentCell, State, optional_parameter


class LeakyCell(RecurrentCell):
    r"""Leaky-integrator recurrent cell (Goodfellow, Bengio & Courville 2016, §10.8).

    .. math::
        v_t &= \tanh(W_{ih} x_t + b_{ih} + W_{hh} \mu_{t-1} + b_{hh}) \\
        \mu_t &= \alpha \odot \mu_{t-1} + (1 - \alpha) \odot v_t

    :math:`x_t` (I) is the input, :math:`\mu_t` (H) the leaky state and output, :math:`v_t` the
    Elman update it integrates, and :math:`\alpha \in (0, 1)^H` the per-unit leak: a unit with
    :math:`\alpha` near 1 keeps its past for about :math:`1/(1-\alpha)` steps (its time
    constant), and as :math:`\alpha \to 0` it becomes an Elman unit. Weights and biases are laid out as in
    :class:`~rnnkit.cells.elman.ElmanCell` and initialised uniform in :math:`\pm 1/\sqrt{H}`.

    With ``recurrent=False`` there is no :math:`W_{hh}` or :math:`b_{hh}` and the update reads
    only the input, :math:`v_t = \tanh(W_{ih} x_t + b_{ih})`: the state then follows the first-order
    linear recurrence :math:`\mu_t = \alpha \odot \mu_{t-1} + (1 - \alpha) \odot v_t`, a leaky
    average of the inputs' features, which ``rnnkit.engine.scan`` computes by a parallel prefix
    scan over time instead of step by step.

    :math:`\alpha` is stored through its logit, ``alpha_logit`` (H), so that it stays in (0, 1):
    a parameter when ``learn_alpha=True``, a buffer otherwise. ``alpha`` initialises it: one
    value for every unit or a sequence of H values (e.g. a spread of time constants).

    State: ``(mu,)`` of shape ``(B, H)``.

    Reference: Y. Bengio, N. Boulanger-Lewandowski and R. Pascanu, "Advances in optimizing
    recurrent networks", ICASSP 2013 (leaky units); Goodfellow et al., Deep Learning, §10.8.

    Example:
        >>> cell = LeakyCell(3, 4, alpha=[0.1, 0.5, 0.9, 0.99], learn_alpha=True)
        >>> y, (mu,) = cell.step(cell.input_projection(torch.randn(1, 2, 3))[0], cell.init_state(2, None, None), 0)
        >>> LeakyCell(3, 4, recurrent=False).weight_hh is None  # a linear recurrence in mu
        True
    """

    kernel = "leaky"  # the fused kernel family (rnnkit.engine.fused)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        alpha: float | Sequence[float] = 0.5,
        learn_alpha: bool = False,
        recurrent: bool = True,
    ) -> None:
        super().__init__(input_size, hidden_size)
        alpha_init = torch.as_tensor(alpha, dtype=torch.get_default_dtype())
        if alpha_init.numel() not in (1, hidden_size) or alpha_init.dim() > 1:
            raise ValueError(
                f"alpha must be one value or one per unit. Expected 1 or {hidden_size} values, "
                f"got shape {tuple(alpha_init.shape)}"
            )
        alpha_init = alpha_init.expand(hidden_size)
        if not bool(((alpha_init > 0) & (alpha_init < 1)).all()):
            raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")
        self.learn_alpha = learn_alpha
        self.recurrent = recurrent
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size))
        self.weight_hh = optional_parameter(recurrent, hidden_size, hidden_size)
        self.bias_ih = optional_parameter(bias, hidden_size)
        self.bias_hh = optional_parameter(bias and recurrent, hidden_size)
        self._alpha_init = alpha_init.clone()
        if learn_alpha:
            self.alpha_logit = nn.Parameter(torch.empty(hidden_size))
        else:
            self.register_buffer("alpha_logit", torch.empty(hidden_size))
        self.reset_parameters()

    @property
    def alpha(self) -> Tensor:
        """The per-unit leak α = sigmoid(alpha_logit), shape ``(H,)``."""
        return torch.sigmoid(self.alpha_logit)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        with torch.no_grad():
            self.alpha_logit.copy_(torch.logit(self._alpha_init))

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        (mu,) = state
        if not self.recurrent:  # the update reads only the input: mu follows a linear recurrence
            v = torch.tanh(xp_t)
        else:
            v = torch.tanh(xp_t + nn.functional.linear(mu, self.weight_hh, self.bias_hh))
        alpha = self.alpha
        mu = alpha * mu + (1.0 - alpha) * v
        return mu, (mu,)

    def extra_repr(self) -> str:
        options = f"{super().extra_repr()}, learn_alpha={self.learn_alpha}"
        return options if self.recurrent else f"{options}, recurrent=False"
