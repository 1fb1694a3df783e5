"""Building the C++ kernels: a lock file left by a killed build must not block every later import."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import pytest

from rnnkit.engine.fused.extension import STALE_LOCK_SECONDS, remove_stale_lock


def test_a_stale_lock_is_removed_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    lock = tmp_path / "lock"
    lock.touch()
    left = time.time() - STALE_LOCK_SECONDS - 60
    os.utime(lock, (left, left))
    with caplog.at_level(logging.WARNING):
        remove_stale_lock(tmp_path)
    assert not lock.exists()
    assert "did not finish" in caplog.text


def test_a_recent_lock_is_a_build_under_way_and_stays(tmp_path: Path) -> None:
    lock = tmp_path / "lock"
    lock.touch()
    remove_stale_lock(tmp_path)
    assert lock.exists()
    remove_stale_lock(tmp_path / "missing")  # no build directory yet: nothing to do
