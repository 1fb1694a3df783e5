"""``rnnkit eval``: the loss of a trained model on a text, in nats and bits per character."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from ..data.corpus import read_text_file
from ..errors import DataError, RnnkitError
from ..training.evaluation import evaluate_loss
from ..training.language_data import validation_ids
from ..training.loading import load_trained_model
from .arguments import positive_int
from .train import refuse_task_run


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="evaluate a trained model on a text", description=__doc__)
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="a run directory written by rnnkit train")
    parser.add_argument("--data", metavar="FILE", help="UTF-8 text (default: the run's validation split)")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="parallel streams (default: the run's --validation-streams)")


def run(args: argparse.Namespace) -> int:
    refuse_task_run(args.run_dir, "eval")
    trained = load_trained_model(args.run_dir)
    data = trained.config.data
    if args.data is not None:
        what = f"the text in {args.data}"
        ids = trained.vocabulary.encode(read_text_file(args.data), what=what)
    else:
        what = "the validation text"
        ids = validation_ids(data, trained.vocabulary)
    if len(ids) < 2:
        raise DataError(f"{what} has {len(ids)} characters; evaluation needs at least 2")
    loss = evaluate_loss(trained.model, ids, args.batch_size or data.validation_streams, data.seq_len)
    if not math.isfinite(loss):
        raise RnnkitError(f"the model's loss on {what} is {loss}: it assigns zero probability to a character")
    print(f"{loss:.4f} nats/char  {loss / math.log(2):.4f} bits/char  ({len(ids):,} characters, step {trained.step})")
    return 0
