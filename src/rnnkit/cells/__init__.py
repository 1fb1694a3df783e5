"""Recurrent cells: one step of one recurrence each, and the registry that names them.

``REGISTRY`` maps a cell family's name to its class; ``PRESETS`` names common variants of a family
(``"peephole"`` is an LSTM with ``peephole=True``). ``make_cell`` builds either by name and checks
the options, so that a typo is an error rather than silently ignored. One option belongs to
every cell: ``transition_depth`` L > 0 wraps it in a :class:`DeepTransitionCell` of L layers.

Tree cells (one node of a recursive network, :mod:`.tree`) are named apart, in ``TREE_CELLS``
and built by ``make_tree_cell``: they compose children's states, not a previous step's.
"""

from __future__ import annotations

import inspect
from types import MappingProxyType
from typing import Any

from .base import RecurrentCell as RecurrentCell
from .base import State as State
from .clockwork import ClockworkCell as ClockworkCell
from .deep_transition import DeepTransitionCell as DeepTransitionCell
from .elman import ElmanCell as ElmanCell
from .gru import GRUCell as GRUCell
from .leaky import LeakyCell as LeakyCell
from .lstm import LSTMCell as LSTMCell
from .mut import MUT1Cell as MUT1Cell
from .mut import MUT2Cell as MUT2Cell
from .mut import MUT3Cell as MUT3Cell
from .skip import SkipCell as SkipCell
from .tree import TREE_CELLS as TREE_CELLS
from .tree import ChildSumTreeLSTMCell as ChildSumTreeLSTMCell
from .tree import NaryTreeLSTMCell as NaryTreeLSTMCell
from .tree import TreeCell as TreeCell
from .tree import TreeRNNCell as TreeRNNCell
from .tree import make_tree_cell as make_tree_cell

_registry: dict[str, type[RecurrentCell]] = {}


def register_cell(name: str, cls: type[RecurrentCell]) -> None:
    """Add a cell family under ``name``; refuses a name that is taken."""
    if name in _registry or name in PRESETS:
        raise ValueError(f"a cell named {name!r} is already registered")
    _registry[name] = cls


# name -> (family, options fixed by the name)
PRESETS: MappingProxyType[str, tuple[str, dict[str, Any]]] = MappingProxyType(
    {
        "peephole": ("lstm", {"peephole": True}),
        "cifg": ("lstm", {"coupled": True}),
    }
)

register_cell("elman", ElmanCell)
register_cell("lstm", LSTMCell)
register_cell("gru", GRUCell)
register_cell("mut1", MUT1Cell)
register_cell("mut2", MUT2Cell)
register_cell("mut3", MUT3Cell)
register_cell("leaky", LeakyCell)
register_cell("skip", SkipCell)
register_cell("clockwork", ClockworkCell)

REGISTRY: MappingProxyType[str, type[RecurrentCell]] = MappingProxyType(_registry)

# The option every cell has, applied by make_cell around the cell rather than inside it.
TRANSITION_DEPTH = inspect.Parameter(
    "transition_depth", inspect.Parameter.KEYWORD_ONLY, default=0, annotation=int
)


def cell_names() -> list[str]:
    """Every name ``make_cell`` accepts: the families and the presets."""
    return sorted([*REGISTRY, *PRESETS])


def cell_options(name: str) -> dict[str, inspect.Parameter]:
    """The keyword options of cell ``name`` beyond ``input_size`` and ``hidden_size``: the cell
    class's own, then ``transition_depth``."""
    family, fixed = PRESETS.get(name, (name, {}))
    if family not in REGISTRY:
        raise ValueError(f"unknown cell {name!r}; choose one of {', '.join(cell_names())}")
    parameters = inspect.signature(REGISTRY[family]).parameters
    skipped = ("input_size", "hidden_size", *fixed)
    own = {key: p for key, p in parameters.items() if key not in skipped}
    return {**own, TRANSITION_DEPTH.name: TRANSITION_DEPTH}


def make_cell(name: str, input_size: int, hidden_size: int, **options: Any) -> RecurrentCell:
    """Build the cell called ``name`` (a family or a preset) with ``options``.

    ``transition_depth`` L > 0 returns the cell wrapped in a :class:`DeepTransitionCell` of L
    layers; 0 (the default) returns it bare.
    """
    allowed = cell_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(
            f"cell {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {', '.join(allowed) or 'none'}"
        )
    depth = options.pop(TRANSITION_DEPTH.name, TRANSITION_DEPTH.default)
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < 0:
        raise ValueError(f"transition_depth must be a non-negative integer, got {depth!r}")
    family, fixed = PRESETS.get(name, (name, {}))
    try:
        cell = REGISTRY[family](input_size, hidden_size, **fixed, **options)
    except TypeError as error:  # a value of the wrong type, e.g. forget_bias="high"
        raise ValueError(f"cell {name!r} cannot use the options {options}: {error}") from None
    return DeepTransitionCell(cell, depth) if depth else cell
