"""``rnnkit train --device``: where a run trains, the backend its processes join with, and
continuing a run on another device. The GPU tests skip without CUDA; the rest run anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from run_files import assert_same_tensors, latest_files

from rnnkit.cli import main
from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.config import TrainConfig, config_from_dict, config_to_dict
from rnnkit.training.distributed import CPU, World, resolve_device

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")

TEXT = ("first citizen: before we proceed any further, hear me speak.\n" * 7)[:390]
# No dropout or input noise: the CPU and the GPU draw from different generators.
# fmt: off
FLAGS = [
    "--cell", "lstm", "--hidden", "16", "--layers", "2", "--batch-size", "4", "--seq-len", "16",
    "--validation-streams", "4", "--checkpoint-every", "3", "--eval-every", "3", "--no-progress",
]
# fmt: on


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "citizen.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture
def exact_gpu_floats(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 on the GPU as on the CPU: no TF32 in matrix products or cuDNN."""
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)


def train(*argv: str | Path) -> None:
    assert main(["train", *map(str, argv)]) == 0


def losses(run_dir: Path, key: str = "loss") -> list[tuple[int, float]]:
    """(step, value) of every metrics.jsonl record that has ``key``, in file order."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [(r["step"], r[key]) for r in map(json.loads, lines) if key in r]


def assert_close_losses(got: Path, expected: Path) -> None:
    for key in ("loss", "val_loss"):
        steps, values = zip(*losses(got, key), strict=True)
        expected_steps, expected_values = zip(*losses(expected, key), strict=True)
        assert steps == expected_steps
        assert values == pytest.approx(expected_values, rel=1e-4)


# ------------------------------------------------------------------------------------------------
# Choosing the device and the backend


@pytest.mark.parametrize(
    ("requested", "local_rank", "gpus", "expected"),
    [
        ("cpu", 0, 0, CPU),
        ("cpu", 1, 2, CPU),
        ("auto", 0, 0, CPU),
        ("auto", 1, 2, torch.device("cuda", 1)),
        ("cuda", 0, 1, torch.device("cuda", 0)),
        ("cuda", 3, 4, torch.device("cuda", 3)),
    ],
    ids=["cpu", "cpu-with-gpus", "auto-without-gpu", "auto-with-gpus", "cuda", "cuda-local-rank"],
)
def test_resolve_device(requested: str, local_rank: int, gpus: int, expected: torch.device) -> None:
    assert resolve_device(requested, local_rank, gpus) == expected


@pytest.mark.parametrize(
    ("requested", "local_rank", "gpus", "message"),
    [
        ("cuda", 0, 0, "expected a CUDA GPU, got none"),
        ("cuda", 2, 2, "got LOCAL_RANK 2 with 2 GPU(s)"),
        ("auto", 1, 1, "got LOCAL_RANK 1 with 1 GPU(s)"),
        ("tpu", 0, 0, "expected a device among auto, cpu, cuda, got 'tpu'"),
    ],
    ids=["no-gpu", "more-ranks-than-gpus", "auto-more-ranks-than-gpus", "unknown"],
)
def test_resolve_device_refuses(requested: str, local_rank: int, gpus: int, message: str) -> None:
    with pytest.raises(RnnkitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        resolve_device(requested, local_rank, gpus)


def test_backend_follows_the_device() -> None:
    # Decided from the device alone: nothing is initialised, no GPU is needed.
    assert World(rank=1, size=2, local_rank=1).backend == "gloo"
    assert World(rank=1, size=2, local_rank=1).on(torch.device("cuda", 1)).backend == "nccl"
    assert World().on(CPU) == World()


def test_device_in_config_round_trip() -> None:
    config = TrainConfig(device="auto")
    assert config_from_dict(TrainConfig, config_to_dict(config)) == config
    assert TrainConfig().device == "cpu"  # every run made before --device existed trained there
    config.device = "gpu"
    with pytest.raises(RnnkitError, match="device must be one of auto, cpu, cuda, got 'gpu'"):
        config.validate()


# ------------------------------------------------------------------------------------------------
# The command line, on the CPU


def test_explicit_cpu_is_the_default_run(text_file: Path, tmp_path: Path) -> None:
    default, explicit = tmp_path / "default", tmp_path / "explicit"
    train("--out", default, "--data", text_file, *FLAGS, "--steps", "6")
    train("--out", explicit, "--data", text_file, *FLAGS, "--steps", "6", "--device", "cpu")
    assert losses(explicit) == losses(default)  # exact float equality
    assert losses(explicit, "val_loss") == losses(default, "val_loss")
    saved = json.loads((explicit / "config.json").read_text(encoding="utf-8"))
    assert saved["device"] == "cpu" == json.loads((default / "config.json").read_text(encoding="utf-8"))["device"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resume"])
def test_cuda_without_gpu_is_one_line(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], resume: bool
) -> None:
    run_dir = tmp_path / "run"
    if resume:
        train("--out", run_dir, "--data", text_file, *FLAGS, "--steps", "3")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    capsys.readouterr()
    argv = ["--resume", run_dir] if resume else ["--out", run_dir, "--data", text_file, *FLAGS]
    status = main(["train", *map(str, argv), "--steps", "6", "--device", "cuda", "--no-progress"])
    out, err = capsys.readouterr()
    assert status in (1, 2)
    assert out == ""
    assert err.splitlines() == ["rnnkit train: error: --device cuda: expected a CUDA GPU, got none "
                                "(torch.cuda.is_available() is false)"]
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written


def test_resume_may_change_the_device(text_file: Path, tmp_path: Path) -> None:
    """--device, like the budget, may change on --resume; auto on a machine without a GPU is the
    CPU, and the continuation is then exact."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train("--out", whole, "--data", text_file, *FLAGS, "--steps", "6")
    train("--out", parts, "--data", text_file, *FLAGS, "--steps", "3")
    train("--resume", parts, "--steps", "6", "--device", "auto" if not torch.cuda.is_available() else "cpu")
    assert losses(parts) == losses(whole)
    assert_same_tensors(latest_files(parts)[0], latest_files(whole)[0])
    saved = load_checkpoint(parts).metadata["config"]["device"]
    assert saved == ("auto" if not torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------------
# On a GPU


@needs_gpu
@pytest.mark.usefixtures("exact_gpu_floats")
def test_cuda_run_follows_the_cpu_run(text_file: Path, tmp_path: Path) -> None:
    on_cpu, on_gpu = tmp_path / "cpu", tmp_path / "gpu"
    train("--out", on_cpu, "--data", text_file, *FLAGS, "--steps", "6")
    train("--out", on_gpu, "--data", text_file, *FLAGS, "--steps", "6", "--device", "cuda")
    assert_close_losses(on_gpu, on_cpu)
    checkpoint = load_checkpoint(on_gpu)
    assert all(t.device == CPU for t in checkpoint.model_state.values())  # device-independent
    assert "cuda_rng" in checkpoint.tensors and "rng" in checkpoint.tensors


@needs_gpu
@pytest.mark.usefixtures("exact_gpu_floats")
@pytest.mark.parametrize(("first", "then"), [("cpu", "cuda"), ("cuda", "cpu")], ids=["cpu-to-cuda", "cuda-to-cpu"])
def test_resume_across_devices(text_file: Path, tmp_path: Path, first: str, then: str) -> None:
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    train("--out", whole, "--data", text_file, *FLAGS, "--steps", "6")
    train("--out", parts, "--data", text_file, *FLAGS, "--steps", "3", "--device", first)
    train("--resume", parts, "--steps", "6", "--device", then)
    assert_close_losses(parts, whole)


@needs_gpu
@pytest.mark.usefixtures("exact_gpu_floats")
def test_cuda_task_run_follows_the_cpu_run(tmp_path: Path) -> None:
    task = ["--task", "adding", "--hidden", "16", "--batch-size", "8", "--steps", "4", "--eval-every", "2",
            "--no-progress"]
    train("--out", tmp_path / "cpu", *task)
    train("--out", tmp_path / "gpu", *task, "--device", "cuda")
    assert_close_losses(tmp_path / "gpu", tmp_path / "cpu")
