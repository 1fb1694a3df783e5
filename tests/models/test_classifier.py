"""SequenceClassifier: pooling sees each sequence's own steps only, and the model learns a task.

The task: was the first of 3-10 tokens A or B? The other tokens (A and B among them) are noise,
so the answer must be carried from step 1 to the summary. Guessing costs ln 2 ≈ 0.69 nats.
"""

from __future__ import annotations

import pytest
import torch
from model_training import fit
from torch import Tensor
from torch.nn.functional import cross_entropy

from rnnkit.models import SequenceClassifier
from rnnkit.models.classifier import POOLINGS

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

VOCAB, MAX_STEPS = 4, 10  # tokens A = 0, B = 1 and two others


def first_token_task(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Tokens ``(T, B)`` (random past each length), lengths ``(B,)`` in [3, 10], labels ``(B,)``."""
    lengths = torch.randint(3, MAX_STEPS + 1, (batch,), generator=generator)
    tokens = torch.randint(VOCAB, (MAX_STEPS, batch), generator=generator)
    labels = torch.randint(2, (batch,), generator=generator)
    tokens[0] = labels  # the first token is A for label 0, B for label 1
    return tokens, lengths, labels


@pytest.mark.parametrize(
    ("pooling", "bidirectional"),
    [("last", False), ("last", True), ("mean", False), ("max", True)],
    ids=["last-unidir", "last-bidir", "mean-unidir", "max-bidir"],
)
def test_learns_whether_the_first_token_is_a_or_b(pooling, bidirectional):
    model = SequenceClassifier(
        2, vocab_size=VOCAB, hidden_size=16, bidirectional=bidirectional, pooling=pooling
    )
    tokens, lengths, labels = first_token_task(256, torch.Generator().manual_seed(1))

    def held_out_loss() -> float:
        with torch.no_grad():
            return cross_entropy(model(tokens, lengths), labels).item()

    assert held_out_loss() > 0.6  # untrained: about ln 2
    batches = torch.Generator().manual_seed(0)

    def loss() -> Tensor:
        train_tokens, train_lengths, train_labels = first_token_task(64, batches)
        return cross_entropy(model(train_tokens, train_lengths), train_labels)

    fit(model, loss, steps=150, lr=0.02)
    assert held_out_loss() < 0.1


@pytest.mark.parametrize("bidirectional", [False, True], ids=["unidir", "bidir"])
@pytest.mark.parametrize("pooling", POOLINGS)
def test_a_padded_batch_equals_each_sequence_alone(pooling, bidirectional):
    model = SequenceClassifier(
        3, input_size=2, cell="gru", hidden_size=5, num_layers=2,
        bidirectional=bidirectional, pooling=pooling,
    )
    lengths = torch.tensor([4, 7, 1])
    x = torch.randn(7, 3, 2)
    padding = (torch.arange(7).unsqueeze(1) >= lengths).unsqueeze(-1)
    x = torch.where(padding, 100.0 * torch.randn_like(x), x)  # garbage that must not matter
    logits = model(x, lengths)
    for b, length in enumerate(lengths.tolist()):
        alone = model(x[:length, b : b + 1])  # no padding, no lengths
        torch.testing.assert_close(logits[b : b + 1], alone, rtol=1e-5, atol=1e-6)


def test_last_pooling_is_the_final_state_of_both_directions():
    model = SequenceClassifier(3, input_size=2, cell="gru", hidden_size=5, num_layers=2, bidirectional=True)
    lengths = torch.tensor([4, 7, 1])
    output, (h,) = model.rnn(torch.randn(7, 3, 2), lengths=lengths)  # h: (L*D, B, H)
    # The top layer's forward state ends at each length, the backward state at step 1.
    torch.testing.assert_close(model.pool(output, lengths), torch.cat([h[-2], h[-1]], dim=-1))


def test_regression_output():
    model = SequenceClassifier(1, input_size=2, hidden_size=5, pooling="mean")
    x = torch.randn(6, 4, 2)
    torch.testing.assert_close(model(x), model.output(model.rnn(x)[0].mean(0)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"vocab_size": 4, "pooling": "sum"}, "pooling must be one of last, mean, max, got 'sum'", id="pooling"),
        pytest.param({"vocab_size": 4, "input_size": 3}, "exactly one of input_size .* got input_size=3 and vocab_size=4", id="both"),
        pytest.param({}, "exactly one of input_size .* got input_size=0 and vocab_size=0", id="neither"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SequenceClassifier(2, **kwargs)


def test_bad_number_of_classes():
    with pytest.raises(ValueError, match="num_classes must be at least 1, got 0"):
        SequenceClassifier(0, vocab_size=4)
