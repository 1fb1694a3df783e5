"""Jaeger & Haas (2004): 84-step free-running prediction of the Mackey-Glass series by an echo state network.

Each trial draws a Mackey-Glass series (tau = 17, sampled every time unit, a seeded random history,
1000 samples of washout), squashes it as Jaeger did (tanh(x - 1)), builds a reservoir from the
same seed, trains the readout on --train teacher-forced steps (with output feedback, a constant
input of 0.02), then runs free for 84 steps. The error is Jaeger & Haas's NRMSE84:

    NRMSE84 = sqrt( mean over trials of (d(n + 84) - y(n + 84))^2 / sigma^2 )

with sigma^2 the variance of the squashed signal. Prints the settings, NRMSE84, the mean fit time,
and the median of the trials' errors.

    python benchmarks/mackey_glass.py                            # 1000 units, 3000 training steps, 20 trials
    python benchmarks/mackey_glass.py --size 400 --trials 5
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time

import torch

from rnnkit.data import mackey_glass
from rnnkit.models import EchoStateNetwork

HORIZON = 84
INPUT = 0.02  # Jaeger's constant bias input


def trial(seed: int, args: argparse.Namespace) -> tuple[float, float, float]:
    """(squared error at step 84, signal variance, fit seconds) of one independent run."""
    signal = torch.tanh(mackey_glass(args.train + HORIZON, washout=1000, seed=seed) - 1).view(-1, 1, 1)
    inputs = torch.full((args.train + HORIZON, 1, 1), INPUT, dtype=torch.float64)
    esn = EchoStateNetwork(
        1, 1, size=args.size, spectral_radius=args.spectral_radius, leak=args.leak, density=args.density,
        input_scaling=args.input_scaling, feedback=True, feedback_scaling=args.feedback_scaling, seed=seed,
    )  # fmt: skip
    started = time.perf_counter()
    _, state = esn.fit(inputs[: args.train], signal[: args.train], washout=args.washout,
                       feedback_noise=args.feedback_noise, generator=torch.Generator().manual_seed(seed))
    seconds = time.perf_counter() - started
    generated = esn.generate(inputs[args.train :], state, signal[args.train - 1])
    error = float((generated[-1] - signal[-1]).square().sum())
    return error, float(signal.var()), seconds


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
    parser.add_argument("--feedback-noise", type=float, default=0.0, help="std of noise on the fed-back teacher")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"Command: python benchmarks/mackey_glass.py {' '.join(sys.argv[1:])}".rstrip())
    results = [trial(seed, args) for seed in range(args.trials)]
    errors, variances, seconds = zip(*results)
    nrmse84 = math.sqrt(statistics.mean(e / v for e, v in zip(errors, variances)))
    typical = statistics.median(math.sqrt(e / v) for e, v in zip(errors, variances))
    print("\n| units | training steps | trials | NRMSE84 | median trial | mean fit time |")
    print("|---:|---:|---:|---:|---:|---:|")
    print(f"| {args.size} | {args.train} | {args.trials} | {nrmse84:.2e} | {typical:.2e} | "
          f"{statistics.mean(seconds):.2f} s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
