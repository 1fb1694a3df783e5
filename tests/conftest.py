"""Fixtures shared by the whole test suite."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from rnnkit.engine.threads import torch_threads


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state, so that a failure reproduces on its own."""
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """Run a module's tests on one thread: tiny models run fastest that way, especially on a
    machine shared with other work, and every process then reduces in the same order."""
    with torch_threads(1):
        yield
