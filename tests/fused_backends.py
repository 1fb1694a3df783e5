"""Helpers of the fused-kernel tests: choosing the back-end."""

from __future__ import annotations

import pytest
import torch

from rnnkit.engine.fused import extension

BACKENDS = ["cpp", "python"]


def use_backend(backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Select the fused executor's C++ kernels (skipping where they cannot be built) or Python's."""
    if backend == "cpp" and extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    if backend == "python":
        monkeypatch.setattr(extension, "ops", lambda: None)
