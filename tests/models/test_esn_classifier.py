"""EchoStateClassifier: pooled states equal per-sequence runs, and it learns Japanese Vowels."""

from __future__ import annotations

import doctest
from importlib import metadata

import pytest
import torch

import rnnkit.models.esn_classifier
from rnnkit.data import japanese_vowels
from rnnkit.data.uea import UEA_DATA_PACKAGES
from rnnkit.models import EchoStateClassifier


def _any_installed(packages: tuple[str, ...]) -> bool:
    for package in packages:
        try:
            metadata.distribution(package)
            return True
        except metadata.PackageNotFoundError:
            pass
    return False


needs_data = pytest.mark.skipif(
    not _any_installed(UEA_DATA_PACKAGES),
    reason="the Japanese Vowels files come from aeon or sktime: pip install --no-deps aeon==1.6.0",
)

# Settings from a cross-validation sweep over the training file only (benchmarks/esn_classification.py's grid).
SETTINGS = dict(size=100, leak=0.2, spectral_radius=0.9, input_scaling=0.5)
# Measured test accuracy of these settings over reservoir seeds 0..19 (2026-12, CPU, float64):
# "last" 0.978-0.997 (mean 0.986), "mean" 0.968-0.989 (mean 0.979). Chance is 1/9, the largest
# test class 88/370 = 0.24, a linear readout of each utterance's mean input vector 0.87.
ACCURACY_THRESHOLD = 0.95


@pytest.fixture(scope="module")
def vowels():
    train, train_labels = japanese_vowels("train", dtype=torch.float64)
    test, test_labels = japanese_vowels("test", dtype=torch.float64)
    return train, train_labels, test, test_labels


def sequences(*lengths: int, features: int = 3, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(length, features, generator=generator, dtype=torch.float64) for length in lengths]


@pytest.mark.parametrize("pooling", ["last", "mean"], ids=["last", "mean"])
def test_pooled_features_of_a_padded_batch_equal_each_sequence_run_alone(pooling):
    """Gathering at each length from the padded batch = the reservoir over that sequence only."""
    model = EchoStateClassifier(3, 2, size=40, leak=0.3, bias_scaling=0.5, pooling=pooling, seed=0)
    batch = sequences(5, 11, 1, 8)
    pooled = model.features(batch)  # (4, 40)
    for b, sequence in enumerate(batch):
        states, final = model.reservoir(sequence.unsqueeze(1))  # (T_b, 1, 40): no padding at all
        expected = final[0] if pooling == "last" else states[:, 0].mean(0)
        torch.testing.assert_close(pooled[b], expected, rtol=1e-12, atol=1e-12)


def test_last_and_mean_differ_and_a_one_step_sequence_gives_the_same_for_both():
    batch = sequences(6, 1)
    last = EchoStateClassifier(3, 2, size=20, pooling="last", seed=0).features(batch)
    mean = EchoStateClassifier(3, 2, size=20, pooling="mean", seed=0).features(batch)
    assert not torch.allclose(last[0], mean[0])
    torch.testing.assert_close(last[1], mean[1], rtol=0, atol=0)


def test_fit_is_reproducible_and_its_validation_split_is_drawn_by_the_generator():
    """The same generator seed gives the same fit; another seed validates on other rows."""
    batch = sequences(*([7] * 30), seed=1)
    labels = torch.arange(3).repeat_interleave(10)  # sorted by class, as Japanese Vowels' train file

    def fitted(seed: int) -> EchoStateClassifier:
        model = EchoStateClassifier(3, 3, size=30, seed=0)
        return model.fit(batch, labels, generator=torch.Generator().manual_seed(seed))

    first, again = fitted(5), fitted(5)
    torch.testing.assert_close(first.readout.weight, again.readout.weight, rtol=0, atol=0)
    assert first.readout.validation_errors == again.readout.validation_errors
    assert first.readout.validation_errors != fitted(6).readout.validation_errors
    assert len(set(first.readout.validation_errors.values())) > 1


def test_predict_returns_class_indices():
    batch = sequences(4, 9, 2)
    model = EchoStateClassifier(3, 3, size=30, seed=0).fit(batch, torch.tensor([0, 2, 1]))
    predicted = model.predict(batch)
    assert predicted.dtype == torch.int64 and predicted.shape == (3,)
    assert model.scores(batch).shape == (3, 3)
    assert torch.equal(predicted, model.scores(batch).argmax(-1))


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(pooling="max"), "pooling must be one of last, mean, got 'max'"),
        (dict(num_classes=1), "num_classes must be at least 2, got 1"),
        (dict(feedback_size=1), "a classifier's reservoir has no output feedback"),
        (dict(leak=0.0), r"leak must lie in \(0, 1\], got 0.0"),  # passed on to the Reservoir
    ],
    ids=["pooling", "classes", "feedback", "reservoir-option"],
)
def test_bad_options_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        EchoStateClassifier(**{"input_size": 3, "num_classes": 2, "size": 10, **arguments})


def test_bad_inputs_are_refused():
    model = EchoStateClassifier(3, 2, size=10, seed=0)
    with pytest.raises(ValueError, match=r"sequences\[1\] must be \(T_i, I\) with T_i >= 1, got \(0, 3\)"):
        model.features([torch.zeros(2, 3), torch.zeros(0, 3)])
    with pytest.raises(ValueError, match=r"labels must be \(2,\), one per sequence"):
        model.fit(sequences(2, 3), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\), got 0..2"):
        model.fit(sequences(2, 3), torch.tensor([0, 2]))


def test_the_example_runs():
    failures, attempted = doctest.testmod(rnnkit.models.esn_classifier, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failures == 0


@needs_data
@pytest.mark.parametrize("pooling", ["last", "mean"], ids=["last", "mean"])
def test_it_learns_japanese_vowels(vowels, pooling):
    train, train_labels, test, test_labels = vowels
    untrained = EchoStateClassifier(12, 9, pooling=pooling, seed=0, **SETTINGS)
    chance_level = (untrained.predict(test) == test_labels).double().mean().item()
    assert chance_level == 31 / 370  # the all-zero readout predicts class 0, 31 of the 370
    model = untrained.fit(train, train_labels)
    accuracy = (model.predict(test) == test_labels).double().mean().item()
    assert accuracy > ACCURACY_THRESHOLD, f"{pooling}: test accuracy {accuracy:.4f}"
