"""Data-parallel training throughput, characters per second: one process against two under torchrun.

Trains the Tiny Shakespeare benchmark's model (2 layers × 256 LSTM, 100 steps of TBPTT, Adam,
clipping, no dropout) with ``rnnkit train`` on ``../shared/data/tinyshakespeare.txt``, launched as
a subprocess per configuration, and reads the speed from the run's ``metrics.jsonl``: global
characters (streams of all processes × T) per second of training wall time between the end of
the warm-up updates and the last update, so start-up, the final validation and the checkpoint are
left out. Configurations:

- 1 process, as many threads as cores (torch's default), batch B;
- 1 process, 1 thread, batch B;
- 2 processes × 1 thread, the same global batch B (B/2 streams each): the same training, faster;
- 2 processes × 1 thread, global batch 2B (B streams each): the same work per process.

The machine's core count is printed with the table. Run it on an otherwise idle machine:

    python benchmarks/distributed_throughput.py --steps 40
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from rnnkit.training.metrics import read_metrics

TINY_SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"


def chars_per_second(processes: int, threads: int, batch: int, args: argparse.Namespace, run_dir: Path) -> float:
    """Train one configuration in a fresh process (or torchrun's two) and measure its speed."""
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(processes), "-m", "rnnkit"]
        if processes > 1 else [sys.executable, "-m", "rnnkit"]
    )  # fmt: skip
    flags = [
        "train", "--out", str(run_dir), "--data", str(args.data), "--cell", args.cell, "--layers", "2",
        "--hidden", str(args.hidden), "--batch-size", str(batch), "--seq-len", str(args.seq_len),
        "--steps", str(args.steps), "--eval-every", str(10**9), "--checkpoint-every", str(10**9), "--no-progress",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([*launcher, *flags], env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = {r["step"]: r["seconds"] for r in read_metrics(run_dir / "metrics.jsonl") if "loss" in r}
    timed = args.steps - args.warmup
    return batch * args.seq_len * timed / (seconds[args.steps] - seconds[args.warmup])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=TINY_SHAKESPEARE)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=64, help="B, the one-process batch of streams")
    parser.add_argument("--seq-len", type=int, default=100)
    parser.add_argument("--steps", type=int, default=40, help="updates per configuration")
    parser.add_argument("--warmup", type=int, default=5, help="first updates left out of the timing")
    args = parser.parse_args()
    cores = os.cpu_count()
    print(f"{cores} cores, torch {torch.__version__}; {args.cell} 2×{args.hidden}, T={args.seq_len}, "
          f"updates {args.warmup + 1}-{args.steps} timed\n")
    print("| processes × threads | streams per process | global batch | chars/s | vs. 1 process, all cores |")
    print("|---|---:|---:|---:|---:|")
    b = args.batch_size
    configurations = [(1, cores, b), (1, 1, b), (2, 1, b), (2, 1, 2 * b)]
    baseline = None
    with tempfile.TemporaryDirectory() as scratch:
        for index, (processes, threads, batch) in enumerate(configurations):
            speed = chars_per_second(processes, threads, batch, args, Path(scratch) / str(index))
            baseline = baseline or speed
            print(f"| {processes} × {threads} | {batch // processes} | {batch} | {speed:,.0f} | {speed / baseline:.2f}× |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
