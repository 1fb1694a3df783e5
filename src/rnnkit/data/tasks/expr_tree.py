"""Arithmetic expression trees: compute ``(+ (* 3 4) 2)``, as a tree or as its flattened text."""

from __future__ import annotations

import dataclasses
import functools
import random
from typing import ClassVar

import torch
from torch.nn.utils.rnn import pad_sequence

from ..trees import LabelVocabulary, Tree, collate_trees
from ..vocabulary import Vocabulary
from .base import Task, TaskBatch, python_random, require_range

OPERATORS = "+-*"
DIGITS = "0123456789"
#: Examples drawn (with :data:`BASELINE_SEED`) to measure the trivial predictor's loss.
BASELINE_EXAMPLES = 4000
BASELINE_SEED = 2**31 - 1


def evaluate(tree: Tree) -> int:
    """The integer value of an expression tree over ``+ - *`` and non-negative integers."""
    if tree.is_leaf:
        return int(tree.label)
    left, right = (evaluate(child) for child in tree.children)
    return left + right if tree.label == "+" else left - right if tree.label == "-" else left * right


@dataclasses.dataclass(frozen=True)
class ExprTreeTask(Task):
    r"""The value of a random arithmetic expression modulo 10, read as a tree or as its text.

    An expression of height :math:`d` (``min_depth`` :math:`\le d \le` ``max_depth``, uniform)
    is a binary tree: a leaf is a digit uniform in ``0..max_leaf``; a node of height
    :math:`k > 0` is an operator uniform among ``operators`` (``+``, ``-``, ``*``) over one child
    of height :math:`k - 1` and one of height uniform in :math:`0..k-1`, in random order. The
    class is its value modulo 10, :math:`y = v \bmod 10 \in [0, 10)` (Python's, never negative).
    Arithmetic modulo 10 is closed under the three operators, so each node needs only its
    children's values modulo 10: a recursive network can compute it exactly with a ten-valued
    state per node, whatever the depth, while a sequence model must keep a stack of pending
    operands as it reads (the learning-to-execute problem of Zaremba & Sutskever 2014, on trees
    as in Bowman, Manning & Potts 2015).

    Kind ``classification`` with trees (``tree_inputs``): ``trees`` is the batch of expressions
    (:class:`~rnnkit.data.trees.TreeBatch`; leaves labelled by :attr:`leaf_vocabulary`, nodes by
    :attr:`node_vocabulary`); ``inputs`` (T, B) the same expressions flattened to the characters
    of their s-expressions without spaces, ``(+(*34)2)``, ids in :attr:`token_vocabulary`,
    padded with 0 past ``lengths`` (B,); ``targets`` (B,) long. ``input_size`` = 15 token ids,
    ``output_size`` = 10 classes.

    Baseline: the cross-entropy of the best input-blind predictor, the entropy of the classes'
    distribution :math:`-\sum_y p_y \ln p_y`, measured on 4000 expressions drawn with a fixed
    seed (the classes are not uniform: products of digits are even three times out of four). A
    model's accuracy is compared with the majority class's, which the tests state.

    Example:
        >>> task = ExprTreeTask(min_depth=1, max_depth=3)
        >>> tree = task.expression(random.Random(0), 2)
        >>> tree.height, evaluate(tree) % 10 == task.target(tree)
        (2, True)
        >>> batch = task.batch(8, torch.Generator().manual_seed(0))
        >>> batch.trees.num_trees, batch.targets.shape
        (8, torch.Size([8]))
    """

    name = "expr-tree"
    kind = "classification"
    token_inputs = True
    tree_inputs = True
    leaf_vocabulary: ClassVar[LabelVocabulary] = LabelVocabulary(DIGITS)
    node_vocabulary: ClassVar[LabelVocabulary] = LabelVocabulary(OPERATORS)
    token_vocabulary: ClassVar[Vocabulary] = Vocabulary("()" + OPERATORS + DIGITS)

    min_depth: int = 1  # height of the shallowest expressions (1: one operator over two digits)
    max_depth: int = 4  # height of the deepest
    operators: str = OPERATORS  # the operators drawn, some of "+-*"
    max_leaf: int = 9  # leaves are digits 0..max_leaf

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "min_depth", 0)
        require_range(self, "max_depth", self.min_depth)
        require_range(self, "max_leaf", 0, 9)
        if not self.operators or set(self.operators) - set(OPERATORS) or len(set(self.operators)) < len(self.operators):
            raise ValueError(
                f"task {self.name!r} option operators must be distinct characters of {OPERATORS!r}, "
                f"got {self.operators!r}"
            )

    @property
    def input_size(self) -> int:
        return len(self.token_vocabulary)

    @property
    def output_size(self) -> int:
        return 10

    @functools.cached_property  # the frozen dataclass's __dict__ holds it: drawn once per task
    def baseline(self) -> float:
        targets = self._sample(BASELINE_EXAMPLES, random.Random(BASELINE_SEED))[1]
        counts = torch.bincount(torch.tensor(targets), minlength=10).double()
        p = counts[counts > 0] / counts.sum()
        return -(p * p.log()).sum().item()

    def target(self, tree: Tree) -> int | float:
        """The answer for ``tree``: its value modulo 10."""
        return evaluate(tree) % 10

    def expression(self, rng: random.Random, depth: int) -> Tree:
        """A random expression of height ``depth`` (class docstring), drawn with ``rng``."""
        if depth == 0:
            return Tree(str(rng.randint(0, self.max_leaf)))
        children = [self.expression(rng, depth - 1), self.expression(rng, rng.randrange(depth))]
        if rng.random() < 0.5:
            children.reverse()
        return Tree(rng.choice(self.operators), tuple(children))

    def _sample(self, batch_size: int, rng: random.Random) -> tuple[list[Tree], list[int | float]]:
        trees = [self.expression(rng, rng.randint(self.min_depth, self.max_depth)) for _ in range(batch_size)]
        return trees, [self.target(tree) for tree in trees]

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        trees, targets = self._sample(batch_size, python_random(generator))
        texts = [str(tree).replace(" ", "") for tree in trees]
        tokens = [self.token_vocabulary.encode(text, f"a {self.name} expression") for text in texts]
        return TaskBatch(
            inputs=pad_sequence(tokens),  # (T, B), 0 past each length
            targets=self._target_tensor(targets),
            lengths=torch.tensor([len(text) for text in texts]),
            trees=collate_trees(trees, self.leaf_vocabulary, self.node_vocabulary),
        )

    def _target_tensor(self, targets: list[int | float]) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.long)  # (B,)


@dataclasses.dataclass(frozen=True)
class ExprTreeValueTask(ExprTreeTask):
    r"""The value of a random arithmetic expression itself, a regression.

    Expressions are drawn as in :class:`ExprTreeTask` (by default over ``+`` and ``-`` only, so
    that values stay within :math:`\pm 9 \cdot 2^d` rather than growing like :math:`9^{2^d}`);
    the target is :math:`v / 10`, scaled so that a shallow expression's is of order one.

    Kind ``regression`` with trees: ``targets`` (B, 1) float, ``output_size`` 1, the rest as
    :class:`ExprTreeTask`. Baseline: the mean squared error of predicting the mean, the variance
    of the targets measured on 4000 expressions drawn with a fixed seed.

    Example:
        >>> task = ExprTreeValueTask(max_depth=2)
        >>> batch = task.batch(4, torch.Generator().manual_seed(0))
        >>> batch.targets.shape
        torch.Size([4, 1])
    """

    name = "expr-tree-value"
    kind = "regression"

    operators: str = "+-"

    @property
    def output_size(self) -> int:
        return 1

    @functools.cached_property
    def baseline(self) -> float:
        targets = torch.tensor(self._sample(BASELINE_EXAMPLES, random.Random(BASELINE_SEED))[1])
        return targets.var(correction=0).item()

    def target(self, tree: Tree) -> int | float:
        """The answer for ``tree``: its value divided by 10."""
        return evaluate(tree) / 10

    def _target_tensor(self, targets: list[int | float]) -> torch.Tensor:
        return torch.tensor(targets, dtype=torch.float32).unsqueeze(-1)  # (B, 1)

