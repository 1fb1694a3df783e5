"""The level-batched tree executor equals the per-tree recursion, node by node, outputs and gradients.

The reference walks each tree recursively and calls the cell on one node at a time with exactly
that node's children (Child-Sum: none padded in; N-ary and TreeRNN: padded with zero states up to
the arity, as their equations say), so it shares nothing with the batch layout but the cell.
"""

from __future__ import annotations

import random

import pytest
import torch

from rnnkit.cells.tree import TreeCell, make_tree_cell
from rnnkit.data.trees import LabelVocabulary, Tree, collate_trees
from rnnkit.layers.tree import TreeLayer, run_levels

I, H = 3, 5

CELLS = {"treernn": {"arity": 2}, "childsum": {}, "nary": {"arity": 3}}


def random_tree(rng: random.Random, depth: int, arity: int) -> Tree:
    """A tree of at most ``depth`` levels, 1 to ``arity`` children per inner node."""
    if depth == 0 or rng.random() < 0.25:
        return Tree(rng.choice("abcd"))
    children = tuple(random_tree(rng, depth - 1, arity) for _ in range(rng.randint(1, arity)))
    return Tree(rng.choice("XYZ"), children)


def recursive_states(cell: TreeCell, tree: Tree, embed: dict[str, torch.Tensor], out: list) -> tuple[torch.Tensor, ...]:
    """Node states of ``tree`` by plain recursion; appends every node's output to ``out`` in postorder."""
    kids = [recursive_states(cell, child, embed, out) for child in tree.children]
    width = len(kids) if cell.arity is None else cell.arity
    children = []
    for entry, size in enumerate(cell.state_sizes):
        rows = [kid[entry] for kid in kids] + [torch.zeros(size, dtype=torch.float64)] * (width - len(kids))
        children.append(torch.stack(rows).unsqueeze(0) if rows else torch.zeros(1, 0, size, dtype=torch.float64))
    output, state = cell.node(cell.input_projection(embed[tree.label].unsqueeze(0)), tuple(children))
    out.append(output[0])
    return tuple(s[0] for s in state)


@pytest.mark.parametrize("name", list(CELLS))
def test_levels_equal_the_recursion_outputs_and_gradients(name: str) -> None:
    options = CELLS[name]
    cell = make_tree_cell(name, I, H, **options).double()
    rng = random.Random(0)
    trees = [random_tree(rng, 5, options.get("arity", 4)) for _ in range(12)] + [Tree("a")]
    leaves, nodes = LabelVocabulary.from_trees(trees)
    batch = collate_trees(trees, leaves, nodes)
    assert len(batch.level_sizes) >= 4  # several levels, so the gathers across levels matter
    labels = sorted(set(leaves.labels) | set(nodes.labels))
    table = torch.randn(len(labels), I, dtype=torch.float64, requires_grad=True)
    embed = {label: table[i] for i, label in enumerate(labels)}

    # reference: each tree on its own, node by node, in postorder
    expected: list[torch.Tensor] = []
    for tree in trees:
        recursive_states(cell, tree, embed, expected)
    reference = torch.stack(expected)  # (N, H) tree by tree, postorder
    weights = torch.randn_like(reference)
    ref_grads = torch.autograd.grad((reference * weights).sum(), [table, *cell.parameters()])

    # batched: every node's input in the batch's level numbering
    leaf_count = batch.level_sizes[0]
    names = [leaves.labels[i] for i in batch.labels[:leaf_count]] + [nodes.labels[i] for i in batch.labels[leaf_count:]]
    x = table[[labels.index(label) for label in names]]  # (N, I)
    outputs, state = run_levels(cell, x, batch)
    torch.testing.assert_close(outputs[batch.order], reference, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(state[0], outputs)
    grads = torch.autograd.grad((outputs[batch.order] * weights).sum(), [table, *cell.parameters()])
    for got, want in zip(grads, ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)


def test_stacked_layers_feed_each_layer_the_one_below() -> None:
    trees = [Tree("+", (Tree("1"), Tree("*", (Tree("2"), Tree("3"))))), Tree("4")]
    batch = collate_trees(trees, *LabelVocabulary.from_trees(trees))
    layer = TreeLayer("nary", I, H, num_layers=2)
    x = torch.randn(batch.labels.numel(), I)
    outputs, _ = layer(x, batch)
    below, _ = run_levels(layer.cells[0], x, batch)
    expected, _ = run_levels(layer.cells[1], below, batch)
    torch.testing.assert_close(outputs, expected)


def test_too_many_children_for_the_arity_is_an_error() -> None:
    trees = [Tree("f", (Tree("a"), Tree("b"), Tree("c")))]
    batch = collate_trees(trees, *LabelVocabulary.from_trees(trees))
    with pytest.raises(ValueError, match="NaryTreeLSTMCell takes at most 2 children, got a node with 3"):
        run_levels(make_tree_cell("nary", I, H), torch.randn(4, I), batch)
    with pytest.raises(ValueError, match=r"x must be \(nodes, input_size\) = \(4, 3\), got \(5, 3\)"):
        run_levels(make_tree_cell("childsum", I, H), torch.randn(5, I), batch)
