r"""Fused BPTT for the leaky-integrator cell.

Forward, with :math:`\alpha = \sigma(\text{alpha\_logit})` per unit:

.. math::
    v_t = \tanh(xp_t + W_{hh} \mu_{t-1} + b_{hh}), \quad
    \mu_t = \alpha \odot \mu_{t-1} + (1 - \alpha) \odot v_t,

with :math:`v_t = \tanh(xp_t)` when the cell has no recurrent matrix (``recurrent=False``).
Backward, with :math:`g_t = \partial L/\partial y_t + \partial L/\partial \mu_t^{\text{from } t+1}`
and :math:`\delta_t` the gradient at the pre-activation of :math:`v_t`:

.. math::
    \delta_t = g_t \odot (1 - \alpha) \odot (1 - v_t^2), \quad
    \partial L/\partial \mu_{t-1} = g_t \odot \alpha + \delta_t W_{hh}, \quad
    \partial L/\partial \alpha = \sum_t g_t \odot (\mu_{t-1} - v_t),

:math:`\partial L/\partial W_{hh} = \sum_t \delta_t^\top \mu_{t-1}`, :math:`\partial L/\partial xp_t
= \delta_t`, and through the sigmoid :math:`\partial L/\partial \text{alpha\_logit} =
\partial L/\partial \alpha \odot \alpha (1 - \alpha)`. A finished sequence (``alive`` 0) outputs 0
and keeps its state: its step passes :math:`\partial L/\partial \mu_t` to :math:`\mu_{t-1}`
unchanged and contributes nothing else.

Saved for the backward: ``(states, outputs, vs)``, where ``vs`` holds :math:`v_t`, or, without a
recurrent matrix, is ``xp`` itself, from which :math:`v_t = \tanh(xp_t)` is recomputed (cheaper
than a new (T, B, H) tensor); ``states`` is ``(T+1, B, H)``, the state before each step and the
last, when ``alive`` is given, and only :math:`\mu_0` as ``(1, B, H)`` otherwise, since then
:math:`\mu_t` is ``outputs[t]``. The C++ kernel (``csrc/leaky.cpp``) keeps the same tensors.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ...cells.leaky import LeakyCell
from . import extension

# (weight_hh, bias_hh, alpha_logit); the first two are None without a recurrent matrix
Params = tuple[Tensor | None, Tensor | None, Tensor]


def flags(cell: LeakyCell) -> bool:
    """Whether the cell has a recurrent matrix (the kernel reads it from the parameters)."""
    return cell.recurrent


def parameters(cell: LeakyCell) -> Params:
    # alpha_logit is a buffer unless learn_alpha: its gradient is then computed and dropped
    return cell.weight_hh, cell.bias_hh, cell.alpha_logit


def forward(recurrent: bool, xp: Tensor, state: tuple[Tensor], params: Params, alive: Tensor | None):
    ops = extension.ops()
    if ops is not None:
        outputs, mu, states, vs = ops.leaky_forward(xp, state[0], *params, alive)
        return outputs, (mu,), (states, outputs, vs if recurrent else xp)
    return _forward(xp, state[0], *params, alive)


def backward(recurrent: bool, saved: tuple[Tensor, ...], params: Params, alive: Tensor | None,
             grad_outputs: Tensor, grad_final: tuple[Tensor]):
    ops = extension.ops()
    if ops is None:
        return _backward(*saved, *params, alive, grad_outputs, grad_final[0])
    grad_xp, grad_mu0, *grad_params = ops.leaky_backward(*saved, *params, alive, grad_outputs, grad_final[0])
    return grad_xp, (grad_mu0,), tuple(g if p is not None else None for g, p in zip(grad_params, params))


def _forward(xp: Tensor, mu: Tensor, w_hh: Tensor | None, b_hh: Tensor | None, alpha_logit: Tensor,
             alive: Tensor | None):
    steps, batch, hidden = xp.shape
    alpha = torch.sigmoid(alpha_logit)
    leak = 1.0 - alpha
    if b_hh is not None:
        xp = xp + b_hh
    outputs = torch.empty_like(xp)
    vs = torch.tanh(xp) if w_hh is None else torch.empty_like(xp)  # (T, B, H): v_t
    saved_v = xp if w_hh is None else vs
    if alive is not None:
        states = xp.new_empty(steps + 1, batch, hidden)
        states[0] = mu
    else:
        states = mu.unsqueeze(0)
    for t in range(steps):
        if w_hh is not None:
            torch.addmm(xp[t], mu, w_hh.t(), out=vs[t]).tanh_()
        y = torch.add(alpha * mu, leak * vs[t], out=outputs[t])
        if alive is not None:
            mu = torch.where(alive[t] > 0, y, mu, out=states[t + 1])
            y.mul_(alive[t])  # a finished sequence outputs 0
        else:
            mu = y
    return outputs, (mu.clone(),), (states, outputs, saved_v)


def _backward(states: Tensor, outputs: Tensor, saved_v: Tensor, w_hh: Tensor | None, b_hh: Tensor | None,
              alpha_logit: Tensor, alive: Tensor | None, grad_outputs: Tensor, grad_mu: Tensor):
    vs = saved_v if w_hh is not None else torch.tanh(saved_v)
    alpha = torch.sigmoid(alpha_logit)
    leak = 1.0 - alpha
    # μ_{t-1} for every step: after the first it is the previous output when no sequence ends early
    before = states[:-1] if alive is not None else torch.cat([states, outputs[:-1]])
    deltas = torch.empty_like(vs)  # (T, B, H)
    grad_alpha = torch.zeros_like(alpha)
    for t in range(vs.size(0) - 1, -1, -1):
        grad_y = grad_outputs[t] + grad_mu
        if alive is not None:
            grad_y = grad_y * alive[t]
        v = vs[t]
        delta = torch.mul(grad_y * leak, 1 - v * v, out=deltas[t])
        grad_alpha += (grad_y * (before[t] - v)).sum(0)
        carried = grad_y * alpha
        if w_hh is not None:
            carried.addmm_(delta, w_hh)
        grad_mu = carried if alive is None else carried + grad_mu * (1 - alive[t])
    grad_w = None if w_hh is None else deltas.flatten(0, 1).t().mm(before.flatten(0, 1))
    grad_b = None if b_hh is None else deltas.sum((0, 1))
    return deltas, (grad_mu,), (grad_w, grad_b, grad_alpha * alpha * leak)
