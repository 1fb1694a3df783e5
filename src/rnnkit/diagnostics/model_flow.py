r"""Gradient flow of a trained model on one of its batches: a synthetic task's model (``rnnkit
train --task``) or a character-level language model.

A :class:`~rnnkit.models.SequenceClassifier` (the model of the regression and classification
tasks, such as the adding problem) reads the whole sequence and predicts from its last output
:math:`o_T`. Its output layer applied to every step's output gives a prediction per step and a
loss per step, :math:`L_t = \ell(W_{out} o_t + b_{out}, y)`. A
:class:`~rnnkit.models.LanguageModel` predicts the next character at every step anyway:
:math:`L_t` is the cross-entropy of step t's prediction. The diagnostic's loss is one of

- ``"last"``: :math:`L = L_T`, the task's own loss (for ``pooling="last"``), or the language
  model's loss on the last character, whose gradient enters the recurrence at the last step only
  — the setting of the vanishing-gradient analysis;
- ``"sum"``: :math:`L = \sum_t L_t`, the loss of a model asked for its answer at every step (the
  language model's training loss, up to the mean), whose gradient enters at every step.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.tasks import TaskBatch
from ..errors import RnnkitError
from ..layers import Recurrent
from ..models import LanguageModel, SequenceClassifier
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
    if not isinstance(model, SequenceClassifier):
        raise RnnkitError(
            f"expected the model of a regression or classification task (a SequenceClassifier), got a {type(model).__name__}"
        )
    if batch.lengths is not None:
        raise RnnkitError("expected a task of full-length sequences, got one with sequences of different lengths")
    return _layer_flow(model.rnn, layer, loss, examples, lambda: step_losses(model, kind, batch))


def language_model_step_losses(model: LanguageModel, tokens: Tensor) -> Tensor:
    """``L_t`` for t = 1..T: the cross-entropy of predicting ``tokens[t]`` from ``tokens[:t]``,
    averaged over the batch; ``tokens`` is ``(T + 1, B)``. ``(T,)``; the model should be in eval mode."""
    logits, _ = model(tokens[:-1])  # (T, B, V)
    losses = F.cross_entropy(logits.flatten(0, 1), tokens[1:].flatten(), reduction="none")
    return losses.view(tokens.size(0) - 1, -1).mean(1)


def language_model_gradient_flow(
    model: LanguageModel, tokens: Tensor, loss: str = "last", layer: int = 0, examples: int = 4
) -> GradientFlow:
    """As :func:`task_gradient_flow`, for a language model reading ``tokens[:-1]`` ``(T + 1, B)``
    and predicting ``tokens[1:]``."""
    return _layer_flow(model.rnn, layer, loss, examples, lambda: language_model_step_losses(model, tokens))


def _layer_flow(rnn: Recurrent, layer: int, loss: str, examples: int, step_losses_of: Callable[[], Tensor]
                ) -> GradientFlow:
    """The flow through layer ``layer`` of ``rnn`` of the last or summed step loss."""
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {loss!r}")
    if not 0 <= layer < rnn.num_layers:
        raise RnnkitError(f"expected a layer in [0, {rnn.num_layers}), got {layer}")
    with recording(rnn, layer * rnn.num_directions) as recorder:
        losses = step_losses_of()
        return gradient_flow(recorder, losses[-1] if loss == "last" else losses.sum(), examples)
