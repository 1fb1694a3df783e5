"""Fused BPTT for MUT1, MUT2 and MUT3 (Jozefowicz et al. 2015): the GRU's reset-before kernel.

The mutants share the GRU's reset-before recurrence, ``n = tanh(x_n + W_hh (r ⊙ h))``, and differ
from it only in what the update gate's recurrent product reads — the state (MUT2), its tanh
(MUT3) or nothing (MUT1) — and in taking the candidate with weight z: ``h' = z n + (1 - z) h``.
``gru.py`` holds the equations and their derivatives; here are only the cells' options and
parameters. The input projection (MUT1's tanh(x), MUT2's raw x) stays under autograd.
"""

from __future__ import annotations

from torch import Tensor

from ...cells.mut import MUT1Cell, MUT2Cell, MUT3Cell
from .gru import Variant, backward, forward

__all__ = ["backward", "flags", "forward", "parameters"]  # the family contract (fused/__init__.py)

# the cell's kernel name -> what its update gate's recurrent product reads
Z_READS = {"mut1": "nothing", "mut2": "state", "mut3": "tanh_state"}


def flags(cell: MUT1Cell | MUT2Cell | MUT3Cell) -> Variant:
    return Variant(reset_after=False, z_reads=Z_READS[cell.kernel], z_takes_candidate=True)


def parameters(cell: MUT1Cell | MUT2Cell | MUT3Cell) -> tuple[Tensor, None]:
    return cell.weight_hh, None  # the mutants' only bias is in the input projection
