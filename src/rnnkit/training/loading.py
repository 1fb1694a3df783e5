"""Loading a trained language model, its vocabulary and its configuration from a run directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..data.vocabulary import Vocabulary
from ..errors import CheckpointError, RnnkitError
from ..models.language_model import LanguageModel
from .checkpoint import load_checkpoint
from .config import TrainConfig, build_model, config_from_dict


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
    broken = [name for name, tensor in checkpoint.model_state.items() if not bool(tensor.isfinite().all())]
    if broken:
        raise CheckpointError(f"checkpoint {checkpoint.path} holds non-finite weights ({', '.join(broken[:3])})")
    model.eval()
    return TrainedModel(model, vocabulary, config, checkpoint.step, checkpoint.path)
