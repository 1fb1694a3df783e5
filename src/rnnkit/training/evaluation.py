"""The loss of a language model on a text, in nats per character."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.stream import StreamBatches
from ..models.language_model import LanguageModel


@torch.no_grad()
def evaluate_loss(model: LanguageModel, ids: Tensor | np.ndarray, batch_size: int, seq_len: int) -> float:
    """Mean next-character cross-entropy over ``ids`` (1-D), in nats per character.

    The text is read as ``batch_size`` parallel streams (fewer when it is short) with the state
    carried across chunks, as in training; every character but the first is predicted once.
    Ids in a numpy array (a prepared corpus's memory map) are read chunk by chunk.
    """
    if len(ids) < 2:
        raise ValueError("evaluation needs a text of at least 2 characters")
    streams = StreamBatches(ids, min(batch_size, len(ids) - 1), seq_len, drop_last=False, what="the evaluation text")
    model.eval()
    total, count, state = 0.0, 0, None
    for inputs, targets in streams:  # (T, B) each
        logits, state = model(inputs, state)
        total += torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    return total / count
