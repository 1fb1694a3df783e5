"""``rnnkit train --task expr-tree``: a tree cell trains a TreeModel, a recurrent cell an LSTM on the
flattened expression, both write the run directory, resume exactly, and misuses of tree cells are
one-line errors. Tiny models (16 units) on shallow expressions: each run takes about a second."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_train_task import FAILURE, assert_one_line_error, run_cli

from rnnkit.training.checkpoint import latest_checkpoint_path, load_checkpoint
from rnnkit.training.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

TINY = ["--hidden", "16", "--layers", "1", "--batch-size", "16", "--validation-size", "64",
        "--task-option", "max_depth=2", "--no-progress"]  # fmt: skip


@pytest.mark.parametrize(("cell", "model_key"), [("nary", "tree.cells.0.weight_hh"), ("lstm", "rnn.weight_hh_l0")])
def test_expr_tree_run_writes_the_run_directory(
    cell: str, model_key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    status, out, err = run_cli(capsys, "train", "--task", "expr-tree", "--cell", cell, "--steps", "20",
                               "--eval-every", "10", "--out", run_dir, *TINY)  # fmt: skip
    assert status == 0, err
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["task"]["name"], config["task"]["options"], config["model"]["cell"]) == ("expr-tree", {"max_depth": 2}, cell)
    assert latest_checkpoint_path(run_dir).name == "step-00000020"
    assert model_key in load_checkpoint(run_dir).model_state  # a TreeModel, or a sequence classifier
    validations = [r for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in validations] == [10, 20]
    last = validations[-1]
    assert 0 <= last["val_accuracy"] <= 1 and last["baseline"] > 2.0  # entropy of ten nearly even classes
    assert out.splitlines()[-2] == (
        f"validation loss {last['val_loss']:.4f} (baseline {last['baseline']:.4f}), "
        f"accuracy {last['val_accuracy']:.4f} after 20 steps"
    )


def test_resume_continues_a_tree_run_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = ["--task", "expr-tree", "--cell", "childsum", "--checkpoint-every", "3", *TINY]
    assert run_cli(capsys, "train", "--out", whole, *common, "--steps", "8")[0] == 0
    assert run_cli(capsys, "train", "--out", parts, *common, "--steps", "5")[0] == 0
    status, _, err = run_cli(capsys, "train", "--resume", parts, "--steps", "8", "--no-progress")
    assert status == 0, err
    losses = [[(r["step"], r["loss"]) for r in read_metrics(d / "metrics.jsonl") if "loss" in r] for d in (whole, parts)]
    assert losses[0] == losses[1] and len(losses[0]) == 8
    for name, tensor in load_checkpoint(whole).model_state.items():
        assert tensor.equal(load_checkpoint(parts).model_state[name]), name


BAD_TREE_COMMAND_LINES = {
    "tree-cell-on-a-sequence-task": ("--task adding --cell childsum", ["tree cell 'childsum'", "expr-tree", "got adding"]),
    "tree-cell-with-an-executor": ("--task expr-tree --cell nary --executor loop", ["level by level", "'loop'"]),
    "tree-cell-with-pooling": ("--task expr-tree --cell treernn --pooling mean", ["root", "'mean'"]),
    "tree-cell-option": ("--task expr-tree --cell childsum --cell-option arity=3", ["childsum", "arity"]),
    "bad-operators": ("--task expr-tree --task-option operators=+/", ["operators", "'+/'"]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_TREE_COMMAND_LINES))
def test_bad_tree_command_line_gives_one_line(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags, fragments = BAD_TREE_COMMAND_LINES[name]
    status, out, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--steps", "5", "--no-progress", *flags.split())
    assert_one_line_error(status, err, 2 if name == "bad-operators" else FAILURE, *fragments)
    assert out == "" and latest_checkpoint_path(tmp_path / "run") is None


def test_tree_cell_refused_for_a_language_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.txt"
    text.write_text("hello world, " * 50)
    status, _, err = run_cli(capsys, "train", "--data", text, "--cell", "nary", "--out", tmp_path / "run", "--steps", "1")
    assert_one_line_error(status, err, FAILURE, "nary")


def test_help_says_which_cells_read_trees(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run_cli(capsys, "train", "--help")
    help_text = " ".join(capsys.readouterr().out.split())
    assert "with a tree task (--task expr-tree) also a tree cell (treernn, childsum, nary)" in help_text
