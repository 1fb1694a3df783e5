r"""Fused BPTT for the Elman cell: :math:`h_t = \phi(xp_t + W_{hh} h_{t-1} + b_{hh})`.

Backward, with :math:`\delta_t = \partial L / \partial (\text{pre-activation at } t)`:

.. math::
    \delta_t = (\partial L/\partial y_t + \partial L/\partial h_t^{\text{from } t+1}) \odot \phi'(h_t),
    \quad \partial L/\partial h_{t-1} = \delta_t W_{hh},
    \quad \partial L/\partial W_{hh} = \sum_t \delta_t^\top h_{t-1},
    \quad \partial L/\partial xp_t = \delta_t.

A finished sequence (``alive`` 0) outputs 0 and keeps its state: its step passes
:math:`\partial L/\partial h_t` to :math:`h_{t-1}` unchanged and has :math:`\delta_t = 0`.

Saved for the backward: ``(states, outputs)``. ``outputs`` are the activations, 0 where a sequence
has finished (where :math:`\delta_t` is 0 whatever they hold); ``states`` is ``(T+1, B, H)``, the
state before each step and the last, when ``alive`` is given, and only :math:`h_0` as
``(1, B, H)`` otherwise, since then :math:`h_t` is ``outputs[t]``. The C++ kernel
(``csrc/elman.cpp``) keeps the same tensors.
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
        outputs, h, states = ops.elman_forward(xp, state[0], *params, alive, relu)
        return outputs, (h,), (states, outputs)
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
    outputs = torch.empty_like(xp)
    if alive is not None:
        states = xp.new_empty(steps + 1, batch, hidden)
        states[0] = h
    else:
        states = h.unsqueeze(0)
    for t in range(steps):
        y = torch.addmm(xp[t], h, w_hh.t(), out=outputs[t])
        y = y.relu_() if relu else y.tanh_()
        if alive is not None:
            h = torch.where(alive[t] > 0, y, h, out=states[t + 1])
            y.mul_(alive[t])  # a finished sequence outputs 0
        else:
            h = y
    return outputs, (h.clone(),), (states, outputs)


def _backward(relu: bool, states: Tensor, outputs: Tensor, w_hh: Tensor, b_hh: Tensor | None,
              alive: Tensor | None, grad_outputs: Tensor, grad_h: Tensor):
    deltas = torch.empty_like(outputs)  # (T, B, H)
    for t in range(outputs.size(0) - 1, -1, -1):
        grad_y = grad_outputs[t] + grad_h
        if alive is not None:
            grad_y = grad_y * alive[t]
        y = outputs[t]
        delta = grad_y * (y > 0) if relu else grad_y * (1 - y * y)
        deltas[t] = delta
        carried = torch.mm(delta, w_hh)
        grad_h = carried if alive is None else carried + grad_h * (1 - alive[t])
    # Σ_t δ_tᵀ h_{t-1}, with h_{t-1} = outputs[t-1] after the first step when no sequence ends early
    before = states[:-1] if alive is not None else torch.cat([states, outputs[:-1]])
    grad_w = deltas.flatten(0, 1).t().mm(before.flatten(0, 1))
    grad_b = None if b_hh is None else deltas.sum((0, 1))
    return deltas, (grad_h,), (grad_w, grad_b)
