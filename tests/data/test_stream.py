"""Tests for rnnkit.data.stream: chunks continue their streams and targets are the next tokens."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from rnnkit.data.stream import StreamBatches
from rnnkit.errors import DataError

# (number of tokens, batch size B, sequence length T)
SIZES = [
    pytest.param(11, 2, 2, id="docstring"),
    pytest.param(2 * 3 + 1, 2, 3, id="exactly-one-chunk"),
    pytest.param(1000, 4, 7, id="remainder"),
    pytest.param(97, 1, 5, id="one-stream"),
    pytest.param(200, 7, 1, id="one-step"),
]


def _ids(n: int) -> torch.Tensor:
    # distinct values, so equal tensors mean the same positions in the text
    return torch.randperm(n, generator=torch.Generator().manual_seed(n))


def test_docstring_example():
    batches = StreamBatches(torch.arange(11), batch_size=2, seq_len=2)
    assert len(batches) == 2 and batches.stream_len == 4 and batches.num_tokens == 8
    inputs, targets = batches.chunk(1)
    assert inputs.tolist() == [[2, 6], [3, 7]]
    assert targets.tolist() == [[3, 7], [4, 8]]


@pytest.mark.parametrize(("n", "batch_size", "seq_len"), SIZES)
def test_chunks_continue_each_stream(n, batch_size, seq_len):
    ids = _ids(n)
    batches = StreamBatches(ids, batch_size, seq_len)
    L, T = batches.stream_len, seq_len
    assert len(batches) == L // T >= 1 and L % T == 0
    assert n - (batch_size * L + 1) < batch_size * T  # less than one batch dropped
    for k in range(len(batches) - 1):
        now, _ = batches.chunk(k)
        after, _ = batches.chunk(k + 1)
        for b in range(batch_size):
            joined = torch.cat([now[:, b], after[:, b]])  # (2T,)
            assert joined.equal(ids[b * L + k * T : b * L + (k + 2) * T])


@pytest.mark.parametrize(("n", "batch_size", "seq_len"), SIZES)
def test_targets_are_the_next_tokens(n, batch_size, seq_len):
    ids = _ids(n)
    batches = StreamBatches(ids, batch_size, seq_len)
    chunks = list(batches)
    assert len(chunks) == len(batches)
    for inputs, targets in chunks:
        assert inputs.shape == targets.shape == (seq_len, batch_size)  # (T, B)
        assert inputs.dtype == targets.dtype == torch.long
        assert targets[:-1].equal(inputs[1:])  # within a chunk
    for (_, targets), (next_inputs, _) in itertools.pairwise(chunks):
        assert targets[-1].equal(next_inputs[0])  # across the chunk boundary
    # all chunks together, stream by stream, are the text and the text shifted by one
    inputs = torch.cat([inputs for inputs, _ in chunks])  # (L, B)
    targets = torch.cat([targets for _, targets in chunks])  # (L, B)
    used = batches.num_tokens
    assert inputs.t().reshape(-1).equal(ids[:used])
    assert targets.t().reshape(-1).equal(ids[1 : used + 1])


def test_without_drop_last_the_last_chunk_is_shorter():
    ids = _ids(24)
    batches = StreamBatches(
        ids, batch_size=3, seq_len=5, drop_last=False, what="the validation text"
    )
    assert batches.stream_len == 7 and len(batches) == 2  # (24 - 1) // 3 = 7 = 5 + 2
    (first, _), (last_inputs, last_targets) = list(batches)
    assert first.shape == (5, 3) and last_inputs.shape == last_targets.shape == (2, 3)
    inputs = torch.cat([first, last_inputs])  # (L, B)
    assert inputs.t().reshape(-1).equal(ids[:21])
    assert last_targets[-1].equal(ids[torch.tensor([7, 14, 21])])


def test_too_short_text_names_both_numbers():
    with pytest.raises(DataError) as info:
        StreamBatches(torch.zeros(50, dtype=torch.long), batch_size=16, seq_len=100)
    assert str(info.value) == (
        "the training text has 50 characters, fewer than one batch needs "
        "(batch size 16 × sequence length 100 + 1 = 1601); lower --batch-size or --seq-len"
    )
    with pytest.raises(DataError, match="has 6 characters.*= 7"):
        StreamBatches(torch.zeros(6, dtype=torch.long), batch_size=2, seq_len=3)
    with pytest.raises(DataError, match="the validation text has 4 characters.*4 \\+ 1 = 5"):
        StreamBatches(
            torch.zeros(4, dtype=torch.long), 4, 100, drop_last=False, what="the validation text"
        )


@pytest.mark.parametrize(
    ("ids", "batch_size", "seq_len", "problem"),
    [
        (torch.zeros(2, 5, dtype=torch.long), 1, 1, "1-D tensor or numpy array, got a Tensor of shape (2, 5)"),
        (np.zeros((2, 5), dtype=np.uint8), 1, 1, "1-D tensor or numpy array, got a ndarray of shape (2, 5)"),
        ([1, 2, 3], 1, 1, "1-D tensor or numpy array, got list"),
        (torch.zeros(10), 1, 1, "integers"),
        (np.zeros(10, dtype=np.float32), 1, 1, "integers, got dtype float32"),
        (torch.zeros(10, dtype=torch.long), 0, 1, "batch_size must be a positive int, got 0"),
        (torch.zeros(10, dtype=torch.long), 1, 2.5, "seq_len must be a positive int, got 2.5"),
        (torch.zeros(10, dtype=torch.long), True, 1, "batch_size must be a positive int"),
    ],
    ids=["2-d", "2-d-array", "list", "float", "float-array", "zero-batch", "float-seq-len", "bool-batch"],
)
def test_rejects_bad_arguments(ids, batch_size, seq_len, problem):
    with pytest.raises(ValueError) as info:
        StreamBatches(ids, batch_size, seq_len)
    assert problem in str(info.value)


def test_chunk_index_out_of_range():
    batches = StreamBatches(torch.arange(11), batch_size=2, seq_len=2)
    for k in (-1, 2):
        with pytest.raises(IndexError, match=f"chunk {k} out of range for 2 chunks"):
            batches.chunk(k)


def test_chunks_are_cheap_views_of_one_buffer():
    batches = StreamBatches(torch.arange(1001), batch_size=10, seq_len=10)
    inputs, targets = batches.chunk(3)
    assert inputs.is_contiguous() and targets.is_contiguous()
    assert inputs.untyped_storage().data_ptr() == targets.untyped_storage().data_ptr()


@pytest.mark.parametrize(("n", "batch_size", "seq_len"), SIZES)
@pytest.mark.parametrize("drop_last", [True, False], ids=["train", "evaluate"])
@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.int64], ids=["uint16", "uint32", "int64"])
def test_array_chunks_equal_tensor_chunks(n, batch_size, seq_len, drop_last, dtype):
    """Ids in a numpy array (a prepared corpus's memory map) are gathered chunk by chunk, and
    every chunk equals the one laid out in memory from the same ids in a tensor."""
    ids = _ids(n)
    in_memory = StreamBatches(ids, batch_size, seq_len, drop_last=drop_last)
    lazy = StreamBatches(ids.numpy().astype(dtype), batch_size, seq_len, drop_last=drop_last)
    assert (len(lazy), lazy.stream_len, lazy.num_tokens) == (len(in_memory), in_memory.stream_len, in_memory.num_tokens)
    for (inputs, targets), (expected_inputs, expected_targets) in zip(lazy, in_memory, strict=True):
        assert inputs.dtype == targets.dtype == torch.long
        assert inputs.equal(expected_inputs) and targets.equal(expected_targets)


def test_memory_map_chunks_hold_the_stream_positions(tmp_path):
    """From a memory map whose token at position p is p, chunk k holds at row t, column b the
    token at b*L + k*T + t (the target row t + 1): each stream's position is computed, not copied."""
    n, batch_size, seq_len = 10_001, 4, 25
    path = tmp_path / "tokens.bin"
    np.arange(n, dtype="<u4").tofile(path)
    batches = StreamBatches(np.memmap(path, dtype="<u4", mode="r"), batch_size, seq_len)
    length = batches.stream_len
    for k in (0, 17, len(batches) - 1):
        inputs, targets = batches.chunk(k)
        expected = torch.tensor([[b * length + k * seq_len + t for b in range(batch_size)] for t in range(seq_len + 1)])
        assert inputs.equal(expected[:-1]) and targets.equal(expected[1:])
