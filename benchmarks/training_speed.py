"""Training throughput, characters per second: the reference loop against `auto`, training's default.

Trains the Tiny Shakespeare benchmark's model (2 layers, 256 units, batch 64, 100 steps of
TBPTT, Adam, clipping) on ``../shared/data/tinyshakespeare.txt`` through rnnkit's Trainer, one
update at a time, alternating between the executors so that both see the same machine load, and
prints the median characters per second of each.

    python benchmarks/training_speed.py --cells lstm gru mut1 --updates 30
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from rnnkit.data.corpus import read_text_file
from rnnkit.training.config import TrainConfig
from rnnkit.training.language_data import LanguageData
from rnnkit.training.trainer import Trainer

TINY_SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def trainer(cell: str, executor: str, text: str, run_dir: Path) -> Trainer:
    config = TrainConfig()
    config.model.cell, config.model.hidden_size, config.model.num_layers = cell, 256, 2
    config.model.executor, config.model.dropout = executor, 0.1
    config.data.batch_size, config.data.seq_len = 64, 100
    return Trainer.start(config, run_dir, LanguageData.from_text(text, config.data.validation_fraction))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=TINY_SHAKESPEARE)
    parser.add_argument("--cells", nargs="+", default=["lstm", "gru", "mut1"])
    parser.add_argument("--updates", type=int, default=30, help="timed updates per executor")
    args = parser.parse_args()
    text = read_text_file(args.data)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; median of {args.updates} updates\n")
    print("| model | loop, chars/s | auto, chars/s | speed-up |\n|---|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as scratch:
        for cell in args.cells:
            trainers = {name: trainer(cell, name, text, Path(scratch) / f"{cell}-{name}") for name in ("loop", "auto")}
            speeds: dict[str, list[float]] = {name: [] for name in trainers}
            chars = 64 * 100
            for update in range(args.updates + 2):  # the first two warm up (and build the kernels)
                for name, run in trainers.items():
                    started = time.perf_counter()
                    run.update()
                    if update >= 2:
                        speeds[name].append(chars / (time.perf_counter() - started))
            loop, auto = (statistics.median(speeds[name]) for name in ("loop", "auto"))
            print(f"| 2×256 {cell} | {loop:,.0f} | {auto:,.0f} | {auto / loop:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
