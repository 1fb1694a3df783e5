"""Gram matrices ``x^T x`` of a readout's rows: on and above the diagonal, by column blocks, at once or
summed chunk by chunk on a second thread while the rows are still being computed."""

from __future__ import annotations

import itertools
import threading
from types import TracebackType

import torch
from torch import Tensor

from ..engine.threads import torch_threads

GRAM_BLOCK_COLUMNS = 100  # narrower column blocks multiply too inefficiently to pay for the skipped work
GRAM_MAX_BLOCKS = 10


def column_blocks(features: int) -> list[tuple[int, int]]:
    """The ``(start, stop)`` column ranges the upper Gram matrix of ``features`` columns is cut into."""
    blocks = max(1, min(GRAM_MAX_BLOCKS, features // GRAM_BLOCK_COLUMNS))
    edges = [round(i * features / blocks) for i in range(blocks + 1)]
    return list(zip(edges, edges[1:]))


def add_block(gram: Tensor, x: Tensor, block: tuple[int, int], accumulate: bool) -> None:
    """``gram``'s rows ``block`` from the diagonal on (=, or += with ``accumulate``) the products of
    ``x``'s columns ``block`` with its columns from ``block``'s start on."""
    start, stop = block
    if accumulate:
        gram[start:stop, start:].addmm_(x[:, start:stop].T, x[:, start:])
    else:
        torch.mm(x[:, start:stop].T, x[:, start:], out=gram[start:stop, start:])


def upper_gram_matrix(x: Tensor, out: Tensor | None = None) -> Tensor:
    """``x^T x`` (F, F) for ``x`` (S, F) on and above the diagonal, from the column blocks there.

    BLAS's symmetric rank-k update (syrk) does half the multiplications of ``x.T @ x``, but torch
    has none; with the columns cut into k blocks, the products of each block with itself and the
    blocks after it do (k + 1) / 2k of them. Up to ``GRAM_MAX_BLOCKS`` blocks of at least
    ``GRAM_BLOCK_COLUMNS`` columns (at F = 1001 and 2000 rows, medians of 15: 10 blocks 29-31 ms,
    7 blocks 32-35 ms, one product 46-51 ms; 12 or more slower again). Below the diagonal ``out``
    (a new tensor if None) holds whatever it held, or, where one product covers every column,
    ``x^T x``.
    """
    gram = x.new_empty(x.size(1), x.size(1)) if out is None else out
    for block in column_blocks(x.size(1)):
        add_block(gram, x, block, accumulate=False)
    return gram


class StreamedGram:
    """Sums ``x^T x`` of row chunks into ``out`` (F, F) on and above its diagonal (``out`` is zeroed
    first), on a second thread while the caller computes the next chunk, e.g. runs a reservoir over
    the next steps.

    Use as a context manager: ``add(x)`` each chunk ``x`` (S_i, F) as it is ready, then
    ``finish()``. While chunks come, a second thread sums each into every column block
    (:func:`column_blocks`). At ``finish`` both threads take what remains block by block, the block
    with the most work left first, until none is left. A block is summed by one thread at a time and
    always in the order the chunks were added, so the result does not depend on timing and equals a
    one-thread run's to the last bit. Both threads run torch on one thread each meanwhile (restored
    on exit); with one torch thread in the process, ``add`` sums each chunk here at once. Nothing
    here runs on two OpenMP threads: after a parallel region, OpenMP's idle thread spins for some
    milliseconds, on the core the second thread needs (a sixth of a Mackey-Glass fit's samples were
    that spinning), so the caller should keep its own work before the block on one thread too.

    A reservoir's run is one serial time loop and the Gram matrix of its states the largest product
    of the fit; summed this way, much of the second overlaps the first (Mackey-Glass at 1000 units,
    3000 steps, 1000 of them washout, 128-step chunks, medians of 15 alternating: run and Gram
    matrix 49.5 ms, against 69.0 ms one after the other on two threads).
    """

    def __init__(self, out: Tensor) -> None:
        self.gram = out
        self.blocks = column_blocks(out.size(1))
        # a block's cost per row: its width times the columns from its start on
        self._cost = [(stop - start) * (out.size(1) - start) for start, stop in self.blocks]
        self._chunks: list[Tensor] = []
        self._summed = [0] * len(self.blocks)  # per block: how many chunks it holds
        self._taken = [False] * len(self.blocks)  # a thread is adding to it
        self._closed = False  # no more chunks: both threads share the rest
        self._stopped = False  # the caller failed: the second thread stops
        self._error: BaseException | None = None
        self._changed = threading.Condition()
        self._worker: threading.Thread | None = None
        self._threads = torch_threads(1)

    def __enter__(self) -> StreamedGram:
        if torch.get_num_threads() > 1:
            self._threads.__enter__()
            self._worker = threading.Thread(target=self._work, name="rnnkit-gram", daemon=True)
            self._worker.start()
        self.gram.zero_()  # on one thread: see the class docstring
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
                 ) -> None:
        if self._worker is None:
            return
        with self._changed:
            self._closed = self._stopped = True
            self._changed.notify_all()
        self._worker.join()
        self._threads.__exit__(kind, error, trace)

    def add(self, x: Tensor) -> None:
        """Sum ``x`` (S_i, F) into the Gram matrix (kept until ``finish``: do not change it)."""
        if self._worker is None:
            for block in self.blocks:
                add_block(self.gram, x, block, accumulate=True)
            return
        with self._changed:
            self._chunks.append(x)
            self._changed.notify_all()

    def finish(self) -> Tensor:
        """Every chunk added: sum what remains, here and on the second thread; returns ``out``."""
        if self._worker is None:
            return self.gram
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        self._share_the_rest()
        self._worker.join()
        if self._error is not None:
            raise self._error
        return self.gram

    def _work(self) -> None:
        """The second thread: chunk after chunk into every block while chunks come, then its share."""
        torch.set_num_threads(1)  # this thread's own count (the caller's is set in __enter__)
        try:
            for index in itertools.count():
                with self._changed:
                    self._changed.wait_for(lambda: index < len(self._chunks) or self._closed)
                    if self._closed:
                        break
                    x = self._chunks[index]
                for block in range(len(self.blocks)):
                    if not self._sum_next(block, x, index):
                        break
            if not self._stopped:
                self._share_the_rest()
        except BaseException as error:  # handed to finish(), which raises it on the caller's thread
            with self._changed:
                self._error = error
                self._taken = [False] * len(self.blocks)
                self._changed.notify_all()

    def _sum_next(self, block: int, x: Tensor, index: int) -> bool:
        """Add chunk ``index`` (``x``) to ``block`` unless ``finish`` has begun; False once it has."""
        with self._changed:
            if self._closed:
                return False
            self._taken[block] = True
        add_block(self.gram, x, self.blocks[block], accumulate=True)
        with self._changed:
            self._taken[block] = False
            self._summed[block] = index + 1
            self._changed.notify_all()
        return True

    def _share_the_rest(self) -> None:
        """After the last chunk, on either thread: take the free block with the most work left and
        add its remaining chunks, until no block has any left (a block taken by the other thread
        is the other's to finish)."""
        chunks = len(self._chunks)
        while True:
            with self._changed:
                free = [b for b in range(len(self.blocks)) if not self._taken[b] and self._summed[b] < chunks]
                if not free or self._error is not None:
                    return
                block = max(free, key=lambda b: (chunks - self._summed[b]) * self._cost[b])
                self._taken[block] = True
                first = self._summed[block]
            for x in self._chunks[first:]:
                add_block(self.gram, x, self.blocks[block], accumulate=True)
            with self._changed:
                self._taken[block] = False
                self._summed[block] = chunks
                self._changed.notify_all()
