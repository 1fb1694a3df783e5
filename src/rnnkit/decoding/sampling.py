"""Choosing the next token from a model's logits, and generating text one token at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ..models.language_model import LanguageModel


@dataclass(frozen=True)
class SamplingOptions:
    """How the next token is chosen.

    temperature: logits are divided by it before the softmax; below 1 sharpens, above 1 flattens.
    top_k: sample only among the k most likely tokens (0: all).
    greedy: always take the most likely token (argmax); temperature and top_k are then unused.
    """

    temperature: float = 1.0
    top_k: int = 0
    greedy: bool = False

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be non-negative, got {self.top_k}")


def choose_next(logits: Tensor, options: SamplingOptions, generator: torch.Generator | None = None) -> Tensor:
    """The next token for each row of ``logits`` (B, V): ``(B,)`` int64."""
    if options.greedy:
        return logits.argmax(dim=-1)
    logits = logits / options.temperature
    if 0 < options.top_k < logits.size(-1):
        kth_largest = logits.topk(options.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probabilities = torch.softmax(logits.double(), dim=-1)  # double: exact ties and tiny tails
    return torch.multinomial(probabilities, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(
    model: LanguageModel,
    prime: Tensor,
    length: int,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield ``length`` token ids that continue ``prime`` (a non-empty 1-D tensor of ids).

    The prime is read in one pass; each generated token is fed back as the next input.
    """
    if prime.numel() == 0:
        raise ValueError("the prime must hold at least one token")
    model.eval()
    logits, state = model(prime.view(-1, 1))  # (T, 1, V)
    last = logits[-1]  # (1, V)
    for produced in range(1, length + 1):
        token = choose_next(last, options, generator)  # (1,)
        yield int(token)
        if produced < length:
            logits, state = model(token.view(1, 1), state)
            last = logits[-1]
