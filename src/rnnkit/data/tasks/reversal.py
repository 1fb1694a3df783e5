"""Sequence reversal: read a sequence of symbols, then write it back in reverse order."""

from __future__ import annotations

import dataclasses
import math

import torch

from .base import IGNORE_INDEX, Task, TaskBatch, require_range


@dataclasses.dataclass(frozen=True)
class ReversalTask(Task):
    r"""Reverse a variable-length sequence of symbols (the reversal transduction of Grefenstette et
    al. 2015, "Learning to transduce with unbounded memory": a test of last-in-first-out memory).

    With :math:`K` = ``symbols``, token ids are ``0`` the blank (also the padding), ``1..K`` the
    symbols and ``K + 1`` the delimiter. An example of :math:`n` symbols
    (``min_length`` :math:`\le n \le` ``max_length``, uniform) has :math:`2n + 1` steps:

    - input: :math:`x_1 \dots x_n` (each uniform in ``1..K``), the delimiter, :math:`n` blanks;
    - target: ignored for the first :math:`n + 1` steps, then :math:`x_n, x_{n-1}, \dots, x_1`.

    Kind ``tagging`` rather than ``seq2seq``: reading and writing share one time axis, so any
    rnnkit ``Recurrent`` stack with a per-step classifier can learn it, as for copy memory, and
    the only thing tested is memory (last in, first out). Addition and dates are the seq2seq tasks.

    ``inputs`` and ``targets`` are (T, B) long with :math:`T = 2 \max_b n_b + 1`; ``lengths``
    (B,) is :math:`2n + 1`; ``mask`` (T, B) is True on the :math:`n` writing steps, and the
    targets elsewhere (reading steps and padding) are ``IGNORE_INDEX``. ``input_size`` = K + 2,
    ``output_size`` = K + 1 (class ids equal the symbols' input ids; class 0 is never a target).

    Baseline: :math:`\ln K`, the mean cross-entropy per scored step of predicting the uniform
    distribution over the K symbols. The symbols are independent and uniform, so no predictor
    that has not stored them does better.

    Example:
        >>> task = ReversalTask(symbols=4, min_length=3, max_length=3)
        >>> batch = task.batch(1, torch.Generator().manual_seed(0))
        >>> batch.inputs[:, 0].tolist(), batch.targets[:, 0].tolist()
        ([4, 2, 1, 5, 0, 0, 0], [-100, -100, -100, -100, 1, 2, 4])
    """

    name = "reversal"
    kind = "tagging"
    token_inputs = True

    symbols: int = 8  # K: symbol categories
    min_length: int = 1  # fewest symbols to reverse
    max_length: int = 10  # most symbols to reverse

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "symbols", 2)
        require_range(self, "min_length", 1)
        require_range(self, "max_length", self.min_length)

    @property
    def input_size(self) -> int:
        return self.symbols + 2  # blank, symbols, delimiter

    @property
    def output_size(self) -> int:
        return self.symbols + 1  # class ids equal the symbols' input ids

    @property
    def baseline(self) -> float:
        return math.log(self.symbols)

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        counts = torch.randint(
            self.min_length, self.max_length + 1, (batch_size,), generator=generator
        )  # n, (B,)
        data = torch.randint(
            1, self.symbols + 1, (self.max_length, batch_size), generator=generator
        )  # (max_length, B)
        steps = torch.arange(2 * int(counts.max()) + 1).unsqueeze(1)  # t, (T, 1)
        reading = steps < counts  # (T, B)
        writing = (steps > counts) & (steps <= 2 * counts)  # (T, B)
        # step t reads x_{t+1} and, when writing, emits x_{2n-t+1} (0-based: data[t], data[2n-t])
        read = data.gather(0, steps.clamp(max=self.max_length - 1).expand_as(reading))
        written = data.gather(0, (2 * counts - steps).clamp(0, self.max_length - 1))
        inputs = torch.where(reading, read, 0)
        inputs[steps == counts] = self.symbols + 1  # the delimiter
        return TaskBatch(
            inputs=inputs,
            targets=torch.where(writing, written, IGNORE_INDEX),
            lengths=2 * counts + 1,
            mask=writing,
        )
