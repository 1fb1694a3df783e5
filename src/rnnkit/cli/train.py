"""``rnnkit train``: train a character-level language model, or a model of a synthetic task with
``--task NAME``; continue either with ``--resume``.

Under ``torchrun`` (``torchrun --nproc-per-node N -m rnnkit train ...``) the N processes train a
language model data-parallel (:mod:`rnnkit.training.distributed`): ``--batch-size`` counts the
streams of all of them, rank 0 alone writes the run directory, logs and shows progress, and a
failed or hung process ends the others with one line each. The flags are checked, and the text
and any checkpoint read, before the processes join, so a mistake stops every rank at once.
With ``--device cuda`` each process trains on its own GPU, ``cuda:LOCAL_RANK``, and the
processes join with NCCL instead of gloo.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..cells import TREE_CELLS, cell_names
from ..data.corpus import BUNDLED_CORPORA
from ..data.token_file import read_metadata
from ..data.tasks import TASKS, make_task, task_options
from ..engine import executor_names
from ..errors import RnnkitError
from ..models.classifier import POOLINGS
from ..models.conditioned import CONDITIONINGS
from ..training.checkpoint import load_checkpoint
from ..training.config import CLIP_MODES, LR_SCHEDULES, OPTIMIZERS, TrainConfig, config_from_dict
from ..training.distributed import (
    DEFAULT_TIMEOUT_SECONDS,
    DEVICES,
    World,
    process_group,
    resolve_device,
    world_from_environment,
)
from ..training.language_data import is_prepared, load_language_data
from ..training.run_loop import CONFIG_FILE, StepReport, TrainingRun
from ..training.task_trainer import TaskTrainer
from ..training.trainer import Trainer, check_world
from .arguments import (
    fraction,
    key_value,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

USAGE = 2  # exit status of a command line that does not make sense

# flag -> (config section or "" for the top level, field, argparse options). Defaults live in the
# config dataclasses alone: every flag defaults to None, meaning "not given".
FLAGS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "--cell": ("model", "cell", {"choices": [*cell_names(), *TREE_CELLS], "help": (
        f"recurrent cell; with a tree task (--task expr-tree) also a tree cell ({', '.join(TREE_CELLS)}), "
        "which reads the expression as a tree (a recurrent cell reads it flattened)")}),
    "--layers": ("model", "num_layers", {"type": positive_int, "help": "stacked recurrent layers"}),
    "--hidden": ("model", "hidden_size", {"type": positive_int, "help": "units per layer"}),
    "--embedding": ("model", "embedding_size", {"type": non_negative_int, "help": "embedding size (0: as --hidden)"}),
    "--dropout": ("model", "dropout", {"type": fraction, "help": "dropout on non-recurrent connections"}),
    "--input-noise": ("model", "input_noise", {"type": non_negative_float, "help": "std of Gaussian noise on the embeddings"}),
    "--executor": ("model", "executor", {"choices": executor_names(), "help": "how cells run over time"}),
    "--seq-len": ("data", "seq_len", {"type": positive_int, "help": "steps of truncated BPTT"}),
    "--batch-size": ("data", "batch_size", {"type": positive_int, "help": "parallel text streams (--task: examples per update)"}),
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
    "--device": ("", "device", {"choices": DEVICES, "help": (
        "where to train: cpu (default), cuda (under torchrun one GPU per process, cuda:LOCAL_RANK, "
        "with NCCL) or auto (cuda where there is a GPU); may change on --resume")}),
    "--validation-size": ("task", "validation_size", {"type": positive_int, "help": "task: examples in the fixed validation set"}),
    "--attention": ("task", "attention", {"action": "store_true", "help": "seq2seq task: the decoder attends to the source"}),
    "--pooling": ("task", "pooling", {"choices": POOLINGS, "help": "regression or classification task: sequence summary"}),
    "--conditioning": ("task", "conditioning", {"choices": CONDITIONINGS, "help": "captioning task: the image enters the decoder as input, initial state or both"}),
}
BUDGET_FLAGS = ("--steps", "--epochs", "--minutes")
# What --resume may change besides the budget: where the run goes on, not what it computes.
RESUME_FLAGS = (*BUDGET_FLAGS, "--device")
# Flags of text streams, which a task run has no use for; its --batch-size counts examples.
LANGUAGE_MODEL_FLAGS = ("--seq-len", "--validation-streams", "--validation-fraction", "--input-noise", "--epochs")


class _UsageError(Exception):
    """Flags that parse one by one but do not make sense together (exit status 2, one line)."""


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="train a language model or a task's model", description=__doc__)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="PATH", help=(
        "a UTF-8 text file to train on, or a directory made by rnnkit prepare (read from disk as "
        "it trains, never whole into memory)"))
    source.add_argument("--corpus", choices=BUNDLED_CORPORA, help="a bundled corpus (default: shakespeare)")
    source.add_argument("--task", choices=sorted(TASKS), help="a synthetic task to train on instead of a text")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", metavar="DIR", type=Path, help="the run directory to create")
    target.add_argument("--resume", metavar="DIR", type=Path, help="continue the run in DIR")
    for flag, (_, _, options) in FLAGS.items():
        parser.add_argument(flag, default=None, **options)
    parser.add_argument(
        "--cell-option", metavar="KEY=VALUE", type=key_value, action="append", default=None,
        help="a cell option, e.g. forget_bias=0 or reset_after=false (repeatable)",
    )
    parser.add_argument(
        "--task-option", metavar="KEY=VALUE", type=key_value, action="append", default=None,
        help="a task option, e.g. length=50 for --task adding (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--collective-timeout", metavar="SECONDS", type=positive_float, default=DEFAULT_TIMEOUT_SECONDS,
        help="under torchrun: how long a process waits for the others before it gives up "
        f"(default {DEFAULT_TIMEOUT_SECONDS:g})",
    )


def run(args: argparse.Namespace) -> int:
    world = world_from_environment(timeout=args.collective_timeout)
    try:
        if args.resume is not None:
            world, make_trainer = _resumed_trainer(args, world)
        else:
            config = _config_from_flags(args)
            world = _placed(config, world)
            make_trainer = (
                functools.partial(TaskTrainer.start, config, args.out) if config.task.name
                else functools.partial(Trainer.start, config, args.out, load_language_data(config.data), world)
            )
    except _UsageError as error:
        print(f"rnnkit train: error: {error}", file=sys.stderr)
        return USAGE
    if not world.is_main:
        logging.getLogger("rnnkit").setLevel(logging.ERROR)  # rank 0 speaks for the run
    with process_group(world):
        return _train(make_trainer(), world, progress=not args.no_progress)


def _config_from_flags(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig()
    if args.task is not None:
        config.task.name = args.task
        config.task.options = _task_options(args.task, args.task_option or [])
    elif args.task_option:
        raise _UsageError("--task-option needs --task")
    for flag, (section, field, _) in FLAGS.items():
        value = getattr(args, _dest(flag))
        if value is None:
            continue
        if args.task is None and section == "task":
            raise _UsageError(f"{flag} needs --task")
        if args.task is not None and flag in LANGUAGE_MODEL_FLAGS:
            raise _UsageError(f"{flag} applies to language models, not to --task {args.task}")
        if args.task is not None and flag == "--batch-size":
            section = "task"  # examples per update rather than text streams
        setattr(getattr(config, section) if section else config, field, value)
    if args.data is not None:
        config.data.path = str(Path(args.data).resolve())  # --resume may run from elsewhere
        if is_prepared(config.data):
            config.data.validation_fraction = _prepared_fraction(config.data.path, args.validation_fraction)
    if args.corpus is not None:
        config.data.corpus = args.corpus
    if args.cell_option:
        config.model.cell_options = dict(args.cell_option)
    if not (config.budget.steps or config.budget.epochs or config.budget.minutes):
        if config.task.name:
            raise _UsageError(f"--task {config.task.name} needs a budget: --steps or --minutes")
        config.budget.epochs = 1.0
    config.validate()
    return config


def _task_options(name: str, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``--task-option`` pairs (values read as JSON) checked against task ``name``'s options.

    An unknown key (the message lists the task's options with their defaults), a value of
    another type than the option's or one out of its range is a usage error, in
    ``make_task``'s words.
    """
    defaults = task_options(name)
    # A float option given as a whole number ("rate=1") is still a float.
    options = {
        key: float(value) if isinstance(defaults.get(key), float) and type(value) is int else value
        for key, value in pairs
    }
    try:
        make_task(name, **options)
    except ValueError as error:
        raise _UsageError(str(error)) from None
    return options


def _placed(config: TrainConfig, world: World) -> World:
    """``world`` on ``config``'s device; RnnkitError (one line) if its processes cannot train
    ``config`` there. Settled before the processes join: the backend depends on the device, and
    a missing GPU then stops every rank at once, before anything is written."""
    check_world(config, world)
    return world.on(resolve_device(config.device, world.local_rank))


def _resumed_trainer(args: argparse.Namespace, world: World) -> tuple[World, Callable[[], TrainingRun]]:
    """``world`` on the run's device (the saved one, or ``--device``), and what continues the
    run in ``args.resume`` once the processes have joined. Every rank
    reads the checkpoint here, before joining: rank 0 cannot write a newer one before all have."""
    fixed = [flag for flag in [*FLAGS, "--data", "--corpus", "--cell-option", "--task", "--task-option"]
             if flag not in RESUME_FLAGS and getattr(args, _dest(flag)) is not None]
    if fixed:
        raise RnnkitError(
            f"--resume continues a run with its saved configuration; only {', '.join(RESUME_FLAGS)} "
            f"may change, got {fixed[0]}"
        )
    checkpoint = load_checkpoint(args.resume)
    config = config_from_dict(TrainConfig, checkpoint.metadata.get("config"), "checkpoint config")
    given = {flag: getattr(args, _dest(flag)) for flag in BUDGET_FLAGS}
    if any(value is not None for value in given.values()):
        config.budget = dataclasses.replace(
            config.budget, **{FLAGS[flag][1]: value or 0 for flag, value in given.items()}
        )
    if args.device is not None:
        config.device = args.device
    world = _placed(config, world)
    if config.task.name:
        return world, functools.partial(TaskTrainer.resume, config, args.resume, checkpoint)
    return world, functools.partial(
        Trainer.resume, config, args.resume, load_language_data(config.data), checkpoint, world
    )


def _prepared_fraction(directory: str, given: float | None) -> float:
    """The validation fraction a prepared corpus was split by; ``--validation-fraction``, if
    given, must be that one (the split is fixed when the corpus is prepared)."""
    prepared = read_metadata(directory)["validation_fraction"]
    if given is not None and given != prepared:
        raise _UsageError(
            f"--validation-fraction: the corpus in {directory} was prepared with {prepared}, got {given}; "
            "the split is fixed by rnnkit prepare --validation-fraction"
        )
    return prepared


def trained_task(run_dir: Path) -> str | None:
    """The name of the task whose model ``run_dir`` trained, or None for a language model's run. A
    directory without a readable config.json gives None: the loading of its checkpoint then says
    what is wrong."""
    try:
        saved = json.loads((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    task = saved.get("task") if isinstance(saved, dict) else None
    name = task.get("name") if isinstance(task, dict) else None
    return name or None


def refuse_task_run(run_dir: Path, command: str) -> None:
    """Raise RnnkitError (one line) if ``run_dir`` trained a task's model: ``command`` (eval,
    sample) serves language models only."""
    name = trained_task(run_dir)
    if name:
        raise RnnkitError(f"{run_dir} trained a model of the task {name!r}; rnnkit {command} serves language models only")


def _train(trainer: TrainingRun, world: World, progress: bool) -> int:
    stop_requested = False

    def request_stop(signum: int, frame: Any) -> None:
        nonlocal stop_requested
        stop_requested = True
        # A second Ctrl-C stops one process at once; under torchrun every process gets the
        # terminal's SIGINT and then the launcher's, and they stop together at the next step.
        if not world.parallel:
            signal.signal(signal.SIGINT, previous)

    previous = signal.signal(signal.SIGINT, request_stop)
    bar = tqdm(
        total=trainer.total_steps, initial=trainer.step, unit="step", disable=not (progress and world.is_main),
        dynamic_ncols=True, file=sys.stderr,
    )

    postfix: dict[str, str] = {}  # the latest loss, speed and (for a task) validation metrics

    def on_step(report: StepReport) -> None:
        bar.update(1)
        postfix["loss"] = f"{report.loss:.3f}"
        for name, value in report.progress.items():
            if name.endswith("_per_second"):
                postfix[name.replace("_per_second", "_per_s")] = f"{value:,.0f}"
        bar.set_postfix(postfix, refresh=False)

    def on_validation(step: int, values: dict[str, float]) -> None:
        postfix.update({name.removeprefix("val_"): f"{value:.3f}" for name, value in _task_metrics(values)})
        bar.set_postfix(postfix, refresh=False)
        bar.write(f"step {step}: {_describe(values)}")

    try:
        result = trainer.run(on_step, on_validation, should_stop=lambda: stop_requested)
    finally:
        bar.close()
        signal.signal(signal.SIGINT, previous)
    if not world.is_main:
        return 130 if result.interrupted else 0
    if result.interrupted:
        print(
            f"interrupted at step {result.step}; checkpoint {result.checkpoint}\n"
            f"continue with: rnnkit train --resume {trainer.run_dir}",
            file=sys.stderr,
        )
        return 130
    if result.validation:
        print(f"{_describe(result.validation)} after {result.step} steps")
    print(f"run directory: {trainer.run_dir}")
    return 0


def _task_metrics(values: dict[str, float]) -> list[tuple[str, float]]:
    """The validation metrics beside the loss (accuracy, exact match, ...); none for a text."""
    return [(name, value) for name, value in values.items() if name not in ("val_loss", "val_bits_per_char", "baseline")]


def _describe(values: dict[str, float]) -> str:
    """One validation, in words: per character for a language model, against the baseline for a task."""
    loss = values["val_loss"]
    if "baseline" not in values:
        return f"validation loss {loss:.4f} nats/char ({values['val_bits_per_char']:.4f} bits/char)"
    metrics = "".join(f", {name.removeprefix('val_').replace('_', ' ')} {value:.4f}" for name, value in _task_metrics(values))
    return f"validation loss {loss:.4f} (baseline {values['baseline']:.4f}){metrics}"


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")
