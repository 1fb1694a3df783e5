"""ConditionedGenerator: every conditioning learns to spell a class label; step equals forward.

The task: given a one-hot class c in 0..39, write its two decimal digits and EOS. Before the
condition is used every class looks alike, so no model can do better than the digits'
frequencies; an untrained one pays about ln 12 ≈ 2.5 nats per token.
"""

from __future__ import annotations

import pytest
import torch
from model_training import fit, greedy
from torch import Tensor
from torch.nn.functional import cross_entropy

from rnnkit.models import ConditionedGenerator
from rnnkit.models.conditioned import CONDITIONINGS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

CLASSES = 40
BOS, EOS = 10, 11  # the digits are tokens 0..9
VOCAB = 12


def label_task() -> tuple[Tensor, Tensor, Tensor]:
    """Every class once: one-hot conditions ``(B, C)``, tokens_in and targets ``(3, B)``."""
    labels = torch.arange(CLASSES)
    digits = torch.stack([labels // 10, labels % 10])  # (2, B)
    tokens_in = torch.cat([torch.full((1, CLASSES), BOS), digits])
    targets = torch.cat([digits, torch.full((1, CLASSES), EOS)])
    return torch.eye(CLASSES), tokens_in, targets


def spelling_loss(model: ConditionedGenerator, condition: Tensor, tokens_in: Tensor, targets: Tensor) -> Tensor:
    return cross_entropy(model(condition, tokens_in).flatten(0, 1), targets.flatten())


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_learns_to_spell_the_class_label(conditioning):
    model = ConditionedGenerator(CLASSES, VOCAB, hidden_size=32, conditioning=conditioning)
    condition, tokens_in, targets = label_task()

    def spelled() -> float:
        start = torch.full((CLASSES,), BOS)
        produced = greedy(model.step, model.start(condition), start, len(targets))
        return (produced == targets).all(0).float().mean().item()

    with torch.no_grad():
        assert spelling_loss(model, condition, tokens_in, targets).item() > 2.0
    assert spelled() < 0.1
    fit(model, lambda: spelling_loss(model, condition, tokens_in, targets), steps=150, lr=0.02)
    with torch.no_grad():
        assert spelling_loss(model, condition, tokens_in, targets).item() < 0.1
    assert spelled() == 1.0


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_step_by_step_equals_the_forward(cell, conditioning):
    model = ConditionedGenerator(3, 7, cell=cell, hidden_size=5, num_layers=2, conditioning=conditioning)
    condition, tokens_in = torch.randn(4, 3), torch.randint(7, (6, 4))
    logits = model(condition, tokens_in)  # one Recurrent call
    state = model.start(condition)
    for t, tokens in enumerate(tokens_in):
        step_logits, state = model.step(tokens, state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("conditioning", CONDITIONINGS)
def test_the_condition_enters_where_selected(conditioning):
    """Through the state: the state before the first token depends on c. Through the input:
    from a fixed state, the next step still depends on c."""
    model = ConditionedGenerator(3, 7, cell="gru", hidden_size=5, num_layers=2, conditioning=conditioning)
    a, b = torch.randn(1, 3), torch.randn(1, 3)
    initial_a, initial_b = model.start(a), model.start(b)
    depends_on_state = not torch.allclose(initial_a[0], initial_b[0])
    assert depends_on_state == (conditioning in ("state", "both"))
    shared = (initial_a[0], *initial_b[1:])  # b's input path, if any, with a's state
    tokens = torch.tensor([2])
    depends_on_input = not torch.allclose(model.step(tokens, initial_a)[0], model.step(tokens, shared)[0])
    assert depends_on_input == (conditioning in ("input", "both"))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda m: m.start(torch.zeros(2, 4)), r"condition must be \(B, 3\), got shape \(2, 4\)", id="condition"),
        pytest.param(lambda m: m(torch.zeros(2, 3), torch.zeros(5, 3, dtype=torch.int64)),
                     r"tokens_in must be \(T, B\) with the condition's batch of 2, got shape \(5, 3\)", id="tokens"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call(ConditionedGenerator(3, 7, hidden_size=5))


def test_bad_conditioning():
    with pytest.raises(ValueError, match="conditioning must be one of input, state, both, got 'bias'"):
        ConditionedGenerator(3, 7, conditioning="bias")
