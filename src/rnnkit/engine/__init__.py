"""Executors: the only code in rnnkit that loops over time.

An executor runs a cell over a whole sequence: ``executor(cell, xp, state, lengths) ->
(outputs, final_state)`` where ``xp = cell.input_projection(x)`` is ``(T, B, G)``. Every executor
must agree with ``loop``, the reference, in outputs, final states and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import Tensor

from ..cells.base import RecurrentCell, State
from .loop import run_loop

Executor = Callable[[RecurrentCell, Tensor, State, "Tensor | None"], tuple[Tensor, State]]

EXECUTORS: MappingProxyType[str, Executor] = MappingProxyType({"loop": run_loop})


def executor_names() -> list[str]:
    """The names ``select_executor`` accepts."""
    return ["auto", *EXECUTORS]


def select_executor(name: str, cell: RecurrentCell) -> Executor:
    """The executor called ``name``; ``"auto"`` picks the fastest correct one for ``cell``.

    Only the reference loop exists so far, so ``auto`` chooses it for every cell.
    """
    if name == "auto":
        return run_loop
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(executor_names())}")
    return EXECUTORS[name]
