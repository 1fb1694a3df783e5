"""Jaeger & Haas (2004): 84-step free-running prediction of the Mackey-Glass series by an echo state network.

Each trial (``rnnkit.training.forecasting``, as ``rnnkit esn`` runs it) draws a Mackey-Glass series
(tau = 17, sampled every time unit, a seeded random history, 1000 samples of washout), squashes it as
Jaeger did (tanh(x - 1)), builds a reservoir from the same seed, trains the readout on --train
teacher-forced steps (with output feedback, a constant input of 0.02; the ridge chosen on the last
fifth of them by the error of 84-step free runs, or of one-step predictions), then runs free for 84 steps.
The error is Jaeger & Haas's NRMSE84:

    NRMSE84 = sqrt( mean over trials of (d(n + 84) - y(n + 84))^2 / sigma^2 )

with sigma^2 the variance of the squashed signal. Prints the settings, NRMSE84, the mean fit time,
and the median of the trials' errors.

    python benchmarks/mackey_glass.py                            # 1000 units, 3000 training steps, 20 trials
    python benchmarks/mackey_glass.py --size 400 --trials 5
    python benchmarks/mackey_glass.py --train 10000 --ridge-selection one-step
    python benchmarks/mackey_glass.py --trials 80 --train 20000 --spectral-radius 0.99   # Jaeger & Haas's 10^-4.2
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys

import torch

from rnnkit.training.forecasting import RIDGE_SELECTIONS, ForecastSetup, forecast_mackey_glass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--train", type=int, default=3000, help="teacher-forced training steps")
    parser.add_argument("--washout", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--spectral-radius", type=float, default=0.95)
    parser.add_argument("--leak", type=float, default=1.0)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--input-scaling", type=float, default=1.0)
    parser.add_argument("--feedback-scaling", type=float, default=1.0)
    parser.add_argument("--ridge-selection", choices=RIDGE_SELECTIONS, default="free-run")
    parser.add_argument("--feedback-noise", type=float, default=0.0, help="std of noise on the fed-back teacher")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"Command: python benchmarks/mackey_glass.py {' '.join(sys.argv[1:])}".rstrip())
    def setup(seed: int) -> ForecastSetup:
        return ForecastSetup(
            size=args.size, spectral_radius=args.spectral_radius, leak=args.leak, density=args.density,
            input_scaling=args.input_scaling, feedback_scaling=args.feedback_scaling,
            feedback_noise=args.feedback_noise, ridge_selection=args.ridge_selection, train=args.train,
            washout=args.washout, seed=seed,
        )  # fmt: skip

    forecasts = [forecast_mackey_glass(setup(seed)) for seed in range(args.trials)]
    errors = [f.final_error for f in forecasts]
    nrmse84 = math.sqrt(statistics.mean(e**2 for e in errors))  # the RMS over trials, as Jaeger & Haas
    print("\n| units | training steps | spectral radius | ridge chosen by | trials | NRMSE84 | median trial | "
          "worst trial | mean fit time |")
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|")
    print(f"| {args.size} | {args.train} | {args.spectral_radius} | {args.ridge_selection} | {args.trials} | {nrmse84:.2e} | "
          f"{statistics.median(errors):.2e} | {max(errors):.2e} | "
          f"{statistics.mean(f.fit_seconds for f in forecasts):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
