"""The loss of a language model on a text, in nats per character."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from ..data.stream import StreamBatches, shard_streams
from ..models.language_model import LanguageModel
from .distributed import SINGLE, World


@torch.no_grad()
def evaluate_loss(
    model: LanguageModel, ids: Tensor | np.ndarray, batch_size: int, seq_len: int, world: World = SINGLE
) -> float:
    """Mean next-character cross-entropy over ``ids`` (1-D), in nats per character.

    The text is read as ``batch_size`` parallel streams (fewer when it is short) with the state
    carried across chunks, as in training; every character but the first is predicted once.
    Ids in a numpy array (a prepared corpus's memory map) are read chunk by chunk, and each
    chunk goes to the device of the model's parameters.
    In a data-parallel ``world`` each rank reads its block of the streams (none when there are
    fewer streams than ranks) and the summed losses and counts are added up over the ranks, so
    every rank returns the one-process value, up to the order of float additions.
    """
    if len(ids) < 2:
        raise ValueError("evaluation needs a text of at least 2 characters")
    streams = min(batch_size, len(ids) - 1)
    shard = (world.rank, world.size)
    model.eval()
    device = next(model.parameters()).device
    total, count, state = 0.0, 0, None
    if shard_streams(streams, shard):
        batches = StreamBatches(ids, streams, seq_len, drop_last=False, what="the evaluation text", shard=shard)
        for inputs, targets in batches:  # (T, B) each
            inputs, targets = inputs.to(device, non_blocking=True), targets.to(device, non_blocking=True)
            logits, state = model(inputs, state)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum")
            total += loss.item()
            count += targets.numel()
    total, count = world.sum([total, count])
    return total / count
