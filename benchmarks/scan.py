"""Forward + backward time of the scan executor against the sequential loop and the fused kernel.

A leaky cell without a recurrent matrix (``LeakyCell(recurrent=False)``) has a state that is linear
in itself, which ``rnnkit.engine.scan`` computes by a parallel prefix scan in O(log T) rounds of
whole-tensor operations, where ``loop`` takes T rounds of small ones. For each T, float32,
B=16, I=H=256, the scan, the reference loop and the fused C++ kernel run the same cell (learned
alpha) interleaved in one process, each on the layer input (the input projection included);
each time is the median of --reps runs after a warm-up. Prints milliseconds and ratios.

    python benchmarks/scan.py                               # T = 100 ... 10,000
    python benchmarks/scan.py --steps 100 1000 --reps 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from rnnkit.cells import LeakyCell
from rnnkit.engine.fused import extension, run_fused
from rnnkit.engine.loop import run_loop
from rnnkit.engine.scan import run_scan

EXECUTORS = {"loop": run_loop, "scan": run_scan, "fused": run_fused}


def machine() -> str:
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        lines = cpuinfo.read_text().splitlines()
        names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads"


def forward_backward(executor: Callable, cell: LeakyCell, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    state = cell.init_state(x.size(1), x.device, x.dtype)

    def run() -> None:
        output, _ = executor(cell, x, state)
        output.backward(grad)

    return run


def benchmark(steps: int, batch: int, hidden: int, reps: int) -> dict[str, float]:
    """Median milliseconds of each executor at one sequence length."""
    torch.manual_seed(0)
    cell = LeakyCell(hidden, hidden, alpha=torch.linspace(0.1, 0.99, hidden).tolist(), learn_alpha=True,
                     recurrent=False)
    x = torch.randn(steps, batch, hidden, requires_grad=True)
    grad = torch.randn(steps, batch, hidden)
    runs = {name: forward_backward(executor, cell, x, grad) for name, executor in EXECUTORS.items()}
    for run in runs.values():  # warm-up (and the C++ build, on a first run)
        run()
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():  # interleaved, so drift hits every contender alike
            started = time.perf_counter()
            run()
            samples[name].append(1000 * (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in samples.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 300, 1000, 3000, 10000])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    print(f"Machine: {machine()}")
    print(f"Command: python benchmarks/scan.py {' '.join(sys.argv[1:])}".rstrip())
    backend = "C++" if extension.ops() is not None else "Python (no C++ build)"
    print(f"\nLeaky cell, recurrent=False, B={args.batch}, I=H={args.hidden}, float32, fwd+bwd, "
          f"median of {args.reps}; fused runs its {backend} kernel\n")
    print("| T | loop ms | scan ms | fused ms | scan ÷ loop | fused ÷ loop | fused ÷ scan |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for steps in args.steps:
        ms = benchmark(steps, args.batch, args.hidden, args.reps)
        print(f"| {steps} | {ms['loop']:.1f} | {ms['scan']:.1f} | {ms['fused']:.1f} | {ms['scan'] / ms['loop']:.2f} "
              f"| {ms['fused'] / ms['loop']:.2f} | {ms['fused'] / ms['scan']:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
