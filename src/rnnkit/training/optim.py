"""Optimisers, the learning-rate schedule, gradient clipping and weight regularisation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .config import OptimConfig


def regularised_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The weights that penalties and weight decay act on: every ``weight*`` parameter.

    Biases are excluded (they set operating points, not capacity), and so are other parameters
    such as a leaky unit's ``alpha_logit``.
    """
    return [
        p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1].startswith("weight")
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.Optimizer:
    """The optimiser named by ``config.optimizer`` over the model's trainable parameters.

    Weight decay is not given to torch's optimisers (whose ``weight_decay`` is an L2 penalty for
    all but AdamW): rnnkit applies decoupled decay itself, identically for all of them.
    """
    parameters = [p for p in model.parameters() if p.requires_grad]
    if config.optimizer == "adam":
        return torch.optim.Adam(parameters, lr=config.lr)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=0.0)
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(parameters, lr=config.lr, momentum=config.momentum)
    if config.optimizer == "sgd":
        return torch.optim.SGD(parameters, lr=config.lr, momentum=config.momentum)
    raise ValueError(f"unknown optimizer {config.optimizer!r}")


def learning_rate(step: int, config: OptimConfig, total_steps: int) -> float:
    """The learning rate for update ``step`` (0-based): linear warm-up, then the schedule.

    ``constant`` keeps ``lr``; ``step`` multiplies it by ``lr_decay`` every ``lr_decay_every``
    steps; ``cosine`` anneals it from ``lr`` to ``lr * lr_min_ratio`` over ``total_steps``.
    A pure function of the step, so a resumed run continues the same schedule.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    after = step - config.warmup_steps
    if config.lr_schedule == "step":
        return config.lr * config.lr_decay ** (after // config.lr_decay_every)
    if config.lr_schedule == "cosine":
        progress = min(1.0, after / max(1, total_steps - config.warmup_steps))
        low = config.lr * config.lr_min_ratio
        return low + (config.lr - low) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


def weight_penalty(weights: list[nn.Parameter], l1: float, l2: float) -> Tensor | None:
    """``l1 * Σ|w| + l2 * Σw²`` over ``weights``, or None when both coefficients are 0."""
    if not (l1 or l2):
        return None
    penalty = 0.0
    for w in weights:
        if l1:
            penalty = penalty + l1 * w.abs().sum()
        if l2:
            penalty = penalty + l2 * w.pow(2).sum()
    return penalty


def clip_gradients(parameters: list[nn.Parameter], config: OptimConfig) -> float:
    """Clip by global norm or by value; returns the global gradient norm before clipping."""
    grads = [p for p in parameters if p.grad is not None]
    norm = float(torch.nn.utils.get_total_norm([p.grad for p in grads]))
    if config.clip and config.clip_mode == "norm":
        torch.nn.utils.clip_grads_with_norm_(grads, config.clip, torch.tensor(norm))
    elif config.clip:
        torch.nn.utils.clip_grad_value_(grads, config.clip)
    return norm


@torch.no_grad()
def decay_weights(weights: list[nn.Parameter], lr: float, weight_decay: float) -> None:
    """Decoupled weight decay (Loshchilov & Hutter 2019): ``w ← w − lr · λ · w``."""
    if weight_decay:
        torch._foreach_mul_(weights, 1.0 - lr * weight_decay)
