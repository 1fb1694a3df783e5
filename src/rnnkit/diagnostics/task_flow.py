r"""Gradient flow of a synthetic task's model (``rnnkit train --task``) on one of its batches.

A :class:`~rnnkit.models.SequenceClassifier` (the model of the regression and classification
tasks, such as the adding problem) reads the whole sequence and predicts from its last output
:math:`o_T`. Its output layer applied to every step's output gives a prediction per step and a
loss per step, :math:`L_t = \ell(W_{out} o_t + b_{out}, y)`, and the diagnostic's loss is one of

- ``"last"``: :math:`L = L_T`, the task's own loss (for ``pooling="last"``), whose gradient
  enters the recurrence at the last step only — the setting of the vanishing-gradient analysis;
- ``"sum"``: :math:`L = \sum_t L_t`, the loss of a model asked for its answer at every step,
  whose gradient enters at every step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..data.tasks import TaskBatch
from ..errors import RnnkitError
from ..models import SequenceClassifier
from ..training.task_trainer import task_loss
from .gradient_flow import GradientFlow, gradient_flow, recording

LOSSES = ("last", "sum")


def step_losses(model: SequenceClassifier, kind: str, batch: TaskBatch) -> Tensor:
    """``L_t`` for t = 1..T (module docstring): ``(T,)``. The model should be in eval mode."""
    outputs, _ = model.rnn(model.embedding(batch.inputs))  # (T, B, F)
    predictions = model.output(outputs)  # (T, B, C)
    return torch.stack([task_loss(kind, prediction, batch.targets) for prediction in predictions.unbind(0)])


def task_gradient_flow(
    model: SequenceClassifier, kind: str, batch: TaskBatch, loss: str = "last", layer: int = 0, examples: int = 4
) -> GradientFlow:
    """The gradient flow through layer ``layer`` of ``model``'s stack (see
    :func:`~rnnkit.diagnostics.gradient_flow.gradient_flow`) of the loss ``loss`` on ``batch``.

    Raises RnnkitError for a model other than a SequenceClassifier, or a batch of sequences of
    different lengths (the steps past a sequence's end would carry no signal).
    """
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not isinstance(model, SequenceClassifier):
        raise RnnkitError(
            f"expected the model of a regression or classification task (a SequenceClassifier), got a {type(model).__name__}"
        )
    if batch.lengths is not None:
        raise RnnkitError("expected a task of full-length sequences, got one with sequences of different lengths")
    if not 0 <= layer < model.rnn.num_layers:
        raise RnnkitError(f"expected a layer in [0, {model.rnn.num_layers}), got {layer}")
    with recording(model.rnn, layer * model.rnn.num_directions) as recorder:
        losses = step_losses(model, kind, batch)
        return gradient_flow(recorder, losses[-1] if loss == "last" else losses.sum(), examples)
