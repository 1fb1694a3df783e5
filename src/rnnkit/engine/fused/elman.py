r"""Fused BPTT for the Elman cell: :math:`h_t = \phi(xp_t + W_{hh} h_{t-1} + b_{hh})`.

Backward, with :math:`\delta_t = \partial L / \partial (\text{pre-activation at } t)`:

.. math::
    \delta_t = (\partial L/\partial y_t + \partial L/\partial h_t^{\text{from } t+1}) \odot \phi'(h_t),
    \quad \partial L/\partial h_{t-1} = \delta_t W_{hh},
    \quad \partial L/\partial W_{hh} = \sum_t \delta_t^\top h_{t-1},
    \quad \partial L/\partial xp_t = \delta_t.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...cells.elman import ElmanCell
from . import extension

Params = tuple[Tensor, Tensor | None]


def flags(cell: ElmanCell) -> bool:
    """True for relu, False for tanh."""
    return cell.nonlinearity == "relu"


def parameters(cell: ElmanCell) -> Params:
    return cell.weight_hh, cell.bias_hh


def forward(relu: bool, xp: Tensor, state: tuple[Tensor], params: Params, alive: Tensor | None):
    ops = extension.ops()
    if ops is not None:
        outputs, h, hs, ys = ops.elman_forward(xp, state[0], *params, alive, relu)
        return outputs, (h,), (hs, ys)
    return _forward(relu, xp, state[0], *params, alive)


def backward(relu: bool, saved: tuple[Tensor, ...], params: Params, alive: Tensor | None,
             grad_outputs: Tensor, grad_final: tuple[Tensor]):
    ops = extension.ops()
    if ops is not None:
        grad_xp, grad_h0, grad_w, grad_b = ops.elman_backward(*saved, *params, alive, grad_outputs, grad_final[0], relu)
        return grad_xp, (grad_h0,), (grad_w, grad_b if params[1] is not None else None)
    return _backward(relu, *saved, *params, alive, grad_outputs, grad_final[0])


def _forward(relu: bool, xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, alive: Tensor | None):
    steps, batch, hidden = xp.shape
    if b_hh is not None:
        xp = xp + b_hh
    hs = xp.new_empty(steps + 1, batch, hidden)  # the state before each step, and the last
    ys = torch.empty_like(xp)  # the activation of each step, before masking
    hs[0] = h
    for t in range(steps):
        y = torch.addmm(xp[t], h, w_hh.t())
        y = y.relu_() if relu else y.tanh_()
        ys[t] = y
        h = y if alive is None else torch.where(alive[t] > 0, y, h)
        hs[t + 1] = h
    outputs = ys if alive is None else ys * alive
    return outputs, (h,), (hs, ys)


def _backward(relu: bool, hs: Tensor, ys: Tensor, w_hh: Tensor, b_hh: Tensor | None,
              alive: Tensor | None, grad_outputs: Tensor, grad_h: Tensor):
    deltas = torch.empty_like(ys)  # (T, B, H)
    for t in range(ys.size(0) - 1, -1, -1):
        grad_y = grad_outputs[t] + grad_h
        if alive is not None:
            grad_y = grad_y * alive[t]
        delta = grad_y * (ys[t] > 0) if relu else grad_y * (1 - ys[t] * ys[t])
        deltas[t] = delta
        carried = torch.mm(delta, w_hh)
        grad_h = carried if alive is None else carried + grad_h * (1 - alive[t])
    grad_w = deltas.flatten(0, 1).t().mm(hs[:-1].flatten(0, 1))  # Σ_t δ_tᵀ h_{t-1}
    grad_b = None if b_hh is None else deltas.sum((0, 1))
    return deltas, (grad_h,), (grad_w, grad_b)
