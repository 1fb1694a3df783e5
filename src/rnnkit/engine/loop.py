"""The reference executor: a plain Python loop of ``cell.step`` under autograd.

It is the definition every faster executor is tested against, and it runs any cell.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State


def alive_mask(lengths: Tensor, steps: int) -> Tensor:
    """``mask[t, b]`` is True while step ``t`` lies inside sequence ``b``: ``(T, B)`` bool."""
    return torch.arange(steps, device=lengths.device).unsqueeze(1) < lengths.unsqueeze(0)


def keep_where(alive: Tensor, new: Tensor, old: Tensor) -> Tensor:
    """``new`` for the sequences still running, ``old`` for the finished: ``alive`` is ``(B,)``."""
    return torch.where(alive.view(-1, *(1,) * (new.dim() - 1)), new, old)


def run_loop(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x``: one GEMM for ``xp = cell.input_projection(x)``, then ``step``.

    Args:
        cell: the cell to run.
        x: the layer's input, ``(T, B, I)``.
        state: the initial state, a tuple of ``(B, ...)`` tensors.
        lengths: ``(B,)`` int64 on ``xp``'s device, or None when every sequence fills all T steps.
            Past its length a sequence's state stops changing and its outputs are zero.

    Returns:
        The outputs ``(T, B, cell.output_size)`` and the final state.
    """
    outputs, state, _ = _unroll(cell, x, state, lengths, keep_gates=False)
    return outputs, state


def run_loop_with_gates(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None
) -> tuple[Tensor, State, dict[str, Tensor]]:
    """``run_loop`` that also keeps the sigmoid gates of every step (``cell.step_and_gates``).

    For diagnostics. Returns the outputs, the final state, and the gates by name, each
    ``(T, B, H)`` (``{}`` for a cell without gates). Past a sequence's length the gates are those
    of the padded steps, which the state ignores: mask them with ``alive_mask(lengths, T)``.
    """
    return _unroll(cell, x, state, lengths, keep_gates=True)


def _unroll(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None, keep_gates: bool
) -> tuple[Tensor, State, dict[str, Tensor]]:
    # unbind, never xp[t]: indexing under autograd makes backward quadratic in T.
    steps = cell.input_projection(x).unbind(0)  # T tensors of (B, G)
    alive = [None] * len(steps) if lengths is None else alive_mask(lengths, len(steps)).unbind(0)
    outputs, gates = [], []
    for t, (xp_t, alive_t) in enumerate(zip(steps, alive)):
        if keep_gates:
            output, new_state, gates_t = cell.step_and_gates(xp_t, state, t)
            gates.append(gates_t)
        else:
            output, new_state = cell.step(xp_t, state, t)
        if alive_t is not None:
            new_state = tuple(keep_where(alive_t, new, old) for new, old in zip(new_state, state))
            output = keep_where(alive_t, output, torch.zeros_like(output))
        state = new_state
        outputs.append(output)
    stacked = {name: torch.stack([g[name] for g in gates]) for name in gates[0]} if gates else {}
    return torch.stack(outputs), state, stacked
