"""Choosing the next token, and generation that equals the teacher-forced full forward."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.decoding import SamplingOptions, choose_next, generate
from rnnkit.models.language_model import LanguageModel

LOGITS = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0, -3.0])  # distinct values, largest first
DRAWS = 20_000
# Upper 0.1% points of the chi-square distribution: a fixed generator makes the test
# deterministic, the bound makes it meaningful (a wrong distribution lands far above it).
CHI2_999 = {2: 13.82, 3: 16.27, 4: 18.47, 5: 20.52}


def draws(logits: Tensor, options: SamplingOptions, count: int = DRAWS, seed: int = 0) -> Tensor:
    """``count`` independent choices from one row of logits, with a seeded generator."""
    generator = torch.Generator().manual_seed(seed)
    return choose_next(logits.expand(count, -1), options, generator)


def chi_square(tokens: Tensor, probabilities: Tensor) -> tuple[float, int]:
    """Pearson's statistic of token counts against ``probabilities``, and its degrees of freedom."""
    support = probabilities > 0
    counts = torch.bincount(tokens, minlength=len(probabilities)).double()
    assert counts[~support].sum() == 0, "drew a token of probability 0"
    expected = probabilities[support].double() * len(tokens)
    statistic = ((counts[support] - expected) ** 2 / expected).sum().item()
    return statistic, int(support.sum()) - 1


# ------------------------------------------------------------------------------------------------
# SamplingOptions


@pytest.mark.parametrize("temperature", [0.0, -1.0], ids=["zero", "negative"])
def test_options_refuse_non_positive_temperature(temperature: float) -> None:
    with pytest.raises(ValueError, match="temperature must be positive"):
        SamplingOptions(temperature=temperature)


def test_options_refuse_negative_top_k() -> None:
    with pytest.raises(ValueError, match="top_k must be non-negative"):
        SamplingOptions(top_k=-1)


def test_options_defaults() -> None:
    assert SamplingOptions() == SamplingOptions(temperature=1.0, top_k=0, greedy=False)


# ------------------------------------------------------------------------------------------------
# choose_next


def test_greedy_is_argmax() -> None:
    logits = torch.randn(64, 30)
    chosen = choose_next(logits, SamplingOptions(greedy=True))
    assert chosen.dtype == torch.int64 and chosen.shape == (64,)
    assert torch.equal(chosen, logits.argmax(dim=-1))


@pytest.mark.parametrize("temperature", [0.05, 1.0, 20.0])
def test_top_k_1_is_argmax_at_any_temperature(temperature: float) -> None:
    logits = torch.randn(256, 30)
    generator = torch.Generator().manual_seed(1)
    chosen = choose_next(logits, SamplingOptions(temperature=temperature, top_k=1), generator)
    assert torch.equal(chosen, logits.argmax(dim=-1))


def test_top_k_never_leaves_the_top_k() -> None:
    logits = torch.randn(10, generator=torch.Generator().manual_seed(2))
    top3 = set(logits.topk(3).indices.tolist())
    chosen = draws(logits, SamplingOptions(temperature=5.0, top_k=3), count=5000)
    assert set(chosen.tolist()) == top3  # every one of the three, and nothing else


def test_top_k_at_least_vocabulary_is_plain_sampling() -> None:
    for k in (len(LOGITS), len(LOGITS) + 5):
        assert torch.equal(
            draws(LOGITS, SamplingOptions(top_k=k), 500), draws(LOGITS, SamplingOptions(), 500)
        )


def test_low_temperature_approaches_argmax() -> None:
    chosen = draws(LOGITS, SamplingOptions(temperature=1e-3), count=2000)
    assert (chosen == 0).all()  # the runner-up is e^-1000 times less likely
    shares = []
    for temperature in (2.0, 1.0, 0.5, 0.25):
        share = (
            (draws(LOGITS, SamplingOptions(temperature=temperature)) == 0).double().mean().item()
        )
        p = torch.softmax(LOGITS / temperature, dim=-1)[0].item()
        assert share == pytest.approx(p, abs=5 * (p * (1 - p) / DRAWS) ** 0.5)  # within 5 sd
        shares.append(share)
    assert shares == sorted(shares) and shares[-1] < 1.0


def test_frequencies_match_softmax() -> None:
    chosen = draws(LOGITS, SamplingOptions())
    statistic, dof = chi_square(chosen, torch.softmax(LOGITS, dim=-1))
    assert statistic < CHI2_999[dof]


def test_frequencies_match_tempered_top_k_softmax() -> None:
    temperature, k = 2.0, 4
    expected = torch.softmax(LOGITS / temperature, dim=-1)
    expected[k:] = 0.0  # LOGITS is sorted: the top 4 are the first 4
    expected /= expected.sum()
    statistic, dof = chi_square(
        draws(LOGITS, SamplingOptions(temperature=temperature, top_k=k)), expected
    )
    assert dof == 3
    assert statistic < CHI2_999[dof]


def test_wrong_distribution_fails_the_chi_square() -> None:
    """The bound has power: temperature 1.3 is told apart from temperature 1."""
    chosen = draws(LOGITS, SamplingOptions(temperature=1.3))
    statistic, dof = chi_square(chosen, torch.softmax(LOGITS, dim=-1))
    assert statistic > 10 * CHI2_999[dof]


# ------------------------------------------------------------------------------------------------
# generate


class Recording(nn.Module):
    """Wraps a model and keeps every logits tensor it returns."""

    def __init__(self, model: LanguageModel) -> None:
        super().__init__()
        self.model = model
        self.logits: list[Tensor] = []

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        logits, state = self.model(tokens, state)
        self.logits.append(logits.clone())
        return logits, state


def tiny_model(cell: str) -> LanguageModel:
    torch.manual_seed(0)
    # Dropout 0.5: if generation did not switch to eval mode, its logits would be noisy.
    model = LanguageModel(12, cell, hidden_size=8, num_layers=2, dropout=0.5).double()
    with torch.no_grad():
        model.decoder.weight.mul_(4.0)  # sharper distributions, so different seeds visibly differ
    return model.train()


PRIME = torch.tensor([3, 1, 4, 1, 5])


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
def test_generate_yields_length_ids_deterministically(cell: str) -> None:
    model = tiny_model(cell)
    options = SamplingOptions()
    runs = [
        list(generate(model, PRIME, 40, options, torch.Generator().manual_seed(s)))
        for s in (7, 7, 8)
    ]
    assert len(runs[0]) == 40 and all(isinstance(t, int) and 0 <= t < 12 for t in runs[0])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


@pytest.mark.parametrize("cell", ["lstm", "gru", "elman"])
@pytest.mark.parametrize("greedy", [False, True], ids=["sampled", "greedy"])
def test_generate_equals_teacher_forced_forward(cell: str, greedy: bool) -> None:
    recording = Recording(tiny_model(cell))
    length = 20
    tokens = list(
        generate(
            recording,
            PRIME,
            length,
            SamplingOptions(greedy=greedy),
            torch.Generator().manual_seed(3),
        )
    )
    assert not recording.training  # generation runs the model in eval mode

    # One call for the prime, then one per generated token except the last.
    assert [t.shape for t in recording.logits] == [(len(PRIME), 1, 12)] + [(1, 1, 12)] * (
        length - 1
    )
    stepwise = torch.cat(recording.logits)  # (P + length - 1, 1, V)
    sequence = torch.cat([PRIME, torch.tensor(tokens[:-1])])
    with torch.no_grad():
        full, _ = recording.model(sequence.view(-1, 1))  # teacher-forced, one pass
    torch.testing.assert_close(stepwise, full, rtol=1e-10, atol=1e-12)
    if greedy:  # row P - 1 + i of the full forward is the distribution of generated token i
        assert tokens == full[len(PRIME) - 1 :, 0].argmax(dim=-1).tolist()


def test_generate_length_one_reads_only_the_prime() -> None:
    recording = Recording(tiny_model("lstm"))
    (token,) = generate(recording, PRIME, 1, SamplingOptions(greedy=True))
    assert len(recording.logits) == 1
    assert token == int(recording.logits[0][-1, 0].argmax())


def test_generate_refuses_empty_prime() -> None:
    with pytest.raises(ValueError, match="prime"):
        list(generate(tiny_model("lstm"), torch.tensor([], dtype=torch.long), 5, SamplingOptions()))
