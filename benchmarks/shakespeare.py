"""Tiny Shakespeare benchmark: train a character-level model for a fixed wall time and report.

Trains on the standard split of ``../shared/data/tinyshakespeare.txt`` (first 90% train, last
10% validation) through ``rnnkit train``, then prints a Markdown summary for BENCHMARKS.md: the
machine, the command, validation loss over time, when the target was first reached, throughput,
and a sample. The loss curve is copied to ``--png``.

    python benchmarks/shakespeare.py --out runs/bench-lstm --png docs/images/shakespeare-lstm.png
    python benchmarks/shakespeare.py --out runs/bench-gru -- --cell gru   # extra train flags
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
from pathlib import Path

import torch

from rnnkit.cli import main as rnnkit_main

REPOSITORY = Path(__file__).resolve().parents[1]
TINY_SHAKESPEARE = REPOSITORY.parent / "shared" / "data" / "tinyshakespeare.txt"
DEFAULT_TRAIN_FLAGS = [
    "--cell", "lstm", "--layers", "2", "--hidden", "256", "--batch-size", "64", "--seq-len", "100",
    "--lr", "2e-3", "--dropout", "0.1", "--eval-every", "100", "--checkpoint-every", "500",
    "--validation-fraction", "0.1", "--seed", "0",
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=TINY_SHAKESPEARE)
    parser.add_argument("--out", type=Path, required=True, help="run directory (replaced)")
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--target", type=float, default=1.60, help="validation loss to reach, nats/char")
    parser.add_argument("--png", type=Path, help="where to copy the loss curve")
    parser.add_argument("train_flags", nargs="*", help="extra `rnnkit train` flags, after --")
    args = parser.parse_args()

    shutil.rmtree(args.out, ignore_errors=True)
    train = ["train", "--data", str(args.data), "--out", str(args.out), "--minutes", str(args.minutes),
             *DEFAULT_TRAIN_FLAGS, *args.train_flags]
    status = rnnkit_main(train)
    if status != 0:
        return status
    records = [json.loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if "val_loss" in r]
    updates = [r for r in records if "loss" in r]
    reached = next((r for r in validations if r["val_loss"] <= args.target), None)
    best = min(validations, key=lambda r: r["val_loss"])
    sample = io.StringIO()
    with contextlib.redirect_stdout(sample):
        rnnkit_main(["sample", str(args.out), "--length", "500", "--temperature", "0.8", "--seed", "1", "--prime", "ROMEO:"])
    if args.png:
        args.png.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(args.out / "loss.png", args.png)

    shown = " ".join(["rnnkit", "train", "--data", "../shared/data/tinyshakespeare.txt", *train[3:]])
    print(f"\n- Machine: {machine()}")
    print(f"- Command: `python benchmarks/shakespeare.py {' '.join(sys.argv[1:])}`, which runs `{shown}`")
    print(f"- Updates: {len(updates)} in {updates[-1]['seconds'] / 60:.1f} min, "
          f"median {statistics.median(r['chars_per_second'] for r in updates):,.0f} characters/s")
    if reached:
        print(f"- Validation loss ≤ {args.target}: first at step {reached['step']}, "
              f"{reached['seconds'] / 60:.1f} min ({reached['val_loss']:.4f} nats/char)")
    else:
        print(f"- Validation loss ≤ {args.target}: NOT reached")
    print(f"- Best validation loss: {best['val_loss']:.4f} nats/char ({best['val_bits_per_char']:.4f} bits/char) "
          f"at step {best['step']}; final {validations[-1]['val_loss']:.4f}")
    print("\n| minutes | step | validation loss (nats/char) |\n|---:|---:|---:|")
    shown_rows = validations[:: max(1, len(validations) // 12)]
    for r in shown_rows + ([] if shown_rows[-1] is validations[-1] else [validations[-1]]):
        print(f"| {r['seconds'] / 60:.1f} | {r['step']} | {r['val_loss']:.4f} |")
    print("\nSample (temperature 0.8, seed 1):\n\n```\n" + sample.getvalue().strip() + "\n```")
    return 0


if __name__ == "__main__":
    sys.exit(main())
