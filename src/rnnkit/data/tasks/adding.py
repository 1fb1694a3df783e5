"""The adding problem: remember two marked numbers across a long sequence and add them."""

from __future__ import annotations

import dataclasses

import torch

from .base import Task, TaskBatch, require_range


@dataclasses.dataclass(frozen=True)
class AddingTask(Task):
    r"""Adding problem (Hochreiter & Schmidhuber 1997, experiment 4; in the form of Le, Jaitly &
    Hinton 2015 and Arjovsky, Shah & Bengio 2016).

    Each of the ``length`` = T steps carries a pair :math:`x_t = (u_t, m_t)`: a value
    :math:`u_t \sim U(0, 1)` and a marker :math:`m_t \in \{0, 1\}`. Exactly two steps are
    marked, one drawn uniformly from the first half :math:`[0, \lfloor T/2 \rfloor)` and one from
    the second half :math:`[\lfloor T/2 \rfloor, T)`; the target, read after the last step, is the
    sum of the two marked values :math:`y = u_i + u_j \in [0, 2]`. A model must hold the first
    value for up to T steps while ignoring the others.

    Kind ``regression``: ``inputs`` (T, B, 2) float (channel 0 the values, 1 the markers),
    ``targets`` (B, 1) float; every sequence has T steps (``lengths`` is None).

    Baseline: predicting the constant 1 (the mean of :math:`y`) regardless of the input gives
    mean squared error :math:`\operatorname{Var}(u_i + u_j) = 2 \cdot \tfrac{1}{12} = \tfrac16
    \approx 0.167`, the line a model must go below (Arjovsky et al. 2016).

    Example:
        >>> task = AddingTask(length=50)
        >>> batch = task.batch(32, torch.Generator().manual_seed(0))
        >>> batch.inputs.shape, batch.targets.shape            # (T, B, 2), (B, 1)
        (torch.Size([50, 32, 2]), torch.Size([32, 1]))
        >>> round(task.baseline, 3)
        0.167
    """

    name = "adding"
    kind = "regression"
    token_inputs = False

    length: int = 100  # T: time steps per sequence

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "length", 2)  # each half must hold a marker

    @property
    def input_size(self) -> int:
        return 2

    @property
    def output_size(self) -> int:
        return 1

    @property
    def baseline(self) -> float:
        return 1 / 6

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        half = self.length // 2
        values = torch.rand(self.length, batch_size, generator=generator)  # (T, B)
        first = torch.randint(0, half, (batch_size,), generator=generator)  # (B,)
        second = torch.randint(half, self.length, (batch_size,), generator=generator)  # (B,)
        markers = torch.zeros(self.length, batch_size)  # (T, B)
        columns = torch.arange(batch_size)
        markers[first, columns] = 1.0
        markers[second, columns] = 1.0
        targets = values[first, columns] + values[second, columns]  # (B,)
        return TaskBatch(
            inputs=torch.stack([values, markers], dim=-1),  # (T, B, 2)
            targets=targets.unsqueeze(-1),  # (B, 1)
        )
