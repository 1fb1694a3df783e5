"""Plots of training runs, drawn with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def plot_loss_curves(records: Sequence[dict[str, Any]], png: Path) -> None:
    """Training loss (per update, and its running mean) and validation loss against the step.

    A language model's loss is in nats per character (with bits on the right-hand axis); a task
    run's records carry the task's ``baseline``, the loss of the trivial predictor, drawn dashed.
    """
    train = [(r["step"], r["loss"]) for r in records if "loss" in r]
    validation = [(r["step"], r["val_loss"]) for r in records if "val_loss" in r]
    figure, axes = plt.subplots(figsize=(8, 4.5), layout="constrained")
    if train:
        steps, losses = zip(*train)
        window = len(losses) // 50  # smooth over about 2% of the run
        faint = {"alpha": 0.25, "linewidth": 0.8} if window > 1 else {}
        axes.plot(steps, losses, color="tab:blue", label="training (per update)", **faint)
        if window > 1:
            sums = np.cumsum(np.concatenate([[0.0], losses]))
            starts = np.maximum(0, np.arange(1, len(losses) + 1) - window)
            smoothed = (sums[1:] - sums[starts]) / (np.arange(1, len(losses) + 1) - starts)
            axes.plot(steps, smoothed, color="tab:blue", label=f"training (mean of {window} updates)")
    if validation:
        steps, losses = zip(*validation)
        axes.plot(steps, losses, "o-", color="tab:red", label="validation")
    baselines = [r["baseline"] for r in records if "baseline" in r]
    axes.set_xlabel("update")
    if baselines:  # a task run: MSE or cross-entropy per scored step
        axes.axhline(baselines[-1], linestyle="--", color="gray", label="baseline (trivial predictor)")
        axes.set_ylabel("loss")
    else:
        axes.set_ylabel("loss (nats per character)")
        bits = axes.secondary_yaxis("right", functions=(lambda n: n / math.log(2), lambda b: b * math.log(2)))
        bits.set_ylabel("bits per character")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.savefig(png, dpi=100)
    plt.close(figure)


def plot_forecast(signal: Sequence[float], generated: Sequence[float], png: Path, context: int = 300) -> None:
    """The last ``context`` steps of a signal before a free-running forecast, the forecast against
    the truth, and the forecast's absolute error on a log scale below."""
    signal, generated = np.asarray(signal), np.asarray(generated)
    start = len(signal) - len(generated)  # the first forecast step
    steps = np.arange(len(signal))
    shown = slice(max(0, start - context), len(signal))
    figure, (values, errors) = plt.subplots(2, 1, figsize=(8, 5.5), sharex=True, layout="constrained",
                                            height_ratios=(2, 1))
    values.plot(steps[shown], signal[shown], color="black", linewidth=1, label="truth")
    values.plot(steps[start:], generated, "--", color="tab:red", label="free-running forecast")
    values.axvline(start - 0.5, color="gray", linewidth=0.8)
    values.set_ylabel("signal")
    values.legend()
    values.grid(alpha=0.3)
    errors.semilogy(steps[start:], np.maximum(np.abs(generated - signal[start:]), 1e-16), color="tab:red")
    errors.set_xlabel("step")
    errors.set_ylabel("|forecast - truth|")
    errors.grid(alpha=0.3)
    figure.savefig(png, dpi=100)
    plt.close(figure)
