"""The copy-memory problem: read a few symbols, wait through a long blank, then write them back."""

from __future__ import annotations

import dataclasses
import math

import torch

from .base import Task, TaskBatch, require_range


@dataclasses.dataclass(frozen=True)
class CopyMemoryTask(Task):
    r"""Copy-memory problem (Hochreiter & Schmidhuber 1997; in the form of Arjovsky, Shah & Bengio
    2016, "Unitary evolution recurrent neural networks").

    With :math:`T` = ``delay``, :math:`L` = ``copy_length`` (10) and :math:`K` = ``symbols`` (8),
    a sequence has :math:`T + 2L` steps of token ids: ``0`` is the blank, ``1..K`` the symbols and
    ``K + 1`` the delimiter.

    - input: :math:`L` symbols drawn uniformly from ``1..K``, then :math:`T - 1` blanks, the
      delimiter, and :math:`L` blanks;
    - target: :math:`T + L` blanks, then the :math:`L` symbols of the input's start, in order.

    The delimiter comes at step :math:`T + L - 1` and the copy is written from step :math:`T + L`
    on, so each symbol must be held for :math:`T + L` steps.

    Kind ``tagging``: ``inputs`` and ``targets`` (T + 2L, B) long, every step scored (``mask`` and
    ``lengths`` are None); ``input_size`` = K + 2 token ids, ``output_size`` = K + 1 classes (the
    blank and the symbols; the delimiter is never a target).

    Baseline: the predictor that outputs the blank with certainty for the first :math:`T + L`
    steps and the uniform distribution over the K symbols for the last :math:`L` has mean
    cross-entropy over all :math:`T + 2L` steps

    .. math:: \frac{L \ln K}{T + 2L} \qquad (\text{Arjovsky et al.: } 10 \ln 8 / (T + 20)),

    the best any model without memory can do.

    Example:
        >>> task = CopyMemoryTask(delay=100)
        >>> batch = task.batch(4, torch.Generator().manual_seed(0))
        >>> batch.inputs.shape, batch.targets.shape              # (T + 20, B) each
        (torch.Size([120, 4]), torch.Size([120, 4]))
        >>> bool((batch.targets[110:] == batch.inputs[:10]).all())
        True
    """

    name = "copy_memory"
    kind = "tagging"
    token_inputs = True

    delay: int = 100  # T: blanks between the symbols and the delimiter, plus one
    copy_length: int = 10  # L: symbols to copy
    symbols: int = 8  # K: categories the symbols are drawn from

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "delay", 1)
        require_range(self, "copy_length", 1)
        require_range(self, "symbols", 2)

    @property
    def input_size(self) -> int:
        return self.symbols + 2  # blank, symbols, delimiter

    @property
    def output_size(self) -> int:
        return self.symbols + 1  # blank, symbols

    @property
    def baseline(self) -> float:
        return self.copy_length * math.log(self.symbols) / (self.delay + 2 * self.copy_length)

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        T, L = self.delay, self.copy_length
        data = torch.randint(1, self.symbols + 1, (L, batch_size), generator=generator)  # (L, B)
        inputs = torch.zeros(T + 2 * L, batch_size, dtype=torch.long)  # blanks, (T + 2L, B)
        inputs[:L] = data
        inputs[T + L - 1] = self.symbols + 1  # the delimiter
        targets = torch.zeros_like(inputs)
        targets[T + L :] = data
        return TaskBatch(inputs=inputs, targets=targets)
