"""What every training run shares: the update, the loop around it, validation and checkpoints.

A :class:`TrainingRun` owns a model, its optimiser and a run directory, and knows how to

- take one update (:meth:`~TrainingRun.update`): the subclass's loss on its next batch, an
  optional L1/L2 penalty, back-propagation, clipping, the learning-rate schedule, decoupled
  weight decay and the optimiser step, with a check that loss, gradient and learning rate stay
  finite;
- run until a budget of steps or minutes (or epochs, where the subclass has them) is spent or
  the caller asks it to stop, validating every ``eval_every`` and checkpointing every
  ``checkpoint_every`` updates and once at the end (:meth:`~TrainingRun.run`);
- train on the CPU or a GPU (``config.device``): the model is moved there once, the
  subclasses move each batch, and checkpoints stay device-independent (saved from the CPU,
  loaded onto the run's device), so a run may continue on another device;
- save and restore everything an exact continuation needs: weights, optimiser state, torch's RNG
  (the CPU's, and the GPU's on a GPU),
  the step and the wall time so far, plus whatever the subclass adds (a carried hidden state, a
  data generator's state);
- train as one of several data-parallel processes (:mod:`~rnnkit.training.distributed`): the
  model is trained through DistributedDataParallel, which averages the gradients; the reported
  loss is the mean over the processes; every decision to stop is taken by all of them together;
  each rank's RNG is saved beside rank 0's; and rank 0 alone writes metrics and checkpoints and
  calls the display callbacks. A failed collective (a process died or hung) ends every survivor
  with one line naming the last good checkpoint.

Subclasses say what a batch and its loss are (:meth:`~TrainingRun.training_loss`), what
validation measures (:meth:`~TrainingRun.evaluate`), how fast an update went
(:meth:`~TrainingRun.progress`) and what else goes into a checkpoint. The language model's
:class:`~rnnkit.training.trainer.Trainer` and the synthetic tasks'
:class:`~rnnkit.training.task_trainer.TaskTrainer` are the two.
"""

from __future__ import annotations

import json
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..diagnostics.spectra import spectral_radii
from ..errors import CheckpointError, RnnkitError
from ..files import atomic_write_text
from . import optim
from .checkpoint import Checkpoint, latest_checkpoint_path, save_checkpoint
from .config import TrainConfig, config_to_dict
from .distributed import SINGLE, CollectiveFailure, Terminated, World, rank_seed, resolve_device
from .metrics import MetricsLog
from .tensor_tree import optimizer_state_from_tensors, optimizer_state_to_tensors

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"


class TrainingDiverged(RnnkitError):
    """The loss or the gradient stopped being finite; nothing after the last checkpoint is saved."""


@dataclass(frozen=True)
class StepReport:
    """What one update did, for progress displays."""

    step: int  # updates done so far
    total_steps: int | None  # known when the budget is in steps or epochs
    loss: float  # this update's training loss (without penalties)
    learning_rate: float
    grad_norm: float
    progress: dict[str, float]  # the run's own measures: epoch, chars_per_second, ...


@dataclass(frozen=True)
class TrainResult:
    step: int
    validation_loss: float | None  # at the end; None when there is nothing to validate on
    interrupted: bool  # stopped by should_stop() rather than by the budget
    checkpoint: Path
    validation: dict[str, float] = field(default_factory=dict)  # every validation value at the end


OnStep = Callable[[StepReport], None]
OnValidation = Callable[[int, dict[str, float]], None]  # (step, the validation record's values)


class TrainingRun(ABC):
    """One training run writing into ``run_dir``; see the module docstring.

    The run directory receives ``config.json`` (the resolved configuration), ``metrics.jsonl``
    (one JSON object per update, with its ``grad_norm``, and per validation, with the spectral
    radius of every recurrent layer's matrix), ``loss.png`` and ``checkpoints/``.
    Subclasses build the model in ``model_factory``, called right after ``torch.manual_seed``,
    so that the initial weights follow the configured seed (the same in every process of a
    data-parallel ``world``; afterwards each rank other than 0 reseeds for its own dropout masks).
    """

    steps_per_epoch: int | None = None  # runs over a finite data set: updates per pass

    def __init__(
        self, config: TrainConfig, run_dir: Path, model_factory: Callable[[], nn.Module], world: World = SINGLE
    ) -> None:
        config.validate()
        self.config = config
        self.run_dir = run_dir
        # The CLI resolves the device before the processes join (the backend depends on it);
        # resolving again gives the same device, and a run built in Python gets its config's.
        self.world = world = world.on(resolve_device(config.device, world.local_rank))
        self.device = world.device
        torch.manual_seed(config.seed)  # every device's generator: the same initial weights anywhere
        self.model = model_factory().to(self.device)  # built on the CPU, then moved once
        if world.rank:
            torch.manual_seed(rank_seed(config.seed, world.rank))
        # Training forward passes go through this (DDP: gradients averaged in backward); saving,
        # validation and everything else use self.model, whose state_dict keys have no prefix.
        self.parallel_model = world.wrap(self.model)
        self.optimizer = optim.build_optimizer(self.model, config.optim)
        self.weights = optim.regularised_parameters(self.model)
        self.step = 0
        self.last_checkpoint: Path | None = None
        self.seconds_before = 0.0  # training wall time of earlier sessions of a resumed run
        self._session_start = time.monotonic()
        self.metrics = MetricsLog(run_dir / "metrics.jsonl")

    # ----------------------------------------------------------------------------------------
    # What a subclass provides

    @abstractmethod
    def training_loss(self) -> Tensor:
        """The scalar loss of the next training batch, with the model in training mode."""

    @abstractmethod
    def evaluate(self) -> dict[str, float] | None:
        """The validation values (``val_loss`` first), or None when there is nothing to validate."""

    @abstractmethod
    def progress(self, seconds: float) -> dict[str, float]:
        """The run's own measures of the update just done in ``seconds`` (epoch, speed)."""

    def checkpoint_extras(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """Tensors and JSON metadata, beyond the shared ones, that an exact continuation needs."""
        return {}, {}

    def restore_extras(self, checkpoint: Checkpoint) -> None:
        """Put back what :meth:`checkpoint_extras` saved."""

    # ----------------------------------------------------------------------------------------
    # Starting and resuming

    @staticmethod
    def refuse_existing_run(run_dir: Path) -> None:
        """A new run needs a directory without one (an existing run is continued instead)."""
        if latest_checkpoint_path(run_dir) is not None:
            raise RnnkitError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")

    def create_run_dir(self) -> None:
        """Write the resolved ``config.json`` of a new run and start its metrics afresh (rank 0)."""
        if not self.world.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.run_dir / CONFIG_FILE, json.dumps(config_to_dict(self.config), indent=2) + "\n")
        self.metrics.truncate_after(0)

    def continue_from(self, checkpoint: Checkpoint) -> None:
        """Restore ``checkpoint`` and drop the metrics recorded after it.

        In a data-parallel run every rank has read the checkpoint from its own view of the run
        directory; all of them refuse to continue unless they read the one rank 0 read.
        """
        (differs,) = self.world.any([self.world.broadcast(str(checkpoint.path)) != str(checkpoint.path)])
        if differs:
            raise CheckpointError(
                f"rank {self.world.rank} of {self.world.size}: the processes read different checkpoints "
                f"(this one {checkpoint.path}); on several machines the run directory must be shared"
            )
        try:
            self.model.load_state_dict(checkpoint.model_state)
            self.optimizer.load_state_dict(
                optimizer_state_from_tensors(checkpoint.tensors, checkpoint.metadata["optimizer"], source=checkpoint.path)
            )
            self._restore_rng(checkpoint)
            self.step = checkpoint.step
            self.seconds_before = checkpoint.metadata["seconds"]
            self.restore_extras(checkpoint)
        except (KeyError, ValueError, RuntimeError) as error:
            raise CheckpointError(f"checkpoint {checkpoint.path} cannot be resumed: {error}") from None
        self.last_checkpoint = checkpoint.path
        if self.world.is_main:
            self.metrics.truncate_after(checkpoint.step)

    def _restore_rng(self, checkpoint: Checkpoint) -> None:
        """This rank's saved RNG state; a rank the checkpoint has none for (the run had fewer
        processes) starts a fresh stream of its own, so dropout then differs from a run that
        kept its number of processes."""
        saved = checkpoint.tensors.get(_rng_key(self.world.rank))
        if saved is not None:
            torch.set_rng_state(saved)
        elif self.world.rank:
            torch.manual_seed(rank_seed(self.config.seed, self.world.rank, checkpoint.step))
        else:
            raise KeyError("rng")
        # The GPU's generator (dropout, input noise on the GPU), where the run trained on one
        # before; a run moved from the CPU keeps the stream seeded in __init__.
        saved_cuda = checkpoint.tensors.get(_rng_key(self.world.rank, "cuda_rng"))
        if saved_cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(saved_cuda, self.device)

    # ----------------------------------------------------------------------------------------
    # Training

    @property
    def total_steps(self) -> int | None:
        """The step budget implied by --steps and --epochs (the smaller), or None for time only."""
        budget = self.config.budget
        limits = [budget.steps] if budget.steps else []
        if budget.epochs and self.steps_per_epoch is not None:
            limits.append(math.ceil(budget.epochs * self.steps_per_epoch))
        return min(limits) if limits else None

    @property
    def seconds(self) -> float:
        """Wall time spent training this run, over all its sessions."""
        return self.seconds_before + time.monotonic() - self._session_start

    def run(
        self,
        on_step: OnStep | None = None,
        on_validation: OnValidation | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainResult:
        """Train until the budget is spent or ``should_stop()`` is true, then checkpoint.

        ``on_step`` sees every update, ``on_validation(step, values)`` every validation (on
        rank 0 only: they are for display). Raises :class:`CollectiveFailure` when the other
        processes of a data-parallel run fail.
        """
        total = self.total_steps
        self._session_start = time.monotonic()
        deadline = time.monotonic() + 60 * self.config.budget.minutes if self.config.budget.minutes else math.inf
        validation = None
        interrupted = False
        try:
            while total is None or self.step < total:
                # One decision for every process, or some would wait for the others' next step.
                out_of_time, interrupted = self.world.any(
                    [time.monotonic() >= deadline, should_stop is not None and should_stop()]
                )
                if out_of_time or interrupted:
                    break
                started = time.perf_counter()
                loss, lr, grad_norm = self.update(total)
                report = StepReport(
                    self.step, total, loss, lr, grad_norm, self.progress(time.perf_counter() - started)
                )
                if self.world.is_main:
                    self.metrics.write(
                        step=report.step, loss=report.loss, lr=report.learning_rate,
                        grad_norm=report.grad_norm, **report.progress, seconds=self.seconds,
                    )
                    if on_step is not None:
                        on_step(report)
                if self.step % self.config.eval_every == 0:
                    validation = self._validate(on_validation)
                if self.step % self.config.checkpoint_every == 0:
                    self._checkpoint()
            if self.step % self.config.eval_every != 0 or validation is None:
                validation = self._validate(on_validation)
            if self.last_checkpoint is None or self.step % self.config.checkpoint_every != 0:
                self._checkpoint()
        except (RuntimeError, Terminated) as error:
            failure = self.world.failure(error)
            if failure is None:
                raise
            where = f"rank {self.world.rank} of {self.world.size} stopped at step {self.step}"
            raise CollectiveFailure(f"{where}: {failure}; {self._kept()}") from None
        finally:
            self.metrics.close()
        loss = None if validation is None else validation["val_loss"]
        return TrainResult(self.step, loss, interrupted, self.last_checkpoint, validation or {})

    def update(self, total: int | None = None) -> tuple[float, float, float]:
        """One optimiser step on the next batch: returns (loss, lr, gradient norm).

        ``total`` is the run's length in steps, for the cosine schedule.
        """
        self.model.train()
        loss = self.training_loss()
        # The global batch's loss: the mean of the ranks' means over equal numbers of characters.
        reported = self.world.mean(loss)
        self._check_finite("loss", reported)
        penalty = optim.weight_penalty(self.weights, self.config.optim.l1, self.config.optim.l2)
        self.optimizer.zero_grad(set_to_none=True)
        (loss if penalty is None else loss + penalty).backward()
        grad_norm = optim.clip_gradients(list(self.model.parameters()), self.config.optim)
        self._check_finite("gradient norm", torch.tensor(grad_norm))
        lr = optim.learning_rate(self.step, self.config.optim, total or 0)
        if not lr < torch.finfo(torch.float32).max:  # torch's optimisers cannot take more
            raise self._diverged(f"the learning rate for step {self.step + 1} is {lr:g}, beyond float32's range")
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        optim.decay_weights(self.weights, lr, self.config.optim.weight_decay)
        self.optimizer.step()
        self.step += 1
        return reported.item(), lr, grad_norm

    def _check_finite(self, what: str, value: Tensor) -> None:
        if not bool(torch.isfinite(value)):
            raise self._diverged(f"the training {what} became {value.item()} at step {self.step + 1}")

    def _diverged(self, problem: str) -> TrainingDiverged:
        return TrainingDiverged(f"{problem}; {self._kept()}; try a lower --lr or a --clip")

    def _kept(self) -> str:
        if self.last_checkpoint is None:
            return "no checkpoint had been written yet"
        return f"the last good checkpoint, {self.last_checkpoint}, is kept"

    def _validate(self, on_validation: OnValidation | None) -> dict[str, float] | None:
        values = self.evaluate()
        if values is None or not self.world.is_main:
            return values
        # The recurrent matrices' spectral radii beside the validation values: one H×H eigvals
        # per cell, so that `rnnkit plot` can draw how training moves them.
        self.metrics.write(step=self.step, **values, **spectral_radii(self.model), seconds=self.seconds)
        self.metrics.plot(self.run_dir / "loss.png")
        if on_validation is not None:
            on_validation(self.step, values)
        return values

    def _checkpoint(self) -> None:
        """Save everything needed to continue; refuses weights that are no longer finite.

        Every rank takes part (the subclass's extras and the RNG states are gathered); rank 0
        writes, and every rank learns the directory it wrote.
        """
        for name, parameter in self.model.named_parameters():
            if not bool(parameter.detach().isfinite().all()):
                raise self._diverged(f"the weight {name} is no longer finite after step {self.step}")
        extra_tensors, extra_meta = self.checkpoint_extras()
        rngs = {_rng_key(rank): state for rank, state in enumerate(self.world.gather(torch.get_rng_state()))}
        if self.device.type == "cuda":
            cuda_states = self.world.gather(torch.cuda.get_rng_state(self.device))
            rngs.update({_rng_key(rank, "cuda_rng"): state for rank, state in enumerate(cuda_states)})
        written = None
        if self.world.is_main:
            optimizer_tensors, optimizer_meta = optimizer_state_to_tensors(self.optimizer.state_dict())
            metadata = {
                "config": config_to_dict(self.config),
                "optimizer": optimizer_meta,
                **extra_meta,
                "seconds": self.seconds,
            }
            tensors = {**optimizer_tensors, **extra_tensors, **rngs}
            written = save_checkpoint(self.run_dir, self.step, self.model.state_dict(), tensors, metadata)
            log.info("checkpoint at step %d: %s", self.step, written)
        self.last_checkpoint = Path(self.world.broadcast(written))


def _rng_key(rank: int, name: str = "rng") -> str:
    """Where a checkpoint keeps rank ``rank``'s RNG state ``name`` (``rng``: the CPU's,
    ``cuda_rng``: its GPU's): ``name`` itself for rank 0 (and a process alone), so that
    one-process and data-parallel checkpoints read the same."""
    return f"{name}.rank{rank}" if rank else name
