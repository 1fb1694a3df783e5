"""TreeModel: each tree cell learns the expression tasks through the TaskTrainer, roots are the
per-node outputs at the roots, and the tree modules' docstring examples run.

The learning task is tiny so that each run takes a second or two on one thread: sums of digits
0-4, at most two operators deep (``expr-tree`` with ``max_depth=2, operators="+", max_leaf=4``),
400 updates of 32 examples with 32 units. Its majority class (computed below on the validation
set) is right 15% of the time; observed accuracies after training: treernn 0.89, childsum 1.00,
nary 1.00, so every cell must exceed 0.75, and its loss must fall below a quarter of the baseline
(the entropy of the classes, 2.25 nats), which an untrained model's does not. The regression
(``expr-tree-value``, the same expressions' values / 10, baseline their variance 0.12) reaches an
MSE of 0.0002 (nary) and 0.0012 (treernn); each must be below a tenth of the baseline.
"""

from __future__ import annotations

import doctest
import importlib
import random
from pathlib import Path

import pytest
import torch

from rnnkit.data.tasks import make_task
from rnnkit.data.trees import collate_trees
from rnnkit.models import TreeModel
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_trainer import TaskTrainer

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

TINY = {"max_depth": 2, "operators": "+", "max_leaf": 4}
STEPS = 400
LEAST_ACCURACY = 0.75
CLASSIFICATION_BOUND = 0.25  # the final loss must be below this x baseline
REGRESSION_BOUND = 0.1


def trained(tmp_path: Path, task: str, cell: str) -> tuple[TaskTrainer, dict[str, float], dict[str, float]]:
    """A 32-unit ``cell`` model trained on the tiny ``task``: (trainer, untrained and final validation)."""
    config = TrainConfig()
    config.task.name, config.task.options, config.task.validation_size = task, dict(TINY), 500
    config.model.cell, config.model.hidden_size, config.model.num_layers = cell, 32, 1
    config.optim.lr = 0.02 if task == "expr-tree" else 0.01
    config.budget.steps = config.eval_every = config.checkpoint_every = STEPS
    trainer = TaskTrainer.start(config, tmp_path / "run")
    untrained = trainer.evaluate()
    return trainer, untrained, trainer.run().validation


@pytest.mark.parametrize("cell", ["treernn", "childsum", "nary"])
def test_each_tree_cell_learns_expression_values_mod_10(cell: str, tmp_path: Path) -> None:
    trainer, untrained, final = trained(tmp_path, "expr-tree", cell)
    assert isinstance(trainer.model, TreeModel)
    targets = trainer.validation_set.targets
    majority = torch.bincount(targets).max().item() / len(targets)
    assert majority < 0.2
    assert untrained["val_loss"] > CLASSIFICATION_BOUND * final["baseline"]
    assert final["val_loss"] < CLASSIFICATION_BOUND * final["baseline"], final
    assert final["val_accuracy"] > LEAST_ACCURACY > majority


@pytest.mark.parametrize("cell", ["treernn", "nary"])
def test_tree_cells_learn_expression_values(cell: str, tmp_path: Path) -> None:
    _, untrained, final = trained(tmp_path, "expr-tree-value", cell)
    assert untrained["val_mse"] > REGRESSION_BOUND * final["baseline"]
    assert final["val_mse"] < REGRESSION_BOUND * final["baseline"], final


def test_roots_are_the_node_outputs_at_the_roots_and_trees_do_not_mix() -> None:
    task = make_task("expr-tree", max_depth=4)
    rng = random.Random(0)
    trees = [task.expression(rng, depth) for depth in (4, 0, 2, 3, 1, 4)]
    model = TreeModel(10, len(task.leaf_vocabulary), len(task.node_vocabulary), cell="nary", hidden_size=8, num_layers=2)
    batch = collate_trees(trees, task.leaf_vocabulary, task.node_vocabulary)
    roots = model(batch)
    torch.testing.assert_close(roots, model.node_outputs(batch)[batch.roots])
    # each tree alone gives its root the output it has in the batch
    alone = torch.cat([model(collate_trees([tree], task.leaf_vocabulary, task.node_vocabulary)) for tree in trees])
    torch.testing.assert_close(roots, alone)


MODULES = ["rnnkit.data.trees", "rnnkit.data.tasks.expr_tree", "rnnkit.cells.tree", "rnnkit.layers.tree",
           "rnnkit.models.tree_model"]  # fmt: skip


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    failures, attempted = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failures == 0
