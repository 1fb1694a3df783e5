"""Japanese Vowels speaker classification with an echo state network (EchoStateClassifier).

The UEA/UCI Japanese Vowels problem (Kudo, Toyama & Shimbo 1999): 270 training and 370 test
utterances, 12 LPC cepstrum channels, 7 to 29 steps, 9 speakers. The files come from the ``aeon``
package's bundled data (``pip install --no-deps aeon==1.6.0``).

For each reservoir size and pooling (the state at each utterance's last step, or the mean of its
states), the leak, spectral radius and input scaling are chosen from a small grid by 5-fold
cross-validated accuracy on the TRAINING file only (shuffled folds, ``--tune-seeds`` reservoirs per
setting); the test file is never looked at while choosing. The readout's ridge is chosen inside
each fit, on a shuffled validation split of the sequences it is fitted on. The chosen setting is
then fitted on the whole training file with ``--seeds`` fresh reservoirs and scored on the test
file: mean ± standard deviation of the test accuracy over those reservoirs, and the median time of
one fit (running the reservoir over the 270 utterances and solving the ridge, the ridge search
included). Two reference rows need no reservoir: chance, and the same ridge readout on each
utterance's mean input vector.

    python benchmarks/esn_classification.py                      # 50, 250, 500 units, 10 seeds
    python benchmarks/esn_classification.py --sizes 100 --seeds 3 --tune-seeds 1
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.data import japanese_vowels
from rnnkit.layers import RidgeReadout
from rnnkit.models.esn_classifier import POOLINGS, EchoStateClassifier

LEAKS = (0.1, 0.2, 0.3, 1.0)
SPECTRAL_RADII = (0.5, 0.9)
INPUT_SCALINGS = (0.5, 1.0, 2.0)
FOLDS = 5
TUNING_SEED_OFFSET = 1000  # the reservoirs drawn while tuning are not the ones scored on test


@dataclass(frozen=True)
class Setting:
    leak: float
    spectral_radius: float
    input_scaling: float


def accuracy(predicted: Tensor, labels: Tensor) -> float:
    return (predicted == labels).double().mean().item()


def cross_validated_accuracy(model: EchoStateClassifier, sequences: list[Tensor], labels: Tensor) -> float:
    """Accuracy over all training utterances, each predicted by the fold that held it out."""
    folds = torch.randperm(len(sequences), generator=torch.Generator().manual_seed(0)).chunk(FOLDS)
    correct = 0
    for k, held_out in enumerate(folds):
        kept = torch.cat([fold for j, fold in enumerate(folds) if j != k])
        model.fit([sequences[i] for i in kept], labels[kept])
        correct += (model.predict([sequences[i] for i in held_out]) == labels[held_out]).sum().item()
    return correct / len(sequences)


def tune(size: int, pooling: str, train: list[Tensor], labels: Tensor, seeds: int) -> tuple[Setting, float]:
    """The grid setting with the best mean cross-validated accuracy on the training file."""
    best: tuple[Setting, float] | None = None
    for leak, radius, scaling in itertools.product(LEAKS, SPECTRAL_RADII, INPUT_SCALINGS):
        setting = Setting(leak, radius, scaling)
        score = statistics.mean(
            cross_validated_accuracy(build(size, pooling, setting, TUNING_SEED_OFFSET + seed), train, labels)
            for seed in range(seeds)
        )
        if best is None or score > best[1]:  # ties keep the first in grid order
            best = (setting, score)
    assert best is not None
    return best


def build(size: int, pooling: str, setting: Setting, seed: int) -> EchoStateClassifier:
    return EchoStateClassifier(
        12, 9, size=size, leak=setting.leak, spectral_radius=setting.spectral_radius,
        input_scaling=setting.input_scaling, pooling=pooling, seed=seed,
    )  # fmt: skip


def mean_input_baseline(train: list[Tensor], labels: Tensor, test: list[Tensor], test_labels: Tensor) -> float:
    """A ridge readout (the classifier's, one-hot targets) on each utterance's mean input vector."""
    features = torch.stack([s.mean(0) for s in train])  # (S, 12)
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))
    targets = torch.nn.functional.one_hot(labels, 9).to(features.dtype)
    readout = RidgeReadout(12, 9).fit(features[order], targets[order])
    return accuracy(readout.predict(torch.stack([s.mean(0) for s in test])).argmax(-1), test_labels)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 250, 500], help="reservoir units")
    parser.add_argument("--poolings", nargs="+", choices=POOLINGS, default=list(POOLINGS))
    parser.add_argument("--seeds", type=int, default=10, help="reservoirs scored on the test file per row")
    parser.add_argument("--tune-seeds", type=int, default=3, help="reservoirs per grid setting while tuning")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"Command: python benchmarks/esn_classification.py {' '.join(sys.argv[1:])}".rstrip())
    train, labels = japanese_vowels("train", dtype=torch.float64)
    test, test_labels = japanese_vowels("test", dtype=torch.float64)

    started = time.perf_counter()
    rows = []
    for size, pooling in itertools.product(args.sizes, args.poolings):
        setting, validation = tune(size, pooling, train, labels, args.tune_seeds)
        accuracies, seconds = [], []
        for seed in range(args.seeds):
            model = build(size, pooling, setting, seed)
            start = time.perf_counter()
            model.fit(train, labels)
            seconds.append(time.perf_counter() - start)
            accuracies.append(accuracy(model.predict(test), test_labels))
        spread = statistics.stdev(accuracies) if len(accuracies) > 1 else 0.0
        errors = statistics.mean(round((1 - a) * len(test)) for a in accuracies)
        rows.append(
            f"| {size} | {pooling} | {setting.leak} | {setting.spectral_radius} | {setting.input_scaling} | "
            f"{100 * validation:.1f}% | {100 * statistics.mean(accuracies):.2f} ± {100 * spread:.2f}% | "
            f"{errors:.1f} | {statistics.median(seconds) * 1000:.0f} ms |"
        )
        print(rows[-1], file=sys.stderr, flush=True)  # progress; the table follows on stdout

    print("\n| units | pooling | leak | spectral radius | input scaling | CV accuracy (train) "
          "| test accuracy | test errors (of 370) | fit time (median) |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    chance = 1 / 9
    baseline = mean_input_baseline(train, labels, test, test_labels)
    print(f"| – | chance (1/9) | | | | | {100 * chance:.2f}% | | |")
    print(f"| – | ridge on the mean input, no reservoir | | | | | {100 * baseline:.2f}% "
          f"| {round((1 - baseline) * len(test))} | |")
    print(f"\nTuning and scoring took {time.perf_counter() - started:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
