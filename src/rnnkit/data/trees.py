r"""Trees as data: the tree type, an s-expression parser, label vocabularies, and level batching.

A :class:`Tree` is a label and an ordered tuple of children; a leaf has no children. Its
``height`` is the number of edges on its longest path down to a leaf (a leaf has height 0), so a
node's children all have smaller heights than the node itself.

Recursive networks (Socher et al. 2011; Tai, Socher & Manning 2015) compute a node from its
children, so every node of height k can be computed at once, across a whole batch of trees, once
the heights below k are done: the depth of the computation is the height of the tallest tree,
O(log n) for a balanced tree of n leaves, instead of the n steps of a chain. :func:`collate_trees`
lays a batch out for that (:class:`TreeBatch`): nodes numbered level by level — every leaf of
every tree first, then every node of height 1, and so on — with each node's children as indices
into that numbering. ``rnnkit.layers.tree`` walks the levels.

Example:
    >>> tree = parse_tree("(+ (* 3 4) 2)")
    >>> tree.label, tree.height, len(tree), str(tree)
    ('+', 2, 5, '(+ (* 3 4) 2)')
    >>> trees = [tree, parse_tree("7")]
    >>> leaves, nodes = LabelVocabulary.from_trees(trees)
    >>> batch = collate_trees(trees, leaves, nodes)
    >>> batch.level_sizes, batch.children.tolist()
    ((4, 1, 1), [[-1, -1], [-1, -1], [-1, -1], [-1, -1], [0, 1], [4, 2]])
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor

from rnnkit.errors import DataError

# An s-expression's tokens: brackets, or a run of anything else but whitespace.
_TOKEN = re.compile(r"[()]|[^\s()]+")


@dataclasses.dataclass(frozen=True)
class Tree:
    """A labelled ordered tree: ``Tree("+", (Tree("3"), Tree("4")))``; a leaf has no children."""

    label: str
    children: tuple[Tree, ...] = ()

    @property
    def is_leaf(self) -> bool:
        return not self.children

    @property
    def height(self) -> int:
        """Edges on the longest path down to a leaf: 0 for a leaf."""
        return 1 + max(child.height for child in self.children) if self.children else 0

    def __len__(self) -> int:
        """The number of nodes, leaves included."""
        return 1 + sum(len(child) for child in self.children)

    def postorder(self) -> Iterator[Tree]:
        """Every node, children before their parent, left to right."""
        for child in self.children:
            yield from child.postorder()
        yield self

    def leaves(self) -> list[str]:
        """The leaves' labels, left to right."""
        return [node.label for node in self.postorder() if node.is_leaf]

    def __str__(self) -> str:
        """The s-expression :func:`parse_tree` reads back: ``(+ (* 3 4) 2)``, a leaf bare."""
        if self.is_leaf:
            return self.label
        return f"({' '.join([self.label, *map(str, self.children)])})"


def parse_tree(text: str) -> Tree:
    """The tree of an s-expression: ``(label child ...)`` for a node, a bare atom for a leaf.

    Atoms are runs of characters other than whitespace and brackets; a node's label is its first
    atom and its children follow, so ``(+ (* 3 4) 2)`` is ``+`` over ``*`` (over 3 and 4) and 2.

    Raises:
        DataError: for an empty text, a bracket without its pair, a node without a label or with
            no children (``(+)``), or text after the tree; the message says where.
    """
    tokens = _TOKEN.findall(text)
    if not tokens:
        raise DataError(f"expected an s-expression, got {text!r}")
    tree, end = _parse_at(tokens, 0, text)
    if end != len(tokens):
        raise DataError(f"expected the end of the s-expression after token {end}, got {tokens[end]!r} in {text!r}")
    return tree


def _parse_at(tokens: list[str], position: int, text: str) -> tuple[Tree, int]:
    """The tree starting at ``tokens[position]`` and the position after it."""
    if position >= len(tokens):
        raise DataError(f"expected a tree at token {position}, got the end of {text!r}")
    token = tokens[position]
    if token == ")":
        raise DataError(f"expected a tree at token {position}, got ')' in {text!r}")
    if token != "(":
        return Tree(token), position + 1
    if position + 1 >= len(tokens) or tokens[position + 1] in "()":
        got = tokens[position + 1] if position + 1 < len(tokens) else "the end"
        raise DataError(f"expected a label after '(' at token {position}, got {got!r} in {text!r}")
    label, position = tokens[position + 1], position + 2
    children = []
    while position < len(tokens) and tokens[position] != ")":
        child, position = _parse_at(tokens, position, text)
        children.append(child)
    if position >= len(tokens):
        raise DataError(f"expected ')' to close {label!r}, got the end of {text!r}")
    if not children:
        raise DataError(f"expected children after the label {label!r}, got ')' in {text!r}")
    return Tree(label, tuple(children)), position + 1


class LabelVocabulary:
    """An ordered set of labels (strings): the i-th gets id i.

    A tree batch uses two: one for the leaves' labels (the tokens, digits) and one for the inner
    nodes' (the operators, phrase types), because a model embeds the two with different tables.

    Raises:
        ValueError: if a label is not a non-empty string or repeats.
    """

    def __init__(self, labels: Iterable[str]) -> None:
        self.labels = tuple(labels)
        self._index: dict[str, int] = {}
        for position, label in enumerate(self.labels):
            if not isinstance(label, str) or not label:
                raise ValueError(f"label {position} must be a non-empty string, got {label!r}")
            if label in self._index:
                raise ValueError(f"label {label!r} appears twice (entries {self._index[label]} and {position})")
            self._index[label] = position

    @classmethod
    def from_trees(cls, trees: Iterable[Tree]) -> tuple[LabelVocabulary, LabelVocabulary]:
        """The leaves' and the inner nodes' distinct labels in ``trees``, each sorted."""
        leaves: set[str] = set()
        nodes: set[str] = set()
        for tree in trees:
            for node in tree.postorder():
                (leaves if node.is_leaf else nodes).add(node.label)
        return cls(sorted(leaves)), cls(sorted(nodes))

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return f"LabelVocabulary({list(self.labels)!r})"

    def id(self, label: str, what: str) -> int:
        """The id of ``label``; DataError naming ``what`` it labels if it is not in the vocabulary."""
        try:
            return self._index[label]
        except KeyError:
            raise DataError(f"expected {what} label in {list(self.labels)}, got {label!r}") from None


@dataclasses.dataclass(frozen=True, eq=False)  # tensors have no truth value: compare with equal
class TreeBatch:
    """A batch of trees laid out level by level (module docstring); ``N`` nodes in all.

    Nodes are numbered by height: the ``level_sizes[0]`` leaves first, then the
    ``level_sizes[1]`` nodes of height 1, and so on; within a level, tree by tree and left to
    right. So a node's children always have smaller numbers than the node.
    """

    labels: Tensor  # (N,) long: a leaf's id in the leaf vocabulary, an inner node's in the node one
    children: Tensor  # (N, K) long: each node's children's numbers, -1 past its last; K = most children
    level_sizes: tuple[int, ...]  # nodes of each height, from 0 (the leaves) to the tallest tree's
    roots: Tensor  # (B,) long: each tree's root's number
    order: Tensor  # (N,) long: the nodes' numbers tree by tree, each tree in postorder

    @property
    def num_trees(self) -> int:
        return self.roots.numel()

    def equal(self, other: TreeBatch) -> bool:
        """The same trees in the same layout, tensor for tensor (as ``Tensor.equal``)."""
        tensors = ("labels", "children", "roots", "order")
        return self.level_sizes == other.level_sizes and all(
            getattr(self, name).equal(getattr(other, name)) for name in tensors
        )

    def to(self, device: torch.device | str) -> TreeBatch:
        """The same batch with every tensor on ``device``."""
        return dataclasses.replace(
            self, labels=self.labels.to(device), children=self.children.to(device),
            roots=self.roots.to(device), order=self.order.to(device),
        )  # fmt: skip


def collate_trees(trees: Sequence[Tree], leaves: LabelVocabulary, nodes: LabelVocabulary) -> TreeBatch:
    """Batch ``trees`` level by level (:class:`TreeBatch`), their labels encoded with ``leaves``
    (the leaves' vocabulary) and ``nodes`` (the inner nodes').

    Raises:
        DataError: if ``trees`` is empty or a label is missing from its vocabulary.
    """
    if not trees:
        raise DataError("expected at least one tree to collate, got none")
    # Every node in postorder, tree by tree, with its height and its children's postorder positions.
    postorder: list[Tree] = []
    heights: list[int] = []
    child_positions: list[list[int]] = []
    root_positions = []
    for tree in trees:
        stack: list[int] = []  # positions of the nodes whose parent is still to come
        for node in tree.postorder():
            kids = stack[len(stack) - len(node.children):] if node.children else []
            del stack[len(stack) - len(kids):]
            heights.append(1 + max(heights[k] for k in kids) if kids else 0)
            child_positions.append(kids)
            stack.append(len(postorder))
            postorder.append(node)
        root_positions.append(stack[0])
    # Renumber level by level: a stable sort by height keeps trees and left-to-right order.
    by_level = sorted(range(len(postorder)), key=heights.__getitem__)
    number = [0] * len(postorder)
    for new, old in enumerate(by_level):
        number[old] = new
    width = max(len(kids) for kids in child_positions)
    children = torch.full((len(postorder), width), -1, dtype=torch.long)
    labels = torch.empty(len(postorder), dtype=torch.long)
    for old, node in enumerate(postorder):
        new = number[old]
        children[new, : len(node.children)] = torch.tensor([number[k] for k in child_positions[old]], dtype=torch.long)
        labels[new] = leaves.id(node.label, "a leaf") if node.is_leaf else nodes.id(node.label, "a node")
    level_sizes = torch.bincount(torch.tensor(heights)).tolist()
    return TreeBatch(
        labels=labels,
        children=children,
        level_sizes=tuple(level_sizes),
        roots=torch.tensor([number[p] for p in root_positions], dtype=torch.long),
        order=torch.tensor(number, dtype=torch.long),
    )
