"""The fused executor: forward without autograd, backward by hand-derived BPTT.

The input projection of all steps is one GEMM under autograd; the recurrence itself runs inside
one ``torch.autograd.Function`` whose forward keeps what the backward needs, and whose backward
is the textbook back-propagation through time of the cell's family. Only the state-to-state
product is sequential; the recurrent weights' gradient is one GEMM over all steps at the end.

A family is a module in this package (``elman``, ``lstm``, ...) named by the cells' ``kernel``
attribute, providing:

- ``flags(cell)``: the static options the kernel needs, hashable (e.g. the nonlinearity);
- ``parameters(cell)``: the recurrent parameters, a tuple of tensors or None, in kernel order;
- ``forward(flags, xp, state, params, alive) -> (outputs, final_state, saved)``;
- ``backward(flags, saved, params, alive, grad_outputs, grad_final)
  -> (grad_xp, grad_state, grad_params)``, one gradient (or None) per state tensor and parameter.

``xp`` is ``(T, B, G)``, ``state`` a tuple of ``(B, ·)`` tensors, and ``alive`` is None or a
``(T, B, 1)`` tensor of xp's dtype: 1 while step t lies inside sequence b, 0 after, where the state
stops changing and the output is 0. A family runs its time loop in C++ (``rnnkit.engine.csrc``,
see ``extension.py``) when the extension is built, else in Python; both are the same equations.
"""

from __future__ import annotations

from types import MappingProxyType, ModuleType
from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ...cells.base import RecurrentCell, State
from ..loop import alive_mask
from . import elman, gru, leaky, lstm, mut

# kernel family (a cell's ``kernel``) -> the module of this package that implements it
FAMILIES: MappingProxyType[str, ModuleType] = MappingProxyType(
    {"elman": elman, "lstm": lstm, "gru": gru, "mut1": mut, "mut2": mut, "mut3": mut, "leaky": leaky}
)


def family(kernel: str | None) -> ModuleType | None:
    """The module implementing ``kernel``, or None for cells without a kernel family."""
    return FAMILIES.get(kernel) if kernel is not None else None


def supports(cell: RecurrentCell) -> bool:
    """Whether a fused kernel implements ``cell``."""
    return family(cell.kernel) is not None


def run_fused(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, I) with its family's fused kernel; same contract as ``loop``."""
    kernel = family(cell.kernel)
    xp = cell.input_projection(x)  # (T, B, G): one GEMM, under autograd
    alive = None if lengths is None else alive_mask(lengths, xp.size(0)).unsqueeze(-1).to(xp.dtype)
    outputs, *final = FusedRecurrence.apply(
        kernel, kernel.flags(cell), alive, len(state), xp, *state, *kernel.parameters(cell)
    )
    return outputs, tuple(final)


class FusedRecurrence(torch.autograd.Function):
    """Autograd node of a whole recurrence: ``(xp, *state, *params) -> (outputs, *final_state)``."""

    @staticmethod
    def forward(ctx: Any, family: ModuleType, flags: Any, alive: Tensor | None, n_state: int,
                xp: Tensor, *tensors: Tensor | None) -> tuple[Tensor, ...]:
        state, params = tuple(tensors[:n_state]), tuple(tensors[n_state:])
        outputs, final, saved = family.forward(flags, xp, state, params, alive)
        ctx.family, ctx.flags, ctx.alive, ctx.n_state, ctx.n_params = family, flags, alive, n_state, len(params)
        ctx.save_for_backward(*(p if p is not None else torch.empty(0) for p in params), *saved)
        ctx.absent = tuple(p is None for p in params)
        return (outputs, *final)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_outputs: Tensor, *grad_final: Tensor) -> tuple[Tensor | None, ...]:
        tensors = ctx.saved_tensors
        params = tuple(None if absent else p for p, absent in zip(tensors[: ctx.n_params], ctx.absent))
        saved = tensors[ctx.n_params :]
        grad_xp, grad_state, grad_params = ctx.family.backward(
            ctx.flags, saved, params, ctx.alive, grad_outputs.contiguous(), tuple(g.contiguous() for g in grad_final)
        )
        return (None, None, None, None, grad_xp, *grad_state, *grad_params)
