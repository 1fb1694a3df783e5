"""Stream batching for language models trained by truncated back-propagation through time.

The token sequence (one long text, encoded) is cut into ``B`` contiguous streams of equal
length ``L``, stream ``b`` being tokens ``b*L ... (b+1)*L - 1``. Each epoch walks all streams in
step, ``T`` tokens at a time: chunk ``k`` holds time steps ``k*T ... (k+1)*T - 1`` of every stream,
so chunk ``k + 1`` continues each stream exactly where chunk ``k`` stopped and the recurrent state
left by chunk ``k`` is the right initial state for chunk ``k + 1`` (char-rnn; Zaremba et al. 2014).

The target of each input token is the token after it in the original sequence; for the last token
of stream ``b`` that is the first token of stream ``b + 1`` (or, for the last stream, the one token
kept after the streams), so every target is genuine and one chunk needs ``B*T + 1`` tokens.

Chunks are time-major, like rnnkit's recurrent layers: ``inputs[t, b]`` is time step ``t`` of
stream ``b``, and ``targets[t] == inputs[t + 1]`` within a chunk.

Token ids in a torch tensor are laid out once, time-major, as the ``(L+1, B)`` matrix of the B
windows (stream ``b`` and the token after it), and chunks are views of it. Token ids in a numpy
array, typically the memory map of a prepared corpus (:mod:`rnnkit.data.token_file`), are never
copied whole: chunk ``k`` gathers its ``T+1`` rows on demand, token ``b*L + k*T + t`` at row
``t`` of column ``b``, so memory holds one chunk whatever the corpus's size. Both give the same
chunks.

Data-parallel training cuts the same ``B`` streams and gives each of ``W`` processes a contiguous
block of them: with ``shard=(r, W)`` the chunks hold only streams ``⌊rB/W⌋ ... ⌊(r+1)B/W⌋ - 1``
(:func:`shard_streams`), exactly those columns of the unsharded chunks, so the ``W`` processes
together read what one process reading all ``B`` streams would.

Example::

    >>> ids = torch.arange(11)
    >>> batches = StreamBatches(ids, batch_size=2, seq_len=2)
    >>> len(batches)
    2
    >>> inputs, targets = batches.chunk(0)
    >>> inputs.tolist(), targets.tolist()
    ([[0, 4], [1, 5]], [[1, 5], [2, 6]])
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from rnnkit.errors import DataError


class StreamBatches:
    """The chunks of one epoch over a token sequence, for TBPTT with carried state.

    Args:
        ids: 1-D integer tensor of token ids (any device; the chunks are ``torch.long`` tensors
            on the same device), or a 1-D integer numpy array, such as a ``numpy.memmap``, read
            lazily chunk by chunk (the chunks are CPU ``torch.long`` tensors).
        batch_size: number of parallel streams ``B``.
        seq_len: time steps per chunk ``T`` (the truncation length of back-propagation).
        drop_last: if true (for training) every chunk has ``T`` steps and the tokens that do not
            fill a whole chunk are dropped from the end, fewer than ``B*T``. If false (for
            evaluation) the streams take all but fewer than ``B`` tokens and the last chunk may be
            shorter than ``T``.
        what: how error messages name the text, e.g. ``"the validation text"``.
        shard: ``(r, W)``: keep only process ``r``'s block of the ``B`` streams out of ``W``
            blocks (:func:`shard_streams`); ``batch_size`` stays the number of all streams, which
            fixes how the text is cut, and the :attr:`batch_size` of the result is the block's.

    Raises:
        ValueError: if ``ids`` is not a 1-D integer tensor, a size is not a positive int, or the
            shard holds no stream.
        DataError: if the text is too short for one chunk; the message gives both numbers.
    """

    def __init__(
        self,
        ids: torch.Tensor,
        batch_size: int,
        seq_len: int,
        *,
        drop_last: bool = True,
        what: str = "the training text",
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        if not isinstance(ids, (torch.Tensor, np.ndarray)) or ids.ndim != 1:
            raise ValueError(f"ids must be a 1-D tensor or numpy array, got {_describe(ids)}")
        if not _is_integer(ids.dtype):
            raise ValueError(f"ids must be integers, got dtype {ids.dtype}")
        for name, value in (("batch_size", batch_size), ("seq_len", seq_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.streams = shard_streams(batch_size, shard)  # which of the B streams are read here
        if not self.streams:
            raise ValueError(f"shard {shard} holds none of the {batch_size} streams")

        n = len(ids)
        if drop_last:
            needed = batch_size * seq_len + 1
            if n < needed:
                raise DataError(
                    f"{what} has {n} characters, fewer than one batch needs (batch size "
                    f"{batch_size} × sequence length {seq_len} + 1 = {needed}); "
                    "lower --batch-size or --seq-len"
                )
            stream_len = seq_len * ((n - 1) // (batch_size * seq_len))  # L, a multiple of T
        else:
            needed = batch_size + 1
            if n < needed:
                raise DataError(
                    f"{what} has {n} characters, fewer than one batch needs (batch size "
                    f"{batch_size} + 1 = {needed}); lower --batch-size"
                )
            stream_len = (n - 1) // batch_size  # L

        self.batch_size = len(self.streams)
        self.seq_len = seq_len
        self.stream_len = stream_len
        self.num_chunks = -(-stream_len // seq_len)  # ceil(L / T)
        # Window b is stream b plus the token after it: tokens b*L ... (b+1)*L.
        self._windows = (
            _TensorWindows(ids, self.streams, stream_len) if isinstance(ids, torch.Tensor)
            else _ArrayWindows(ids, self.streams, stream_len)
        )

    @property
    def num_tokens(self) -> int:
        """Input tokens per epoch, ``B * L`` (each also has a target)."""
        return self.batch_size * self.stream_len

    def __len__(self) -> int:
        """Chunks per epoch."""
        return self.num_chunks

    def chunk(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Chunk ``k`` as ``(inputs, targets)``, each of shape ``(T, B)`` (the last may be shorter).

        The tensors are views of one buffer: cheap, and not to be modified in place.
        From a numpy array the buffer is this chunk's alone, gathered from the array.
        """
        if not 0 <= k < self.num_chunks:
            raise IndexError(f"chunk {k} out of range for {self.num_chunks} chunks")
        start = k * self.seq_len
        stop = min(start + self.seq_len, self.stream_len)
        rows = self._windows.rows(start, stop + 1)  # (T+1, B)
        return rows[:-1], rows[1:]  # inputs, and targets: the inputs one step later

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """All chunks of an epoch, in order."""
        for k in range(self.num_chunks):
            yield self.chunk(k)

    def __repr__(self) -> str:
        return (
            f"StreamBatches(batch_size={self.batch_size}, seq_len={self.seq_len}, "
            f"stream_len={self.stream_len}, chunks={self.num_chunks})"
        )


class _TensorWindows:
    """The windows of ``streams`` in a tensor's ids, laid out time-major and contiguous once: ``(L+1, B)``."""

    def __init__(self, ids: torch.Tensor, streams: range, stream_len: int) -> None:
        ids = ids.to(torch.long).contiguous()
        windows = ids.unfold(0, stream_len + 1, stream_len)[streams.start : streams.stop]  # (B, L+1)
        self._data = windows.t().contiguous()  # (L+1, B)

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Time steps ``start ... stop - 1`` of every window, ``(stop - start, B)``: a view."""
        return self._data[start:stop]


class _ArrayWindows:
    """The windows of ``streams`` in a numpy array's ids, never copied whole: rows are gathered on demand."""

    def __init__(self, ids: np.ndarray, streams: range, stream_len: int) -> None:
        self._ids = ids
        self._starts = np.arange(streams.start, streams.stop, dtype=np.int64) * stream_len  # (B,) window b at b*L

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Time steps ``start ... stop - 1`` of every window, ``(stop - start, B)``: a new tensor.

        Each window's steps are contiguous in ``ids``, so a memory map reads B short runs.
        """
        positions = np.add.outer(np.arange(start, stop, dtype=np.int64), self._starts)  # (stop-start, B)
        return torch.from_numpy(np.array(self._ids[positions], dtype=np.int64))


def _is_integer(dtype: torch.dtype | np.dtype) -> bool:
    if isinstance(dtype, torch.dtype):
        return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)
    return np.issubdtype(dtype, np.integer)


def shard_streams(batch_size: int, shard: tuple[int, int]) -> range:
    """The streams of ``batch_size`` that process ``r`` of ``W`` reads, ``shard = (r, W)``:
    the contiguous block ``⌊rB/W⌋ ... ⌊(r+1)B/W⌋ - 1``. The blocks of ``r = 0 ... W-1`` cover every
    stream once; they are equal when ``W`` divides ``B``, and empty for some ``r`` when ``B < W``.
    """
    rank, size = shard
    if not all(type(n) is int for n in shard) or not 0 <= rank < size:
        raise ValueError(f"shard must be (rank, size) with 0 <= rank < size, got {shard!r}")
    return range(rank * batch_size // size, (rank + 1) * batch_size // size)


def _describe(value: object) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"a {type(value).__name__} of shape {tuple(value.shape)}"
    return type(value).__name__
