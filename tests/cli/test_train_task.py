"""``rnnkit train --task NAME``: a task run end to end, its resume, and bad task command lines.

Runs use a tiny model (one layer of 16) on short adding sequences, so each takes well under a second.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from cli_runner import run_cli
from rnnkit.cli import main
from rnnkit.training.checkpoint import latest_checkpoint_path, load_checkpoint
from rnnkit.training.config import TrainConfig, config_from_dict
from rnnkit.training.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

USAGE, FAILURE = 2, 1  # exit statuses: a command line that does not make sense, any other problem
# fmt: off
TINY = [
    "--hidden", "16", "--layers", "1", "--batch-size", "16", "--validation-size", "64",
    "--task-option", "length=10",
]
# fmt: on
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def adding_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, str]:
    """``rnnkit train --task adding --steps 30`` with a progress bar: (run dir, stdout, stderr)."""
    run_dir = tmp_path_factory.mktemp("adding") / "run"
    argv = ["train", "--task", "adding", "--steps", "30", "--out", str(run_dir), *TINY, "--eval-every", "10"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    assert status == 0, err.getvalue()
    return run_dir, out.getvalue(), err.getvalue()


def test_task_run_writes_the_run_directory(adding_run: tuple[Path, str, str]) -> None:
    run_dir, _, _ = adding_run
    config = config_from_dict(TrainConfig, json.loads((run_dir / "config.json").read_text()))
    assert (config.task.name, config.task.options) == ("adding", {"length": 10})
    assert (config.task.batch_size, config.task.validation_size, config.budget.steps) == (16, 64, 30)
    assert config.data.batch_size == TrainConfig().data.batch_size  # --batch-size counts examples
    assert load_checkpoint(run_dir).metadata["config"] == json.loads((run_dir / "config.json").read_text())
    latest = latest_checkpoint_path(run_dir)
    assert latest is not None and latest.name == "step-00000030"
    assert (run_dir / "loss.png").read_bytes().startswith(PNG_MAGIC)
    assert not (run_dir / "vocab.json").exists()

    records = read_metrics(run_dir / "metrics.jsonl")
    updates = [r for r in records if "loss" in r]
    assert [r["step"] for r in updates] == list(range(1, 31))
    assert all({"lr", "grad_norm", "examples_per_second", "seconds"} <= set(r) for r in updates)
    validations = [r for r in records if "val_loss" in r]
    assert [r["step"] for r in validations] == [10, 20, 30]
    for r in validations:
        assert r["baseline"] == pytest.approx(1 / 6)
        assert r["val_mse"] == r["val_loss"]


def test_task_run_reports_loss_against_baseline(adding_run: tuple[Path, str, str]) -> None:
    run_dir, out, err = adding_run
    validation = {r["step"]: r for r in read_metrics(run_dir / "metrics.jsonl") if "val_loss" in r}

    def described(step: int) -> str:
        loss = validation[step]["val_loss"]
        return f"validation loss {loss:.4f} (baseline 0.1667), mse {loss:.4f}"

    each_validation = [f"step {step}: {described(step)}" for step in (10, 20, 30)]
    final = [f"{described(30)} after 30 steps", f"run directory: {run_dir}"]
    assert out.splitlines() == each_validation + final
    # the progress bar shows the training loss and the latest validation metric
    final_bar = err.rstrip().rsplit("\r", 1)[-1]
    assert "loss=" in final_bar and f"mse={validation[30]['val_mse']:.3f}" in final_bar


def test_resume_continues_a_task_run_exactly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = ["--task", "parity", "--hidden", "8", "--batch-size", "8", "--validation-size", "16",
              "--dropout", "0.1", "--checkpoint-every", "3", "--no-progress"]  # fmt: skip
    assert run_cli(capsys, "train", "--out", whole, *common, "--steps", "9")[0] == 0
    assert run_cli(capsys, "train", "--out", parts, *common, "--steps", "6")[0] == 0
    status, out, err = run_cli(capsys, "train", "--resume", parts, "--steps", "9", "--no-progress")
    assert status == 0, err
    assert "after 9 steps" in out

    def losses(run_dir: Path) -> list[tuple[int, float]]:
        return [(r["step"], r["loss"]) for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r]

    assert losses(parts) == losses(whole)
    assert [step for step, _ in losses(parts)] == list(range(1, 10))
    assert load_checkpoint(parts).model_state.keys() == load_checkpoint(whole).model_state.keys()
    for name, tensor in load_checkpoint(whole).model_state.items():
        assert tensor.equal(load_checkpoint(parts).model_state[name]), name


def assert_one_line_error(status: int, err: str, expected_status: int, *fragments: str) -> None:
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("rnnkit"), f"expected one line, got {err!r}"
    assert status == expected_status, f"exit status {status}, expected {expected_status}: {err!r}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"


BAD_COMMAND_LINES = {
    # name -> (flags after "train --out DIR --steps 5", exit status, what the one line must say)
    "unknown-task": ("--task sorting", USAGE, ["--task", "invalid choice", "'sorting'", "parity"]),
    "unknown-task-option": ("--task adding --task-option lenght=5", USAGE,
                            ["'lenght'", "length=100"]),
    "ill-typed-task-option": ("--task adding --task-option length=ten", USAGE,
                              ["length", "must be int", "'ten'"]),
    "float-for-int-option": ("--task reversal --task-option symbols=2.5", USAGE,
                             ["symbols", "must be int", "2.5"]),
    "task-option-out-of-range": ("--task adding --task-option length=1", USAGE,
                                 ["length", ">= 2", "got 1"]),
    "task-and-data": ("--task adding --data text.txt", USAGE, ["--task", "--data", "not allowed"]),
    "task-and-corpus": ("--corpus python --task adding", USAGE, ["--task", "--corpus", "not allowed"]),
    "task-option-without-task": ("--task-option length=5", USAGE, ["--task-option", "needs --task"]),
    "attention-without-task": ("--attention", USAGE, ["--attention", "needs --task"]),
    "seq-len-with-task": ("--task adding --seq-len 5", USAGE, ["--seq-len", "language models"]),
    "attention-on-adding": ("--task adding --attention", FAILURE, ["attention", "seq2seq", "adding"]),
    "pooling-on-tagging": ("--task reversal --pooling mean", FAILURE, ["pooling", "reversal"]),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_COMMAND_LINES))
def test_bad_task_command_line_gives_one_line(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, expected_status, fragments = BAD_COMMAND_LINES[name]
    out_dir = tmp_path / "run"
    argv = ["train", "--out", out_dir, "--steps", "5", "--no-progress", *flags.split()]
    status, out, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, expected_status, *fragments)
    assert out == ""
    assert latest_checkpoint_path(out_dir) is None


def test_task_run_needs_steps_or_minutes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(capsys, "train", "--task", "parity", "--out", tmp_path / "run", "--no-progress")
    assert_one_line_error(status, err, USAGE, "--task parity", "--steps", "--minutes")


def test_resume_of_a_task_run_refuses_a_new_task_option(
    adding_run: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _, _ = adding_run
    argv = ["train", "--resume", run_dir, "--steps", "40", "--task-option", "length=20"]
    status, _, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, FAILURE, "--resume", "--task-option", "--steps")
    assert load_checkpoint(run_dir).step == 30


@pytest.mark.parametrize("command", ["eval", "sample"])
def test_eval_and_sample_refuse_a_task_run(
    command: str, adding_run: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir, _, _ = adding_run
    status, out, err = run_cli(capsys, command, run_dir)
    assert_one_line_error(status, err, FAILURE, f"rnnkit {command}", "'adding'", "language models only")
    assert out == ""
