"""A tiny model on a tiny text learns: its loss falls far below the text's unigram entropy.

The text is 160 sentences drawn (with a fixed seed) from five short ones. A model that knew only
the character frequencies would pay the unigram entropy, about 2.54 nats per character; a model
that has learnt the sentences pays only for the choice of the next sentence, about
ln 5 / 23 ≈ 0.07 nats per character. After 80 steps (a few seconds) an LSTM or a GRU reaches
about 0.14 nats on the held-out validation text; the test asks for less than a fifth of the
unigram entropy (≈ 0.51 nats), a margin of about three.
"""

from __future__ import annotations

import json
import math
import random
from collections import Counter
from pathlib import Path

import pytest

from rnnkit.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

SENTENCES = (
    "the cat sat on the mat.",
    "the dog ate the bone.",
    "a bird sang in the tree.",
    "we went home at night.",
    "she reads a good book.",
)
STEPS = 80
BOUND = 0.2  # the final validation loss must be below BOUND x the unigram entropy



def sentences_text(count: int = 160, seed: int = 0) -> str:
    rng = random.Random(seed)
    return " ".join(rng.choice(SENTENCES) for _ in range(count)) + "\n"


def unigram_entropy(text: str) -> float:
    """``-Σ p(c) ln p(c)`` over the characters of ``text``, in nats."""
    counts = Counter(text)
    return -sum(n / len(text) * math.log(n / len(text)) for n in counts.values())


def test_unigram_entropy_of_known_texts() -> None:
    assert unigram_entropy("aaaa") == 0.0
    assert unigram_entropy("abab") == pytest.approx(math.log(2))
    assert unigram_entropy("abcd" * 3) == pytest.approx(math.log(4))


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_loss_falls_well_below_unigram_entropy(
    cell: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = sentences_text()
    entropy = unigram_entropy(text)
    assert 2.4 < entropy < 2.7  # the text is what the docstring says it is
    data = tmp_path / "sentences.txt"
    data.write_text(text, encoding="utf-8")
    run_dir = tmp_path / "run"
    # fmt: off
    status = main([
        "train", "--data", str(data), "--out", str(run_dir), "--cell", cell, "--hidden", "64",
        "--layers", "1", "--batch-size", "8", "--seq-len", "32", "--lr", "0.01",
        "--steps", str(STEPS), "--eval-every", "40", "--validation-streams", "4", "--no-progress",
    ])
    # fmt: on
    assert status == 0
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["loss"] for r in records if "loss" in r]
    validation = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]

    assert len(train_losses) == STEPS
    assert sum(train_losses[-10:]) / 10 < 0.5 * sum(train_losses[:10]) / 10
    assert [step for step, _ in validation] == [40, 80]
    final = validation[-1][1]
    assert final < BOUND * entropy, (
        f"validation loss {final:.3f} nats, unigram entropy {entropy:.3f}"
    )
    assert final < validation[0][1]  # still improving between the two validations
    assert f"validation loss {final:.4f} nats/char" in capsys.readouterr().out
