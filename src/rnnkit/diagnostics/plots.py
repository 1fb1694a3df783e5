"""Plots of training runs and diagnostics, drawn with matplotlib's non-interactive Agg backend."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:  # training imports this module; the diagnostics import the model stack
    from .gradient_flow import GradientFlow
    from .spectra import Spectrum

DIAGNOSTIC_DPI = 90  # the diagnostics' figures are committed under docs/images: kept small


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


def plot_gradient_flow(flow: GradientFlow, png: Path, title: str) -> None:
    """Two log-scale panels against the lag T - k: the state gradient ``||dL/ds_k||``, and the
    Jacobian product ``||J_T ... J_{k+1}||_2`` with the bound ``(lambda_W lambda_phi)^(T-k)``.

    The y-range follows the measured curves (a decade either side), so that a bound running
    to 1e-60 or 1e+60 does not flatten them; the bound leaves the frame where it is that loose.
    """
    figure, (gradients, products) = plt.subplots(1, 2, figsize=(9, 3.8), layout="constrained")
    gradients.semilogy(flow.lags, _positive(flow.state_gradient_norms), color="tab:blue")
    gradients.set_ylabel(r"$\|\partial L / \partial s_k\|$")
    lags = np.arange(1, len(flow.jacobian_norms) + 1)
    products.semilogy(lags, _positive(flow.jacobian_norms), color="tab:blue", label="measured")
    products.semilogy(
        lags, _positive(flow.bound), "--", color="tab:red",
        label=rf"bound $({flow.largest_singular_value:.3g} \cdot {flow.derivative_bound:g})^{{T-k}}$ (block {flow.block})",
    )  # fmt: skip
    low, high = _positive(flow.jacobian_norms).min(), max(flow.jacobian_norms.max(), 1.0)
    products.set_ylim(low / 10, high * 10)
    products.set_ylabel(r"$\|\prod_{i=k+1}^{T} \partial s_i / \partial s_{i-1}\|_2$")
    products.legend(fontsize="small")
    for axes in (gradients, products):
        axes.set_xlabel("lag T - k (steps back from the last)")
        axes.grid(alpha=0.3, which="both")
    figure.suptitle(title)
    figure.savefig(png, dpi=DIAGNOSTIC_DPI)
    plt.close(figure)


def plot_eigenvalues(spectra: Mapping[str, Spectrum], png: Path, title: str) -> None:
    """The eigenvalues of each recurrent block in the complex plane, with the unit circle."""
    figure, axes = plt.subplots(figsize=(5, 5), layout="constrained")
    angles = np.linspace(0, 2 * np.pi, 361)
    axes.plot(np.cos(angles), np.sin(angles), color="gray", linewidth=0.8, label="unit circle")
    for name, found in spectra.items():
        axes.scatter(
            found.eigenvalues.real, found.eigenvalues.imag, s=12, alpha=0.7,
            label=f"{name}: radius {found.spectral_radius:.3f}",
        )  # fmt: skip
    axes.set_aspect("equal")
    axes.axhline(0, color="gray", linewidth=0.5)
    axes.axvline(0, color="gray", linewidth=0.5)
    axes.set_xlabel("real part")
    axes.set_ylabel("imaginary part")
    axes.legend(fontsize="small", loc="upper right")
    axes.set_title(title)
    figure.savefig(png, dpi=DIAGNOSTIC_DPI)
    plt.close(figure)


def plot_training_series(records: Sequence[dict[str, Any]], keys: Sequence[str], png: Path, ylabel: str) -> None:
    """The values of ``keys`` in the records that have them, against the step, on a log scale:
    the per-update gradient norm, or the spectral radii recorded at every validation."""
    figure, axes = plt.subplots(figsize=(8, 4), layout="constrained")
    for key in keys:
        points = [(r["step"], r[key]) for r in records if key in r]
        if points:
            steps, values = zip(*points)
            marker = "o-" if len(points) < 50 else "-"
            axes.semilogy(steps, _positive(np.asarray(values)), marker, markersize=3, linewidth=1, label=key)
    axes.set_xlabel("update")
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3, which="both")
    axes.legend(fontsize="small")
    figure.savefig(png, dpi=100)
    plt.close(figure)


def _positive(values: np.ndarray) -> np.ndarray:
    """``values`` with zeros raised to the smallest positive double, for a log axis."""
    return np.maximum(values, np.finfo(np.float64).tiny)
