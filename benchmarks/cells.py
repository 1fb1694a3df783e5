"""Forward + backward time of every fused cell against torch.nn's kernels and the GEMM floor.

For T=100, float32, input = hidden = H, batch B: our fused Elman, LSTM, peephole, CIFG, GRU (both
reset placements), MUT1–3 and leaky; torch.nn.RNN/LSTM/GRU; our reference `loop` executor; and
each cell's pure-GEMM floor (the same matrix products and nothing else). Contenders run
interleaved in one process; each time is the median of --reps runs after warm-up. Prints, per
size, milliseconds and the ratios to the torch.nn reference, to the floor and to the loop.

    python benchmarks/cells.py                       # the six sizes of BENCHMARKS.md
    python benchmarks/cells.py --sizes 16x64 --reps 5
    python benchmarks/cells.py --device cuda           # on a GPU: torch.nn is then cuDNN
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rnnkit import Recurrent
from rnnkit.cells import make_cell
from rnnkit.engine import fused

STEPS = 100


@dataclass(frozen=True)
class Contender:
    label: str
    cell: str  # rnnkit cell name
    options: dict
    reference: str  # the torch.nn class it is compared with
    input_rows: int  # rows of W_ih, in units of H
    recurrent: tuple[tuple[int, int], ...]  # per-step products (k, n) in units of H: (B,k) @ (k,n)


CELLS = [
    Contender("elman", "elman", {}, "RNN", 1, ((1, 1),)),
    Contender("lstm", "lstm", {}, "LSTM", 4, ((1, 4),)),
    Contender("peephole", "peephole", {}, "LSTM", 4, ((1, 4),)),
    Contender("cifg", "cifg", {}, "LSTM", 3, ((1, 3),)),
    Contender("gru", "gru", {}, "GRU", 3, ((1, 3),)),
    Contender("gru reset before", "gru", {"reset_after": False}, "GRU", 3, ((1, 2), (1, 1))),
    Contender("mut1", "mut1", {}, "GRU", 2, ((1, 1), (1, 1))),
    Contender("mut2", "mut2", {}, "GRU", 2, ((1, 2), (1, 1))),
    Contender("mut3", "mut3", {}, "GRU", 3, ((1, 1), (1, 1), (1, 1))),
    Contender("leaky", "leaky", {}, "RNN", 1, ((1, 1),)),
]
TORCH_CLASSES = {"RNN": nn.RNN, "LSTM": nn.LSTM, "GRU": nn.GRU}


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}; torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")]
        cpu = names[0] if names else cpu
    return f"{cpu}; {os.cpu_count()} cores; torch {torch.__version__}, {torch.get_num_threads()} threads"


def forward_backward(model: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    def run() -> None:
        output, _ = model(x)
        output.backward(grad)

    return run


def gemm_floor(contender: Contender, batch: int, hidden: int, device: torch.device) -> Callable[[], None]:
    """The matrix products of one forward + backward and nothing else."""
    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, device=device)

    x = randn(STEPS * batch, hidden)
    w_ih = randn(contender.input_rows * hidden, hidden)
    d_xp = randn(STEPS * batch, contender.input_rows * hidden)
    products = [(randn(batch, k * hidden), randn(k * hidden, n * hidden), randn(batch, n * hidden),
                 randn(STEPS * batch, k * hidden), randn(STEPS * batch, n * hidden)) for k, n in contender.recurrent]

    def run() -> None:
        torch.mm(x, w_ih.t())  # the input projection
        for _ in range(STEPS):
            for h, w, _, _, _ in products:
                torch.mm(h, w)
        torch.mm(d_xp, w_ih)  # d input
        torch.mm(d_xp.t(), x)  # d W_ih
        for _ in range(STEPS):
            for _, w, d_out, _, _ in products:
                torch.mm(d_out, w.t())
        for _, _, _, hs, d_outs in products:
            torch.mm(d_outs.t(), hs)  # d W_hh, one GEMM over all steps

    return run


def time_ms(run: Callable[[], None], samples: list[float], device: torch.device) -> None:
    """Time one run into ``samples``; on a GPU, up to the end of its queued kernels."""
    synchronize = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    synchronize()
    started = time.perf_counter()
    run()
    synchronize()
    samples.append(1000 * (time.perf_counter() - started))


def benchmark_size(batch: int, hidden: int, reps: int, loop_cells: set[str], device: torch.device) -> list[str]:
    torch.manual_seed(0)
    x = torch.randn(STEPS, batch, hidden, device=device, requires_grad=True)
    grad = torch.randn(STEPS, batch, hidden, device=device)
    runs: dict[str, Callable[[], None]] = {}
    for name, cls in TORCH_CLASSES.items():
        runs[f"torch.nn.{name}"] = forward_backward(cls(hidden, hidden).to(device), x, grad)
    available = [c for c in CELLS if fused.supports(make_cell(c.cell, hidden, hidden, **c.options))]
    for contender in available:
        runs[contender.label] = forward_backward(
            Recurrent(contender.cell, hidden, hidden, executor="fused", **contender.options).to(device), x, grad)
        runs[f"{contender.label} floor"] = gemm_floor(contender, batch, hidden, device)
        if contender.label in loop_cells:
            runs[f"{contender.label} loop"] = forward_backward(
                Recurrent(contender.cell, hidden, hidden, executor="loop", **contender.options).to(device), x, grad)
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for label, run in runs.items():  # warm-up (and the C++ build, on a first run)
        run()
    for _ in range(reps):
        for label, run in runs.items():  # interleaved, so drift hits every contender alike
            time_ms(run, samples[label], device)
    ms = {label: statistics.median(values) for label, values in samples.items()}

    lines = [f"\n### B={batch}, H={hidden} (T={STEPS}, fwd+bwd, median of {reps})\n",
             "| cell | ms | ÷ torch.nn | ÷ GEMM floor | loop ÷ fused |", "|---|---:|---:|---:|---:|"]
    for name in TORCH_CLASSES:
        lines.append(f"| torch.nn.{name} | {ms[f'torch.nn.{name}']:.2f} | 1.00 | | |")
    for contender in CELLS:
        if contender not in available:
            lines.append(f"| {contender.label} | no fused kernel | | | |")
            continue
        mine = ms[contender.label]
        loop = ms.get(f"{contender.label} loop")
        lines.append(
            f"| {contender.label} | {mine:.2f} | {mine / ms[f'torch.nn.{contender.reference}']:.2f} "
            f"(nn.{contender.reference}) | {mine / ms[f'{contender.label} floor']:.2f} | "
            + (f"{loop / mine:.1f}" if loop else "") + " |"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["16x64", "16x256", "16x512", "64x64", "64x256", "64x512"],
                        help="BATCHxHIDDEN")
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--loop-at", nargs="*", default=["16x64"],
                        help="sizes at which every cell's loop executor is timed too (slow)")
    parser.add_argument("--device", default="cpu", help="cpu, or cuda (torch.nn is then cuDNN)")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"Machine: {machine(device)}")
    print(f"Command: python benchmarks/cells.py {' '.join(sys.argv[1:])}".rstrip())
    for size in args.sizes:
        batch, hidden = map(int, size.split("x"))
        loop_cells = {c.label for c in CELLS} if size in args.loop_at else set()
        print("\n".join(benchmark_size(batch, hidden, args.reps, loop_cells, device)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
