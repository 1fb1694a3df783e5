"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    """Every test starts from the same random state, so that a failure reproduces on its own."""
    torch.manual_seed(0)
