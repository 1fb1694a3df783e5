"""Depth advantage of recursive networks: a TreeLSTM against an LSTM on the same expressions.

Trains one model per cell on ``expr-tree`` (the value of a random arithmetic expression over
``+ - *`` modulo 10) for the same wall time through rnnkit's TaskTrainer: the N-ary TreeLSTM
reads each expression as its tree, the LSTM reads its flattened text ``(+(*34)2)``, both with
the same hidden size, batch and learning rate. Training draws expressions of height
``--train-min-depth`` to ``--train-max-depth``; each model is then scored on held-out sets of
expressions of every height from 2 to ``--max-depth`` (one height per set), so the heights above
the training range test whether a model learned the operation rather than the training
distribution. Prints a Markdown table: updates, training time and accuracy at each height (the
majority class's accuracy beside it).

    python benchmarks/tree_depth.py                                  # nary vs lstm, 3.5 minutes each
    python benchmarks/tree_depth.py --cells nary treernn lstm --minutes 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from cells import machine

from rnnkit.data.tasks import make_task
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_trainer import TaskTrainer, task_metrics

TEST_SEED = 12345  # the held-out sets' seed, apart from the training (0) and validation seeds


def train(cell: str, run_dir: Path, args: argparse.Namespace) -> tuple[TaskTrainer, float]:
    """One model of ``cell`` trained for ``args.minutes``; returns it and its training seconds."""
    config = TrainConfig()
    config.task.name = "expr-tree"
    config.task.options = {"min_depth": args.train_min_depth, "max_depth": args.train_max_depth}
    config.task.batch_size, config.task.validation_size = args.batch_size, 500
    config.model.cell, config.model.hidden_size, config.model.num_layers = cell, args.hidden, 1
    config.optim.lr, config.budget.minutes = args.lr, args.minutes
    config.eval_every, config.checkpoint_every, config.seed = 500, 10**9, 0
    trainer = TaskTrainer.start(config, run_dir)
    started = time.monotonic()
    trainer.run()
    return trainer, time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", nargs="+", default=["nary", "lstm"])
    parser.add_argument("--minutes", type=float, default=3.5, help="training wall time per model")
    parser.add_argument("--train-min-depth", type=int, default=1)
    parser.add_argument("--train-max-depth", type=int, default=4)
    parser.add_argument("--max-depth", type=int, default=8, help="the tallest held-out expressions")
    parser.add_argument("--test-size", type=int, default=1000, help="held-out expressions per height")
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.005)
    args = parser.parse_args()
    print(f"Machine: {machine(torch.device('cpu'))}")
    print(f"Command: python benchmarks/tree_depth.py {' '.join(sys.argv[1:])}".rstrip())
    depths = range(2, args.max_depth + 1)
    tests = {d: make_task("expr-tree", min_depth=d, max_depth=d).validation(args.test_size, TEST_SEED) for d in depths}
    majority = {d: (torch.bincount(t.targets).max() / len(t.targets)).item() for d, t in tests.items()}
    trained = f"trained on heights {args.train_min_depth}-{args.train_max_depth}"
    print(f"\nAccuracy of the value mod 10 on {args.test_size} held-out expressions per height ({trained}):\n")
    print("| model | updates | training time | " + " | ".join(f"h={d}" for d in depths) + " |")
    print("|---|---:|---:|" + "---:|" * len(depths))
    print("| majority class | | | " + " | ".join(f"{majority[d]:.3f}" for d in depths) + " |", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for cell in args.cells:
            trainer, seconds = train(cell, Path(scratch) / cell, args)
            accuracy = [task_metrics(trainer.model, "classification", tests[d])["val_accuracy"] for d in depths]
            name = {"nary": "N-ary TreeLSTM", "childsum": "Child-Sum TreeLSTM", "treernn": "TreeRNN"}.get(
                cell, f"{cell.upper()} on the flattened text"
            )
            print(f"| {name} | {trainer.step} | {seconds / 60:.1f} min | "
                  + " | ".join(f"{a:.3f}" for a in accuracy) + " |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
