"""AdditiveAttention: Bahdanau et al.'s energies, a distribution over the real source positions."""

from __future__ import annotations

import pytest
import torch

from rnnkit.models import AdditiveAttention
from rnnkit.models.attention import source_mask

QUERY, KEY, ATTENTION = 4, 3, 5
SOURCE, BATCH = 6, 3
LENGTHS = torch.tensor([6, 2, 4])


def test_weights_follow_the_equations_and_ignore_padding():
    attention = AdditiveAttention(QUERY, KEY, ATTENTION)
    query, keys = torch.randn(BATCH, QUERY), torch.randn(SOURCE, BATCH, KEY)
    mask = source_mask(LENGTHS, SOURCE, BATCH, keys.device)
    context, weights = attention(query, keys, attention.project_keys(keys), mask)

    W, U, b = attention.query.weight, attention.key.weight, attention.key.bias
    v = attention.energy.weight.squeeze(0)
    for batch, length in enumerate(LENGTHS.tolist()):
        s = query[batch]
        # e_j = v^T tanh(W s + U h_j + b), one source position at a time
        energies = torch.stack([v @ torch.tanh(W @ s + U @ keys[j, batch] + b) for j in range(length)])
        expected = torch.softmax(energies, dim=0)
        torch.testing.assert_close(weights[:length, batch], expected)
        assert weights[length:, batch].eq(0).all(), "padded positions must get weight exactly 0"
        torch.testing.assert_close(context[batch], expected @ keys[:length, batch])
    torch.testing.assert_close(weights.sum(0), torch.ones(BATCH))


def test_without_lengths_every_position_is_real():
    mask = source_mask(None, SOURCE, BATCH, torch.device("cpu"))
    assert mask.shape == (SOURCE, BATCH) and mask.all()
    attention = AdditiveAttention(QUERY, KEY, ATTENTION)
    keys = torch.randn(SOURCE, BATCH, KEY)
    _, weights = attention(torch.randn(BATCH, QUERY), keys, attention.project_keys(keys), mask)
    assert weights.gt(0).all()
    torch.testing.assert_close(weights.sum(0), torch.ones(BATCH))


def test_padding_does_not_change_the_context():
    attention = AdditiveAttention(QUERY, KEY, ATTENTION)
    query, keys = torch.randn(BATCH, QUERY), torch.randn(SOURCE, BATCH, KEY)
    mask = source_mask(LENGTHS, SOURCE, BATCH, keys.device)
    noisy = torch.where(mask.unsqueeze(-1), keys, 1e3 * torch.randn_like(keys))
    context, _ = attention(query, keys, attention.project_keys(keys), mask)
    noisy_context, _ = attention(query, noisy, attention.project_keys(noisy), mask)
    torch.testing.assert_close(noisy_context, context)


@pytest.mark.parametrize("name", ["query_size", "key_size", "attention_size"])
def test_sizes_must_be_positive(name):
    sizes = {"query_size": QUERY, "key_size": KEY, "attention_size": ATTENTION, name: 0}
    with pytest.raises(ValueError, match=f"{name} must be positive, got 0"):
        AdditiveAttention(**sizes)
