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

import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State
from ..cells.lstm import LSTMCell
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

    ``auto`` decides at each call, from the input's device and whether lengths are given, with
    :func:`fastest_executor`.
    """
    if name == "auto":
        return run_auto
    if name not in EXECUTORS:
        raise ValueError(f"unknown executor {name!r}; choose one of {', '.join(executor_names())}")
    if not _SUPPORTS[name](cell):
        raise ValueError(f"the {name} executor cannot run {type(cell).__name__} ({cell.extra_repr()})")
    return EXECUTORS[name]


def run_auto(cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
    """Run ``cell`` with the fastest executor for it on ``x``'s device; same contract as ``loop``."""
    return fastest_executor(cell, x.device, lengths is not None)(cell, x, state, lengths)


def fastest_executor(cell: RecurrentCell, device: torch.device, with_lengths: bool) -> Executor:
    """The fastest correct executor for ``cell``, as measured (BENCHMARKS.md).

    torch.nn's kernels where they are exactly the cell and faster: on CUDA (cuDNN runs a whole
    layer in a few launches, where the fused loop launches kernels every step), and on CPU for
    the plain LSTM over full-length sequences, where oneDNN's LSTM beats the fused kernel by
    1.2-1.3x at every benchmarked size. Otherwise the fused kernel, which covers every built-in
    cell and beats ``scan`` at every length measured; the loop for cells without a kernel.
    """
    if native.supports(cell) and (device.type == "cuda" or _one_dnn_lstm(cell, with_lengths)):
        return native.run_native
    return fused.run_fused if fused.supports(cell) else run_loop


def _one_dnn_lstm(cell: RecurrentCell, with_lengths: bool) -> bool:
    """Whether torch's CPU LSTM runs ``cell`` on oneDNN: no projection (oneDNN has none in torch)
    and no packed sequences (torch's packed LSTM is its slower generic loop)."""
    return isinstance(cell, LSTMCell) and not cell.proj_size and not with_lengths
