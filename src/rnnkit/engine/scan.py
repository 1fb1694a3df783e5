r"""The scan executor: a linear recurrence over time as a parallel prefix scan, in log-depth.

A leaky cell without a recurrent matrix (``LeakyCell(recurrent=False)``) updates its state by
an affine map whose coefficients do not depend on the state:

.. math::
    \mu_t = a_t \odot \mu_{t-1} + b_t, \qquad a_t = \alpha, \quad b_t = (1 - \alpha) \odot \tanh(xp_t).

After its length a sequence keeps its state, which is the map :math:`a_t = 1, b_t = 0`: the
recurrence stays linear with lengths. Composing two steps gives another affine map,
:math:`(a_2, b_2) \circ (a_1, b_1) = (a_2 a_1, a_2 b_1 + b_2)`, an associative operation, so
every :math:`\mu_t` is a prefix "sum" of the maps, computed here by Blelloch's work-efficient
scheme over blocks of ``BLOCK`` steps: reduce each block to one map, scan the T/BLOCK block maps
recursively, then distribute the state before each block over its steps (with blocks of 2 it
is the odd–even recursion of ``jax.lax.associative_scan``). That is O(T) work in O(log T)
rounds of whole-tensor torch operations, each over all units, batch rows and all blocks of the
current level at once, instead of T small sequential steps. The products of many
:math:`\alpha`'s may underflow to 0 for long sequences, which is their correct value in floating
point; nothing is divided or exponentiated (no log-space cumulative sums), so nothing overflows
or cancels. Gradients come from autograd through these operations.

The scan trades the loop's T rounds of small operations for a few passes over (T, B, H) tensors:
it wins where the loop's per-step overhead dominates and loses ground where memory traffic
does (long sequences of wide layers); the fused kernel, one pass in C++, beats both (see
``benchmarks/scan.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State
from ..cells.leaky import LeakyCell
from .loop import alive_mask

# Steps composed one at a time within a block (vectorised over the blocks): 2 makes the classic
# odd-even recursion; larger blocks make fewer passes over memory, which is what bounds this
# scan on a CPU. 8 was fastest of 2, 4, 8 and 16 at B=16, H=256, T from 100 to 10,000.
BLOCK = 8


def supports(cell: RecurrentCell) -> bool:
    """Whether ``cell``'s recurrence is linear in its state: a leaky cell without ``W_hh``."""
    return isinstance(cell, LeakyCell) and not cell.recurrent


def run_scan(
    cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None
) -> tuple[Tensor, State]:
    """Run ``cell`` over ``x`` (T, B, I) by a parallel prefix scan; same contract as ``loop``."""
    (mu,) = state
    alpha = cell.alpha  # (H,)
    v = torch.tanh(cell.input_projection(x))  # (T, B, H)
    if lengths is None:
        a, b = alpha.expand(x.size(0), 1, -1), (1.0 - alpha) * v  # (T, 1, H): one decay for every row
    else:  # identity maps after a sequence's end
        alive = alive_mask(lengths, x.size(0)).unsqueeze(-1)  # (T, B, 1)
        a = torch.where(alive, alpha, torch.ones_like(alpha))  # (T, B, H)
        b = (1.0 - alpha) * v * alive
    states = _scan(a, b, mu)  # (T, B, H): mu_t for every t
    outputs = states if lengths is None else states * alive
    return outputs, (states[-1],)


def _scan(a: Tensor, b: Tensor, initial: Tensor) -> Tensor:
    """``h_t = a_t h_{t-1} + b_t`` for every ``t``, from ``h_{-1} = initial``.

    ``b`` is ``(T, B, H)``, ``a`` broadcasts to it and ``initial`` is ``(B, H)``. Reduce, scan,
    distribute: within each block of ``BLOCK`` steps the maps are composed one step at a time,
    vectorised over all blocks at once; the blocks' total maps are scanned recursively; then
    each block's steps are completed from the state before the block.
    """
    steps = b.size(0)
    a = a.expand(steps, *a.shape[1:])
    if steps <= BLOCK:
        states = [initial]
        for a_t, b_t in zip(a.unbind(0), b.unbind(0)):
            states.append(torch.addcmul(b_t, a_t, states[-1]))
        return torch.stack(states[1:])
    blocks = -(-steps // BLOCK)
    padding = blocks * BLOCK - steps
    if padding:  # identity maps at the end: a = 1, b = 0
        a = torch.cat([a, a.new_ones(padding, *a.shape[1:])])
        b = torch.cat([b, b.new_zeros(padding, *b.shape[1:])])
    a_steps = a.reshape(blocks, BLOCK, *a.shape[1:]).unbind(1)  # BLOCK × (blocks, 1 or B, H)
    b_steps = b.reshape(blocks, BLOCK, *b.shape[1:]).unbind(1)  # BLOCK × (blocks, B, H)
    # reduce: the map from the state before each block to each of its steps, (decay, offset)
    decays, offsets = [a_steps[0]], [b_steps[0]]
    for a_t, b_t in zip(a_steps[1:], b_steps[1:]):
        decays.append(a_t * decays[-1])
        offsets.append(torch.addcmul(b_t, a_t, offsets[-1]))
    # scan: the state after every block, then the state before every block
    after = _scan(decays[-1], offsets[-1], initial)  # (blocks, B, H)
    before = torch.cat([initial.unsqueeze(0), after[:-1]])
    # distribute
    states = [torch.addcmul(offset, decay, before) for decay, offset in zip(decays[:-1], offsets[:-1])]
    states = torch.stack([*states, after], dim=1).flatten(0, 1)  # (blocks * BLOCK, B, H)
    return states[:steps] if padding else states
