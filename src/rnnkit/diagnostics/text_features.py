"""Interpretable features of a text, and the search for cells that track them.

Karpathy, Johnson & Fei-Fei (2015, "Visualizing and understanding recurrent networks") found
LSTM cells of character models that follow the structure of the text: one is on inside
quotes, one counts the position in the line, one the depth of nested brackets, one the
indentation of code. :func:`text_features` computes these features per character, and
:func:`rank_cells` finds the cells whose activation follows each feature most closely, by the
absolute Pearson correlation over the text:

.. math::
    r_j = \\frac{\\sum_t (a_{tj} - \\bar a_j)(f_t - \\bar f)}
               {\\sqrt{\\sum_t (a_{tj} - \\bar a_j)^2} \\sqrt{\\sum_t (f_t - \\bar f)^2}}

where :math:`a_{tj}` is unit j's activation after reading character t and :math:`f_t` the
feature there. A unit or a feature that is constant over the text has no correlation; its
score is 0.

Every feature is causal: its value at character t depends on characters 0..t only, the text the
network has read when its activation :math:`a_t` is taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

QUOTE = '"'
OPENING, CLOSING = "([{", ")]}"
FEATURE_NAMES = ("inside quotes", "position in line", "bracket depth", "indentation")


def text_features(text: str) -> dict[str, Tensor]:
    """The interpretable features of ``text``, each a float64 tensor ``(len(text),)``.

    Values after reading character t (the character itself included):

    - ``"inside quotes"``: 1 between an opening ``"`` and its closing one, the opening quote
      counted inside and the closing one outside; else 0. Quotes alternate open and close.
    - ``"position in line"``: the characters read since the last newline (a newline gives 0).
    - ``"bracket depth"``: brackets ``( [ {`` opened and not yet closed by ``) ] }`` (never
      below 0: a closing bracket at depth 0 is ignored).
    - ``"indentation"``: the leading spaces and tabs of the current line read so far (each
      counts 1); constant from the line's first other character to its newline.
    """
    inside, column, depth, indent = 0, 0, 0, 0
    indenting = True  # still in the line's leading whitespace
    values = {name: [] for name in FEATURE_NAMES}
    for char in text:
        if char == QUOTE:
            inside = 1 - inside
        if char == "\n":
            column, indent, indenting = 0, 0, True
        else:
            column += 1
            indenting = indenting and char in " \t"
            indent += indenting
        if char in OPENING:
            depth += 1
        elif char in CLOSING:
            depth = max(depth - 1, 0)
        for name, value in zip(FEATURE_NAMES, (inside, column, depth, indent)):
            values[name].append(value)
    return {name: torch.tensor(v, dtype=torch.float64) for name, v in values.items()}



def correlations(activations: Tensor, feature: Tensor) -> Tensor:
    """The Pearson correlation of every unit with ``feature``: ``(T, H), (T,) -> (H,)`` float64.

    0 for a unit or a feature that is constant over the T steps (the correlation is undefined).
    """
    if activations.dim() != 2 or feature.shape != activations.shape[:1]:
        raise ValueError(
            f"expected activations (T, H) and a feature (T,), got {tuple(activations.shape)} and {tuple(feature.shape)}"
        )
    a, constant_unit = _centred(activations)  # (T, H), (H,)
    f, constant_feature = _centred(feature)  # (T,), ()
    r = (f @ a) / (a.norm(dim=0) * f.norm())
    return torch.where(constant_unit | constant_feature, torch.zeros_like(r), r)


def _centred(x: Tensor) -> tuple[Tensor, Tensor]:
    """``x`` (float64) minus its mean over dim 0, and whether it is constant along dim 0.

    A constant column's deviations are float round-off rather than exact zeros (its sum need
    not be T times its value), hence a relative tolerance.
    """
    x = x.double()
    centred = x - x.mean(0)
    constant = centred.norm(dim=0) <= 1e-10 * math.sqrt(len(x)) * x.abs().amax(0)
    return centred, constant


@dataclass(frozen=True)
class CellScore:
    """A unit that tracks a feature: ``unit`` of ``cells[cell]`` with Pearson ``correlation``."""

    cell: int
    unit: int
    correlation: float


def rank_cells(activations: Sequence[Tensor], features: dict[str, Tensor], top: int = 5) -> dict[str, list[CellScore]]:
    """For each feature, the ``top`` units of all cells with the largest absolute correlation.

    Args:
        activations: one ``(T, H_k)`` tensor per cell (a layer of a stack), over the same T steps.
        features: feature name -> ``(T,)`` values, as :func:`text_features` returns.
        top: how many units to keep per feature.

    Returns:
        feature name -> ``top`` :class:`CellScore` (or fewer, when there are fewer units), the
        largest :math:`|r|` first; ties keep cell and unit order.
    """
    ranking = {}
    for name, feature in features.items():
        scores = [
            CellScore(k, j, float(r))
            for k, cell in enumerate(activations)
            for j, r in enumerate(correlations(cell, feature))
        ]
        ranking[name] = sorted(scores, key=lambda s: -abs(s.correlation))[:top]
    return ranking
