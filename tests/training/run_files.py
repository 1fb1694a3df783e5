"""Helpers shared by the resume tests: a run's newest checkpoint files, compared bit for bit."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from rnnkit.training.checkpoint import latest_checkpoint_path


def latest_files(run_dir: Path) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The model and the other state of the newest checkpoint, read from its safetensors files."""
    path = latest_checkpoint_path(run_dir)
    assert path is not None
    return load_file(path / "model.safetensors"), load_file(path / "state.safetensors")


def assert_same_tensors(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [name for name in a if not torch.equal(a[name], b[name])]
    assert not different, f"not bit-equal: {different}"
