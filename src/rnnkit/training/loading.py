"""Loading a trained model and its configuration from a run directory: a language model with its
vocabulary, or a synthetic task's model with its task."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from ..data.tasks import Task
from ..data.vocabulary import Vocabulary
from ..errors import CheckpointError, RnnkitError
from ..models.language_model import LanguageModel
from .checkpoint import Checkpoint, load_checkpoint
from .config import TrainConfig, build_model, config_from_dict
from .task_trainer import build_task_model


@dataclass(frozen=True)
class TrainedModel:
    model: LanguageModel  # in eval mode, on the CPU
    vocabulary: Vocabulary
    config: TrainConfig
    step: int
    checkpoint: Path


def load_trained_model(run_dir: Path) -> TrainedModel:
    """The newest checkpoint of ``run_dir`` as a ready model; CheckpointError if it is unusable."""
    checkpoint = load_checkpoint(run_dir)
    try:
        config = config_from_dict(TrainConfig, checkpoint.metadata.get("config"), "checkpoint config")
        vocabulary = Vocabulary.from_json(checkpoint.metadata.get("vocabulary"))
        model = build_model(config.model, len(vocabulary))
        model.load_state_dict(checkpoint.model_state)
    except (RnnkitError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not describe a usable model: {error}") from None
    _refuse_non_finite(checkpoint)
    model.eval()
    return TrainedModel(model, vocabulary, config, checkpoint.step, checkpoint.path)


@dataclass(frozen=True)
class TrainedTaskModel:
    model: nn.Module  # the task kind's model (training.task_trainer), in eval mode, on the CPU
    task: Task
    config: TrainConfig
    step: int
    checkpoint: Path


def load_trained_task_model(run_dir: Path) -> TrainedTaskModel:
    """The newest checkpoint of a task run (``rnnkit train --task``) as a ready model and its
    task; CheckpointError if it is unusable, RnnkitError if ``run_dir`` trained a language model."""
    checkpoint = load_checkpoint(run_dir)
    try:
        config = config_from_dict(TrainConfig, checkpoint.metadata.get("config"), "checkpoint config")
        if not config.task.name:
            raise RnnkitError(f"expected a task run (rnnkit train --task), got {run_dir}, a language model's")
        task = config.task.build()
        model = build_task_model(task, config.model, config.task)
        model.load_state_dict(checkpoint.model_state)
    except (ValueError, RuntimeError) as error:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not describe a usable model: {error}") from None
    _refuse_non_finite(checkpoint)
    model.eval()
    return TrainedTaskModel(model, task, config, checkpoint.step, checkpoint.path)


def _refuse_non_finite(checkpoint: Checkpoint) -> None:
    broken = [name for name, tensor in checkpoint.model_state.items() if not bool(tensor.isfinite().all())]
    if broken:
        raise CheckpointError(f"checkpoint {checkpoint.path} holds non-finite weights ({', '.join(broken[:3])})")
