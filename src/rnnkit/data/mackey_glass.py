r"""The Mackey-Glass delay differential equation, integrated by fourth-order Runge-Kutta.

The chaotic Mackey-Glass series with :math:`\tau = 17` is the classic benchmark of echo state
networks (Jaeger 2001; Jaeger & Haas 2004: 84-step free-running prediction, NRMSE normalised by
the signal's standard deviation). :func:`mackey_glass` generates it, :func:`squash` applies the
shift-and-squash :math:`\tanh(x - 1)` with which Jaeger fed it to the reservoir.

Example:
    >>> x = mackey_glass(4000)                  # (4000,) float64, x(t) at t = 1000, ..., 4999
    >>> y = squash(x)                           # tanh(x - 1), Jaeger's network input
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

# A seeded random history is x0 * (1 + AMPLITUDE * s(t)) with s a random trigonometric
# polynomial of MODES harmonics of period tau, |s| <= 1: smooth (so RK4 keeps its order from t = 0
# on), positive, and the same function of t whatever the step size.
_HISTORY_MODES = 4
_HISTORY_AMPLITUDE = 0.2

# tau / h and dt_sample / h must be integers up to this relative tolerance (float round-off).
_MULTIPLE_TOLERANCE = 1e-9


def mackey_glass(
    length: int,
    tau: float = 17.0,
    beta: float = 0.2,
    gamma: float = 0.1,
    n: float = 10,
    dt_sample: float = 1.0,
    substeps: int = 10,
    washout: int = 1000,
    x0: float = 1.2,
    seed: int | None = None,
) -> Tensor:
    r"""Sample the Mackey-Glass series (Mackey & Glass 1977).

    .. math::
        \frac{dx}{dt} = \frac{\beta\, x(t - \tau)}{1 + x(t - \tau)^n} - \gamma\, x(t)

    :math:`x(t)` is the concentration, :math:`\tau` the delay, :math:`\beta` the production
    rate, :math:`\gamma` the decay rate and :math:`n` the Hill exponent. The defaults
    :math:`\beta = 0.2, \gamma = 0.1, n = 10, \tau = 17` are the standard chaotic regime
    (:math:`\tau > 16.8`), as used by Jaeger (2001) and Jaeger & Haas (2004), who sampled every
    1 time unit (``dt_sample=1.0``). Jaeger discretised the equation by Euler steps of 1/10,
    subsampled every 10 steps; this function integrates it accurately instead, so its series
    is the true trajectory of the delay equation, not of Jaeger's difference equation.

    Sampling: sample ``i`` is :math:`x((\text{washout} + i) \cdot \text{dt\_sample})`, for
    ``i = 0 ... length - 1``: the first ``washout`` samples (the transient from the initial
    history onto the attractor) are computed and discarded.

    Initial history (:math:`t \le 0`): the constant ``x0`` when ``seed`` is None; otherwise
    :math:`x_0 (1 + 0.2\, s(t))` with :math:`s` a trigonometric polynomial of 4 harmonics of
    period :math:`\tau`, coefficients uniform in :math:`[-1, 1]` drawn from a
    ``torch.Generator`` seeded with ``seed``, scaled so that :math:`|s| \le 1`.

    Integration: classic RK4 with step :math:`h = \text{dt\_sample} / \text{substeps}`; ``tau``
    must be a whole number :math:`m \ge 1` of steps, so the delayed values at RK4's stage times
    :math:`t_k - \tau, t_k - \tau + h/2, t_k - \tau + h` are the grid point :math:`x_{k-m}`, a
    midpoint and :math:`x_{k-m+1}`. The midpoint is the cubic Hermite interpolant of the two
    grid values and their slopes :math:`x'_j = f(x_j, x_{j-m})` (the first RK4 stage, stored):

    .. math::
        x(t_j + h/2) \approx \tfrac12 (x_j + x_{j+1}) + \tfrac{h}{8} (x'_j - x'_{j+1}),

    whose error :math:`O(h^4)` keeps the method's global order 4 (linear interpolation, error
    :math:`O(h^2)`, would drop it to 2). The slope jumps at :math:`t = 0` (the history is not a
    solution) and the jump's echoes at multiples of :math:`\tau` fall on grid points, where the
    one-sided slopes are used. Only the last :math:`m + 1` grid values are kept, so memory is
    :math:`O(\tau / h)`, not :math:`O(\text{length})`. The arithmetic is in Python floats
    (IEEE double, so float64 throughout) in a plain loop over steps, a data generator's own ODE
    loop, not a recurrent network's: the default 4000 samples take about 0.05 s.

    Args:
        length: number of samples returned, N >= 1.
        tau, beta, gamma, n: the equation's delay and constants (all > 0).
        dt_sample: time between samples (> 0).
        substeps: RK4 steps per sample (>= 1); ``tau`` must be a multiple of
            ``dt_sample / substeps``.
        washout: samples discarded at the start (>= 0).
        x0: the initial history's level (> 0).
        seed: None for the constant history ``x0``; an int for a random history.

    Returns:
        A float64 tensor of shape (N,).

    Raises:
        ValueError: for an argument out of range or a ``tau`` that is not a multiple of the step.
    """
    _check_arguments(length, tau, beta, gamma, n, dt_sample, substeps, washout, x0, seed)
    h = dt_sample / substeps
    m = round(tau / h)  # the delay in steps
    history, history_slope = _history(tau, x0, seed)

    def rhs(x: float, delayed: float) -> float:
        return beta * delayed / (1.0 + delayed**n) - gamma * x

    # Ring buffers of grid values and slopes: grid index j (time j*h) lives at j % (m + 1). Step
    # k reads j = k - m and k - m + 1, then writes k + 1 over k - m, which no step needs again.
    size = m + 1
    values, slopes = [0.0] * size, [0.0] * size
    for j in range(-m, 1):
        values[j % size], slopes[j % size] = history(j * h), history_slope(j * h)
    slope_left_of_zero = slopes[0]  # the history's slope at t = 0, used on the interval [-h, 0]

    samples = []  # x(t) at t = (washout + i) * dt_sample
    x = values[0]
    for k in range((washout + length - 1) * substeps):
        if k % substeps == 0 and k >= washout * substeps:
            samples.append(x)
        here, behind, ahead = k % size, (k - m) % size, (k - m + 1) % size
        delayed, delayed_next = values[behind], values[ahead]
        k1 = rhs(x, delayed)
        slopes[here] = k1  # the slope to the right of t_k; from t_0 on x' is continuous
        # the slope to the left of t_{k-m+1}: the history's at t = 0, the solution's elsewhere
        slope_next = slope_left_of_zero if k - m + 1 == 0 else slopes[ahead]
        delayed_mid = 0.5 * (delayed + delayed_next) + 0.125 * h * (slopes[behind] - slope_next)
        k2 = rhs(x + 0.5 * h * k1, delayed_mid)
        k3 = rhs(x + 0.5 * h * k2, delayed_mid)
        k4 = rhs(x + h * k3, delayed_next)
        x = x + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)
        values[(k + 1) % size] = x
    samples.append(x)
    return torch.tensor(samples, dtype=torch.float64)


def squash(series: Tensor) -> Tensor:
    r""":math:`\tanh(x - 1)`: the shift and squash Jaeger (2001) applied to the Mackey-Glass series
    before feeding it to an echo state network (it centres the attractor, about
    :math:`[0.4, 1.35]`, near 0 within tanh's range). Same shape and dtype as ``series``."""
    return torch.tanh(series - 1.0)


def _history(tau: float, x0: float, seed: int | None) -> tuple[Callable, Callable]:
    """The initial history x(t), t <= 0, and its derivative, as two functions of t."""
    modes = range(1, _HISTORY_MODES + 1)
    omegas = [2.0 * math.pi * i / tau for i in modes]
    if seed is None:  # the constant x0: every coefficient 0
        cos_c = sin_c = [0.0] * _HISTORY_MODES
    else:
        generator = torch.Generator().manual_seed(seed)
        uniform = torch.rand(2, _HISTORY_MODES, generator=generator, dtype=torch.float64)
        cos_c, sin_c = (2.0 * uniform - 1.0).tolist()
    # |a cos + b sin| <= sqrt(a^2 + b^2) <= sqrt(2) per mode, hence |s| <= 1
    scale = x0 * _HISTORY_AMPLITUDE / (_HISTORY_MODES * math.sqrt(2.0))
    terms = list(zip(cos_c, sin_c, omegas))

    def value(t: float) -> float:
        return x0 + scale * sum(a * math.cos(w * t) + b * math.sin(w * t) for a, b, w in terms)

    def slope(t: float) -> float:
        return scale * sum(w * (b * math.cos(w * t) - a * math.sin(w * t)) for a, b, w in terms)

    return value, slope


def _check_arguments(
    length: int,
    tau: float,
    beta: float,
    gamma: float,
    n: float,
    dt_sample: float,
    substeps: int,
    washout: int,
    x0: float,
    seed: int | None,
) -> None:
    """Raise ValueError, saying expected vs got, for the first bad argument of mackey_glass."""
    for name, value, low in (
        ("length", length, 1),
        ("substeps", substeps, 1),
        ("washout", washout, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    positive = {"tau": tau, "beta": beta, "gamma": gamma, "n": n, "dt_sample": dt_sample, "x0": x0}
    for name, value in positive.items():
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be None or an integer, got {seed!r}")
    h = dt_sample / substeps
    steps = tau / h
    if round(steps) < 1 or abs(steps - round(steps)) > _MULTIPLE_TOLERANCE * steps:
        raise ValueError(
            f"tau must be a whole number >= 1 of integration steps h = dt_sample / substeps = {h!r};"
            f" got tau = {tau!r}, which is {steps!r} steps"
        )
