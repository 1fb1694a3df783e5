r"""Spectra of recurrent matrices: eigenvalues, spectral radius and largest singular value.

The lectures' picture of vanishing and exploding gradients: in an Elman network
:math:`h_t = \phi(W x_t + U h_{t-1} + b)` the Jacobian of one step is
:math:`\partial h_t / \partial h_{t-1} = \mathrm{diag}(\phi'(a_t))\, U`, so that

.. math::
    \Big\| \prod_{i=k+1}^{t} \frac{\partial h_i}{\partial h_{i-1}} \Big\|_2
    \le (\lambda_U \lambda_\phi)^{t-k},

with :math:`\lambda_U = \sigma_{\max}(U)` the largest singular value of the recurrent matrix and
:math:`\lambda_\phi = \sup |\phi'|` the bound on the activation's derivative (1 for tanh and
relu, 1/4 for the logistic sigmoid). Below 1 the product vanishes exponentially with the lag;
the spectral radius :math:`\rho(U) = \max_j |\mu_j|` (:math:`\mu_j` the eigenvalues) above 1 is
necessary for it to explode (Pascanu, Mikolov & Bengio 2013, "On the difficulty of training
recurrent neural networks").

A gated cell stacks one recurrent matrix per gate in ``weight_hh`` (torch's order: LSTM
``i, f, g, o``, GRU ``r, z, n``); :func:`recurrent_blocks` splits it into square blocks, each
with the derivative bound of the activation that reads it. The *state block* is the one that
plays the Elman matrix's role — the tanh candidate (LSTM ``g``, GRU and MUT ``n``), or the whole
``weight_hh`` of a single-matrix cell; the bound above is drawn from it. For a gated cell it is a
reference, not a bound: the additive path (LSTM's :math:`f_t \odot c_{t-1}`, GRU's
:math:`z_t \odot h_{t-1}`) lets gradients bypass the matrix altogether.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from ..cells import GRUCell, LSTMCell, MUT1Cell, MUT2Cell, MUT3Cell
from ..cells.base import RecurrentCell
from ..engine.threads import torch_threads
from ..errors import RnnkitError
from ..layers import Recurrent

TANH_BOUND = 1.0  # sup |tanh'| = tanh'(0) = 1; relu's derivative is 1 too
SIGMOID_BOUND = 0.25  # sup |sigma'| = sigma'(0) = 1/4


@dataclass(frozen=True)
class RecurrentBlock:
    """One square recurrent matrix of a cell and the bound on its activation's derivative."""

    name: str  # the gate ("i", "f", "g", "o", "r", "z", "n") or "hh" for a single-matrix cell
    matrix: Tensor  # (H, H), detached
    derivative_bound: float  # lambda_phi: TANH_BOUND or SIGMOID_BOUND


@dataclass(frozen=True)
class Spectrum:
    """The eigenvalues of a square matrix and the two numbers that summarise them."""

    eigenvalues: np.ndarray  # (H,) complex128
    spectral_radius: float  # max_j |mu_j|
    largest_singular_value: float  # sigma_max, the operator 2-norm


# The small dense decompositions here (H up to a few hundred) run on one thread: as fast as on
# many on an idle machine, and on a busy one MKL's threaded eigensolver was measured 100-300x
# slower (3.5 s instead of 12 ms for a 256×256 ``eigvals`` on two shared cores).
SINGLE_THREAD = 1


def spectrum(matrix: Tensor) -> Spectrum:
    """Eigenvalues (``torch.linalg.eigvals``), spectral radius and largest singular value."""
    matrix = matrix.detach()
    with torch_threads(SINGLE_THREAD):
        eigenvalues = torch.linalg.eigvals(matrix)  # (H,) complex
        largest = torch.linalg.matrix_norm(matrix, ord=2).item()
    return Spectrum(
        eigenvalues=eigenvalues.cpu().numpy().astype(np.complex128),
        spectral_radius=eigenvalues.abs().max().item(),
        largest_singular_value=largest,
    )


def _gates(cell: RecurrentCell) -> tuple[tuple[str, float], ...]:
    """The blocks of ``cell.weight_hh`` in stacking order, each with its derivative bound."""
    sigmoid, tanh = SIGMOID_BOUND, TANH_BOUND
    if isinstance(cell, LSTMCell):
        gates = "igo" if cell.coupled else "ifgo"
        return tuple((gate, tanh if gate == "g" else sigmoid) for gate in gates)
    if isinstance(cell, MUT1Cell):  # weight_hh = [W_hr; W_hh]
        return (("r", sigmoid), ("n", tanh))
    if isinstance(cell, (GRUCell, MUT2Cell, MUT3Cell)):
        return (("r", sigmoid), ("z", sigmoid), ("n", tanh))
    return (("hh", tanh),)  # Elman, leaky, skip, clockwork: one matrix under tanh or relu


def recurrent_blocks(cell: RecurrentCell) -> list[RecurrentBlock]:
    """``cell``'s recurrent matrices, one square ``(H, H)`` block per gate (module docstring).

    A clockwork cell's matrix is masked as its step masks it; an LSTM with a projection reads
    :math:`W_{hr} h` through each gate, so its blocks are :math:`W_{h\\cdot} W_{hr}`.
    Raises RnnkitError for a cell without a recurrent matrix ``weight_hh``.
    """
    weight = getattr(cell, "weight_hh", None)
    if not isinstance(weight, nn.Parameter):
        raise RnnkitError(f"expected a cell with a recurrent matrix weight_hh, got {type(cell).__name__} without one")
    matrix = weight.detach()
    mask = getattr(cell, "weight_hh_mask", None)
    if mask is not None:
        matrix = matrix * mask
    projection = getattr(cell, "weight_hr", None)
    if projection is not None:
        matrix = matrix @ projection.detach()  # (G*H, P) @ (P, H) -> (G*H, H)
    gates = _gates(cell)
    blocks = matrix.chunk(len(gates), dim=0)
    if any(block.shape[0] != block.shape[1] for block in blocks):
        raise RnnkitError(
            f"expected weight_hh of {type(cell).__name__} to stack {len(gates)} square blocks, "
            f"got shape {tuple(weight.shape)}"
        )
    return [RecurrentBlock(name, block, bound) for (name, bound), block in zip(gates, blocks)]


def state_block(cell: RecurrentCell) -> RecurrentBlock:
    """The block in the Elman matrix's role: the tanh candidate's, or the only one."""
    blocks = recurrent_blocks(cell)
    return next(block for block in reversed(blocks) if block.derivative_bound == TANH_BOUND)


def spectral_radii(model: nn.Module) -> dict[str, float]:
    """The state block's spectral radius of every cell of every ``Recurrent`` in ``model``.

    Keys name the stack's path in the model and the layer as torch.nn names parameters:
    ``spectral_radius_rnn_l0``, ``spectral_radius_encoder_l1_reverse``. Cells without a
    recurrent matrix (a leaky unit with ``recurrent=False``, deep transitions) are left out.
    One ``eigvals`` of an H×H matrix per cell: cheap enough for every validation.
    """
    radii = {}
    for path, module in model.named_modules():
        if not isinstance(module, Recurrent):
            continue
        prefix = "spectral_radius" + (f"_{path.replace('.', '_')}" if path else "")
        for index, cell in enumerate(module.cells):
            try:
                block = state_block(cell)
            except RnnkitError:
                continue
            layer, reverse = divmod(index, module.num_directions)
            name = f"{prefix}_l{layer}" + ("_reverse" if reverse else "")
            radii[name] = spectrum(block.matrix).spectral_radius
    return radii
