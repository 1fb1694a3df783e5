"""Loading a trained language model, its vocabulary and its configuration from a run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.vocabulary import Vocabulary
from ..errors import CheckpointError, RnnkitError
from ..models.language_model import LanguageModel
from .checkpoint import load_checkpoint
from .config import TrainConfig, config_from_dict


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
        model = LanguageModel.from_config(config.model, len(vocabulary))
        model.load_state_dict(checkpoint.model_state)
    except (RnnkitError, ValueError, RuntimeError, KeyError) as error:
        raise CheckpointError(f"checkpoint {checkpoint.path} does not describe a usable model: {error}") from None
    model.eval()
    return TrainedModel(model, vocabulary, config, checkpoint.step, checkpoint.path)
