"""Fitting an echo state network to the Mackey-Glass series and letting it forecast freely.

The experiment of Jaeger (2001) and Jaeger & Haas (2004): a Mackey-Glass series (tau = 17,
sampled every time unit) squashed as ``tanh(x - 1)``, a reservoir with output feedback and a
constant input of 0.02, a ridge readout fitted on ``train`` teacher-forced steps, then
``horizon`` steps of free-running prediction from the last training state. Shared by
``rnnkit esn`` and ``benchmarks/mackey_glass.py``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import Tensor

from ..data.mackey_glass import mackey_glass
from ..models.esn import DEFAULT_RIDGES, EchoStateNetwork

CONSTANT_INPUT = 0.02  # Jaeger's bias input
# How the readout's ridge is chosen on the last fifth of the training steps: by the error of free
# runs as long as the forecast (EchoStateNetwork.fit's validation_horizon), or of one-step predictions.
RIDGE_SELECTIONS = ("free-run", "one-step")


@dataclass(frozen=True)
class ForecastSetup:
    """The ESN and the data of one forecasting run (defaults: 1000 units, 3000 training steps)."""

    size: int = 1000
    spectral_radius: float = 0.95
    leak: float = 1.0
    density: float = 0.01
    input_scaling: float = 1.0
    feedback_scaling: float = 1.0
    feedback_noise: float = 0.0
    ridges: tuple[float, ...] = DEFAULT_RIDGES
    ridge_selection: str = "free-run"  # or "one-step": which validation error chooses among ridges
    train: int = 3000  # teacher-forced steps
    washout: int = 1000  # of those, the first ones the readout ignores
    horizon: int = 84  # free-running steps
    seed: int = 0  # the series' random history and the reservoir


@dataclass(frozen=True)
class Forecast:
    signal: Tensor  # (train + horizon,) the squashed series
    generated: Tensor  # (horizon,) the free-running prediction
    training_nrmse: float
    ridge: float  # the ridge the validation split chose
    fit_seconds: float

    @property
    def final_error(self) -> float:
        """|prediction - truth| at the last step, over the signal's standard deviation (NRMSE84)."""
        return float((self.generated[-1] - self.signal[-1]).abs() / self.signal.std())


def mackey_glass_task(setup: ForecastSetup) -> tuple[Tensor, Tensor, Tensor]:
    """The squashed series ``(train + horizon,)``, and the ESN's inputs and targets ``(T, 1, 1)``."""
    signal = torch.tanh(mackey_glass(setup.train + setup.horizon, washout=1000, seed=setup.seed) - 1)
    targets = signal.view(-1, 1, 1)  # (T, B=1, O=1)
    return signal, torch.full_like(targets, CONSTANT_INPUT), targets


def forecasting_esn(setup: ForecastSetup) -> EchoStateNetwork:
    """The echo state network of ``setup``: one input (the constant), one output fed back."""
    return EchoStateNetwork(
        1, 1, size=setup.size, spectral_radius=setup.spectral_radius, leak=setup.leak, density=setup.density,
        input_scaling=setup.input_scaling, feedback=True, feedback_scaling=setup.feedback_scaling, seed=setup.seed,
    )  # fmt: skip


def forecast_mackey_glass(setup: ForecastSetup) -> Forecast:
    """Fit on the first ``setup.train`` steps, then forecast ``setup.horizon`` steps freely."""
    if setup.washout >= setup.train:
        raise ValueError(f"washout must be shorter than train. Expected < {setup.train}, got {setup.washout}")
    if setup.ridge_selection not in RIDGE_SELECTIONS:
        raise ValueError(f"ridge_selection must be one of {', '.join(RIDGE_SELECTIONS)}, got {setup.ridge_selection!r}")
    signal, inputs, targets = mackey_glass_task(setup)
    esn = forecasting_esn(setup)
    started = time.perf_counter()
    training_nrmse, state = esn.fit(
        inputs[: setup.train], targets[: setup.train], washout=setup.washout, ridges=setup.ridges,
        feedback_noise=setup.feedback_noise, generator=torch.Generator().manual_seed(setup.seed),
        validation_horizon=setup.horizon if setup.ridge_selection == "free-run" else 0,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    generated = esn.generate(inputs[setup.train :], state, targets[setup.train - 1])
    return Forecast(signal, generated.view(-1), training_nrmse, float(esn.readout.ridge), seconds)
