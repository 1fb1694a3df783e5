"""Text features, the correlation search, and a trained character model's quote cell."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from rnnkit.diagnostics.activations import record_activations
from rnnkit.diagnostics.text_features import FEATURE_NAMES, CellScore, correlations, rank_cells, text_features
from rnnkit.models.language_model import LanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")


def test_features_of_a_small_text() -> None:
    """Each value counted by hand, after reading the character (the character included)."""
    text = 'a "b(c)" d\n  e{[x]}\n'
    features = text_features(text)
    assert list(features) == list(FEATURE_NAMES)
    expected = {
        #                   a     "  b  (  c  )  "     d \n     e  {  [  x  ]  } \n
        "inside quotes":   [0, 0, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        "position in line": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0],
        "bracket depth":   [0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 1, 0, 0],
        "indentation":     [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2, 2, 0],
    }  # fmt: skip
    for name, values in expected.items():
        assert features[name].tolist() == values, name


def test_a_closing_bracket_at_depth_zero_is_ignored() -> None:
    assert text_features(")(]")["bracket depth"].tolist() == [0, 1, 0]


def test_correlations_are_pearsons_and_zero_for_constants() -> None:
    generator = torch.Generator().manual_seed(1)
    activations = torch.randn(50, 4, generator=generator, dtype=torch.float64)
    activations[:, 2] = 0.3  # a constant unit: its float mean is not exactly 0.3
    feature = torch.randn(50, generator=generator, dtype=torch.float64)
    r = correlations(activations, feature)
    for j in (0, 1, 3):
        assert r[j].item() == pytest.approx(np.corrcoef(activations[:, j], feature)[0, 1], abs=1e-12)
    assert r[2].item() == 0.0
    assert correlations(activations, torch.full((50,), 7.0)).tolist() == [0.0] * 4


def test_rank_cells_finds_a_planted_unit() -> None:
    """A unit that is an affine function of a feature has |r| = 1 and ranks first for it."""
    features = text_features('ab "cd" e\n  (f) "g"\n' * 3)
    steps = len(features["inside quotes"])
    noise = torch.randn(steps, 5, dtype=torch.float64)
    planted = noise.clone()
    planted[:, 3] = 0.5 - 2 * features["bracket depth"]
    ranking = rank_cells([noise, planted], features, top=3)
    assert ranking["bracket depth"][0] == CellScore(1, 3, pytest.approx(-1.0))
    assert all(len(scores) == 3 for scores in ranking.values())
    assert all(abs(a.correlation) >= abs(b.correlation) for s in ranking.values() for a, b in zip(s, s[1:]))


def quoted_text(length: int, seed: int) -> str:
    """Lower-case words with upper-case quotations between them: ``ab c "DA BC" d "A" ...``."""
    rng = random.Random(seed)

    def words(letters: str) -> str:
        def word() -> str:
            return "".join(rng.choice(letters) for _ in range(rng.randint(1, 4)))

        return " ".join(word() for _ in range(rng.randint(1, 4)))

    parts = []
    while sum(map(len, parts)) < length:
        parts += [words("abcd"), f' "{words("ABCD")}" ']
    return "".join(parts)[:length]


def best_quote_cell(model: LanguageModel, text: str, ids: torch.Tensor) -> float:
    """|r| of the top-ranked cell for "inside quotes" on ``text``."""
    cells = record_activations(model, ids.view(-1, 1))
    ranking = rank_cells([c.outputs[:, 0] for c in cells], {"q": text_features(text)["inside quotes"]}, top=1)
    return abs(ranking["q"][0].correlation)


QUOTE_CELL = 0.9  # |r| the trained model's quote cell exceeds; untrained ones reach 0.33-0.69


def test_a_trained_character_model_has_a_quote_cell() -> None:
    """A 16-unit LSTM trained for 200 updates (about a second) on text whose quotations are in
    upper case must track whether it is inside quotes to predict the case of the next letter:
    the search finds a cell with |r| > 0.9 for "inside quotes", which the untrained model lacks
    (its best cell follows the case of the current letter, |r| below 0.7 for seeds 0-5)."""
    train, test = quoted_text(20_000, seed=0), quoted_text(1_000, seed=1)
    chars = sorted(set(train))
    ids = torch.tensor([chars.index(c) for c in train])
    test_ids = torch.tensor([chars.index(c) for c in test])
    model = LanguageModel(len(chars), "lstm", hidden_size=16, num_layers=1)
    untrained = best_quote_cell(model, test, test_ids)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    window, batch = 65, 16
    for _ in range(200):
        starts = torch.randint(len(ids) - window, (batch,))
        tokens = torch.stack([ids[s : s + window] for s in starts.tolist()], dim=1)  # (window, B)
        logits, _ = model(tokens[:-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    trained = best_quote_cell(model, test, test_ids)
    assert untrained < QUOTE_CELL < trained, (untrained, trained)
