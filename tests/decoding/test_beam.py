"""Beam search equals exhaustive search, beam 1 equals greedy, stepping equals the full forward."""

from __future__ import annotations

from collections import defaultdict
from itertools import product

import pytest
import torch
from torch import Tensor

from rnnkit.cells.base import State
from rnnkit.decoding import (
    LanguageModelStepper,
    SamplingOptions,
    beam_search,
    generate,
    select_rows,
)
from rnnkit.models.language_model import LanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

CELLS = ["lstm", "gru", "elman"]


def random_model(vocab: int, cell: str = "lstm", seed: int = 0, sharpness: float = 3.0) -> LanguageModel:
    """A small untrained model in double precision; ``sharpness`` scales the decoder so that
    the next-token distributions are far from uniform (and ties improbable)."""
    torch.manual_seed(seed)
    # The reference executor: decoding does not depend on how the cells run over time, and the
    # loop needs no compiled kernels.
    model = LanguageModel(vocab, cell, 8, num_layers=2, dropout=0.5, executor="loop").double()
    with torch.no_grad():
        model.decoder.weight.mul_(sharpness)
    return model.train()  # decoding must switch to eval mode itself: dropout would add noise


def primes(vocab: int, length: int, batch: int, seed: int = 1) -> Tensor:
    """(P, B) random primes, one per column."""
    return torch.randint(vocab, (length, batch), generator=torch.Generator().manual_seed(seed))


def penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty, written out here from Wu et al. (2016)."""
    return ((5 + length) / 6) ** alpha


def teacher_forced_log_probability(
    model: LanguageModel, prime: Tensor, sequences: list[tuple[int, ...]]
) -> list[float]:
    """log P(y | prime) for each sequence y: one full forward per length over all of them."""
    model.eval()
    by_length: dict[int, list[tuple[int, ...]]] = defaultdict(list)
    for sequence in sequences:
        by_length[len(sequence)].append(sequence)
    found: dict[tuple[int, ...], float] = {}
    with torch.no_grad():
        for group in by_length.values():
            targets = torch.tensor(group).T  # (n, N)
            inputs = torch.cat([prime.view(-1, 1).expand(-1, len(group)), targets[:-1]])
            logits, _ = model(inputs)  # (P + n - 1, N, V)
            logp = torch.log_softmax(logits[len(prime) - 1 :], dim=-1)  # (n, N, V)
            total = logp.gather(-1, targets.unsqueeze(-1)).squeeze(-1).sum(0)  # (N,)
            found.update(zip(group, total.tolist()))
    return [found[sequence] for sequence in sequences]


def every_sequence(vocab: int, max_length: int, end_token: int | None) -> list[tuple[int, ...]]:
    """Every sequence beam search could return: those that stop at the end token, and those
    that reach ``max_length`` without producing it."""
    if end_token is None:
        return list(product(range(vocab), repeat=max_length))
    others = [token for token in range(vocab) if token != end_token]
    ended = [
        (*head, end_token) for n in range(max_length) for head in product(others, repeat=n)
    ]
    return ended + list(product(others, repeat=max_length))


# ------------------------------------------------------------------------------------------------
# The stepper


def test_select_rows_keeps_the_structure() -> None:
    h, c = torch.randn(2, 3, 4), torch.randn(2, 3, 5)
    rows = torch.tensor([2, 0, 2, 2, 1])
    state = (h, [c, None], (h[0],))
    h2, (c2, none), (first,) = select_rows(state, rows, dim=1)
    assert torch.equal(h2, h[:, rows]) and torch.equal(c2, c[:, rows]) and none is None
    assert torch.equal(first, h[0][:, rows])  # the same dim for every tensor
    with pytest.raises(TypeError, match="got dict"):
        select_rows({"h": h}, rows, dim=1)


@pytest.mark.parametrize("cell", CELLS)
def test_stepwise_logits_equal_teacher_forced_forward(cell: str) -> None:
    """Step with reordering, as beam search does; the full forward of each row's history agrees."""
    model = random_model(10, cell).float()
    generator = torch.Generator().manual_seed(2)
    inputs = primes(10, 5, batch=4)  # (P, B), grows to (P + T, B)
    stepper = LanguageModelStepper(model)
    logits, state = stepper.start(inputs)
    stepwise = [logits]  # row b of stepwise[i]: the scores after inputs[: P + i, b]
    for _ in range(12):
        rows = torch.randint(4, (4,), generator=generator)  # repeats some rows, drops others
        tokens = torch.randint(10, (4,), generator=generator)
        state = stepper.reorder(state, rows)
        inputs = torch.cat([inputs[:, rows], tokens.view(1, -1)])
        stepwise = [scores[rows] for scores in stepwise]
        logits, state = stepper.step(tokens, state)
        stepwise.append(logits)
    with torch.no_grad():
        full, _ = model(inputs)  # (P + T, B, V), one pass
    torch.testing.assert_close(torch.stack(stepwise), full[4:], rtol=1e-5, atol=1e-5)


def test_stepper_refuses_a_prime_that_is_not_a_matrix() -> None:
    stepper = LanguageModelStepper(random_model(5))
    for prime in (torch.tensor([1, 2]), torch.zeros(0, 2, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"\(P, B\) tensor .* got shape"):
            stepper.start(prime)


# ------------------------------------------------------------------------------------------------
# Beam search against greedy and exhaustive search


@pytest.mark.parametrize("cell", CELLS)
def test_beam_1_equals_greedy(cell: str) -> None:
    model, batch = random_model(12, cell), primes(12, 4, batch=3)
    found = beam_search(LanguageModelStepper(model), batch, beam_size=1, max_length=25)
    for b, (best,) in enumerate(found):
        greedy = list(generate(model, batch[:, b], 25, SamplingOptions(greedy=True)))
        assert list(best.tokens) == greedy
        (expected,) = teacher_forced_log_probability(model, batch[:, b], [best.tokens])
        assert best.score == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 0.6], ids=["no-penalty", "alpha-0.6"])
@pytest.mark.parametrize("end_token", [None, 0], ids=["no-end", "end-0"])
@pytest.mark.parametrize("n_best", [5, 64], ids=["5-best", "64-best"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_wide_beam_equals_exhaustive_search(
    cell: str, n_best: int, end_token: int | None, alpha: float
) -> None:
    """V = 4, length 4: a beam of V^3 = 64 never prunes, so its n-best list is the exact best of
    the 256 (no end token) or 121 (end token 0) sequences. A short list fills early and lets the
    search stop before ``max_length``: the stopping bound must not lose a better sequence."""
    vocab, max_length = 4, 4
    model, batch = random_model(vocab, cell, sharpness=2.0), primes(vocab, 3, batch=2)
    found = beam_search(
        LanguageModelStepper(model), batch, vocab ** (max_length - 1), max_length,
        end_token=end_token, length_penalty=alpha, n_best=n_best,
    )  # fmt: skip
    sequences = every_sequence(vocab, max_length, end_token)
    for b, hypotheses in enumerate(found):
        log_p = teacher_forced_log_probability(model, batch[:, b], sequences)
        scored = sorted(
            ((lp / penalty(len(y), alpha), y) for lp, y in zip(log_p, sequences)), reverse=True
        )
        assert [h.tokens for h in hypotheses] == [y for _, y in scored[:n_best]]
        assert [h.score for h in hypotheses] == pytest.approx([s for s, _ in scored[:n_best]])
        if end_token is not None and n_best == 64:  # ended and unended sequences compete
            assert {y[-1] == end_token for _, y in scored[:n_best]} == {True, False}


class BigramStepper:
    """A StepModel that is not a LanguageModel and has no state: a table of next-token logits
    (V, V) indexed by the previous token; the context is the first previous token (B,)."""

    def __init__(self, logits: Tensor) -> None:
        self.logits = logits

    def start(self, context: Tensor) -> tuple[Tensor, None]:
        return self.logits[context], None

    def step(self, tokens: Tensor, state: None) -> tuple[Tensor, None]:
        return self.logits[tokens], None

    def reorder(self, state: None, rows: Tensor) -> None:
        return select_rows(state, rows, dim=0)


def test_any_step_model_bigram_table() -> None:
    vocab, max_length, end, alpha, n_best = 5, 4, 0, 0.6, 10
    table = torch.randn(vocab, vocab, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    found = beam_search(
        BigramStepper(table), torch.tensor([1, 3]), vocab**3, max_length, end, alpha, n_best
    )
    logp = torch.log_softmax(table, dim=-1)  # (previous, next)
    sequences = every_sequence(vocab, max_length, end)
    for first, hypotheses in zip([1, 3], found):
        log_p = [sum(logp[a, b].item() for a, b in zip((first, *y), y)) for y in sequences]
        scored = sorted(
            ((lp / penalty(len(y), alpha), y) for lp, y in zip(log_p, sequences)), reverse=True
        )
        assert [h.tokens for h in hypotheses] == [y for _, y in scored[:n_best]]
        assert [h.score for h in hypotheses] == pytest.approx([s for s, _ in scored[:n_best]])


def test_alpha_favours_longer_sequences() -> None:
    """The penalty changes the winner: with alpha = 0 short sequences win more often."""
    model, batch = random_model(6, "gru", sharpness=1.0), primes(6, 3, batch=8)
    with torch.no_grad():
        model.decoder.bias[0] -= 2.0  # a less likely end token: long sequences can compete

    def mean_length(alpha: float) -> float:
        found = beam_search(
            LanguageModelStepper(model), batch, 6, 8, end_token=0, length_penalty=alpha
        )
        return sum(len(best.tokens) for (best,) in found) / len(found)

    assert mean_length(0.0) < mean_length(2.0)


# ------------------------------------------------------------------------------------------------
# n-best lists, batching, end token and ties


@pytest.mark.parametrize("cell", CELLS)
def test_n_best_lists_are_sorted_distinct_and_scored(cell: str) -> None:
    model, batch, end, alpha = random_model(12, cell), primes(12, 4, batch=3), 2, 0.6
    found = beam_search(LanguageModelStepper(model), batch, 8, 10, end, alpha, n_best=8)
    for b, hypotheses in enumerate(found):
        assert len(hypotheses) == 8
        scores = [h.score for h in hypotheses]
        assert scores == sorted(scores, reverse=True)
        assert len({h.tokens for h in hypotheses}) == 8
        for tokens, _ in hypotheses:  # ended at the end token, or stopped at max_length
            assert end not in tokens[:-1] and (tokens[-1] == end or len(tokens) == 10)
        log_p = teacher_forced_log_probability(model, batch[:, b], [h.tokens for h in hypotheses])
        expected = [lp / penalty(len(h.tokens), alpha) for lp, h in zip(log_p, hypotheses)]
        assert scores == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize("end_token", [None, 3], ids=["no-end", "end-3"])
def test_batched_search_equals_separate_searches(end_token: int | None) -> None:
    model, batch = random_model(9, "lstm"), primes(9, 5, batch=4)
    options = {"beam_size": 5, "max_length": 12, "end_token": end_token, "length_penalty": 0.6}
    options["n_best"] = 3
    together = beam_search(LanguageModelStepper(model), batch, **options)
    for b in range(4):
        (alone,) = beam_search(LanguageModelStepper(model), batch[:, b : b + 1], **options)
        assert [h.tokens for h in together[b]] == [h.tokens for h in alone]
        assert [h.score for h in together[b]] == pytest.approx([h.score for h in alone], abs=1e-12)


def test_end_token_never_produced_stops_at_max_length() -> None:
    """An end token of probability zero: the same search as without one."""
    model, batch = random_model(6, "gru"), primes(6, 3, batch=2)
    with torch.no_grad():
        model.decoder.bias[1] = -torch.inf
    stepper = LanguageModelStepper(model)
    with_end = beam_search(stepper, batch, 6, 7, end_token=1, length_penalty=0.6, n_best=4)
    without = beam_search(stepper, batch, 6, 7, end_token=None, length_penalty=0.6, n_best=4)
    assert [[h.tokens for h in hs] for hs in with_end] == [[h.tokens for h in hs] for hs in without]
    for ended, plain in zip(with_end, without):
        assert [h.score for h in ended] == pytest.approx([h.score for h in plain], abs=1e-12)
    assert all(len(h.tokens) == 7 and 1 not in h.tokens for hs in with_end for h in hs)


class CountingStepper(LanguageModelStepper):
    """Counts the steps the search asks for."""

    steps = 0

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        self.steps += 1
        return super().step(tokens, state)


def test_search_stops_once_no_live_hypothesis_can_win() -> None:
    """An end token far likelier than the rest: the one-token sequence ``(end,)`` wins, and no
    step is taken to extend hypotheses that are already e^-8 less likely."""
    model = random_model(6, "lstm")
    with torch.no_grad():
        model.decoder.bias[4] = 8.0
    stepper = CountingStepper(model)
    (found,) = beam_search(stepper, primes(6, 3, 1), 3, 20, end_token=4, length_penalty=0.6)
    assert [h.tokens for h in found] == [(4,)]
    assert stepper.steps == 0  # the search stopped after reading the prime
    (longer,) = beam_search(stepper, primes(6, 3, 1), 3, 20, end_token=4, n_best=3)
    assert 0 < stepper.steps < 19 and len(longer) == 3  # three finished: stops early too


def test_ties_go_to_the_lower_token_ids() -> None:
    """A model that finds every sequence equally likely: the order is deterministic, best first
    by beam rank then token id, i.e. lexicographic."""
    model = random_model(5, "elman")
    with torch.no_grad():
        model.decoder.weight.zero_()
        model.decoder.bias.zero_()
    for beam, n_best in [(1, 1), (3, 3), (7, 4)]:
        (found,) = beam_search(LanguageModelStepper(model), primes(5, 2, 1), beam, 3, n_best=n_best)
        assert [h.tokens for h in found] == list(product(range(5), repeat=3))[:n_best]


def test_fewer_sequences_than_n_best() -> None:
    """V = 2 with an end token: only 3 sequences of length <= 2 exist; all are returned."""
    model = random_model(2, "lstm")
    (found,) = beam_search(
        LanguageModelStepper(model), primes(2, 2, 1), 4, 2, end_token=0, n_best=4
    )
    assert sorted(h.tokens for h in found) == [(0,), (1, 0), (1, 1)]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beam_size": 0}, "beam_size must be a positive integer, got 0"),
        ({"max_length": 0}, "max_length must be a positive integer, got 0"),
        ({"n_best": 5}, "n_best must be between 1 and beam_size=4, got 5"),
        ({"length_penalty": -0.5}, "length_penalty must be a non-negative number, got -0.5"),
        ({"end_token": 6}, "end_token must be below the vocabulary size 6, got 6"),
        ({"end_token": -1}, "end_token must be a token id"),
    ],
    ids=["beam-0", "length-0", "n-best-above-beam", "negative-alpha", "end-6", "end-negative"],
)
def test_bad_arguments(options: dict, message: str) -> None:
    arguments = {"beam_size": 4, "max_length": 5, **options}
    with pytest.raises(ValueError, match=message):
        beam_search(LanguageModelStepper(random_model(6)), primes(6, 2, 1), **arguments)
