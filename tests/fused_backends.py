"""Helpers of the fused-kernel tests: choosing the back-end, and letting a step split over threads."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

from rnnkit.engine.fused import extension

BACKENDS = ["cpp", "python"]


@contextmanager
def two_threads() -> Iterator[None]:
    """Let at::parallel_for split a step's work, inside a module that runs on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def use_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Select the fused executor's C++ kernels (skipping where they cannot be built) or Python's."""
    if backend == "cpp" and extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    if backend == "python":
        monkeypatch.setattr(extension, "ops", lambda: None)
