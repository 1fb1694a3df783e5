r"""Gradient flow through time: how much of the loss's gradient reaches each step's state.

For one layer's states :math:`s_0, \dots, s_T` (:math:`s_0` the initial state, :math:`s_t` the
state after step t; for a cell with several state tensors, such as the LSTM's :math:`(h, c)`,
:math:`s_t` is their concatenation, the whole of what step t+1 reads) and a scalar loss L,
:func:`gradient_flow` measures

- :math:`\| \partial L / \partial s_k \|` for every k = 0..T (the Frobenius norm over the batch);
  with the loss at the last step only this is the back-propagated signal
  :math:`\| (\prod_{i=k+1}^{T} J_i)^\top \partial L / \partial s_T \|`, the quantity that
  vanishes or explodes;
- :math:`\| \prod_{i=T-\ell+1}^{T} J_i \|_2` for every lag :math:`\ell = T - k = 1..T`, with
  :math:`J_i = \partial s_i / \partial s_{i-1}` the Jacobian of one step (per example; the
  operator 2-norm, averaged over the examples measured);
- the lectures' bound :math:`(\lambda_W \lambda_\phi)^{\ell}` from the layer's state block
  (:mod:`rnnkit.diagnostics.spectra`).

The states come from the reference ``loop`` executor: :func:`recording` runs the layer's cell
wrapped in a :class:`StateRecorder`, which adds a zero leaf to the state entering each step so
that every state is a node of the autograd graph, even the initial one that nothing computed.

Example:
    >>> rnn = Recurrent("elman", 2, 8)
    >>> with recording(rnn) as recorder:
    ...     output, _ = rnn(torch.randn(20, 4, 2))
    ...     flow = gradient_flow(recorder, output[-1].pow(2).sum())
    >>> flow.state_gradient_norms.shape, flow.jacobian_norms.shape   # (T + 1,), (T,)
    ((21,), (20,))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..cells.base import RecurrentCell, State
from ..engine.loop import run_loop
from ..engine.threads import torch_threads
from ..layers import Recurrent
from .spectra import SINGLE_THREAD, spectrum, state_block


class StateRecorder(RecurrentCell):
    """A cell that steps as ``cell`` does and keeps every state for autograd.

    ``inputs[t]`` is step t's input projection, ``entering[t]`` the state it reads (``s_t`` in the module docstring's numbering,
    t = 0..T-1), ``leaving[t]`` the state it returns (``s_{t+1}``); both are tuples of
    ``(B, size)`` tensors in the graph of whatever loss the outputs reach.
    """

    def __init__(self, cell: RecurrentCell) -> None:
        super().__init__(cell.input_size, cell.hidden_size)
        self.cell = cell
        self.inputs: list[Tensor] = []  # xp_t, (B, G)
        self.entering: list[State] = []
        self.leaving: list[State] = []

    @property
    def output_size(self) -> int:
        return self.cell.output_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        return self.cell.state_sizes

    def input_projection(self, x: Tensor) -> Tensor:
        return self.cell.input_projection(x)

    def init_state(self, batch: int, device: torch.device, dtype: torch.dtype) -> State:
        return self.cell.init_state(batch, device, dtype)

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        # s + 0 with a zero leaf: a graph node even when s does not require grad (the initial
        # state); d(s + 0)/ds is the identity, so gradients and Jacobians are unchanged.
        state = tuple(s + torch.zeros_like(s, requires_grad=True) for s in state)
        output, new_state = self.cell.step(xp_t, state, t)
        self.inputs.append(xp_t)
        self.entering.append(state)
        self.leaving.append(new_state)
        return output, new_state

    def states(self) -> list[State]:
        """``s_0 .. s_T``: the initial state, then the state each step returned.

        From step 1 on, the returned state rather than the next step's copy of it: the cell's
        output is (part of) the returned state, so its gradient has the path through the
        output as well as the path through the next step.
        """
        return [self.entering[0], *self.leaving]


@contextmanager
def recording(rnn: Recurrent, layer: int = 0) -> Iterator[StateRecorder]:
    """Within the block, ``rnn``'s cell ``layer`` (index into ``rnn.cells``: ``layer *
    num_directions + direction``) runs on the ``loop`` executor through a :class:`StateRecorder`,
    which the block receives; the layer's own executor is restored on exit."""
    if not 0 <= layer < len(rnn.cells):
        raise ValueError(f"layer must be in [0, {len(rnn.cells)}), got {layer}")
    recorder = StateRecorder(rnn.cells[layer])

    def run_recorded(cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None) -> tuple[Tensor, State]:
        return run_loop(recorder, x, state, lengths)

    saved = rnn.executors[layer]
    rnn.executors[layer] = run_recorded
    try:
        yield recorder
    finally:
        rnn.executors[layer] = saved


@dataclass(frozen=True)
class GradientFlow:
    """What :func:`gradient_flow` measured for one layer and one loss (module docstring)."""

    state_gradient_norms: np.ndarray  # (T + 1,): ||dL/ds_k|| for k = 0..T
    jacobian_norms: np.ndarray  # (T,): entry l - 1 is ||J_T ... J_{T-l+1}||_2 for lag l = 1..T
    block: str  # the state block the bound is drawn from ("hh", "g", "n")
    largest_singular_value: float  # lambda_W of that block
    derivative_bound: float  # lambda_phi of that block

    @property
    def lags(self) -> np.ndarray:
        """``T - k`` for k = 0..T, the abscissa of ``state_gradient_norms``: (T + 1,)."""
        return np.arange(len(self.state_gradient_norms))[::-1].copy()

    @property
    def bound(self) -> np.ndarray:
        """``(lambda_W * lambda_phi) ** lag`` for lag = 1..T: (T,)."""
        return (self.largest_singular_value * self.derivative_bound) ** np.arange(1, len(self.jacobian_norms) + 1)

    @property
    def gradient_ratio(self) -> float:
        """``||dL/ds_0|| / ||dL/ds_T||``: what reaches the first step, relative to the last."""
        return float(self.state_gradient_norms[0] / self.state_gradient_norms[-1])


def gradient_flow(recorder: StateRecorder, loss: Tensor, examples: int = 4) -> GradientFlow:
    """Measure the gradient flow of ``loss`` through the states ``recorder`` kept.

    ``examples``: the Jacobian products are measured on the batch's first ``examples`` examples
    (each costs S vector-Jacobian products per step and an SVD of an S×S matrix per lag, S the
    state size); the state gradients use the whole batch. The graph is kept (``retain_graph``).
    """
    states = recorder.states()
    if not states[0]:
        raise ValueError("the recorder holds no states: run the layer inside recording() first")
    flat = [s for state in states for s in state]
    grads = torch.autograd.grad(loss, flat, retain_graph=True, allow_unused=True, materialize_grads=True)
    per_state = len(states[0])
    squares = torch.stack([g.detach().double().pow(2).sum() for g in grads]).view(len(states), per_state)
    state_norms = squares.sum(1).sqrt().cpu().numpy()  # (T + 1,)
    block = state_block(recorder.cell)
    return GradientFlow(
        state_gradient_norms=state_norms,
        jacobian_norms=_jacobian_product_norms(recorder, examples),
        block=block.name,
        largest_singular_value=spectrum(block.matrix).largest_singular_value,
        derivative_bound=block.derivative_bound,
    )


def _jacobian_product_norms(recorder: StateRecorder, examples: int) -> np.ndarray:
    """``||J_T ... J_{T-l+1}||_2`` for l = 1..T, averaged over the first ``examples`` examples.

    The product is accumulated from the last step backwards in float64, so that only one S×S
    matrix per example is held.
    """
    product = None  # (E, S, S): J_T ... J_i
    norms = []
    for t in reversed(range(len(recorder.entering))):
        xp_t = recorder.inputs[t][:examples].detach()  # (E, G)
        state = tuple(s[:examples].detach() for s in recorder.entering[t])  # (E, S_j) each
        jacobian = step_jacobian(recorder.cell, xp_t, state, t).double()  # (E, S, S)
        product = jacobian if product is None else product @ jacobian
        with torch_threads(SINGLE_THREAD):
            norms.append(torch.linalg.matrix_norm(product, ord=2).mean().item())
    return np.array(norms)


def step_jacobian(cell: RecurrentCell, xp_t: Tensor, state: State, t: int) -> Tensor:
    """``d s_{t+1} / d s_t`` of one step per example: ``(E, S, S)`` for ``xp_t`` ``(E, G)``.

    This steps the cell again, outside the engine, on purpose: the Jacobian of one transition
    needs the step as a function of the state, which no executor exposes, and ``jacrev``
    under ``vmap`` computes it for the few examples measured at a fraction of the cost of
    back-propagating S unit vectors through the whole batch's recorded graph.
    """
    sizes = [s.size(-1) for s in state]

    def transition(xp_b: Tensor, state_b: Tensor) -> Tensor:  # one example: (G,), (S,) -> (S,)
        _, new_state = cell.step(xp_b.unsqueeze(0), state_b.unsqueeze(0).split(sizes, dim=-1), t)
        return torch.cat(new_state, dim=-1).squeeze(0)

    jacobian = torch.func.vmap(torch.func.jacrev(transition, argnums=1))(xp_t, torch.cat(state, dim=-1))
    return jacobian.detach()  # a measurement: not part of any graph through the weights
