r"""The level-batched executor of tree cells: the only code that walks a tree's levels.

A :class:`~rnnkit.data.trees.TreeBatch` numbers its nodes level by level (leaves first, then
height 1, ...), so that a level's children were all computed by the levels before it. The
executor projects every node's input at once (``cell.input_projection``, one GEMM over all N
nodes), then for each height :math:`k = 0 .. L`:

1. gathers the children's states of the level's nodes from the states computed so far, with an
   extra zero row standing for a missing child — ``(n_k, K, H)`` per state entry;
2. calls ``cell.node`` once on the whole level: one matrix product over the ``n_k`` nodes of
   every tree of the batch.

So a batch costs L + 1 cell calls, L the tallest tree's height — O(log n) for balanced trees of n
leaves — instead of one per node. Autograd runs back through the gathers, so the gradients are
those of the per-tree recursion, node by node (tests/layers/test_tree.py checks both).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import State
from ..cells.tree import TreeCell, make_tree_cell
from ..data.trees import TreeBatch


def run_levels(cell: TreeCell, x: Tensor, batch: TreeBatch) -> tuple[Tensor, State]:
    """Run ``cell`` over every node of ``batch`` level by level (module docstring).

    ``x`` is ``(N, I)``, node j's input in row j of the batch's numbering. Returns every node's
    output ``(N, H)`` and state (one ``(N, H)`` tensor per state entry), in that numbering.

    Raises:
        ValueError: if a node has more children than the cell's ``arity`` or ``x`` has not one
            row per node.
    """
    nodes = batch.labels.numel()
    if x.dim() != 2 or x.size(0) != nodes:
        raise ValueError(f"x must be (nodes, input_size) = ({nodes}, {cell.input_size}), got {tuple(x.shape)}")
    children = batch.children.to(x.device)
    width = children.size(1)
    if cell.arity is not None:
        if width > cell.arity:
            raise ValueError(f"{type(cell).__name__} takes at most {cell.arity} children, got a node with {width}")
        # Missing children are zero states: pad every node to the arity the equations name.
        children = nn.functional.pad(children, (0, cell.arity - width), value=-1)
    xp = cell.input_projection(x)  # (N, G)
    # Row 0 of each entry's buffer is the missing child's zero state; node j's state is row j + 1.
    computed: list[list[Tensor]] = [[x.new_zeros(1, size)] for size in cell.state_sizes]
    outputs = []
    start = 0
    for size in batch.level_sizes:
        rows = slice(start, start + size)
        gather = children[rows] + 1  # (n, K) rows of the buffers
        states = tuple(torch.cat(parts)[gather] for parts in computed)  # (n, K, H) each
        output, new_state = cell.node(xp[rows], states)
        outputs.append(output)
        for parts, entry in zip(computed, new_state):
            parts.append(entry)
        start += size
    return torch.cat(outputs), tuple(torch.cat(parts[1:]) for parts in computed)


class TreeLayer(nn.Module):
    """Layers of tree cells over a batch of trees, each layer reading the one below's outputs.

    Layer 0 reads the nodes' inputs ``(N, I)``; layer l > 0 reads layer l - 1's outputs at the
    same nodes (a deep recursive network, Irsoy & Cardie 2014), with ``dropout`` between layers.

    Args:
        cell: a key of :data:`rnnkit.cells.tree.TREE_CELLS` (``treernn``, ``childsum``, ``nary``).
        input_size, hidden_size: features of a node's input and of its state.
        num_layers: stacked layers.
        dropout: on the outputs of every layer but the last.
        **cell_options: the cell's own (``arity``, ``forget_bias``, ``bias``).

    ``forward(x (N, I), batch) -> (outputs (N, H), state)``: the top layer's outputs and states.

    Example:
        >>> from rnnkit.data.trees import LabelVocabulary, collate_trees, parse_tree
        >>> trees = [parse_tree("(+ 1 (* 2 3))"), parse_tree("(- 4 5)")]
        >>> batch = collate_trees(trees, *LabelVocabulary.from_trees(trees))
        >>> layer = TreeLayer("nary", 8, 16)
        >>> outputs, (h, c) = layer(torch.randn(8, 8), batch)
        >>> outputs[batch.roots].shape                              # each tree's root
        torch.Size([2, 16])
    """

    def __init__(
        self, cell: str, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be at least 1, got {num_layers}")
        self.cells = nn.ModuleList(
            make_tree_cell(cell, input_size if layer == 0 else hidden_size, hidden_size, **cell_options)
            for layer in range(num_layers)
        )
        self.dropout = nn.Dropout(dropout)
        self.hidden_size = hidden_size

    def forward(self, x: Tensor, batch: TreeBatch) -> tuple[Tensor, State]:
        for layer, cell in enumerate(self.cells):
            if layer:
                x = self.dropout(x)
            x, state = run_levels(cell, x, batch)
        return x, state
