"""Executors: the only code in rnnkit that loops over time.

An executor runs a cell over a whole sequence: ``executor(cell, x, state, lengths) ->
(outputs, final_state)`` where ``x`` is the layer's input ``(T, B, I)``. ``loop`` and ``fused``
start with the input projection of all steps as one GEMM; ``native`` hands the whole layer to
torch.nn's own kernels; ``scan`` computes recurrences that are linear in the state (leaky units
without a recurrent matrix) by a parallel prefix scan. Every executor must agree with ``loop``, the reference, in outputs, final
states and gradients.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType

from torch import Tensor

from ..cells.base import RecurrentCell, State
from . import fused, native, scan
from .loop import run_loop

Executor = Callable[[RecurrentCell, Tensor, State, "Tensor | None"], tuple[Tensor, State]]

EXECUTORS: MappingProxyType[str, Executor] = MappingProxyType(
    {"loop": run_loop, "fused": fused.run_fused, "native": native.run_native, "scan": scan.run_scan}
)


def _runs_any_cell(cell: RecurrentCell) -> bool:
    return True


_SUPPORTS: MappingProxyType[str, Callable[[RecurrentCell], bool]] = MappingProxyType(
    {"loop": _runs_any_cell, "fused": fused.supports, "native": native.supports, "scan": scan.supports}
)


def executor_names() -> list[str]:
    """The names ``select_executor`` accepts."""
    return ["auto", *EXECUTORS]


def select_executor(name: str, cell: RecurrentCell) -> Executor:
    """The executor called ``name`` for ``cell``; ``"auto"`` picks the fastest correct one.

    ``auto`` prefers the fused kernel, which covers every built-in cell (and beats ``scan`` at
    every length measured, see BENCHMARKS.md), and falls back to the reference loop for cells
    without one.
    """
    if name == "auto":
        return fused.run_fused if fused.supports(cell) else run_loop
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(executor_names())}")
    if not _SUPPORTS[name](cell):
        raise ValueError(f"the {name} executor cannot run {type(cell).__name__} ({cell.extra_repr()})")
    return EXECUTORS[name]
