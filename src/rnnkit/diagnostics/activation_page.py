"""Activation pages: a text coloured by what one cell of a character model does on it.

After Karpathy, Johnson & Fei-Fei (2015, "Visualizing and understanding recurrent networks"):
each character of the text gets the background colour of a chosen unit's output after reading
it, on the blue-white-red map of :func:`colour_map` (-1 blue, 0 white, +1 red). The page, one
self-contained HTML file (inline CSS and JavaScript, no external resources), has

- a layer selector and a cell (unit) number for every layer of the model;
- the cells that track the interpretable features of :mod:`.text_features` best (inside quotes,
  position in line, bracket depth, indentation), each with its Pearson r; clicking one selects it;
- for gated cells, the gate saturation of the selected unit (the fraction of steps each gate is
  below 0.1 or above 0.9) and of the whole layer (the mean fractions, and a histogram of the
  units' saturated fractions).

The page's "cell" is one unit, as in Karpathy's article; :class:`.activations.CellActivations`
is one layer's cell module, all its units.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from importlib import resources
from typing import Any

from .activations import SATURATION_HIGH, SATURATION_LOW, CellActivations, saturated_fractions
from .text_features import FEATURE_NAMES, rank_cells, text_features

TEMPLATE = "activation_page.html"
DIGITS = 4  # decimals kept of each activation: colour steps are 1/255 of a half range, ~0.004


def colour_map(value: float) -> tuple[int, int, int]:
    """The page's colour of an activation: ``(r, g, b)`` from blue (-1) through white (0) to red (+1).

    Values are clipped to [-1, 1]; a channel is ``255 (1 - |v|)`` rounded half up, as
    JavaScript's ``Math.round`` does (the page computes the same map).
    """
    v = min(max(value, -1.0), 1.0)
    fade = math.floor(255 * (1 - abs(v)) + 0.5)
    return (fade, fade, 255) if v < 0 else (255, fade, fade)


def page_data(text: str, cells: Sequence[CellActivations], top: int = 5) -> dict[str, Any]:
    """What the page shows, as one JSON-ready object.

    Args:
        text: the text the model read, one character per step.
        cells: the recording of one sequence (batch of 1), ``len(text)`` steps.
        top: how many cells to list per feature.

    Returns:
        ``{"text", "cells": [{"name", "values": per unit the T activations, "gates": {gate:
        {"low", "high": per unit the fraction of steps below / above the thresholds}}}],
        "features", "ranking": {feature: [{"cell", "unit", "r"}]}, "saturation": {"low", "high"}}``.
    """
    steps = [tuple(cell.outputs.shape[:2]) for cell in cells]
    if not cells or any(shape != (len(text), 1) for shape in steps):
        raise ValueError(f"expected recordings of {len(text)} steps of one sequence, got (T, B) = {steps}")
    units = [cell.outputs[:, 0, :] for cell in cells]  # (T, H) each
    ranking = rank_cells(units, text_features(text), top)
    return {
        "text": text,
        "cells": [
            {"name": cell.name, "values": _rounded(values.T.tolist()), "gates": _gate_fractions(cell)}
            for cell, values in zip(cells, units)
        ],
        "features": list(FEATURE_NAMES),
        "ranking": {
            name: [{"cell": s.cell, "unit": s.unit, "r": round(s.correlation, DIGITS)} for s in scores]
            for name, scores in ranking.items()
        },
        "saturation": {"low": SATURATION_LOW, "high": SATURATION_HIGH},
    }


def render_page(data: dict[str, Any], title: str) -> str:
    """The HTML page for ``page_data``'s ``data``: the template with the title and data filled in."""
    template = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    # Inside <script>, "</script>" or "<!--" in the text would end the data early: JSON may
    # escape every "<" as \u003c, which JSON.parse reads back.
    payload = json.dumps(data, ensure_ascii=False, allow_nan=False).replace("<", "\\u003c")
    return template.replace("__TITLE__", html.escape(title)).replace("__DATA__", payload)


def activation_page(text: str, cells: Sequence[CellActivations], title: str, top: int = 5) -> str:
    """The whole page for ``text`` and the recording ``cells`` of a model reading it."""
    return render_page(page_data(text, cells, top), title)


def _gate_fractions(cell: CellActivations) -> dict[str, dict[str, list[float]]]:
    fractions = {}
    for name, gate in cell.gates.items():
        low, high = saturated_fractions(gate)
        fractions[name] = {"low": _rounded(low.tolist()), "high": _rounded(high.tolist())}
    return fractions


def _rounded(values: list) -> list:
    """``values`` (nested lists of floats) rounded to ``DIGITS`` decimals, to keep the page small."""
    return [_rounded(v) if isinstance(v, list) else round(v, DIGITS) for v in values]
