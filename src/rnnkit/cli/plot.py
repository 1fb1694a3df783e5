"""``rnnkit plot DIR``: the training curves of a run directory written by ``rnnkit train``.

Writes ``loss.png`` (training and validation loss), ``grad_norm.png`` (the gradient norm of
every update, before clipping) and ``spectral_radius.png`` (the spectral radius of each
recurrent layer's matrix at every validation) into --out (default: DIR).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..diagnostics.plots import plot_loss_curves, plot_training_series
from ..errors import RnnkitError
from ..training.metrics import read_metrics

METRICS_FILE = "metrics.jsonl"


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="draw a run's loss, gradient-norm and spectral-radius curves", description=__doc__)
    parser.add_argument("run_dir", type=Path, metavar="DIR", help="a run directory")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: DIR)")


def run(args: argparse.Namespace) -> int:
    path = args.run_dir / METRICS_FILE
    if not path.is_file():
        raise RnnkitError(f"expected a run directory holding {METRICS_FILE}, got {args.run_dir}")
    try:
        records = read_metrics(path)
    except ValueError as error:  # json.JSONDecodeError
        raise RnnkitError(f"{path} is not JSON lines: {error}") from None
    if not records or not all(isinstance(r, dict) and "step" in r for r in records):
        raise RnnkitError(f"expected {path} to hold training records, each with a step, got {len(records)} record(s) without")
    out = args.out or args.run_dir
    out.mkdir(parents=True, exist_ok=True)
    radii = sorted({key for r in records for key in r if key.startswith("spectral_radius")})
    written = [out / "loss.png", out / "grad_norm.png"]
    plot_loss_curves(records, written[0])
    plot_training_series(records, ["grad_norm"], written[1], "gradient norm (before clipping)")
    if radii:
        written.append(out / "spectral_radius.png")
        plot_training_series(records, radii, written[2], "spectral radius of the recurrent matrix")
    print("plots: " + ", ".join(map(str, written)))
    return 0
