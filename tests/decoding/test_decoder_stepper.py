"""Beam search and greedy decoding of conditioned decoders (Seq2Seq, ConditionedGenerator).

``DecoderStepper`` adapts a model with ``start(*context) -> state`` and ``step`` to the decoders'
``StepModel``. On tiny random models: stepwise scores equal the teacher-forced forward, beam 1
equals greedy, and a wide beam finds the best sequence of an exhaustive enumeration.
"""

from __future__ import annotations

import doctest
import itertools

import pytest
import torch

import rnnkit.decoding.stepper
from rnnkit.decoding import DecoderStepper, beam_search, decode
from rnnkit.models import ConditionedGenerator, Seq2Seq

BOS, END, VOCAB, LENGTH = 1, 2, 5, 3

pytestmark = pytest.mark.usefixtures("one_thread")


def seq2seq(attention: bool) -> Seq2Seq:
    torch.manual_seed(0)
    return Seq2Seq(VOCAB, VOCAB, "gru", hidden_size=8, attention=attention)


def generator(conditioning: str) -> ConditionedGenerator:
    torch.manual_seed(0)
    return ConditionedGenerator(3, VOCAB, "lstm", hidden_size=8, conditioning=conditioning)


MODELS = {
    "seq2seq": lambda: (seq2seq(False), (torch.tensor([[3, 4], [4, 3], [2, 0]]), torch.tensor([3, 2]))),
    "seq2seq-attention": lambda: (seq2seq(True), (torch.tensor([[3, 4], [4, 3], [2, 0]]), torch.tensor([3, 2]))),
    "generator-input": lambda: (generator("input"), (torch.eye(3)[:2],)),
    "generator-both": lambda: (generator("both"), (torch.eye(3)[:2],)),
}


def sequence_log_probability(stepper: DecoderStepper, context: tuple, row: int, tokens: tuple[int, ...]) -> float:
    """log P(tokens | context) for one row, by feeding the tokens one at a time."""
    scores, state = stepper.start(context)
    state = stepper.reorder(state, torch.tensor([row]))
    scores = scores[row : row + 1]
    total = 0.0
    for position, token in enumerate(tokens):
        total += torch.log_softmax(scores, -1)[0, token].item()
        if position + 1 < len(tokens):
            scores, state = stepper.step(torch.tensor([token]), state)
    return total


@pytest.mark.parametrize("name", MODELS)
def test_stepwise_scores_equal_the_teacher_forced_forward(name):
    model, context = MODELS[name]()
    target_in = torch.tensor([[BOS, BOS], [3, 4], [4, 4], [3, 3]])  # (T, B), starting with BOS
    with torch.no_grad():
        forced = model.eval()(*context, target_in)  # (T, B, V)
    stepper = DecoderStepper(model, BOS)
    scores, state = stepper.start(context)
    stepwise = [scores]
    for tokens in target_in[1:]:
        scores, state = stepper.step(tokens, state)
        stepwise.append(scores)
    torch.testing.assert_close(torch.stack(stepwise), forced, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_beam_one_is_greedy(name):
    model, context = MODELS[name]()
    stepper = DecoderStepper(model, BOS)
    greedy = torch.stack(list(decode(stepper, context, LENGTH, lambda scores: (scores.argmax(-1), None))))  # (L, B)
    best = beam_search(stepper, context, beam_size=1, max_length=LENGTH)
    assert [list(hypotheses[0].tokens) for hypotheses in best] == greedy.t().tolist()


@pytest.mark.parametrize("name", MODELS)
def test_a_wide_beam_finds_the_exhaustive_best(name):
    model, context = MODELS[name]()
    stepper = DecoderStepper(model, BOS)
    found = beam_search(stepper, context, beam_size=VOCAB**LENGTH, max_length=LENGTH, end_token=END)
    for row, hypotheses in enumerate(found):
        candidates = []  # every sequence: END anywhere ends it, else LENGTH tokens
        for length in range(1, LENGTH + 1):
            for tokens in itertools.product(range(VOCAB), repeat=length):
                ends_once_at_the_end = END not in tokens[:-1] and (tokens[-1] == END or length == LENGTH)
                if ends_once_at_the_end:
                    candidates.append((sequence_log_probability(stepper, context, row, tokens), tokens))
        best_score, best_tokens = max(candidates)
        assert hypotheses[0].tokens == best_tokens
        assert hypotheses[0].score == pytest.approx(best_score, abs=1e-5)


def test_the_examples_run():
    failures, attempted = doctest.testmod(rnnkit.decoding.stepper, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failures == 0
