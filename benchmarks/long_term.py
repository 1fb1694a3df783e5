"""The lectures' central experiment: plain RNNs fail on long-term dependencies where gated cells learn.

Trains one model per (cell, sequence length) on the adding problem (Hochreiter & Schmidhuber
1997: add the two marked numbers of a sequence of T random numbers; predicting 1 scores the
baseline MSE of 1/6 ≈ 0.167) through rnnkit's TaskTrainer, each for the same wall time, and
prints a Markdown table of the validation MSE reached, with a PNG of validation MSE against
training time for every run.

    python benchmarks/long_term.py                                    # elman, lstm, gru at T = 50, 150
    python benchmarks/long_term.py --cells elman lstm --lengths 100 --minutes 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

from rnnkit.training.config import TrainConfig
from rnnkit.training.task_trainer import TaskTrainer

BASELINE = 1 / 6  # MSE of always predicting 1, the mean of the sum of two U(0, 1)


def train(cell: str, length: int, minutes: float, run_dir: Path, args: argparse.Namespace) -> list[dict]:
    """Train one model; returns its validation records from metrics.jsonl."""
    config = TrainConfig()
    config.task.name, config.task.options = "adding", {"length": length}
    config.task.batch_size, config.task.validation_size = args.batch_size, 1000
    config.model.cell, config.model.hidden_size, config.model.num_layers = cell, args.hidden, 1
    config.optim.lr, config.optim.clip = args.lr, 1.0
    config.budget.minutes = minutes
    config.eval_every, config.checkpoint_every, config.seed = args.eval_every, 10**9, 0
    TaskTrainer.start(config, run_dir).run()
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if "val_mse" in r]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["elman", "lstm", "gru"])
    parser.add_argument("--lengths", nargs="+", type=int, default=[50, 150])
    parser.add_argument("--minutes", type=float, default=2.5, help="training wall time per run")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--png", type=Path, default=Path("docs/images/adding-problem.png"))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"Command: python benchmarks/long_term.py {' '.join(sys.argv[1:])}".rstrip())
    print("\n| cell | T | updates | best validation MSE | final validation MSE | ÷ baseline (final) |")
    print("|---|---:|---:|---:|---:|---:|")
    figure, axes = plt.subplots(1, len(args.lengths), figsize=(5 * len(args.lengths), 4), layout="constrained",
                                squeeze=False)
    with tempfile.TemporaryDirectory() as scratch:
        for column, length in enumerate(args.lengths):
            axis = axes[0, column]
            for cell in args.cells:
                records = train(cell, length, args.minutes, Path(scratch) / f"{cell}-{length}", args)
                mse = [r["val_mse"] for r in records]
                print(f"| {cell} | {length} | {records[-1]['step']} | {min(mse):.4f} | {mse[-1]:.4f} | "
                      f"{mse[-1] / BASELINE:.2f} |", flush=True)
                axis.plot([r["seconds"] / 60 for r in records], mse, label=cell)
            axis.axhline(BASELINE, linestyle="--", color="gray", label="baseline (predict 1)")
            axis.set_yscale("log")
            axis.set_title(f"adding problem, T = {length}")
            axis.set_xlabel("training time (minutes)")
            axis.set_ylabel("validation MSE")
            axis.grid(alpha=0.3)
            axis.legend()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(args.png, dpi=100)
    print(f"\nPlot: {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
