"""``torch_threads``: torch's CPU thread count set for a block, then restored."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    """Run torch's CPU kernels on ``count`` threads within the block, then restore the count.

    The count is the process's, not the block's: other threads running torch meanwhile see it too.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
