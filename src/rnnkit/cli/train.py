"""``rnnkit train``: train a character-level language model, or continue one with ``--resume``."""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..cells import cell_names
from ..data.corpus import BUNDLED_CORPORA, load_corpus, read_text_file
from ..engine import executor_names
from ..errors import RnnkitError
from ..training.checkpoint import load_checkpoint
from ..training.config import CLIP_MODES, LR_SCHEDULES, OPTIMIZERS, TrainConfig, config_from_dict
from ..training.trainer import StepReport, Trainer
from .arguments import (
    fraction,
    key_value,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

# flag -> (config section or "" for the top level, field, argparse options). Defaults live in the
# config dataclasses alone: every flag defaults to None, meaning "not given".
FLAGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "--cell": ("model", "cell", {"choices": cell_names(), "help": "recurrent cell"}),
    "--layers": ("model", "num_layers", {"type": positive_int, "help": "stacked recurrent layers"}),
    "--hidden": ("model", "hidden_size", {"type": positive_int, "help": "units per layer"}),
    "--embedding": ("model", "embedding_size", {"type": non_negative_int, "help": "embedding size (0: as --hidden)"}),
    "--dropout": ("model", "dropout", {"type": fraction, "help": "dropout on non-recurrent connections"}),
    "--input-noise": ("model", "input_noise", {"type": non_negative_float, "help": "std of Gaussian noise on the embeddings"}),
    "--executor": ("model", "executor", {"choices": executor_names(), "help": "how cells run over time"}),
    "--seq-len": ("data", "seq_len", {"type": positive_int, "help": "steps of truncated BPTT"}),
    "--batch-size": ("data", "batch_size", {"type": positive_int, "help": "parallel text streams"}),
    "--validation-streams": ("data", "validation_streams", {"type": positive_int, "help": "parallel streams when validating"}),
    "--validation-fraction": ("data", "validation_fraction", {"type": fraction, "help": "final part of the text held out"}),
    "--optimizer": ("optim", "optimizer", {"choices": OPTIMIZERS}),
    "--lr": ("optim", "lr", {"type": positive_float, "help": "learning rate"}),
    "--momentum": ("optim", "momentum", {"type": fraction, "help": "SGD and RMSProp momentum"}),
    "--lr-schedule": ("optim", "lr_schedule", {"choices": LR_SCHEDULES}),
    "--lr-min-ratio": ("optim", "lr_min_ratio", {"type": non_negative_float, "help": "cosine: final lr / lr"}),
    "--lr-decay": ("optim", "lr_decay", {"type": positive_float, "help": "step: lr factor"}),
    "--lr-decay-every": ("optim", "lr_decay_every", {"type": positive_int, "help": "step: steps between decays"}),
    "--warmup": ("optim", "warmup_steps", {"type": non_negative_int, "help": "linear warm-up steps"}),
    "--clip": ("optim", "clip", {"type": non_negative_float, "help": "gradient clipping threshold (0: off)"}),
    "--clip-mode": ("optim", "clip_mode", {"choices": CLIP_MODES, "help": "clip the global norm or each value"}),
    "--l1": ("optim", "l1", {"type": non_negative_float, "help": "L1 penalty on weights"}),
    "--l2": ("optim", "l2", {"type": non_negative_float, "help": "L2 penalty on weights"}),
    "--weight-decay": ("optim", "weight_decay", {"type": non_negative_float, "help": "decoupled weight decay"}),
    "--steps": ("budget", "steps", {"type": positive_int, "help": "stop after this many updates"}),
    "--epochs": ("budget", "epochs", {"type": positive_float, "help": "stop after this many passes over the text"}),
    "--minutes": ("budget", "minutes", {"type": positive_float, "help": "stop after this much wall time"}),
    "--eval-every": ("", "eval_every", {"type": positive_int, "help": "updates between validations"}),
    "--checkpoint-every": ("", "checkpoint_every", {"type": positive_int, "help": "updates between checkpoints"}),
    "--seed": ("", "seed", {"type": non_negative_int}),
}
BUDGET_FLAGS = ("--steps", "--epochs", "--minutes")


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="train a character-level language model", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", help="a UTF-8 text file to train on")
    source.add_argument("--corpus", choices=BUNDLED_CORPORA, help="a bundled corpus (default: shakespeare)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", type=Path, help="the run directory to create")
    target.add_argument("--resume", metavar="DIR", type=Path, help="continue the run in DIR")
    for flag, (_, _, options) in FLAGS.items():
        parser.add_argument(flag, default=None, **options)
    parser.add_argument(
        "--cell-option", metavar="KEY=VALUE", type=key_value, action="append", default=None,
        help="a cell option, e.g. forget_bias=0 or reset_after=false (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.resume is not None:
        trainer = _resumed_trainer(args)
    else:
        config = _config_from_flags(args)
        trainer = Trainer.start(config, args.out, _read_text(config))
    return _train(trainer, progress=not args.no_progress)


def _config_from_flags(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig()
    for flag, (section, field, _) in FLAGS.items():
        value = getattr(args, _dest(flag))
        if value is not None:
            setattr(getattr(config, section) if section else config, field, value)
    if args.data is not None:
        config.data.path = str(Path(args.data).resolve())  # --resume may run from elsewhere
    if args.corpus is not None:
        config.data.corpus = args.corpus
    if args.cell_option:
        config.model.cell_options = dict(args.cell_option)
    if not (config.budget.steps or config.budget.epochs or config.budget.minutes):
        config.budget.epochs = 1.0
    config.validate()
    return config


def _resumed_trainer(args: argparse.Namespace) -> Trainer:
    fixed = [flag for flag in [*FLAGS, "--data", "--corpus", "--cell-option"]
             if flag not in BUDGET_FLAGS and getattr(args, _dest(flag)) is not None]
    if fixed:
        raise RnnkitError(
            f"--resume continues a run with its saved configuration; only {', '.join(BUDGET_FLAGS)} "
            f"may change, got {fixed[0]}"
        )
    checkpoint = load_checkpoint(args.resume)
    config = config_from_dict(TrainConfig, checkpoint.metadata.get("config"), "checkpoint config")
    given = {flag: getattr(args, _dest(flag)) for flag in BUDGET_FLAGS}
    if any(value is not None for value in given.values()):
        config.budget = dataclasses.replace(
            config.budget, **{FLAGS[flag][1]: value or 0 for flag, value in given.items()}
        )
    return Trainer.resume(config, args.resume, _read_text(config), checkpoint)


def _read_text(config: TrainConfig) -> str:
    return read_text_file(config.data.path) if config.data.path else load_corpus(config.data.corpus)


def _train(trainer: Trainer, progress: bool) -> int:
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops at once

    previous = signal.signal(signal.SIGINT, request_stop)
    bar = tqdm(
        total=trainer.total_steps, initial=trainer.step, unit="step", disable=not progress,
        dynamic_ncols=True, file=sys.stderr,
    )

    def on_step(report: StepReport) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{report.loss:.3f}", chars_per_s=f"{report.chars_per_second:,.0f}", refresh=False)

    def on_validation(step: int, loss: float) -> None:
        bar.write(f"step {step}: validation loss {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char)")

    try:
        result = trainer.run(on_step, on_validation, should_stop=lambda: stop_requested)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    if result.interrupted:
        print(
            f"interrupted at step {result.step}; checkpoint {result.checkpoint}\n"
            f"continue with: rnnkit train --resume {trainer.run_dir}",
            file=sys.stderr,
        )
        return 130
    if result.validation_loss is not None:
        loss = result.validation_loss
        print(f"validation loss {loss:.4f} nats/char ({loss / math.log(2):.4f} bits/char) after {result.step} steps")
    print(f"run directory: {trainer.run_dir}")
    return 0


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
