"""Training a character-level language model by truncated back-propagation through time.

The text is cut into B parallel streams (``StreamBatches``); each update reads the next T steps of
every stream, starting from the recurrent state the previous chunk left (detached, so gradients
flow back T steps at most), and the state is reset at the start of each epoch. Everything a run
needs to continue exactly — weights, optimiser, RNG, carried state, data position — goes into
its checkpoints, so a stopped run resumed from its last checkpoint reproduces the uninterrupted
run's losses bit for bit on the CPU.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..cells.base import State
from ..data.corpus import split_train_validation
from ..data.stream import StreamBatches
from ..data.vocabulary import Vocabulary
from ..errors import CheckpointError, RnnkitError
from .checkpoint import Checkpoint, atomic_write_text, latest_checkpoint_path, save_checkpoint
from .config import TrainConfig, build_model, config_to_dict
from .evaluation import evaluate_loss
from .metrics import MetricsLog
from .optim import (
    build_optimizer,
    clip_gradients,
    decay_weights,
    learning_rate,
    regularised_parameters,
    weight_penalty,
)
from .tensor_tree import (
    join_tensors,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    split_tensors,
)

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
VOCABULARY_FILE = "vocab.json"


class TrainingDiverged(RnnkitError):
    """The loss or the gradient stopped being finite; nothing after the last checkpoint is saved."""


@dataclass(frozen=True)
class StepReport:
    """What one update did, for progress displays."""

    step: int  # updates done so far
    total_steps: int | None  # known when the budget is in steps or epochs
    epoch: float
    loss: float  # nats per character, this chunk
    chars_per_second: float
    learning_rate: float
    grad_norm: float


@dataclass(frozen=True)
class TrainResult:
    step: int
    validation_loss: float | None  # nats per character, at the end
    interrupted: bool  # stopped by should_stop() rather than by the budget
    checkpoint: Path


class Trainer:
    """One training run of a :class:`LanguageModel` on one text, writing into ``run_dir``.

    The run directory receives ``config.json`` (the resolved configuration), ``vocab.json``,
    ``metrics.jsonl`` (one JSON object per update and per validation), ``loss.png`` and
    ``checkpoints/``. Build with :meth:`start` for a new run or :meth:`resume` to continue one.
    """

    def __init__(self, config: TrainConfig, run_dir: Path, text: str, vocabulary: Vocabulary) -> None:
        config.validate()
        self.config = config
        self.run_dir = run_dir
        self.vocabulary = vocabulary
        train_text, validation_text = split_train_validation(text, config.data.validation_fraction)
        self.batches = StreamBatches(
            vocabulary.encode(train_text, "the training text"), config.data.batch_size, config.data.seq_len
        )
        self.validation_ids = vocabulary.encode(validation_text, "the validation text")
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, len(vocabulary))
        self.optimizer = build_optimizer(self.model, config.optim)
        self.weights = regularised_parameters(self.model)
        self.step = 0
        self.state: State | None = None  # carried from one chunk to the next, detached
        self.last_checkpoint: Path | None = None
        self.seconds_before = 0.0  # training wall time of earlier sessions of a resumed run
        self._session_start = time.monotonic()
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")

    @classmethod
    def start(cls, config: TrainConfig, run_dir: Path, text: str) -> Trainer:
        """A new run: refuses a directory that already holds one (resume it instead)."""
        if latest_checkpoint_path(run_dir) is not None:
            raise RnnkitError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
        trainer = cls(config, run_dir, text, Vocabulary.from_text(text))
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG_FILE, json.dumps(config_to_dict(config), indent=2) + "\n")
        atomic_write_text(run_dir / VOCABULARY_FILE, json.dumps(trainer.vocabulary.to_json()) + "\n")
        trainer.metrics.truncate_after(0)
        return trainer

    @classmethod
    def resume(cls, config: TrainConfig, run_dir: Path, text: str, checkpoint: Checkpoint) -> Trainer:
        """Continue from ``checkpoint`` with ``config`` (the saved one, budget possibly changed)."""
        try:
            vocabulary = Vocabulary.from_json(checkpoint.metadata["vocabulary"])
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint {checkpoint.path} has no usable vocabulary: {error}") from None
        if Vocabulary.from_text(text) != vocabulary:
            raise RnnkitError(f"the training text has changed since {run_dir} was started: its characters differ")
        trainer = cls(config, run_dir, text, vocabulary)
        try:
            trainer._restore(checkpoint)
        except (KeyError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"checkpoint {checkpoint.path} cannot be resumed: {error}") from None
        trainer.metrics.truncate_after(checkpoint.step)
        return trainer

    def _restore(self, checkpoint: Checkpoint) -> None:
        self.model.load_state_dict(checkpoint.model_state)
        self.optimizer.load_state_dict(
            optimizer_state_from_tensors(checkpoint.tensors, checkpoint.metadata["optimizer"], source=checkpoint.path)
        )
        torch.set_rng_state(checkpoint.tensors["rng"])
        carried = checkpoint.metadata["carried_state"]
        self.state = None if carried is None else join_tensors(checkpoint.tensors, carried, source=checkpoint.path)
        self.step = checkpoint.step
        self.seconds_before = checkpoint.metadata["seconds"]
        self.last_checkpoint = checkpoint.path

    @property
    def total_steps(self) -> int | None:
        """The step budget implied by --steps and --epochs (the smaller), or None for time only."""
        budget = self.config.budget
        limits = [budget.steps] if budget.steps else []
        if budget.epochs:
            limits.append(math.ceil(budget.epochs * len(self.batches)))
        return min(limits) if limits else None

    def run(
        self,
        on_step: Callable[[StepReport], None] | None = None,
        on_validation: Callable[[int, float], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train until the budget is spent or ``should_stop()`` is true, then checkpoint.

        ``on_step`` sees every update, ``on_validation(step, loss)`` every validation.
        """
        total = self.total_steps
        self._session_start = time.monotonic()
        deadline = time.monotonic() + 60 * self.config.budget.minutes if self.config.budget.minutes else math.inf
        chars_per_step = self.batches.batch_size * self.batches.seq_len
        validation_loss = None
        interrupted = False
        try:
            while (total is None or self.step < total) and time.monotonic() < deadline:
                if should_stop is not None and should_stop():
                    interrupted = True
                    break
                started = time.perf_counter()
                loss, lr, grad_norm = self.update(total)
                report = StepReport(
                    self.step, total, self.step / len(self.batches), loss,
                    chars_per_step / (time.perf_counter() - started), lr, grad_norm,
                )
                self.metrics.write(
                    step=report.step, epoch=report.epoch, loss=report.loss, lr=report.learning_rate,
                    grad_norm=report.grad_norm, chars_per_second=report.chars_per_second,
                    seconds=self.seconds,
                )
                if on_step is not None:
                    on_step(report)
                if self.step % self.config.eval_every == 0:
                    validation_loss = self._validate(on_validation)
                if self.step % self.config.checkpoint_every == 0:
                    self._checkpoint()
            if self.step % self.config.eval_every != 0 or validation_loss is None:
                validation_loss = self._validate(on_validation)
            if self.last_checkpoint is None or self.step % self.config.checkpoint_every != 0:
                self._checkpoint()
        finally:
            self.metrics.close()
        return TrainResult(self.step, validation_loss, interrupted, self.last_checkpoint)

    @property
    def seconds(self) -> float:
        """Wall time spent training this run, over all its sessions."""
        return self.seconds_before + time.monotonic() - self._session_start

    def update(self, total: int | None = None) -> tuple[float, float, float]:
        """One step of truncated BPTT on the next chunk: returns (loss, lr, gradient norm).

        ``total`` is the run's length in steps, for the cosine schedule.
        """
        chunk = self.step % len(self.batches)
        if chunk == 0:
            self.state = None  # a new epoch starts every stream from the beginning
        inputs, targets = self.batches.chunk(chunk)  # (T, B) each
        self.model.train()
        logits, state = self.model(inputs, self.state)  # (T, B, V)
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
        self._check_finite("loss", loss)
        penalty = weight_penalty(self.weights, self.config.optim.l1, self.config.optim.l2)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        grad_norm = clip_gradients(list(self.model.parameters()), self.config.optim)
        self._check_finite("gradient norm", torch.tensor(grad_norm))
        lr = learning_rate(self.step, self.config.optim, total or 0)
        if not lr < torch.finfo(torch.float32).max:  # torch's optimisers cannot take more
            raise self._diverged(f"the learning rate for step {self.step + 1} is {lr:g}, beyond float32's range")
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        decay_weights(self.weights, lr, self.config.optim.weight_decay)
        self.optimizer.step()
        self.state = tuple(s.detach() for s in state)
        self.step += 1
        return loss.item(), lr, grad_norm

    def _check_finite(self, what: str, value: Tensor) -> None:
        if not bool(torch.isfinite(value)):
            raise self._diverged(f"the training {what} became {value.item()} at step {self.step + 1}")

    def _diverged(self, problem: str) -> TrainingDiverged:
        kept = (
            f"the last good checkpoint, {self.last_checkpoint}, is kept"
            if self.last_checkpoint is not None
            else "no checkpoint had been written yet"
        )
        return TrainingDiverged(f"{problem}; {kept}; try a lower --lr or a --clip")

    def _validate(self, on_validation: Callable[[int, float], None] | None) -> float | None:
        if self.validation_ids.numel() < 2:
            return None
        data = self.config.data
        loss = evaluate_loss(self.model, self.validation_ids, data.validation_streams, data.seq_len)
        self.metrics.write(
            step=self.step, val_loss=loss, val_bits_per_char=loss / math.log(2), seconds=self.seconds
        )
        self.metrics.plot(self.run_dir / "loss.png")
        if on_validation is not None:
            on_validation(self.step, loss)
        return loss

    def _checkpoint(self) -> None:
        """Save everything needed to continue; refuses weights that are no longer finite."""
        for name, parameter in self.model.named_parameters():
            if not bool(parameter.detach().isfinite().all()):
                raise self._diverged(f"the weight {name} is no longer finite after step {self.step}")
        optimizer_tensors, optimizer_meta = optimizer_state_to_tensors(self.optimizer.state_dict())
        state_tensors, state_skeleton = (
            ({}, None) if self.state is None else split_tensors(self.state, "carried_state")
        )
        metadata = {
            "config": config_to_dict(self.config),
            "vocabulary": self.vocabulary.to_json(),
            "optimizer": optimizer_meta,
            "carried_state": state_skeleton,
            "epoch": self.step / len(self.batches),
            "chunk": self.step % len(self.batches),  # the data position: next chunk to read
            "seconds": self.seconds,
        }
        tensors = {**optimizer_tensors, **state_tensors, "rng": torch.get_rng_state()}
        self.last_checkpoint = save_checkpoint(self.run_dir, self.step, self.model.state_dict(), tensors, metadata)
        log.info("checkpoint at step %d: %s", self.step, self.last_checkpoint)
