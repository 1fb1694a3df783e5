"""``rnnkit esn``: fit an echo state network to a series and let it forecast freely.

``--task mackey-glass`` reproduces Jaeger & Haas (2004): a reservoir with output feedback learns
the Mackey-Glass series from teacher-forced steps (only the linear readout is trained, by ridge
regression), then runs free for ``--horizon`` steps. Prints the error at the last step over the
signal's standard deviation (NRMSE84 for 84 steps) and writes a PNG of forecast against truth.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diagnostics.plots import plot_forecast
from ..errors import RnnkitError
from ..training.forecasting import RIDGE_SELECTIONS, ForecastSetup, forecast_mackey_glass
from .arguments import non_negative_float, non_negative_int, positive_float, positive_int

TASKS = ("mackey-glass",)


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="fit an echo state network and forecast", description=__doc__)
    defaults = ForecastSetup()
    parser.add_argument("--task", choices=TASKS, default=TASKS[0])
    parser.add_argument("--size", type=positive_int, default=defaults.size, help="reservoir units")
    parser.add_argument("--spectral-radius", type=positive_float, default=defaults.spectral_radius)
    parser.add_argument("--leak", type=positive_float, default=defaults.leak, help="leak rate a in (0, 1]")
    parser.add_argument("--density", type=positive_float, default=defaults.density, help="fraction of nonzero W")
    parser.add_argument("--ridge", type=positive_float, default=None,
                        help="the readout's ridge (default: chosen on a validation split)")
    parser.add_argument("--ridge-selection", choices=RIDGE_SELECTIONS, default=defaults.ridge_selection,
                        help="choose the ridge by the error of free runs of --horizon steps (default) or of "
                             "one-step predictions, on the last fifth of the training steps")
    parser.add_argument("--train", type=positive_int, default=defaults.train, help="teacher-forced steps")
    parser.add_argument("--washout", type=non_negative_int, default=defaults.washout, help="steps the readout ignores")
    parser.add_argument("--horizon", type=positive_int, default=defaults.horizon, help="free-running steps")
    parser.add_argument("--feedback-noise", type=non_negative_float, default=defaults.feedback_noise)
    parser.add_argument("--seed", type=non_negative_int, default=defaults.seed)
    parser.add_argument("--png", type=Path, default=Path("esn-mackey-glass.png"), help="where the plot goes")


def run(args: argparse.Namespace) -> int:
    ridges = (args.ridge,) if args.ridge is not None else ForecastSetup().ridges
    setup = ForecastSetup(
        size=args.size, spectral_radius=args.spectral_radius, leak=args.leak, density=args.density,
        feedback_noise=args.feedback_noise, ridges=ridges, ridge_selection=args.ridge_selection,
        train=args.train, washout=args.washout, horizon=args.horizon, seed=args.seed,
    )  # fmt: skip
    try:
        forecast = forecast_mackey_glass(setup)
    except ValueError as error:  # settings that cannot work, e.g. a leak above 1
        raise RnnkitError(str(error)) from None
    try:
        plot_forecast(forecast.signal.tolist(), forecast.generated.tolist(), args.png)
    except OSError as error:
        raise RnnkitError(f"cannot write {args.png}: {error.strerror}") from None
    print(f"{args.size} units, {args.train} training steps (ridge {forecast.ridge:g}): training NRMSE "
          f"{forecast.training_nrmse:.2e}; after {args.horizon} free steps NRMSE {forecast.final_error:.2e}")
    print(f"plot: {args.png}")
    return 0
