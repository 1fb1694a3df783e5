"""Data-parallel training: two processes equal one, resume exactly, and survive a lost peer.

The runs launch real processes on the CPU (gloo): ``torchrun --standalone --nproc-per-node 2``,
or, for the faults, two plain ``python -m rnnkit train`` processes given torchrun's environment.
The text has five chunks per epoch of 4 streams × 16 steps, so that an 8-step run stops in the
middle of an epoch (a carried state to save) and its continuation crosses an epoch boundary.

Tolerance of the one-process comparison: a two-process loss is the mean of two float32 means over
32 characters each, the one-process loss one float32 mean over 64, and the gradients differ the
same way (DDP averages two partial gradients); these are float32 round-off, relative ~1e-7 (a few
ulps), and Adam's normalised updates carry them into the weights without amplifying them over a
dozen steps. ``rtol=1e-5`` leaves two orders of magnitude of room and still catches any real
difference (a wrong stream, a lost state, gradients summed instead of averaged: all change the
losses in the third decimal or earlier).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from run_files import assert_same_tensors, latest_files

from rnnkit.cli import main
from rnnkit.data.stream import StreamBatches
from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.distributed import SINGLE, World, world_from_environment

pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # as the launched processes (OMP_NUM_THREADS=1)
    pytest.mark.skipif(sys.platform == "win32", reason="the launches use POSIX signals"),
]

SRC = Path(__file__).resolve().parents[2] / "src"
ENV = {
    **os.environ,
    "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    "OMP_NUM_THREADS": "1",
}
# 390 characters: 351 for training (5 chunks of 4 streams x 16 steps), 39 for validation.
TEXT = ("first citizen: before we proceed any further, hear me speak.\n" * 7)[:390]
# fmt: off
FLAGS = [
    "--cell", "lstm", "--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "16",
    "--validation-streams", "4", "--no-progress",
]
# fmt: on
LAUNCH_SECONDS = 180  # a generous bound on one launch of two processes on a busy 2-core machine


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "citizen.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


def records(run_dir: Path, key: str) -> list[tuple[int, float]]:
    """(step, value) of every metrics.jsonl record that has ``key``, in file order."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


def torchrun(*argv: str | Path, extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """``torchrun --standalone --nproc-per-node 2 -m rnnkit train ARGV``, which must succeed."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", *extra,
        "-m", "rnnkit", "train", *map(str, argv),
    ]  # fmt: skip
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=LAUNCH_SECONDS)
    assert done.returncode == 0, done.stderr[-5000:]
    return done


def assert_close(got: list[tuple[int, float]], expected: list[tuple[int, float]]) -> None:
    assert [step for step, _ in got] == [step for step, _ in expected]
    torch.testing.assert_close(
        torch.tensor([v for _, v in got]), torch.tensor([v for _, v in expected]), rtol=1e-5, atol=0
    )


# ---------------------------------------------------------------------------------------------
# In one process: the shards and the environment


@pytest.mark.parametrize(
    ("n", "batch_size", "world"),
    [pytest.param(400, 4, 2, id="even"), pytest.param(400, 6, 4, id="uneven"), pytest.param(97, 3, 3, id="one-each")],
)
@pytest.mark.parametrize("drop_last", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("source", ["tensor", "array"], ids=["in-memory", "prepared"])
def test_shards_are_column_blocks_of_the_whole(n: int, batch_size: int, world: int, drop_last: bool,
                                               source: str) -> None:
    # "array": ids in a numpy array, as a prepared corpus's memory map gives them (read lazily)
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    whole = StreamBatches(ids, batch_size, 5, drop_last=drop_last)
    read = ids if source == "tensor" else ids.numpy().astype(np.uint16)
    shards = [StreamBatches(read, batch_size, 5, drop_last=drop_last, shard=(r, world)) for r in range(world)]
    assert sum(s.batch_size for s in shards) == batch_size
    for k in range(len(whole)):
        for part in (0, 1):  # inputs, targets
            joined = torch.cat([s.chunk(k)[part] for s in shards], dim=1)
            assert joined.equal(whole.chunk(k)[part])


def test_a_shard_without_streams_is_refused() -> None:
    with pytest.raises(ValueError, match="holds none of the 2 streams"):
        StreamBatches(torch.arange(50), 2, 4, shard=(0, 3))
    with pytest.raises(ValueError, match="0 <= rank < size"):
        StreamBatches(torch.arange(50), 2, 4, shard=(2, 2))


def test_world_from_environment() -> None:
    assert world_from_environment({}) is SINGLE
    assert world_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, 9.0) == World(3, 4, 1, 9.0)
    with pytest.raises(RnnkitError, match="got no LOCAL_RANK"):
        world_from_environment({"RANK": "0", "WORLD_SIZE": "2"})
    with pytest.raises(RnnkitError, match="expected an integer in the environment variable RANK, got 'x'"):
        world_from_environment({"RANK": "x", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    with pytest.raises(RnnkitError, match="got 0, 2, 2"):
        world_from_environment({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["--batch-size", "3"], "must divide by 2, got 3", id="batch"),
        pytest.param(["--task", "parity", "--steps", "2"], "expected one process for the task parity, got 2", id="task"),
    ],
)
def test_what_two_processes_cannot_train_is_refused_before_they_join(
    flags: list[str], message: str, text_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # No MASTER_ADDR: joining would fail, so reaching the message proves the check comes first.
    for name, value in {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    source = [] if "--task" in flags else ["--data", str(text_file)]
    assert main(["train", "--out", str(tmp_path / "run"), *source, "--no-progress", *flags]) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------------------------------------
# Two processes under torchrun


@pytest.mark.slow  # launches processes: seconds each
def test_two_processes_follow_the_one_process_trajectory(text_file: Path, tmp_path: Path) -> None:
    """Same global batch of 4 streams: 1 process reading 4, or 2 reading 2 each. A checkpoint of
    the pair holds the state of all 4 streams, so one process continues it as its own."""
    one, two = tmp_path / "one", tmp_path / "two"
    common = ["--data", text_file, *FLAGS, "--checkpoint-every", "4", "--eval-every", "4"]
    assert main(["train", "--out", str(one), *map(str, common), "--steps", "15"]) == 0
    torchrun("--out", two, *common, "--steps", "12")

    assert_close(records(two, "loss"), records(one, "loss")[:12])
    assert_close(records(two, "val_loss"), records(one, "val_loss")[:3])
    assert not list(two.glob("**/*.tmp")) and load_checkpoint(two).step == 12

    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    assert main(["train", "--resume", str(resumed), "--steps", "15", "--no-progress"]) == 0
    assert_close(records(resumed, "loss"), records(one, "loss"))
    model, state = latest_files(resumed)
    one_model, one_state = latest_files(one)
    for name in model:
        torch.testing.assert_close(model[name], one_model[name], rtol=1e-4, atol=1e-6)
    carried = [name for name in one_state if name.startswith("carried_state")]
    assert carried
    for name in carried:
        torch.testing.assert_close(state[name], one_state[name], rtol=1e-4, atol=1e-6)


@pytest.mark.slow  # launches processes: seconds each
def test_two_processes_train_from_a_prepared_corpus_as_one_process_from_its_text(
    text_file: Path, tmp_path: Path
) -> None:
    """Each rank gathers its own block of streams from the corpus's memory-mapped token file."""
    prepared, one, two = tmp_path / "prepared", tmp_path / "one", tmp_path / "two"
    assert main(["prepare", "--data", str(text_file), "--out", str(prepared)]) == 0  # validation 0.1, as train's
    common = [*FLAGS, "--eval-every", "4", "--steps", "8"]
    assert main(["train", "--out", str(one), "--data", str(text_file), *common]) == 0
    torchrun("--out", two, "--data", prepared, *common)
    assert_close(records(two, "loss"), records(one, "loss"))
    assert_close(records(two, "val_loss"), records(one, "val_loss"))


@pytest.mark.slow  # launches processes: seconds each
def test_stopped_and_resumed_two_process_run_continues_exactly(text_file: Path, tmp_path: Path) -> None:
    """Dropout and input noise draw from each rank's own RNG, saved in the checkpoint beside the
    carried state of both ranks' streams: the continuation is bit for bit the uninterrupted run."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    common = [
        "--data", text_file, *FLAGS, "--dropout", "0.2", "--input-noise", "0.1",
        "--checkpoint-every", "4", "--eval-every", "4",
    ]  # fmt: skip
    torchrun("--out", whole, *common, "--steps", "12")
    torchrun("--out", parts, *common, "--steps", "8")
    saved = load_checkpoint(parts)
    assert saved.step == 8 and saved.metadata["chunk"] == 3  # stopped mid-epoch
    assert {"rng", "rng.rank1"} <= saved.tensors.keys()
    assert not torch.equal(saved.tensors["rng"], saved.tensors["rng.rank1"])
    torchrun("--resume", parts, "--steps", "12", "--no-progress")

    assert [step for step, _ in records(whole, "loss")] == list(range(1, 13))
    assert records(parts, "loss") == records(whole, "loss")  # exact float equality, step by step
    assert records(parts, "val_loss") == records(whole, "val_loss")
    parts_model, parts_state = latest_files(parts)
    whole_model, whole_state = latest_files(whole)
    assert_same_tensors(parts_model, whole_model)
    assert_same_tensors(parts_state, whole_state)  # optimiser, both ranks' RNGs, carried state


# ---------------------------------------------------------------------------------------------
# Faults: a peer killed or hung


def _wait_for_checkpoint(run_dir: Path, processes: list[subprocess.Popen], timeout: float) -> None:
    """Until the run has written a checkpoint and trained on past it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            pytest.fail("a process exited before the fault was injected")
        metrics = run_dir / "metrics.jsonl"
        if (run_dir / "checkpoints" / "latest").exists() and metrics.exists() and metrics.read_bytes().count(b"\n") > 5:
            return
        time.sleep(0.05)
    pytest.fail(f"{run_dir} wrote no checkpoint in {timeout} s")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _long_run(text_file: Path, run_dir: Path, timeout: float) -> list[str]:
    return [
        "--out", str(run_dir), "--data", str(text_file), *FLAGS, "--steps", "1000000",
        "--checkpoint-every", "3", "--eval-every", "1000000", "--collective-timeout", str(timeout),
    ]  # fmt: skip


def _assert_one_clear_line(stderr: str, reason: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith("rnnkit train: error: rank 0 of 2 stopped at step "), stderr
    assert reason in lines[0] and "the last good checkpoint" in lines[0], stderr


@pytest.mark.slow  # launches processes: seconds each
@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        pytest.param(signal.SIGKILL, "another process closed its connection", id="killed"),
        pytest.param(signal.SIGSTOP, "did not answer within --collective-timeout 3 s", id="hung"),
    ],
)
def test_a_lost_peer_ends_the_survivor_with_one_line(
    fault: signal.Signals, reason: str, text_file: Path, tmp_path: Path
) -> None:
    """Two plain processes with torchrun's environment: rank 1 is killed (gloo notices the closed
    connection) or stopped (rank 0's collective times out after 3 s)."""
    run_dir = tmp_path / "run"
    argv = _long_run(text_file, run_dir, 3.0)
    processes = _plain_launch([argv, argv], tmp_path)
    try:
        _wait_for_checkpoint(run_dir, processes, LAUNCH_SECONDS)
        processes[1].send_signal(fault)
        status = processes[0].wait(timeout=3.0 + 30)  # the timeout, plus slack for a busy machine
    finally:
        _end(processes)
    assert status == 1
    _assert_one_clear_line((tmp_path / "stderr0.txt").read_text(), reason)
    assert load_checkpoint(run_dir).step >= 3  # the last good checkpoint survives and loads


@pytest.mark.slow  # launches processes: seconds each
def test_ranks_that_read_different_checkpoints_refuse_to_continue(text_file: Path, tmp_path: Path) -> None:
    """As on two machines whose copies of the run directory differ (one copied at step 2)."""
    ahead, behind = tmp_path / "ahead", tmp_path / "behind"
    assert main(["train", "--out", str(ahead), "--data", str(text_file), *FLAGS, "--steps", "2"]) == 0
    shutil.copytree(ahead, behind)
    assert main(["train", "--resume", str(ahead), "--steps", "4", "--no-progress"]) == 0
    processes = _plain_launch([["--resume", str(run), "--steps", "6", "--no-progress"] for run in (ahead, behind)], tmp_path)
    try:
        statuses = [process.wait(timeout=LAUNCH_SECONDS) for process in processes]
    finally:
        _end(processes)
    assert statuses == [1, 1]
    for rank in (0, 1):
        stderr = (tmp_path / f"stderr{rank}.txt").read_text()
        assert stderr.startswith(f"rnnkit train: error: rank {rank} of 2: the processes read different checkpoints")
        assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1
    assert load_checkpoint(ahead).step == 4 and load_checkpoint(behind).step == 2


def _plain_launch(argvs: list[list[str]], tmp_path: Path) -> list[subprocess.Popen]:
    """``rnnkit train ARGV`` as rank r of len(argvs) processes, each given torchrun's environment
    without torchrun; rank r's standard error goes to ``tmp_path/stderr{r}.txt``."""
    port, processes = _free_port(), []
    for rank, argv in enumerate(argvs):
        env = {**ENV, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(len(argvs)),
               "RANK": str(rank), "LOCAL_RANK": str(rank)}  # fmt: skip
        with (tmp_path / f"stderr{rank}.txt").open("w") as stderr:
            command = [sys.executable, "-m", "rnnkit", "train", *argv]
            processes.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr))
    return processes


def _end(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow  # launches processes: seconds each
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the workers in /proc")
def test_under_torchrun_a_killed_rank_ends_the_run(text_file: Path, tmp_path: Path) -> None:
    """torchrun notices the dead worker and stops the other; the survivor says why in one line."""
    run_dir, log_dir = tmp_path / "run", tmp_path / "logs"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
        "--log-dir", str(log_dir), "--redirects", "3", "-m", "rnnkit", "train", *_long_run(text_file, run_dir, 60.0),
    ]  # fmt: skip
    agent = subprocess.Popen(command, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for_checkpoint(run_dir, [agent], LAUNCH_SECONDS)
        os.kill(_worker_of_rank(agent.pid, 1), signal.SIGKILL)
        status = agent.wait(timeout=60)  # well under the 60 s collective timeout: no waiting on it
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()
    assert status != 0
    (rank0,) = log_dir.glob("**/attempt_0/0/stderr.log")
    stderr = rank0.read_text()
    _assert_one_clear_line(stderr, "")
    assert "closed its connection" in stderr or "stopped by SIGTERM" in stderr
    assert load_checkpoint(run_dir).step >= 3


def _worker_of_rank(agent: int, rank: int) -> int:
    """The pid of the torchrun worker (a child of ``agent``) whose RANK is ``rank``."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The parent pid is the 2nd field after the parenthesised command name.
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) != agent:
                continue
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue  # a process that ended meanwhile
        if f"RANK={rank}".encode() in environ:
            return int(stat.parent.name)
    pytest.fail(f"no worker of rank {rank} under torchrun (pid {agent})")
