"""Helpers shared by the model tests: a training loop and greedy decoding through start/step."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State


def fit(model: nn.Module, loss: Callable[[], Tensor], steps: int, lr: float = 0.01) -> None:
    """``steps`` Adam updates of ``model`` on ``loss()`` (which draws its own batch)."""
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    model.eval()


@torch.no_grad()
def greedy(step: Callable[[Tensor, State], tuple[Tensor, State]], state: State, first: Tensor, steps: int) -> Tensor:
    """Feed back the most likely token ``steps`` times, starting from ``first`` (B,): ``(steps, B)``."""
    tokens, produced = first, []
    for _ in range(steps):
        logits, state = step(tokens, state)
        tokens = logits.argmax(-1)
        produced.append(tokens)
    return torch.stack(produced)
