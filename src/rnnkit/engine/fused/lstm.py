r"""Fused BPTT for the LSTM cell and its variants (peepholes, coupled gates, projection).

Forward, with :math:`a_t = xp_t + W_{hh} h_{t-1} + b_{hh}` split into the gates' pre-activations
(``i, f, g, o``; ``i, g, o`` when coupled) and :math:`w_{c\cdot} = 0` without peepholes:

.. math::
    i = \sigma(a_i + w_{ci} c_{t-1}), \quad f = \sigma(a_f + w_{cf} c_{t-1}) \text{ or } 1 - i,
    \quad g = \tanh a_g, \quad c_t = f c_{t-1} + i g,
    \quad o = \sigma(a_o + w_{co} c_t), \quad m_t = o \tanh c_t, \quad h_t = W_{hr} m_t \text{ or } m_t.

Backward, from :math:`\partial h = \partial L/\partial y_t + \partial L/\partial h_t^{\text{from } t+1}`
and the carried :math:`\partial c`, with :math:`\partial m = \partial h\, W_{hr}` (or :math:`\partial h`):

.. math::
    \delta_o &= \partial m \tanh c_t \cdot o(1-o), \quad
    \partial c_t = \partial c + \partial m\, o (1 - \tanh^2 c_t) + \delta_o w_{co}, \\
    \delta_g &= \partial c_t\, i (1 - g^2), \quad
    \delta_i = \partial c_t\, (g - c_{t-1} [\text{coupled}])\, i (1 - i), \quad
    \delta_f = \partial c_t\, c_{t-1} f (1 - f), \\
    \partial c_{t-1} &= \partial c_t f + \delta_i w_{ci} + \delta_f w_{cf}, \quad
    \partial h_{t-1} = \delta_t W_{hh}, \quad \partial xp_t = \delta_t,

and after the loop, each one reduction over all steps: :math:`\partial W_{hh} = \sum_t \delta_t^\top
h_{t-1}`, :math:`\partial b_{hh} = \sum_t \delta_t`, :math:`\partial W_{hr} = \sum_t \partial h_t^\top
m_t`, :math:`\partial w_{ci} = \sum_t \delta_i c_{t-1}`, :math:`\partial w_{cf} = \sum_t \delta_f c_{t-1}`,
:math:`\partial w_{co} = \sum_t \delta_o c_t`. Where a sequence has finished (``alive`` 0) its
state passes through unchanged, so do the gradients of that state, and :math:`\delta_t = 0`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ...cells.lstm import LSTMCell
from . import extension

# weight_hh, bias_hh, weight_ci, weight_cf, weight_co, weight_hr: the kernel's parameter order
Params = tuple[Tensor, Tensor | None, Tensor | None, Tensor | None, Tensor | None, Tensor | None]


class Flags(NamedTuple):
    """The static options of the kernel; peepholes and projection show in the parameters."""

    coupled: bool


def flags(cell: LSTMCell) -> Flags:
    return Flags(coupled=cell.coupled)


def parameters(cell: LSTMCell) -> Params:
    return cell.weight_hh, cell.bias_hh, cell.weight_ci, cell.weight_cf, cell.weight_co, cell.weight_hr


def forward(flags: Flags, xp: Tensor, state: tuple[Tensor, Tensor], params: Params, alive: Tensor | None):
    ops = extension.ops()
    if ops is not None:
        outputs, h, c, *saved = ops.lstm_forward(xp, *state, *params, alive, flags.coupled)
        return outputs, (h, c), tuple(saved)
    return _forward(flags.coupled, xp, *state, *params, alive)


def backward(flags: Flags, saved: tuple[Tensor, ...], params: Params, alive: Tensor | None,
             grad_outputs: Tensor, grad_final: tuple[Tensor, Tensor]):
    ops = extension.ops()
    if ops is not None:
        grad_xp, grad_h0, grad_c0, *grad_params = ops.lstm_backward(
            *saved, *params, alive, grad_outputs, *grad_final, flags.coupled
        )
        # the C++ op returns an undefined tensor (None here) for every absent parameter
        return grad_xp, (grad_h0, grad_c0), tuple(grad_params)
    return _backward(flags.coupled, saved, params, alive, grad_outputs, *grad_final)


def _split(gates: Tensor, coupled: bool) -> tuple[Tensor | None, ...]:
    """The gates' views ``i, f, g, o`` of a ``(B, G·H)`` row; ``f`` is None when coupled."""
    if coupled:
        i, g, o = gates.chunk(3, dim=1)
        return i, None, g, o
    return gates.chunk(4, dim=1)


def _forward(coupled: bool, xp: Tensor, h: Tensor, c: Tensor, w_hh: Tensor, b_hh: Tensor | None,
             w_ci: Tensor | None, w_cf: Tensor | None, w_co: Tensor | None, w_hr: Tensor | None,
             alive: Tensor | None):
    steps, batch, _ = xp.shape
    gates = xp + b_hh if b_hh is not None else xp.clone()  # (T, B, G·H): each step's activations
    hs = xp.new_empty(steps + 1, batch, h.size(1))  # the state h before each step, and the last
    cs = xp.new_empty(steps + 1, batch, c.size(1))  # the cell state likewise
    ms = None if w_hr is None else xp.new_empty(steps, batch, c.size(1))  # o·tanh(c) before W_hr
    outputs = None if alive is None else xp.new_empty(steps, batch, h.size(1))
    hs[0], cs[0] = h, c
    for t in range(steps):
        a = gates[t].addmm_(hs[t], w_hh.t())
        i, f, g, o = _split(a, coupled)
        c_prev = cs[t]
        if w_ci is not None:
            i.addcmul_(w_ci, c_prev)
        i.sigmoid_()
        if f is None:
            f = 1 - i
        else:
            if w_cf is not None:
                f.addcmul_(w_cf, c_prev)
            f.sigmoid_()
        g.tanh_()
        c_new = torch.addcmul(f * c_prev, i, g)
        if w_co is not None:
            o.addcmul_(w_co, c_new)
        o.sigmoid_()
        m = o * c_new.tanh()
        if ms is not None:
            ms[t] = m
            m = m.mm(w_hr.t())
        if alive is None:
            cs[t + 1], hs[t + 1] = c_new, m
        else:
            keep = alive[t] > 0
            torch.where(keep, c_new, c_prev, out=cs[t + 1])
            torch.where(keep, m, hs[t], out=hs[t + 1])
            torch.mul(m, alive[t], out=outputs[t])
    if outputs is None:
        outputs = hs[1:]
    saved = (gates, hs, cs, xp.new_empty(0) if ms is None else ms)
    return outputs, (hs[steps].clone(), cs[steps].clone()), saved


def _backward(coupled: bool, saved: tuple[Tensor, ...], params: Params, alive: Tensor | None,
              grad_outputs: Tensor, grad_h: Tensor, grad_c: Tensor):
    gates, hs, cs, ms = saved  # ms is empty without a projection
    w_hh, b_hh, w_ci, w_cf, w_co, w_hr = params
    deltas = torch.empty_like(gates)  # (T, B, G·H)
    grad_ys = None if w_hr is None else torch.empty_like(grad_outputs)  # ∂L/∂h_t before W_hr
    for t in range(gates.size(0) - 1, -1, -1):
        grad_y = grad_outputs[t] + grad_h
        grad_c_in = grad_c
        if alive is not None:
            grad_y = grad_y * alive[t]
            grad_c_in = grad_c * alive[t]
        if grad_ys is not None:
            grad_ys[t] = grad_y
            grad_y = grad_y.mm(w_hr)
        i, f, g, o = _split(gates[t], coupled)
        c_prev, c_new = cs[t], cs[t + 1]
        tanh_c = c_new.tanh()
        d_i, d_f, d_g, d_o = _split(deltas[t], coupled)
        torch.mul(grad_y * tanh_c, o * (1 - o), out=d_o)
        dc = grad_c_in + grad_y * o * (1 - tanh_c * tanh_c)
        if w_co is not None:
            dc = dc.addcmul_(d_o, w_co)
        torch.mul(dc * i, 1 - g * g, out=d_g)
        if f is None:
            f = 1 - i
            torch.mul(dc * (g - c_prev), i * f, out=d_i)
        else:
            torch.mul(dc * g, i * (1 - i), out=d_i)
            torch.mul(dc * c_prev, f * (1 - f), out=d_f)
        dc = dc * f
        if w_ci is not None:
            dc.addcmul_(d_i, w_ci)
        if w_cf is not None:
            dc.addcmul_(d_f, w_cf)
        carried = deltas[t].mm(w_hh)
        if alive is None:
            grad_h, grad_c = carried, dc
        else:
            grad_h = carried.addcmul_(grad_h, 1 - alive[t])
            grad_c = dc.addcmul_(grad_c, 1 - alive[t])
    grad_w_hh = deltas.flatten(0, 1).t().mm(hs[:-1].flatten(0, 1))  # Σ_t δ_tᵀ h_{t-1}
    grad_b_hh = None if b_hh is None else deltas.sum((0, 1))
    grad_peepholes = [None, None, None]
    if w_ci is not None:
        d_i, d_f, _, d_o = _split(deltas.flatten(0, 1), coupled)
        c_prev, c_new = cs[:-1].flatten(0, 1), cs[1:].flatten(0, 1)
        grad_peepholes = [
            (d_i * c_prev).sum(0),
            None if d_f is None else (d_f * c_prev).sum(0),
            (d_o * c_new).sum(0),
        ]
    grad_w_hr = None if w_hr is None else grad_ys.flatten(0, 1).t().mm(ms.flatten(0, 1))  # Σ_t ∂h_tᵀ m_t
    return deltas, (grad_h, grad_c), (grad_w_hh, grad_b_hh, *grad_peepholes, grad_w_hr)
