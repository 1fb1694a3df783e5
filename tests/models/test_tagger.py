"""SequenceTagger: one label per step, learnt; padding never changes a real step's logits.

The task: tag each token with the token before it (the first step gets a tag of its own). The
tags are uniform over 6 values to an untrained model, ln 6 ≈ 1.79 nats; a model that has learnt
the shift pays nothing.
"""

from __future__ import annotations

import pytest
import torch
from model_training import fit
from torch import Tensor
from torch.nn.functional import cross_entropy

from rnnkit.models import SequenceTagger

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

VOCAB, MAX_STEPS = 5, 8
FIRST = VOCAB  # the tag of step 1, which has no previous token
PAD = -100  # cross_entropy's ignore_index


def shift_task(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Tokens ``(T, B)``, lengths ``(B,)`` in [4, 8], tags ``(T, B)`` (PAD past each length)."""
    lengths = torch.randint(4, MAX_STEPS + 1, (batch,), generator=generator)
    tokens = torch.randint(VOCAB, (MAX_STEPS, batch), generator=generator)
    tags = torch.cat([torch.full((1, batch), FIRST), tokens[:-1]])
    tags[torch.arange(MAX_STEPS).unsqueeze(1) >= lengths] = PAD
    return tokens, lengths, tags


def tagging_loss(model: SequenceTagger, tokens: Tensor, lengths: Tensor, tags: Tensor) -> Tensor:
    return cross_entropy(model(tokens, lengths).flatten(0, 1), tags.flatten(), ignore_index=PAD)


@pytest.mark.parametrize(
    "options",
    [{}, {"num_layers": 2, "residual": True, "input_skip": True, "output_layers": (24,)}],
    ids=["shallow", "deep-residual-skip-deep_output"],
)
def test_learns_to_tag_each_token_with_the_previous_one(options):
    model = SequenceTagger(VOCAB + 1, vocab_size=VOCAB, hidden_size=16, **options)
    held_out = shift_task(128, torch.Generator().manual_seed(1))

    def held_out_loss() -> float:
        with torch.no_grad():
            return tagging_loss(model, *held_out).item()

    assert held_out_loss() > 1.5  # untrained: about ln 6
    batches = torch.Generator().manual_seed(0)
    fit(model, lambda: tagging_loss(model, *shift_task(32, batches)), steps=120, lr=0.02)
    assert held_out_loss() < 0.1


def test_a_padded_batch_equals_each_sequence_alone():
    model = SequenceTagger(
        3, input_size=2, cell="gru", hidden_size=5, num_layers=2, bidirectional=True,
        output_layers=(4, 6),
    )
    lengths = torch.tensor([4, 7, 1])
    x = torch.randn(7, 3, 2)
    logits = model(x, lengths)
    for b, length in enumerate(lengths.tolist()):
        alone = model(x[:length, b : b + 1])
        torch.testing.assert_close(logits[:length, b : b + 1], alone, rtol=1e-5, atol=1e-6)


def test_deep_output_is_an_mlp_between_the_state_and_the_logits():
    model = SequenceTagger(3, input_size=2, hidden_size=5, output_layers=(4,))
    x = torch.randn(6, 2, 2)
    first, _, last = model.output  # Linear, Tanh, Linear
    torch.testing.assert_close(model(x), last(torch.tanh(first(model.rnn(x)[0]))))


def test_bad_output_layers():
    with pytest.raises(ValueError, match=r"output_layers must hold positive widths, got \[8, 0\]"):
        SequenceTagger(3, vocab_size=4, output_layers=(8, 0))
