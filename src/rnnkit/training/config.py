"""The configuration of a training run, and strict conversion from and to plain dictionaries."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ..data.tasks import Task, make_task
from ..errors import RnnkitError
from ..models.classifier import POOLINGS
from ..models.conditioned import CONDITIONINGS
from ..models.language_model import LanguageModel, LanguageModelConfig
from .distributed import DEVICES

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
LR_SCHEDULES = ("constant", "cosine", "step")
CLIP_MODES = ("norm", "value")


@dataclass
class DataConfig:
    """Where the text comes from and how it is cut into batches."""

    corpus: str = "shakespeare"  # a bundled corpus, used when path is empty
    path: str = ""  # a UTF-8 text file
    validation_fraction: float = 0.1  # the last part of the text, char-rnn style
    batch_size: int = 32  # parallel contiguous streams
    seq_len: int = 100  # steps of truncated back-propagation through time
    validation_streams: int = 128  # parallel streams when validating: more is faster, and each
    # starts from a zero state, so the loss is a little pessimistic for short streams


@dataclass
class OptimConfig:
    """The optimiser, its learning-rate schedule, clipping and regularisation."""

    optimizer: str = "adam"
    lr: float = 2e-3
    momentum: float = 0.0  # SGD and RMSProp
    lr_schedule: str = "constant"
    lr_min_ratio: float = 0.1  # cosine: the final learning rate as a fraction of lr
    lr_decay: float = 0.5  # step: multiply the learning rate by this ...
    lr_decay_every: int = 1000  # ... every this many steps
    warmup_steps: int = 0  # linear warm-up from 0 before the schedule starts
    clip: float = 5.0  # 0 disables clipping
    clip_mode: str = "norm"  # global gradient norm, or each gradient element's value
    l1: float = 0.0  # penalty on the sum of |w| over weights (biases excluded)
    l2: float = 0.0  # penalty on the sum of w² over weights (biases excluded)
    weight_decay: float = 0.0  # decoupled (Loshchilov & Hutter 2019), biases excluded


@dataclass
class BudgetConfig:
    """When training stops: the first of the limits that are set (0 means unset)."""

    steps: int = 0
    epochs: float = 0.0
    minutes: float = 0.0


@dataclass
class TaskConfig:
    """A synthetic task (:mod:`rnnkit.data.tasks`) to train on instead of a text.

    The model is the task kind's (see :func:`rnnkit.training.task_trainer.build_task_model`),
    sized by the ``model`` section; ``attention``, ``pooling`` and ``conditioning`` are the options only some kinds
    have. Every update draws ``batch_size`` fresh examples, so budgets are in steps or minutes.
    """

    name: str = ""  # a registered task; empty: language modelling on the data section's text
    options: dict[str, Any] = field(default_factory=dict)  # the task's own, e.g. {"length": 50}
    batch_size: int = 32  # fresh examples per update
    validation_size: int = 1000  # examples in the fixed validation set
    attention: bool = False  # seq2seq tasks: the decoder attends to the source
    pooling: str = "last"  # regression and classification tasks: how a sequence is summarised
    conditioning: str = "both"  # captioning tasks: the image enters as input, initial state or both

    def validate(self, model: LanguageModelConfig, budget: BudgetConfig) -> None:
        """Raise RnnkitError naming the first setting that cannot work for this task."""
        if not self.name:
            if self.options:
                raise RnnkitError(f"task options {sorted(self.options)} need a task name")
            return
        kind = self.build().kind
        checks = [
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (self.validation_size > 0, f"validation size must be positive, got {self.validation_size}"),
            (self.pooling in POOLINGS, f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}"),
            (not self.attention or kind == "seq2seq",
             f"attention needs a seq2seq task, got {self.name}, a {kind} task"),
            (self.pooling == "last" or kind in ("regression", "classification"),
             f"pooling applies to regression and classification tasks, got {self.name}, a {kind} task"),
            (self.conditioning in CONDITIONINGS,
             f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {self.conditioning!r}"),
            (self.conditioning == "both" or kind == "captioning",
             f"conditioning applies to captioning tasks, got {self.name}, a {kind} task"),
            (self.batch_size > 1 or kind != "captioning",
             f"a captioning task needs batches of at least 2 images (the encoder's batch norm), got {self.batch_size}"),
            (not budget.epochs, "a task draws fresh examples and has no epochs: give --steps or --minutes"),
            (not model.input_noise, "input noise applies to language models, not to tasks"),
        ]
        for ok, message in checks:
            if not ok:
                raise RnnkitError(message)

    def build(self) -> Task:
        """The task this section names, with its options; RnnkitError (one line) if it cannot be."""
        try:
            return make_task(self.name, **self.options)
        except ValueError as error:
            raise RnnkitError(str(error)) from None


@dataclass
class TrainConfig:
    """Everything a run needs; saved as the run directory's ``config.json``."""

    model: LanguageModelConfig = field(default_factory=LanguageModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)
    task: TaskConfig = field(default_factory=TaskConfig)  # a task run ignores the data section
    eval_every: int = 250  # steps between validations
    checkpoint_every: int = 500  # steps between checkpoints (one is always written at the end)
    seed: int = 0
    device: str = "cpu"  # cpu, cuda (one GPU per process) or auto (cuda where there is a GPU)

    def validate(self) -> None:
        """Raise RnnkitError naming the first value that cannot work."""
        checks = [
            (self.optim.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.optim.lr_schedule in LR_SCHEDULES, f"lr schedule must be one of {', '.join(LR_SCHEDULES)}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (self.optim.clip_mode in CLIP_MODES, f"clip mode must be one of {', '.join(CLIP_MODES)}"),
            (self.optim.lr > 0, f"lr must be positive, got {self.optim.lr}"),
            (self.data.batch_size > 0, f"batch size must be positive, got {self.data.batch_size}"),
            (self.data.seq_len > 0, f"sequence length must be positive, got {self.data.seq_len}"),
            (self.data.validation_streams > 0,
             f"validation streams must be positive, got {self.data.validation_streams}"),
            (0 <= self.data.validation_fraction < 1,
             f"validation fraction must be in [0, 1), got {self.data.validation_fraction}"),
            (self.model.hidden_size > 0, f"hidden size must be positive, got {self.model.hidden_size}"),
            (self.model.num_layers > 0, f"layers must be positive, got {self.model.num_layers}"),
            (0 <= self.model.dropout < 1, f"dropout must be in [0, 1), got {self.model.dropout}"),
            (self.eval_every > 0 and self.checkpoint_every > 0, "eval and checkpoint intervals must be positive"),
            (self.optim.lr_schedule != "cosine" or self.budget.steps or self.budget.epochs,
             "the cosine schedule needs a --steps or --epochs budget to know its length"),
        ]
        for field_name in ("clip", "l1", "l2", "weight_decay", "momentum"):
            value = getattr(self.optim, field_name)
            checks.append((value >= 0, f"{field_name.replace('_', ' ')} must be non-negative, got {value}"))
        for field_name in ("steps", "epochs", "minutes"):
            value = getattr(self.budget, field_name)
            checks.append((value >= 0, f"{field_name} must be non-negative, got {value}"))
        for ok, message in checks:
            if not ok:
                raise RnnkitError(message)
        self.task.validate(self.model, self.budget)


def build_model(config: LanguageModelConfig, vocab_size: int) -> LanguageModel:
    """The model ``config`` describes; settings that cannot work raise RnnkitError (one line)."""
    try:
        return LanguageModel.from_config(config, vocab_size)
    except (ValueError, TypeError) as error:
        raise RnnkitError(f"invalid model settings: {error}") from None


T = TypeVar("T")


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, refusing unknown keys and values of the wrong type."""
    if not isinstance(data, dict):
        raise RnnkitError(f"{where} must be a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - fields)
    if unknown:
        raise RnnkitError(f"unknown config key {where}.{unknown[0]}")
    values = {}
    for name, value in data.items():
        expected = hints[name]
        if dataclasses.is_dataclass(expected):
            values[name] = config_from_dict(expected, value, f"{where}.{name}")
            continue
        origin = typing.get_origin(expected) or expected
        accepted = (int, float) if origin is float else origin
        if not isinstance(value, accepted) or (origin is not bool and isinstance(value, bool)):
            raise RnnkitError(f"{where}.{name} must be {origin.__name__}, got {value!r}")
        values[name] = float(value) if origin is float else value
    return cls(**values)


def config_to_dict(config: Any) -> dict[str, Any]:
    """The plain-dictionary form saved as JSON."""
    return dataclasses.asdict(config)
