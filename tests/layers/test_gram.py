"""Gram matrices: from upper column blocks at once, and summed chunk by chunk on a second thread."""

from __future__ import annotations

import threading

import pytest
import torch

from rnnkit.engine.threads import torch_threads
from rnnkit.layers.gram import StreamedGram, upper_gram_matrix


def rows(count: int, features: int, seed: int = 16) -> torch.Tensor:
    return torch.randn(count, features, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("features", [1, 256, 1002], ids=["one-block", "two-blocks", "ten-blocks"])
def test_gram_matrix_from_its_upper_blocks_equals_the_full_product_there(features: int) -> None:
    x = rows(300, features)
    torch.testing.assert_close(upper_gram_matrix(x).triu(), (x.T @ x).triu(), rtol=1e-12, atol=1e-10)


def streamed(chunks: list[torch.Tensor], threads: int) -> torch.Tensor:
    with torch_threads(threads):
        out = torch.zeros(chunks[0].size(1), chunks[0].size(1), dtype=torch.float64)
        with StreamedGram(out) as gram:
            for chunk in chunks:
                gram.add(chunk)
            return gram.finish()


@pytest.mark.parametrize("features", [7, 1002], ids=["one-block", "ten-blocks"])
def test_streamed_gram_sums_every_chunk_the_same_on_one_thread_or_two(features: int) -> None:
    x = rows(700, features)
    chunks = list(x.split([1, 128, 250, 128, 193]))  # uneven, one of a single row
    one_thread = streamed(chunks, threads=1)
    torch.testing.assert_close(one_thread.triu(), (x.T @ x).triu(), rtol=1e-12, atol=1e-10)
    for _ in range(3):  # whichever thread sums a block, it sums the chunks in order: the same bits
        assert torch.equal(streamed(chunks, threads=2), one_thread)


def test_streamed_gram_restores_the_thread_count_and_stops_its_thread_when_the_caller_fails() -> None:
    x = rows(256, 300)
    with torch_threads(2):
        with pytest.raises(RuntimeError, match="reservoir failed"):
            with StreamedGram(torch.zeros(300, 300, dtype=torch.float64)) as gram:
                assert torch.get_num_threads() == 1  # the caller's share runs on one thread
                gram.add(x)
                raise RuntimeError("reservoir failed")
        assert torch.get_num_threads() == 2
    assert not any(thread.name == "rnnkit-gram" for thread in threading.enumerate())


def test_an_error_on_the_second_thread_is_raised_by_finish() -> None:
    with torch_threads(2), StreamedGram(torch.zeros(300, 300, dtype=torch.float64)) as gram:
        gram.add(rows(64, 300))
        gram.add(rows(64, 299))  # a chunk of the wrong width: its products fail on the second thread
        with pytest.raises(RuntimeError):
            gram.finish()
