r"""Fused BPTT for the GRU, with either placement of the reset gate, and for its mutants.

With :math:`xp_t = (x_r, x_z, x_n)` the input projection (biases ``b_i*`` included) and
:math:`W_{hh} = [W_{hr}; W_{hz}; W_{hn}]`, :math:`b_{hh} = [b_{hr}; b_{hz}; b_{hn}]`:

.. math::
    r = \sigma(x_r + W_{hr} h + b_{hr}), \quad z = \sigma(x_z + W_{hz} h + b_{hz}), \\
    n = \tanh(x_n + r \odot (W_{hn} h + b_{hn}))  \text{ (reset after) or }
    n = \tanh(x_n + W_{hn} (r \odot h) + b_{hn})  \text{ (reset before)}, \\
    h' = (1 - z) \odot n + z \odot h.

Backward of one step, with :math:`g = \partial L / \partial h'` and :math:`\delta_\cdot` the
gradient of a gate's pre-activation:

.. math::
    \delta_n = g (1 - z)(1 - n^2), \quad \delta_z = g (h - n) z (1 - z), \\
    \text{after: } \delta_{hn} = \delta_n r, \; \delta_r = \delta_n (W_{hn} h + b_{hn}) r (1 - r), \;
    \partial L/\partial h = g z + [\delta_r, \delta_z, \delta_{hn}] W_{hh}, \\
    \text{before: } \rho = \delta_n W_{hn}, \; \delta_r = \rho h r (1 - r), \;
    \partial L/\partial h = g z + \rho r + [\delta_r, \delta_z] [W_{hr}; W_{hz}].

The recurrent weights' gradients are one product over all steps after the loop: the stacked
deltas against :math:`h_{t-1}` (and :math:`r \odot h_{t-1}` for :math:`W_{hn}` before).

The reset-before recurrence is written generally enough to also run MUT1–3 (``mut.py``),
the GRU-like cells of Jozefowicz et al. (2015): they differ from it only in what the update
gate's recurrent product reads (``Variant.z_reads``: the state, its tanh, or nothing) and in
which side of the update z weighs (``Variant.z_takes_candidate``: :math:`h' = z n + (1 - z) h`).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ...cells.gru import GRUCell
from . import extension

Params = tuple[Tensor, Tensor | None]

# what the update gate's recurrent product reads, as the C++ kernels number it
Z_READS = {"state": 0, "nothing": 1, "tanh_state": 2}


class Variant(NamedTuple):
    """The static options of one GRU-shaped cell: the kernel family's ``flags``."""

    reset_after: bool  # r scales W_hn h + b_hn (torch, cuDNN) rather than h before W_hn
    z_reads: str = "state"  # the update gate's recurrent input: "state", "tanh_state" or "nothing"
    z_takes_candidate: bool = False  # h' = z n + (1 - z) h (the mutants) or (1 - z) n + z h (GRU)


def flags(cell: GRUCell) -> Variant:
    return Variant(reset_after=cell.reset_after)


def parameters(cell: GRUCell) -> Params:
    return cell.weight_hh, cell.bias_hh


def forward(variant: Variant, xp: Tensor, state: tuple[Tensor], params: Params, alive: Tensor | None):
    ops = extension.ops()
    if variant.reset_after:
        if ops is not None:
            outputs, h, hs, gates = ops.gru_forward(xp, state[0], *params, alive)
            return outputs, (h,), (hs, gates)
        return _forward_after(xp, state[0], *params, alive)
    z_reads, z_takes_candidate = Z_READS[variant.z_reads], variant.z_takes_candidate
    if ops is not None:
        outputs, h, *saved = ops.gru_reset_before_forward(xp, state[0], *params, alive, z_reads, z_takes_candidate)
        return outputs, (h,), tuple(saved)
    return _forward_before(z_reads, z_takes_candidate, xp, state[0], *params, alive)


def backward(variant: Variant, saved: tuple[Tensor, ...], params: Params, alive: Tensor | None,
             grad_outputs: Tensor, grad_final: tuple[Tensor]):
    ops = extension.ops()
    if variant.reset_after:
        if ops is not None:
            grad_xp, grad_h0, grad_w, grad_b = ops.gru_backward(*saved, *params, alive, grad_outputs, grad_final[0])
        else:
            grad_xp, grad_h0, grad_w, grad_b = _backward_after(*saved, *params, alive, grad_outputs, grad_final[0])
    else:
        z_reads, z_takes_candidate = Z_READS[variant.z_reads], variant.z_takes_candidate
        arguments = (*saved, *params, alive, grad_outputs, grad_final[0], z_reads, z_takes_candidate)
        if ops is not None:
            grad_xp, grad_h0, grad_w, grad_b = ops.gru_reset_before_backward(*arguments)
        else:
            grad_xp, grad_h0, grad_w, grad_b = _backward_before(*arguments)
    return grad_xp, (grad_h0,), (grad_w, grad_b if params[1] is not None else None)


def _forward_after(xp: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, alive: Tensor | None):
    steps, batch, hidden = xp.size(0), xp.size(1), xp.size(2) // 3
    hs = xp.new_empty(steps + 1, batch, hidden)  # the state before each step, and the last
    gates = xp.new_empty(steps, batch, 4 * hidden)  # r, z, n and W_hn h + b_hn of each step
    outputs = xp.new_empty(steps, batch, hidden)
    hs[0] = h
    for t in range(steps):
        hh = h.mm(w_hh.t()) if b_hh is None else torch.addmm(b_hh, h, w_hh.t())  # (B, 3H)
        x_r, x_z, x_n = xp[t].chunk(3, 1)
        h_r, h_z, h_n = hh.chunk(3, 1)
        r = torch.sigmoid(x_r + h_r)
        z = torch.sigmoid(x_z + h_z)
        n = torch.tanh(x_n + r * h_n)
        new = n + z * (h - n)
        gates[t] = torch.cat([r, z, n, h_n], 1)
        outputs[t] = new if alive is None else new * alive[t]
        h = new if alive is None else torch.where(alive[t] > 0, new, h)
        hs[t + 1] = h
    return outputs, (h,), (hs, gates)


def _backward_after(hs: Tensor, gates: Tensor, w_hh: Tensor, b_hh: Tensor | None, alive: Tensor | None,
                    grad_outputs: Tensor, grad_h: Tensor):
    steps, hidden = gates.size(0), gates.size(2) // 4
    grad_xp = gates.new_empty(steps, gates.size(1), 3 * hidden)  # δ_r, δ_z, δ_n
    grad_hh = torch.empty_like(grad_xp)  # δ_r, δ_z, δ_n ⊙ r: the gradient of h W_hhᵀ + b_hh
    for t in range(steps - 1, -1, -1):
        r, z, n, h_n = gates[t].chunk(4, 1)
        h = hs[t]
        g = grad_outputs[t] + grad_h
        if alive is not None:
            g = g * alive[t]
        delta_n = g * (1 - z) * (1 - n * n)
        delta_z = g * (h - n) * z * (1 - z)
        delta_r = delta_n * h_n * r * (1 - r)
        grad_xp[t] = torch.cat([delta_r, delta_z, delta_n], 1)
        grad_hh[t] = torch.cat([delta_r, delta_z, delta_n * r], 1)
        carried = torch.addmm(g * z, grad_hh[t], w_hh)
        grad_h = carried if alive is None else carried + grad_h * (1 - alive[t])
    grad_w = grad_hh.flatten(0, 1).t().mm(hs[:-1].flatten(0, 1))  # Σ_t δ_tᵀ h_{t-1}
    return grad_xp, grad_h, grad_w, grad_hh.sum((0, 1))


def _recurrent_blocks(w_hh: Tensor, z_reads: int) -> tuple[Tensor, Tensor | None, Tensor]:
    """``W_hr``, ``W_hz`` (None where z reads nothing) and ``W_hn``, views of ``weight_hh``."""
    hidden = w_hh.size(1)
    blocks = w_hh.split(hidden)
    return (blocks[0], None, blocks[1]) if z_reads == Z_READS["nothing"] else blocks


def _forward_before(z_reads: int, z_takes_candidate: bool, xp: Tensor, h: Tensor, w_hh: Tensor,
                    b_hh: Tensor | None, alive: Tensor | None):
    steps, batch, hidden = xp.size(0), xp.size(1), xp.size(2) // 3
    w_r, w_z, w_n = _recurrent_blocks(w_hh, z_reads)
    if b_hh is not None:
        xp = xp + b_hh  # every hidden bias is added outside the products here
    hs = xp.new_empty(steps + 1, batch, hidden)  # the state before each step, and the last
    gates = xp.new_empty(steps, batch, 3 * hidden)  # r, z, n of each step
    reset = xp.new_empty(steps, batch, hidden)  # r ⊙ h_{t-1}: W_hn's operand
    squashes = z_reads == Z_READS["tanh_state"]
    squashed = xp.new_empty(steps if squashes else 0, batch, hidden)  # tanh h_{t-1}, where z reads it
    outputs = xp.new_empty(steps, batch, hidden)
    hs[0] = h
    for t in range(steps):
        x_r, x_z, x_n = xp[t].chunk(3, 1)
        r = torch.sigmoid(torch.addmm(x_r, h, w_r.t()))
        if z_reads == Z_READS["state"]:
            x_z = torch.addmm(x_z, h, w_z.t())
        elif squashes:
            squashed[t] = torch.tanh(h)
            x_z = torch.addmm(x_z, squashed[t], w_z.t())
        z = torch.sigmoid(x_z)
        reset[t] = r * h
        n = torch.tanh(torch.addmm(x_n, reset[t], w_n.t()))
        new = n + z * (h - n) if not z_takes_candidate else h + z * (n - h)
        gates[t] = torch.cat([r, z, n], 1)
        outputs[t] = new if alive is None else new * alive[t]
        h = new if alive is None else torch.where(alive[t] > 0, new, h)
        hs[t + 1] = h
    return outputs, (h,), (hs, gates, reset, squashed)


def _backward_before(hs: Tensor, gates: Tensor, reset: Tensor, squashed: Tensor, w_hh: Tensor,
                     b_hh: Tensor | None, alive: Tensor | None, grad_outputs: Tensor, grad_h: Tensor,
                     z_reads: int, z_takes_candidate: bool):
    steps, hidden = gates.size(0), gates.size(2) // 3
    w_r, w_z, w_n = _recurrent_blocks(w_hh, z_reads)
    grad_xp = torch.empty_like(gates)  # δ_r, δ_z, δ_n: also the gradient of the hidden biases
    for t in range(steps - 1, -1, -1):
        r, z, n = gates[t].chunk(3, 1)
        h = hs[t]
        g = grad_outputs[t] + grad_h
        if alive is not None:
            g = g * alive[t]
        if z_takes_candidate:  # h' = z n + (1 - z) h
            delta_n, delta_z, carried = g * z * (1 - n * n), g * (n - h) * z * (1 - z), g * (1 - z)
        else:  # h' = (1 - z) n + z h
            delta_n, delta_z, carried = g * (1 - z) * (1 - n * n), g * (h - n) * z * (1 - z), g * z
        through_reset = delta_n.mm(w_n)  # ∂L/∂(r ⊙ h)
        delta_r = through_reset * h * r * (1 - r)
        carried = carried + through_reset * r + delta_r.mm(w_r)
        if z_reads == Z_READS["state"]:
            carried = carried + delta_z.mm(w_z)
        elif z_reads == Z_READS["tanh_state"]:
            carried = carried + delta_z.mm(w_z) * (1 - squashed[t] * squashed[t])
        grad_xp[t] = torch.cat([delta_r, delta_z, delta_n], 1)
        grad_h = carried if alive is None else carried + grad_h * (1 - alive[t])
    deltas = grad_xp.flatten(0, 1)  # (T·B, 3H)
    previous = hs[:-1].flatten(0, 1)
    delta_r, delta_z, delta_n = deltas.split(hidden, 1)
    grads = [delta_r.t().mm(previous)]  # Σ_t δ_rᵀ h_{t-1}
    if z_reads != Z_READS["nothing"]:
        grads.append(delta_z.t().mm(previous if z_reads == Z_READS["state"] else squashed.flatten(0, 1)))
    grads.append(delta_n.t().mm(reset.flatten(0, 1)))  # Σ_t δ_nᵀ (r ⊙ h_{t-1})
    return grad_xp, grad_h, torch.cat(grads), grad_xp.sum((0, 1))
