"""Trees as data: s-expressions round-trip, bad ones are refused, collate numbers nodes by level
and keeps every parent-child edge, and the expression tasks compute what they say."""

from __future__ import annotations

import math
import random
import re

import pytest
import torch

from rnnkit.data.tasks import ExprTreeTask, ExprTreeValueTask, make_task
from rnnkit.data.tasks.expr_tree import evaluate
from rnnkit.data.trees import LabelVocabulary, Tree, collate_trees, parse_tree
from rnnkit.errors import DataError

EXPRESSIONS = ["7", "(+ 3 4)", "(+ (* 3 4) 2)", "(f (g a b c) d (h e))", "(- 1 (- 2 (- 3 (- 4 5))))"]


@pytest.mark.parametrize("text", EXPRESSIONS)
def test_parse_and_print_round_trip(text: str) -> None:
    tree = parse_tree(text)
    assert str(tree) == text
    assert parse_tree(f"  {text.replace(' ', '   ')}\n") == tree  # whitespace is only a separator


def test_parse_builds_the_tree() -> None:
    tree = parse_tree("(+ (* 3 4) 2)")
    assert tree == Tree("+", (Tree("*", (Tree("3"), Tree("4"))), Tree("2")))
    assert (tree.height, len(tree), tree.leaves()) == (2, 5, ["3", "4", "2"])
    assert [node.label for node in tree.postorder()] == ["3", "4", "*", "2", "+"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected an s-expression"),
        ("(+ 1 2", "expected ')' to close '+'"),
        ("(+ 1 2))", "expected the end"),
        ("()", "expected a label"),
        ("((+ 1 2) 3)", "expected a label"),
        ("(+)", "expected children"),
        (")", "got ')'"),
        ("1 2", "expected the end"),
    ],
    ids=["empty", "unclosed", "extra-bracket", "empty-node", "node-as-label", "no-children", "close", "two-trees"],
)
def test_parse_refuses_bad_expressions(text: str, message: str) -> None:
    with pytest.raises(DataError, match=re.escape(message)):
        parse_tree(text)


def test_vocabularies_separate_leaves_and_nodes() -> None:
    trees = [parse_tree("(+ (* 3 4) 2)"), parse_tree("(- 4 9)")]
    leaves, nodes = LabelVocabulary.from_trees(trees)
    assert leaves.labels == ("2", "3", "4", "9") and nodes.labels == ("*", "+", "-")
    with pytest.raises(DataError, match=r"expected a leaf label in \['2', '3', '4', '9'\], got '5'"):
        collate_trees([parse_tree("(+ 5 2)")], leaves, nodes)
    with pytest.raises(ValueError, match="appears twice"):
        LabelVocabulary(["a", "b", "a"])


def random_tree(rng: random.Random, depth: int) -> Tree:
    """A tree of at most ``depth`` levels with 1 to 3 children per node."""
    if depth == 0 or rng.random() < 0.3:
        return Tree(rng.choice("abc"))
    return Tree(rng.choice("XY"), tuple(random_tree(rng, depth - 1) for _ in range(rng.randint(1, 3))))


def test_collate_numbers_nodes_by_level_and_keeps_every_edge() -> None:
    rng = random.Random(0)
    trees = [random_tree(rng, 5) for _ in range(20)]
    leaves, nodes = LabelVocabulary.from_trees(trees)
    batch = collate_trees(trees, leaves, nodes)
    total = sum(len(tree) for tree in trees)
    assert batch.labels.shape == (total,) and sum(batch.level_sizes) == total
    assert batch.num_trees == len(trees)
    level = torch.repeat_interleave(torch.arange(len(batch.level_sizes)), torch.tensor(batch.level_sizes))
    # `order` lists each tree's nodes in postorder: walk the trees alongside it.
    postorder = [node for tree in trees for node in tree.postorder()]
    assert sorted(batch.order.tolist()) == list(range(total))
    number = dict(zip(map(id, postorder), batch.order.tolist()))
    for node in postorder:
        j = number[id(node)]
        assert level[j] == node.height  # numbered by height
        vocab = leaves if node.is_leaf else nodes
        assert vocab.labels[batch.labels[j]] == node.label
        kids = batch.children[j]
        assert kids.tolist() == [number[id(c)] for c in node.children] + [-1] * (len(kids) - len(node.children))
    assert [number[id(tree)] for tree in trees] == batch.roots.tolist()
    assert batch.children.size(1) == max(len(node.children) for node in postorder)


@pytest.mark.parametrize("task", [ExprTreeTask(max_depth=3), ExprTreeValueTask(max_depth=3)], ids=["mod10", "value"])
def test_expression_batches_agree_with_their_trees(task: ExprTreeTask) -> None:
    batch = task.batch(64, torch.Generator().manual_seed(0))
    again = task.batch(64, torch.Generator().manual_seed(0))
    assert torch.equal(batch.inputs, again.inputs) and torch.equal(batch.targets, again.targets)
    # Rebuild each expression from its flattened text, then check the tree batch and the target.
    vocab = task.token_vocabulary
    trees = []
    for b in range(64):
        text = vocab.decode(batch.inputs[: batch.lengths[b], b])
        trees.append(parse_tree(" ".join(text)))  # every atom is one character
        assert task.min_depth <= trees[-1].height <= task.max_depth
    targets = [task.target(tree) for tree in trees]
    assert batch.targets.flatten().tolist() == pytest.approx(targets)
    rebuilt = collate_trees(trees, task.leaf_vocabulary, task.node_vocabulary)
    assert rebuilt.equal(batch.trees)
    assert not rebuilt.equal(task.batch(64, torch.Generator().manual_seed(1)).trees)


def test_expression_values_and_heights() -> None:
    assert evaluate(parse_tree("(- (* 3 4) (+ 2 9))")) == 1
    assert ExprTreeTask().target(parse_tree("(- 2 (* 3 4))")) == 0  # -10 mod 10
    assert ExprTreeTask().target(parse_tree("(- 2 9)")) == 3  # Python's modulo: never negative
    task = ExprTreeTask(min_depth=5, max_depth=5, operators="*")
    tree = task.expression(random.Random(1), 5)
    assert tree.height == 5 and {node.label for node in tree.postorder() if not node.is_leaf} == {"*"}


def test_expression_baselines() -> None:
    # One digit: classes uniform over ten, so the entropy is ln 10 within sampling error.
    assert ExprTreeTask(min_depth=0, max_depth=0).baseline == pytest.approx(math.log(10), abs=0.01)
    # A product of two digits modulo 10: the entropy of its exact distribution over the 100 pairs.
    counts = torch.bincount(torch.tensor([a * b % 10 for a in range(10) for b in range(10)])).double() / 100
    entropy = -(counts[counts > 0] * counts[counts > 0].log()).sum().item()
    assert entropy < math.log(10) - 0.15  # products are even three times in four
    assert ExprTreeTask(min_depth=1, max_depth=1, operators="*").baseline == pytest.approx(entropy, abs=0.05)
    # A digit / 10 has variance (10^2 - 1) / 12 / 100.
    assert ExprTreeValueTask(min_depth=0, max_depth=0).baseline == pytest.approx(99 / 1200, rel=0.05)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"operators": "+/"}, "operators must be distinct characters"),
        ({"operators": "++"}, "operators must be distinct characters"),
        ({"min_depth": 3, "max_depth": 2}, "max_depth must be >= 3"),
        ({"max_leaf": 10}, r"max_leaf must be in \[0, 9\]"),
    ],
    ids=["unknown-operator", "repeated-operator", "depths", "leaf"],
)
def test_expression_task_refuses_bad_options(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_task("expr-tree", **options)


def test_a_tree_batch_moves_with_its_task_batch() -> None:
    batch = make_task("expr-tree").batch(3, torch.Generator().manual_seed(0)).to("meta")
    trees = batch.trees
    assert all(t.device.type == "meta" for t in (batch.inputs, trees.labels, trees.children, trees.roots, trees.order))
