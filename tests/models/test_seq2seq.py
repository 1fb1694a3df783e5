"""Seq2Seq: decoding step by step equals the teacher-forced forward; the model learns to reverse.

The task: reverse a sequence of 3-6 symbols out of 6, then say EOS. Guessing a whole output
right has a chance of at most 8^-4 (8 target tokens, at least 4 of them to get right).
"""

from __future__ import annotations

import pytest
import torch
from model_training import fit, greedy
from torch import Tensor
from torch.nn.functional import cross_entropy

from rnnkit.layers.recurrent import reverse_padded
from rnnkit.models import Seq2Seq

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

SYMBOLS, MAX_LENGTH = 6, 6
BOS, EOS = SYMBOLS, SYMBOLS + 1
TARGET_VOCAB = SYMBOLS + 2
PAD = -100  # cross_entropy's ignore_index


def reverse_task(batch: int, generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """source ``(S, B)``, lengths ``(B,)``, target_in and target_out ``(S + 1, B)``."""
    lengths = torch.randint(3, MAX_LENGTH + 1, (batch,), generator=generator)
    source = torch.randint(SYMBOLS, (MAX_LENGTH, batch), generator=generator)
    reversed_ = reverse_padded(source.unsqueeze(-1), lengths).squeeze(-1)  # (S, B)
    target_in = torch.cat([torch.full((1, batch), BOS), reversed_])  # past L + 1: anything
    steps = torch.arange(MAX_LENGTH + 1).unsqueeze(1)  # (S + 1, 1)
    padded = torch.cat([reversed_, torch.zeros(1, batch, dtype=torch.int64)])
    target_out = torch.where(steps < lengths, padded, torch.where(steps == lengths, EOS, PAD))
    return source, lengths, target_in, target_out


def exact_match(model: Seq2Seq, source: Tensor, lengths: Tensor, target_out: Tensor) -> float:
    """The fraction of sequences whose greedy decoding is the whole target, EOS included."""
    produced = greedy(model.step, model.start(source, lengths), torch.full((source.size(1),), BOS), len(target_out))
    right = (produced == target_out) | (target_out == PAD)
    return right.all(0).float().mean().item()


def reverse_loss(model: Seq2Seq, source: Tensor, lengths: Tensor, target_in: Tensor, target_out: Tensor) -> Tensor:
    logits = model(source, lengths, target_in)  # teacher forced
    return cross_entropy(logits.flatten(0, 1), target_out.flatten(), ignore_index=PAD)


@pytest.mark.parametrize(
    ("attention", "steps", "accuracy"),
    [(False, 300, 0.5), (True, 200, 0.9)],
    ids=["no_attention", "attention"],
)
def test_learns_to_reverse(attention, steps, accuracy):
    """Without attention the whole source must pass through the bridge into the decoder's initial
    state, which is learnt more slowly (Bahdanau et al.'s point): a lower bar for accuracy, which
    is still thousands of times chance."""
    model = Seq2Seq(SYMBOLS, TARGET_VOCAB, hidden_size=48, attention=attention)
    held_out = reverse_task(200, torch.Generator().manual_seed(1))
    source, lengths, _, target_out = held_out

    def held_out_loss() -> float:
        with torch.no_grad():
            return reverse_loss(model, *held_out).item()

    assert held_out_loss() > 1.8  # untrained: about ln 8 ≈ 2.08
    assert exact_match(model, source, lengths, target_out) < 0.01
    batches = torch.Generator().manual_seed(0)
    fit(model, lambda: reverse_loss(model, *reverse_task(64, batches)), steps=steps, lr=0.01)
    assert held_out_loss() < 0.4
    assert exact_match(model, source, lengths, target_out) > accuracy


def build(attention: bool, cell: str = "lstm") -> Seq2Seq:
    return Seq2Seq(5, 7, cell=cell, hidden_size=6, num_layers=2, bidirectional_encoder=True, attention=attention)


SOURCE_LENGTHS = torch.tensor([5, 2, 4])


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("attention", [False, True], ids=["no_attention", "attention"])
def test_step_by_step_with_teacher_tokens_equals_the_forward(attention, cell):
    model = build(attention, cell)
    source, target_in = torch.randint(5, (5, 3)), torch.randint(7, (4, 3))
    logits = model(source, SOURCE_LENGTHS, target_in)
    state = model.start(source, SOURCE_LENGTHS)
    for t, tokens in enumerate(target_in):
        step_logits, state = model.step(tokens, state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention", [False, True], ids=["no_attention", "attention"])
def test_no_teacher_forcing_feeds_back_the_most_likely_token(attention):
    model = build(attention)
    source, target_in = torch.randint(5, (5, 3)), torch.randint(7, (4, 3))
    logits = model(source, SOURCE_LENGTHS, target_in, teacher_forcing_ratio=0.0)
    state, tokens = model.start(source, SOURCE_LENGTHS), target_in[0]
    for t in range(len(target_in)):
        step_logits, state = model.step(tokens, state)
        torch.testing.assert_close(step_logits, logits[t], rtol=1e-5, atol=1e-5)
        tokens = step_logits.argmax(-1)


def test_scheduled_sampling_mixes_teacher_and_own_tokens():
    """A ratio between 0 and 1 gives logits that differ from both extremes (same model, same data)."""
    model = build(attention=False)
    source, target_in = torch.randint(5, (5, 8)), torch.randint(7, (6, 8))
    forced = model(source, None, target_in)
    free = model(source, None, target_in, teacher_forcing_ratio=0.0)
    generator = torch.Generator().manual_seed(0)
    mixed = model(source, None, target_in, teacher_forcing_ratio=0.5, generator=generator)
    # Step 1 always reads target_in[0]; later steps differ from each extreme somewhere.
    for extreme in (forced, free):
        torch.testing.assert_close(mixed[0], extreme[0])
        assert not torch.allclose(mixed[1:], extreme[1:])
    again = model(source, None, target_in, 0.5, torch.Generator().manual_seed(0))
    torch.testing.assert_close(again, mixed, rtol=0, atol=0)


@pytest.mark.parametrize("attention", [False, True], ids=["no_attention", "attention"])
def test_a_padded_source_batch_equals_each_source_alone(attention):
    model = build(attention)
    source, target_in = torch.randint(5, (5, 3)), torch.randint(7, (4, 3))
    logits = model(source, SOURCE_LENGTHS, target_in)
    for b, length in enumerate(SOURCE_LENGTHS.tolist()):
        alone = model(source[:length, b : b + 1], None, target_in[:, b : b + 1])
        torch.testing.assert_close(logits[:, b : b + 1], alone, rtol=1e-5, atol=1e-6)


def test_state_has_the_batch_in_dim_1_and_can_be_reordered():
    """Reordering every state tensor along dim 1 (as beam search does) reorders the logits."""
    model = build(attention=True)
    source, tokens = torch.randint(5, (5, 3)), torch.randint(7, (3,))
    state = model.start(source, SOURCE_LENGTHS)
    order = torch.tensor([2, 0, 1])
    logits, _ = model.step(tokens, state)
    reordered, _ = model.step(tokens[order], tuple(s.index_select(1, order) for s in state))
    torch.testing.assert_close(reordered, logits[order])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda m: m(torch.zeros(5, 3, dtype=torch.int64), None, torch.zeros(4, 3, dtype=torch.int64), 1.5),
                     r"teacher_forcing_ratio must be in \[0, 1\], got 1.5", id="ratio"),
        pytest.param(lambda m: m(torch.zeros(5, 3, dtype=torch.int64), None, torch.zeros(4, 2, dtype=torch.int64)),
                     r"target_in must be \(T, B\) with the source's batch of 3, got shape \(4, 2\)", id="batch"),
        pytest.param(lambda m: m.start(torch.zeros(5, dtype=torch.int64)),
                     r"source must be \(S, B\) token ids, got shape \(5,\)", id="source"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call(build(attention=False))
