"""The learning-rate schedule, weight penalties, gradient clipping and decoupled weight decay."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch import nn

from rnnkit.models.language_model import LanguageModel
from rnnkit.training.config import OPTIMIZERS, OptimConfig
from rnnkit.training.optim import (
    build_optimizer,
    clip_gradients,
    decay_weights,
    learning_rate,
    regularised_parameters,
    weight_penalty,
)

# ------------------------------------------------------------------------------------------------
# learning_rate


def lrs(config: OptimConfig, steps: range, total: int = 0) -> list[float]:
    return [learning_rate(step, config, total) for step in steps]


def test_constant() -> None:
    assert lrs(OptimConfig(lr=0.3), range(0, 1000, 97)) == [0.3] * 11


def test_warmup_is_linear_then_joins_the_schedule() -> None:
    config = OptimConfig(lr=1.0, warmup_steps=4)
    assert lrs(config, range(6)) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]


def test_step_decay_at_boundaries() -> None:
    config = OptimConfig(lr=1.0, lr_schedule="step", lr_decay=0.5, lr_decay_every=10)
    assert lrs(config, range(9, 12)) == [1.0, 0.5, 0.5]
    assert lrs(config, range(19, 22)) == [0.5, 0.25, 0.25]
    assert learning_rate(100, config, 0) == 0.5**10


def test_step_decay_counts_from_the_end_of_warmup() -> None:
    config = OptimConfig(
        lr=1.0, lr_schedule="step", lr_decay=0.1, lr_decay_every=10, warmup_steps=2
    )
    assert lrs(config, range(4)) == [0.5, 1.0, 1.0, 1.0]
    assert lrs(config, range(11, 13)) == [1.0, pytest.approx(0.1)]


def test_cosine_start_middle_end() -> None:
    config = OptimConfig(lr=1.0, lr_schedule="cosine", lr_min_ratio=0.1)
    assert learning_rate(0, config, 100) == 1.0
    assert learning_rate(50, config, 100) == pytest.approx(
        0.55
    )  # halfway: the mean of lr and lr_min
    assert learning_rate(25, config, 100) == pytest.approx(
        0.1 + 0.9 * (1 + math.cos(math.pi / 4)) / 2
    )
    assert learning_rate(100, config, 100) == pytest.approx(0.1)
    assert learning_rate(150, config, 100) == pytest.approx(0.1)  # stays at the floor past the end
    values = lrs(config, range(101), 100)
    assert all(a >= b for a, b in itertools.pairwise(values))


def test_cosine_after_warmup() -> None:
    config = OptimConfig(lr=2.0, lr_schedule="cosine", lr_min_ratio=0.0, warmup_steps=10)
    assert learning_rate(4, config, 110) == pytest.approx(1.0)  # warming up: 2 * 5 / 10
    assert learning_rate(10, config, 110) == 2.0
    assert learning_rate(60, config, 110) == pytest.approx(1.0)
    assert learning_rate(110, config, 110) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Weights: which parameters, penalties and decay


@pytest.fixture
def model() -> LanguageModel:
    # A learnable leak gives a parameter (alpha_logit) that is neither a weight nor a bias.
    return LanguageModel(
        7, "leaky", hidden_size=4, num_layers=2, embedding_size=3, learn_alpha=True
    )


def names_of(model: nn.Module, parameters: list[nn.Parameter]) -> list[str]:
    by_id = {id(p): name for name, p in model.named_parameters()}
    return [by_id[id(p)] for p in parameters]


def test_regularised_parameters_are_the_weights(model: LanguageModel) -> None:
    names = names_of(model, regularised_parameters(model))
    assert names == [
        "embedding.weight",
        "rnn.cells.0.weight_ih",
        "rnn.cells.0.weight_hh",
        "rnn.cells.1.weight_ih",
        "rnn.cells.1.weight_hh",
        "decoder.weight",
    ]
    excluded = {name for name, _ in model.named_parameters()} - set(names)
    assert excluded == {
        "rnn.cells.0.bias_ih",
        "rnn.cells.0.bias_hh",
        "rnn.cells.0.alpha_logit",
        "rnn.cells.1.bias_ih",
        "rnn.cells.1.bias_hh",
        "rnn.cells.1.alpha_logit",
        "decoder.bias",
    }


def test_weight_penalty_by_hand(model: LanguageModel) -> None:
    weights = regularised_parameters(model)
    named = dict(model.named_parameters())
    by_hand_l1 = sum(named[n].abs().sum() for n in names_of(model, weights))
    by_hand_l2 = sum(named[n].pow(2).sum() for n in names_of(model, weights))
    assert weight_penalty(weights, 0.3, 0.0).item() == pytest.approx(
        0.3 * by_hand_l1.item(), rel=1e-6
    )
    assert weight_penalty(weights, 0.0, 0.7).item() == pytest.approx(
        0.7 * by_hand_l2.item(), rel=1e-6
    )
    both = weight_penalty(weights, 0.3, 0.7)
    assert both.item() == pytest.approx(0.3 * by_hand_l1.item() + 0.7 * by_hand_l2.item(), rel=1e-6)
    assert weight_penalty(weights, 0.0, 0.0) is None


def test_weight_penalty_gradient_reaches_weights_only(model: LanguageModel) -> None:
    weights = regularised_parameters(model)
    weight_penalty(weights, 0.0, 0.5).backward()
    for name, p in model.named_parameters():
        if any(p is w for w in weights):
            torch.testing.assert_close(p.grad, p.detach())  # d(0.5 w²)/dw = w
        else:
            assert p.grad is None, name


def test_decay_weights(model: LanguageModel) -> None:
    weights = regularised_parameters(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    decay_weights(weights, lr=0.1, weight_decay=0.2)
    decayed = set(names_of(model, weights))
    for name, p in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.2) if name in decayed else before[name]
        torch.testing.assert_close(p.detach(), expected, rtol=0, atol=0)
    decay_weights(weights, lr=0.1, weight_decay=0.0)  # no decay: untouched
    for name, p in model.named_parameters():
        expected = before[name] * (1 - 0.1 * 0.2) if name in decayed else before[name]
        assert torch.equal(p.detach(), expected)


# ------------------------------------------------------------------------------------------------
# clip_gradients


def params_with_grads(*grads: list[float] | None) -> list[nn.Parameter]:
    params = []
    for grad in grads:
        p = nn.Parameter(torch.zeros(len(grad) if grad is not None else 2))
        p.grad = None if grad is None else torch.tensor(grad)
        params.append(p)
    return params


def total_norm(params: list[nn.Parameter]) -> float:
    return math.sqrt(sum(float(p.grad.pow(2).sum()) for p in params if p.grad is not None))


def test_clip_by_norm_above_threshold() -> None:
    params = params_with_grads([3.0, 4.0], [0.0, 12.0], None)  # global norm 13
    before = [p.grad.clone() for p in params[:2]]
    norm = clip_gradients(params, OptimConfig(clip=1.0, clip_mode="norm"))
    assert norm == pytest.approx(13.0)  # the norm before clipping
    assert total_norm(params) == pytest.approx(1.0, rel=1e-5)
    for p, g in zip(params[:2], before):  # scaled, not reshaped
        torch.testing.assert_close(p.grad, g / 13.0, rtol=1e-5, atol=1e-7)
    assert params[2].grad is None


def test_clip_by_norm_below_threshold_leaves_gradients() -> None:
    params = params_with_grads([0.3, 0.4])
    before = params[0].grad.clone()
    norm = clip_gradients(params, OptimConfig(clip=1.0, clip_mode="norm"))
    assert norm == pytest.approx(0.5)
    assert torch.equal(params[0].grad, before)


def test_clip_zero_is_off() -> None:
    params = params_with_grads([30.0, 40.0])
    for mode in ("norm", "value"):
        assert clip_gradients(params, OptimConfig(clip=0.0, clip_mode=mode)) == pytest.approx(50.0)
        assert params[0].grad.tolist() == [30.0, 40.0]


def test_clip_by_value() -> None:
    params = params_with_grads([-2.0, -0.1, 0.0, 0.25, 3.0], [0.5, -0.5])
    norm = clip_gradients(params, OptimConfig(clip=0.3, clip_mode="value"))
    assert norm == pytest.approx(math.sqrt(4 + 0.01 + 0.0625 + 9 + 0.25 + 0.25))
    assert params[0].grad.tolist() == pytest.approx([-0.3, -0.1, 0.0, 0.25, 0.3])
    assert params[1].grad.tolist() == pytest.approx([0.3, -0.3])


# ------------------------------------------------------------------------------------------------
# build_optimizer

OPTIMIZER_CLASSES = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "sgd": torch.optim.SGD,
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_build_optimizer(name: str, model: LanguageModel) -> None:
    optimizer = build_optimizer(model, OptimConfig(optimizer=name, lr=0.05, weight_decay=0.1))
    assert type(optimizer) is OPTIMIZER_CLASSES[name]
    (group,) = optimizer.param_groups
    assert group["lr"] == 0.05
    assert (
        group["weight_decay"] == 0.0
    )  # decay is decoupled and applied by rnnkit, for every optimiser
    assert len(group["params"]) == len(list(model.parameters()))


def test_build_optimizer_refuses_unknown_name(model: LanguageModel) -> None:
    with pytest.raises(ValueError, match="lion"):
        build_optimizer(model, OptimConfig(optimizer="lion"))
