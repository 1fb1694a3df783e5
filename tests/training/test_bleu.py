"""Corpus BLEU against examples computed by hand (n-gram counts written out in the comments)."""

from __future__ import annotations

import math

import pytest

from rnnkit.training.bleu import corpus_bleu

REFERENCES = ["the cat is on the mat", "there is a cat on the mat"]


def test_one_sentence_by_hand():
    # unigrams: the x2 (a reference holds 2), cat, on, mat match, sat does not: 5/6
    # bigrams: the cat, on the, the mat match; cat sat, sat on do not: 3/5
    # trigrams: only "on the mat": 1/4; 4-grams: none of 3; lengths 6 vs closest 6: BP = 1
    bleu = corpus_bleu(["the cat sat on the mat"], [REFERENCES])
    expected = [5 / 6, math.sqrt(5 / 6 * 3 / 5), (5 / 6 * 3 / 5 * 1 / 4) ** (1 / 3), 0.0]
    assert bleu == pytest.approx(expected, abs=1e-12)


def test_clipping_papineni_example():
    # Papineni et al. 2002: seven "the" are credited twice, the most one reference holds
    assert corpus_bleu(["the " * 7], [REFERENCES], max_n=1) == pytest.approx([2 / 7 * math.exp(1 - 7 / 7)])


def test_corpus_sums_counts_before_dividing_and_penalises_brevity():
    # second sentence "a cat": unigrams 2/2, bigram 1/1, no trigrams; its closest reference has 3 words
    # corpus: p1 = (5 + 2) / (6 + 2), p2 = (3 + 1) / (5 + 1); c = 8 words against r = 6 + 3
    bleu = corpus_bleu(["the cat sat on the mat", "a cat"], [REFERENCES, ["a cat sat", "the cat sat here"]], max_n=2)
    brevity = math.exp(1 - 9 / 8)
    assert bleu == pytest.approx([brevity * 7 / 8, brevity * math.sqrt(7 / 8 * 4 / 6)], abs=1e-12)


def test_a_reference_scores_one_and_the_tie_takes_the_shorter_reference():
    assert corpus_bleu(["a red circle"], [["a red circle", "a small red circle"]], max_n=3) == pytest.approx([1.0] * 3)
    # 2 words between references of 1 and 3: the shorter (1) counts, c = 2 > r = 1, so no penalty
    assert corpus_bleu(["red circle"], [["circle", "a red circle"]], max_n=1) == pytest.approx([1.0])


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="expected one reference set per hypothesis, got 2 hypotheses and 1 sets"):
        corpus_bleu(["a", "b"], [["a"]])
