"""The cell contract: what every recurrent cell declares so that the engine can run it.

A cell knows one step of one recurrence and nothing else. The engine (``rnnkit.engine``) runs it
over a sequence, the layer (``rnnkit.Recurrent``) stacks and reverses cells. A cell declares:

- its parameters, named as torch.nn does (``weight_ih``, ``weight_hh``, ``bias_ih``, ``bias_hh``,
  gates stacked in torch's order), so that parity tests can copy weights from torch.nn;
- ``input_projection(x)``: the part of the step that does not depend on the state, for all time
  steps at once — one large GEMM over ``(T, B, I)`` instead of T small ones;
- ``init_state(batch, device, dtype)``: the zero state, a tuple of tensors;
- ``step(xp_t, state, t) -> (output_t, new_state)``: the reference equations, written plainly;
- ``kernel``: the name of its fused kernel family in ``rnnkit.engine.fused``, or None.

A gated cell (LSTM, GRU, MUT) derives from :class:`GatedCell` and writes its equations once, in
``step_and_gates``, which also returns its sigmoid gates for diagnostics; ``step`` drops them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = tuple[Tensor, ...]


class CellBase(nn.Module):
    """What recurrent and tree cells (``cells/tree.py``) share: their sizes, torch.nn's
    initialisation, and the input projection ``x W_ih^T + b_ih``.

    Attributes:
        input_size, hidden_size: features of the input and units of the state.
        state_sizes: the trailing size of each tensor of the state, ``(hidden_size,)`` by default.
    """

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size <= 0 or hidden_size <= 0:
            raise ValueError(
                f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}"
            )
        self.input_size = input_size
        self.hidden_size = hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return (self.hidden_size,)

    def reset_parameters(self) -> None:
        """torch.nn's initialisation: every parameter uniform in ±1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for parameter in self.parameters():
            nn.init.uniform_(parameter, -bound, bound)

    def input_projection(self, x: Tensor) -> Tensor:
        """The state-independent part of every step (or tree node) at once: ``(..., I) -> (..., G)``."""
        return nn.functional.linear(x, self.weight_ih, self.bias_ih)


class RecurrentCell(CellBase):
    """Base class of every cell.

    Subclasses create their parameters in ``__init__`` and implement ``step``. The defaults here
    cover the common case of an input projection ``x W_ih^T + b_ih`` and a state made of one
    ``(B, hidden_size)`` tensor per entry of ``state_sizes``.

    Attributes:
        kernel: the fused kernel family that implements this cell's BPTT, or None (loop only).
        input_size: features of ``x_t``.
        hidden_size: units of the recurrent state.
        output_size: features of the output ``y_t`` the cell returns each step.
        state_sizes: the trailing size of each tensor in the state tuple.
    """

    kernel: str | None = None

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        """The zero state: one ``(batch, size)`` tensor for each entry of ``state_sizes``."""
        return tuple(torch.zeros(batch, size, device=device, dtype=dtype) for size in self.state_sizes)

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        """One time step: ``xp_t`` is row ``t`` of ``input_projection(x)``, shape ``(B, G)``."""
        raise NotImplementedError

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        """``step``, and the values of the step's sigmoid gates by name, each ``(B, H)`` in (0, 1).

        For diagnostics (gate saturation, activation pages). A cell without gates reports ``{}``.
        """
        return (*self.step(xp_t, state, t), {})

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class GatedCell(RecurrentCell):
    """A cell with sigmoid gates: its equations live in ``step_and_gates`` alone.

    ``step`` is ``step_and_gates`` without the gates, so the gates a diagnostic reads are the very
    values the step used. The gates are named as in the cell's docstring (LSTM ``i, f, o``; GRU
    and MUT ``r, z``); candidates such as the LSTM's ``g`` are tanh units, not gates.
    """

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        output, new_state, _ = self.step_and_gates(xp_t, state, t)
        return output, new_state

    def step_and_gates(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State, dict[str, Tensor]]:
        raise NotImplementedError


def optional_parameter(enabled: bool, *shape: int) -> nn.Parameter | None:
    """A parameter of ``shape`` when ``enabled`` (e.g. ``bias=True``), else ``None``.

    The values are placeholders: the cell's ``reset_parameters`` initialises every parameter.
    """
    return nn.Parameter(torch.empty(*shape)) if enabled else None

