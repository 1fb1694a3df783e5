"""Tests for rnnkit.data.mackey_glass: fourth-order convergence, the series satisfies the delay
equation (checked by finite differences, independently of the integrator), the sampling and washout
conventions, the chaotic attractor of tau = 17, seeding, and the argument checks."""

from __future__ import annotations

import pytest
import torch

from rnnkit.data.mackey_glass import mackey_glass, squash

BETA, GAMMA, N, TAU = 0.2, 0.1, 10, 17


def autocorrelation(x: torch.Tensor, lag: int) -> float:
    """Normalised autocorrelation of the (N,) series x at a lag > 0."""
    centred = x - x.mean()
    return ((centred[:-lag] * centred[lag:]).mean() / centred.var(unbiased=False)).item()


@pytest.mark.parametrize("seed", [None, 3], ids=["constant_history", "random_history"])
def test_rk4_converges_at_fourth_order(seed: int | None) -> None:
    # 80 time units: long enough to cross the derivative jumps at t = 0, tau, 2 tau, 3 tau, short
    # enough that chaos (Lyapunov time ~ 150) does not amplify the step's error.
    series = {s: mackey_glass(81, substeps=s, washout=0, seed=seed) for s in (10, 20, 40)}
    coarse = (series[10] - series[20]).abs().max().item()  # ~ C h^4 (1 - 1/16)
    fine = (series[20] - series[40]).abs().max().item()  # ~ C (h/2)^4 (1 - 1/16)
    assert coarse < 1e-7  # h = 0.1 is already accurate far beyond the NRMSE 1e-4 benchmark
    assert coarse / fine > 8  # order 4 gives 16; order 2 (linear midpoints) would give 4


def test_series_satisfies_the_delay_equation() -> None:
    # Sampled every 0.1 time units, x' by the fourth-order central difference (error ~ d^4/30 x^(5),
    # about 1e-6 here) must equal the right-hand side with x(t - tau) read 170 samples back.
    d = 0.1
    lag = round(TAU / d)
    x = mackey_glass(600, dt_sample=d, substeps=10, washout=2000)  # t in [200, 260)
    derivative = (x[:-4] - 8 * x[1:-3] + 8 * x[3:-1] - x[4:]) / (12 * d)  # at samples 2 ... -3
    now = x[2:-2][lag:]
    delayed = x[2:-2][:-lag]
    rhs = BETA * delayed / (1 + delayed**N) - GAMMA * now
    residual = (derivative[lag:] - rhs).abs().max().item()
    assert residual < 1e-5
    # the check has teeth: a 10% wrong decay rate leaves a residual well above the tolerance
    wrong = BETA * delayed / (1 + delayed**N) - 1.1 * GAMMA * now
    assert (derivative[lag:] - wrong).abs().max().item() > 1e-3


def test_sampling_and_washout_conventions() -> None:
    series = mackey_glass(50, washout=30)
    assert series.dtype == torch.float64 and series.shape == (50,)
    # sample i is x((washout + i) * dt_sample): washout only drops the first samples ...
    assert torch.equal(series, mackey_glass(80, washout=0)[30:])
    # ... and with the same step h = 0.1, sampling twice as often interleaves the same values
    assert torch.equal(series, mackey_glass(100, dt_sample=0.5, substeps=5, washout=60)[::2])
    # the first sample without washout is the history's value at t = 0
    assert mackey_glass(1, washout=0, x0=0.7).item() == 0.7


def test_attractor_of_tau_17_is_bounded_and_chaotic() -> None:
    x = mackey_glass(5000)
    # the tau = 17 attractor lies in about [0.42, 1.32] (mean about 0.93)
    assert 0.2 < x.min().item() < 0.6 and 1.2 < x.max().item() < 1.4
    assert 0.85 < x.mean().item() < 1.0
    # aperiodic: no lag up to 1000 time units (the 84-step horizon included) repeats the signal,
    # whereas a periodic orbit of period < 1000 would correlate ~1 at its period
    assert max(autocorrelation(x, lag) for lag in range(10, 1000)) < 0.9
    # sensitive to initial conditions: a 1e-9 change of the history grows a million-fold
    a = mackey_glass(3000, washout=0, x0=1.2)
    b = mackey_glass(3000, washout=0, x0=1.2 + 1e-9)
    assert (a - b)[:20].abs().max().item() < 1e-7
    assert (a - b)[-500:].abs().max().item() > 1e-3


def test_squash_centres_the_series_for_tanh() -> None:
    x = mackey_glass(3000)
    y = squash(x)
    assert torch.allclose(torch.atanh(y) + 1, x, rtol=0, atol=1e-12)
    assert abs(y.mean().item()) < 0.1 and y.abs().max().item() < 0.6


def test_seeding() -> None:
    first = mackey_glass(200, seed=5)
    assert torch.equal(first, mackey_glass(200, seed=5))
    other = mackey_glass(200, seed=6)
    assert (first - other).abs().max().item() > 0.1  # different histories, different series
    assert not torch.equal(mackey_glass(20, washout=0, seed=5), mackey_glass(20, washout=0))
    # every seeded history falls onto the same attractor
    assert 0.3 < other.min().item() and other.max().item() < 1.4


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"length": 0}, "length must be an integer >= 1, got 0"),
        ({"length": 2.0}, "length must be an integer >= 1, got 2.0"),
        ({"substeps": 0}, "substeps must be an integer >= 1, got 0"),
        ({"washout": -1}, "washout must be an integer >= 0, got -1"),
        ({"tau": 0.0}, "tau must be a finite number > 0, got 0.0"),
        ({"gamma": -0.1}, "gamma must be a finite number > 0, got -0.1"),
        ({"dt_sample": float("inf")}, "dt_sample must be a finite number > 0, got inf"),
        ({"x0": True}, "x0 must be a finite number > 0, got True"),
        ({"seed": 1.5}, "seed must be None or an integer, got 1.5"),
        ({"tau": 17.05}, r"tau must be a whole number >= 1 of integration steps .* 170.5 steps"),
        ({"tau": 0.05}, r"tau must be a whole number >= 1 .* got tau = 0.05, which is 0.5 steps"),
    ],
    ids=lambda value: str(value) if isinstance(value, dict) else "",
)
def test_bad_arguments(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mackey_glass(**{"length": 10, **options})
