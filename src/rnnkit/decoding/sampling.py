"""Choosing the next token from a model's logits, and generating text one token at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .stepper import Choice, Choose, LanguageModelStepper, decode


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


def sampling_choice(options: SamplingOptions, generator: torch.Generator | None = None) -> Choose:
    """The :func:`~rnnkit.decoding.stepper.decode` chooser that picks each next token by
    :func:`choose_next`: argmax, or a draw from the tempered, top-k-truncated softmax."""

    def choose(scores: Tensor) -> Choice:
        return choose_next(scores, options, generator), None  # each row continues itself

    return choose


def generate(
    model: nn.Module,
    prime: Tensor,
    length: int,
    options: SamplingOptions,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """Yield ``length`` token ids that continue ``prime`` (a non-empty 1-D tensor of ids).

    ``model`` is a :class:`~rnnkit.models.LanguageModel`, switched to evaluation mode. The prime
    is read in one pass; each generated token is fed back as the next input.
    """
    if prime.numel() == 0:
        raise ValueError("the prime must hold at least one token")
    stepper = LanguageModelStepper(model)
    for token in decode(stepper, prime.view(-1, 1), length, sampling_choice(options, generator)):
        yield int(token)  # token: (1,)
