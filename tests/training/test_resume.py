"""A run stopped and resumed reproduces the uninterrupted run exactly on the CPU.

The runs use dropout, input noise and two layers, so that the random state must be restored, and a
text of five chunks per epoch, so that the run stops in the middle of an epoch (the carried hidden
state must be restored) and the resumed part crosses an epoch boundary (where it is reset).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_files import assert_same_tensors, latest_files

from rnnkit.cli import main
from rnnkit.data.corpus import split_train_validation
from rnnkit.data.stream import StreamBatches
from rnnkit.data.vocabulary import Vocabulary
from rnnkit.training.checkpoint import load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

SRC = Path(__file__).resolve().parents[2] / "src"
# 390 characters: 351 for training (5 chunks of 4 streams x 16 steps), 39 for validation.
TEXT = ("first citizen: before we proceed any further, hear me speak.\n" * 7)[:390]
BATCH, SEQ_LEN = 4, 16
# fmt: off
FLAGS = [
    "--cell", "lstm", "--hidden", "16", "--layers", "2", "--dropout", "0.2", "--input-noise", "0.1",
    "--batch-size", str(BATCH), "--seq-len", str(SEQ_LEN), "--validation-streams", "4",
    "--no-progress",
]
# fmt: on



@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "citizen.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def train(*argv: str | Path) -> None:
    assert main(["train", *map(str, argv)]) == 0


def records(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of every metrics.jsonl record that has ``key``, in file order."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


def chunks_per_epoch() -> int:
    train_text, _ = split_train_validation(TEXT, 0.1)
    return len(StreamBatches(Vocabulary.from_text(TEXT).encode(train_text), BATCH, SEQ_LEN))


def test_setup_crosses_an_epoch_after_a_mid_epoch_stop() -> None:
    chunks = chunks_per_epoch()
    assert chunks == 5
    assert 8 % chunks != 0  # stopping at step 8 leaves a carried state to restore
    assert any(
        8 < k * chunks < 12 for k in range(1, 4)
    )  # the resumed steps reset it at a new epoch


def test_stopped_and_resumed_run_equals_uninterrupted_run(text_file: Path, tmp_path: Path) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = ["--data", text_file, *FLAGS, "--checkpoint-every", "4", "--eval-every", "4"]
    train("--out", whole, *common, "--steps", "12")
    train("--out", parts, *common, "--steps", "8")
    assert load_checkpoint(parts).step == 8
    train("--resume", parts, "--steps", "12", "--no-progress")

    expected = records(whole, "loss")
    assert [step for step, _ in expected] == list(range(1, 13))
    assert records(parts, "loss") == expected  # exact float equality, step by step
    assert records(parts, "val_loss") == records(whole, "val_loss")
    whole_model, whole_state = latest_files(whole)
    parts_model, parts_state = latest_files(parts)
    assert load_checkpoint(parts).step == load_checkpoint(whole).step == 12
    assert_same_tensors(parts_model, whole_model)
    assert_same_tensors(parts_state, whole_state)  # optimiser moments, RNG and carried state too


def test_resume_extends_metrics_without_gaps_or_repeats(text_file: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    train("--out", run_dir, "--data", text_file, *FLAGS, "--checkpoint-every", "3", "--steps", "6")
    first = records(run_dir, "loss")
    train("--resume", run_dir, "--steps", "9", "--no-progress")
    resumed = records(run_dir, "loss")
    assert resumed[:6] == first
    assert [step for step, _ in resumed] == list(range(1, 10))


def _wait_for_lines(path: Path, count: int, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"training exited early with status {process.returncode}")
        if path.exists() and path.read_bytes().count(b"\n") >= count:
            return
        time.sleep(0.05)
    pytest.fail(f"{path} did not reach {count} lines in {timeout} s")


@pytest.mark.skipif(
    sys.platform == "win32", reason="SIGINT cannot be sent to a child process on Windows"
)
def test_interrupt_checkpoints_and_resume_continues_exactly(
    text_file: Path, tmp_path: Path
) -> None:
    run_dir, reference = tmp_path / "run", tmp_path / "reference"
    common = ["--data", str(text_file), *FLAGS, "--checkpoint-every", "1000"]
    common += ["--eval-every", "1000"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
        "OMP_NUM_THREADS": "1",  # as in this process, so that both compute the same floats
    }
    stdout, stderr = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with stdout.open("w") as out, stderr.open("w") as err:
        command = [sys.executable, "-m", "rnnkit", "train", "--out", str(run_dir), *common]
        process = subprocess.Popen([*command, "--steps", "100000"], stdout=out, stderr=err, env=env)
        try:
            _wait_for_lines(run_dir / "metrics.jsonl", 5, process, timeout=90)
            process.send_signal(signal.SIGINT)
            status = process.wait(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    message = stderr.read_text()
    assert status == 130, message
    assert "Traceback" not in message
    match = re.search(r"interrupted at step (\d+)", message)
    assert match, message
    stopped = int(match[1])
    assert f"rnnkit train --resume {run_dir}" in message
    assert 5 <= stopped < 100000
    assert load_checkpoint(run_dir).step == stopped
    assert [step for step, _ in records(run_dir, "loss")] == list(range(1, stopped + 1))

    target = stopped + 3
    train("--resume", run_dir, "--steps", str(target), "--no-progress")
    train("--out", reference, *common, "--steps", str(target))
    assert [step for step, _ in records(run_dir, "loss")] == list(range(1, target + 1))
    assert records(run_dir, "loss") == records(reference, "loss")
    assert_same_tensors(latest_files(run_dir)[0], latest_files(reference)[0])
