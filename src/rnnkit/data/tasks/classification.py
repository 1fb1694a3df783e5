"""Many-to-one sequence classification: the parity of a bit string of variable length."""

from __future__ import annotations

import dataclasses
import math

import torch

from .base import Task, TaskBatch, require_range


@dataclasses.dataclass(frozen=True)
class ParityTask(Task):
    r"""Parity: is the number of ones in a bit string odd? (Minsky & Papert 1969; for recurrent
    networks the parity problem of Bengio, Simard & Frasconi 1994.)

    A string of :math:`n` bits (``min_length`` :math:`\le n \le` ``max_length``, uniform), each
    bit uniform in ``{0, 1}``; the class is :math:`y = (\sum_t x_t) \bmod 2`. Every bit matters
    to the answer, so the model must carry one bit of state, flipped by each 1, through the whole
    sequence: a small memory but no shortcut (the answer is uncorrelated with any proper subset of
    the bits).

    Kind ``classification``: ``inputs`` (T, B) long bits with :math:`T = \max_b n_b`,
    ``targets`` (B,) long in ``{0, 1}``, ``lengths`` (B,) the :math:`n_b`. Padding is the bit 0,
    which leaves the parity unchanged, so reading the answer at step ``lengths - 1`` or at the
    last step gives the same target. ``input_size`` = 2 token ids, ``output_size`` = 2 classes.

    Baseline (chance): for :math:`n \ge 1` uniform bits the classes are exactly balanced,
    :math:`P(y = 1) = 1/2`, so the best input-blind predictor has cross-entropy
    :math:`\ln 2 \approx 0.693` (accuracy 1/2).

    Example:
        >>> task = ParityTask(min_length=4, max_length=8)
        >>> batch = task.batch(16, torch.Generator().manual_seed(0))
        >>> bool((batch.inputs.sum(0) % 2 == batch.targets).all())
        True
    """

    name = "parity"
    kind = "classification"
    token_inputs = True

    min_length: int = 2  # fewest bits
    max_length: int = 20  # most bits

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "min_length", 1)
        require_range(self, "max_length", self.min_length)

    @property
    def input_size(self) -> int:
        return 2

    @property
    def output_size(self) -> int:
        return 2

    @property
    def baseline(self) -> float:
        return math.log(2)

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        lengths = torch.randint(
            self.min_length, self.max_length + 1, (batch_size,), generator=generator
        )  # (B,)
        bits = torch.randint(0, 2, (self.max_length, batch_size), generator=generator)  # (N, B)
        steps = torch.arange(int(lengths.max())).unsqueeze(1)  # (T, 1)
        inputs = torch.where(steps < lengths, bits[: len(steps)], 0)  # (T, B), zero-padded
        return TaskBatch(inputs=inputs, targets=inputs.sum(0) % 2, lengths=lengths)
