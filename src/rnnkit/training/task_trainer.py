r"""Training a model on a synthetic task (:mod:`rnnkit.data.tasks`): ``rnnkit train --task NAME``.

Each task kind has its model and its loss:

==============  ==========================================  ===================================
kind            model (:func:`build_task_model`)            loss, and the validation metrics
==============  ==========================================  ===================================
regression      :class:`~rnnkit.models.SequenceClassifier`  mean squared error; ``val_mse``
                over features, one output per target
classification  ``SequenceClassifier`` over tokens          cross-entropy; ``val_accuracy``
tagging         :class:`~rnnkit.models.SequenceTagger`      cross-entropy over the scored steps
                                                            (targets not ``IGNORE_INDEX``);
                                                            ``val_token_accuracy``,
                                                            ``val_sequence_accuracy``
seq2seq         :class:`~rnnkit.models.Seq2Seq`             cross-entropy of ``targets[1:]``
                (``attention`` configurable)                where ``mask[1:]``, teacher forced;
                                                            ``val_exact_match`` of greedy
                                                            decoding (no teacher forcing)
captioning      :class:`~rnnkit.models.Captioner`: a CNN    as seq2seq, the image in place of
                encoder and a ``ConditionedGenerator``      the source; ``val_exact_match``
                (``conditioning`` configurable)             counts a decoding equal to any
                                                            of the image's references
==============  ==========================================  ===================================

A task whose examples are trees (``tree_inputs``, e.g. ``expr-tree``) gives each batch as trees
and as flattened token sequences: with a tree cell (``treernn``, ``childsum``, ``nary``: a key of
:data:`~rnnkit.cells.tree.TREE_CELLS`) the model is a :class:`~rnnkit.models.TreeModel` reading
the trees, predicting at each root; with a recurrent cell it is the kind's sequence model reading
the flattened text. Loss and metrics are the kind's either way, so the two compare directly.

Every update draws a fresh batch from the task with a ``torch.Generator`` seeded by the config's
seed; its state goes into each checkpoint, so that a resumed run draws the batches the
uninterrupted run would have drawn and, on the CPU, reproduces it bit for bit. Validation uses a
fixed held-out set (``task.validation(validation_size, VALIDATION_SEED)``), the same for every
run of the task whatever its seed, and every validation record carries the task's ``baseline``:
the loss of the trivial predictor, which a model that has learned anything goes below.

Example:
    >>> config = TrainConfig()
    >>> config.task.name, config.task.options = "parity", {"max_length": 6}
    >>> config.model.hidden_size, config.budget.steps = 16, 100
    >>> result = TaskTrainer.start(config, Path("runs/parity")).run()
    >>> result.validation["val_accuracy"]  # doctest: +SKIP
    1.0
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..cells.tree import TREE_CELLS
from ..data.tasks import IGNORE_INDEX, TASKS, Task, TaskBatch, TokenVocabulary
from ..decoding import DecoderStepper, SamplingOptions, decode, sampling_choice
from ..errors import RnnkitError
from ..models import (
    Captioner,
    ConditionedGenerator,
    ImageEncoder,
    Seq2Seq,
    SequenceClassifier,
    SequenceTagger,
    TreeModel,
)
from ..models.language_model import LanguageModelConfig
from .checkpoint import Checkpoint
from .config import TaskConfig, TrainConfig
from .run_loop import TrainingRun

#: The seed of every task's validation set: fixed, so that runs with different seeds are compared
#: on the same examples, and far from the small seeds that runs use for their training batches.
VALIDATION_SEED = 2**63 - 1

GREEDY = SamplingOptions(greedy=True)


def build_task_model(task: Task, model: LanguageModelConfig, options: TaskConfig) -> nn.Module:
    """The model of ``task``'s kind (module docstring), sized by ``model``, with ``options``'
    pooling or attention; settings that cannot work raise RnnkitError (one line)."""
    if model.cell in TREE_CELLS:
        return _tree_model(task, model, options)
    stack: dict[str, Any] = {
        "cell": model.cell, "hidden_size": model.hidden_size, "num_layers": model.num_layers,
        "dropout": model.dropout, "embedding_size": model.embedding_size, "executor": model.executor,
    }  # fmt: skip
    # A task reads features (input_size of them per step) or token ids (input_size of them).
    inputs = {"vocab_size": task.input_size} if task.token_inputs else {"input_size": task.input_size}
    try:
        if task.kind in ("regression", "classification"):
            return SequenceClassifier(
                task.output_size, **inputs, pooling=options.pooling, **stack, **model.cell_options
            )
        if task.kind == "tagging":
            return SequenceTagger(task.output_size, **inputs, **stack, **model.cell_options)
        if task.kind == "captioning":
            # The image vector c has hidden_size features, as wide as the decoder it conditions.
            generator = ConditionedGenerator(
                model.hidden_size, task.output_size, conditioning=options.conditioning, **stack,
                **model.cell_options,
            )
            return Captioner(ImageEncoder(model.hidden_size), generator)
        return Seq2Seq(
            task.input_size, task.output_size, attention=options.attention, **stack,
            **model.cell_options,
        )
    except (ValueError, TypeError) as error:
        raise RnnkitError(f"invalid model settings: {error}") from None


def _tree_model(task: Task, model: LanguageModelConfig, options: TaskConfig) -> TreeModel:
    """The recursive network of a tree task, for a tree cell (``model.cell``)."""
    if not task.tree_inputs:
        tree_tasks = ", ".join(name for name, cls in TASKS.items() if cls.tree_inputs)
        raise RnnkitError(f"the tree cell {model.cell!r} needs a tree task ({tree_tasks}), got {task.name}")
    if model.executor != "auto":
        raise RnnkitError(f"tree cells run level by level: expected executor 'auto', got {model.executor!r}")
    if options.pooling != "last":
        raise RnnkitError(f"a tree model predicts at each root: expected pooling 'last', got {options.pooling!r}")
    try:
        return TreeModel(
            task.output_size, len(task.leaf_vocabulary), len(task.node_vocabulary), cell=model.cell,
            hidden_size=model.hidden_size, num_layers=model.num_layers, embedding_size=model.embedding_size,
            dropout=model.dropout, **model.cell_options,
        )
    except (ValueError, TypeError) as error:
        raise RnnkitError(f"invalid model settings: {error}") from None


def teacher_forced(model: nn.Module, kind: str, batch: TaskBatch) -> tuple[Tensor, Tensor]:
    """The model's outputs on ``batch`` and the targets they are scored against.

    regression ``(B, O)`` and ``(B, O)``; classification ``(B, C)`` and ``(B,)``; tagging
    ``(T, B, C)`` and ``(T, B)``; seq2seq and captioning ``(U - 1, B, V)`` and ``(U - 1, B)``:
    the decoder reads ``targets[:-1]`` and predicts ``targets[1:]``, with padding set to
    ``IGNORE_INDEX``.
    Targets that carry no loss hold ``IGNORE_INDEX``.
    """
    if isinstance(model, TreeModel):
        return model(batch.trees), batch.targets  # the roots' predictions (B, O)
    if kind in ("seq2seq", "captioning"):
        context = (batch.inputs,) if kind == "captioning" else (batch.inputs, batch.lengths)
        logits = model(*context, batch.targets[:-1])  # (U - 1, B, V)
        return logits, batch.targets[1:].masked_fill(~batch.mask[1:], IGNORE_INDEX)
    return model(batch.inputs, batch.lengths), batch.targets


def task_loss(kind: str, outputs: Tensor, targets: Tensor) -> Tensor:
    """Mean squared error (regression), else mean cross-entropy over the scored targets."""
    if kind == "regression":
        return F.mse_loss(outputs, targets)
    # (N, C) logits and (N,) classes, N = every scored position
    return F.cross_entropy(outputs.flatten(0, -2), targets.flatten(), ignore_index=IGNORE_INDEX)


@torch.no_grad()
def task_metrics(model: nn.Module, kind: str, batch: TaskBatch) -> dict[str, float]:
    """``val_loss`` and the natural metrics of ``kind`` (module docstring) on ``batch``."""
    model.eval()
    outputs, targets = teacher_forced(model, kind, batch)
    loss = task_loss(kind, outputs, targets).item()
    if kind == "regression":
        return {"val_loss": loss, "val_mse": loss}
    if kind == "classification":
        return {"val_loss": loss, "val_accuracy": (outputs.argmax(-1) == targets).double().mean().item()}
    if kind == "tagging":
        scored = targets != IGNORE_INDEX  # (T, B)
        correct = (outputs.argmax(-1) == targets) & scored  # (T, B)
        return {
            "val_loss": loss,
            "val_token_accuracy": (correct.sum() / scored.sum()).item(),
            "val_sequence_accuracy": (correct | ~scored).all(0).double().mean().item(),
        }
    return {"val_loss": loss, "val_exact_match": greedy_exact_match(model, batch)}


@torch.no_grad()
def greedy_exact_match(model: nn.Module, batch: TaskBatch) -> float:
    """The fraction of a seq2seq or captioning batch whose greedy decoding is the target exactly,
    EOS included (captioning: any of the image's ``references``).

    The model decodes from BOS with its own ``start`` and ``step``, feeding back its most likely
    token (no teacher forcing), for as many steps as the longest target has tokens after BOS.
    """
    captioning = batch.references is not None
    references = batch.references if captioning else batch.targets.unsqueeze(0)  # (R, U, B)
    context = (batch.inputs,) if captioning else (batch.inputs, batch.lengths)
    stepper = DecoderStepper(model, TokenVocabulary.BOS)
    steps = references.size(1) - 1
    decoded = torch.stack(list(decode(stepper, context, steps, sampling_choice(GREEDY))))  # (U - 1, B)
    return exact_match(decoded, references[:, 1:])


def exact_match(decoded: Tensor, references: Tensor) -> float:
    """The fraction of decodings ``(U, B)`` (token ids from a decoder, no BOS) that equal one of
    their references ``(R, U, B)`` (targets after BOS, padded with PAD) up to and with the first EOS."""
    ended = decoded == TokenVocabulary.EOS  # (U, B)
    after_end = ended.cumsum(0) - ended.long() > 0  # steps after each sequence's first EOS
    decoded = decoded.masked_fill(after_end, TokenVocabulary.PAD)  # (U, B), padded as targets
    return (decoded == references).all(1).any(0).double().mean().item()


class TaskTrainer(TrainingRun):
    """One training run of a task's model (module docstring) on fresh batches of the task.

    The run directory is laid out as a language model's (``config.json``, ``metrics.jsonl``,
    ``loss.png``, ``checkpoints/``), without a vocabulary. Build with :meth:`start` for a new
    run or :meth:`resume` to continue one.
    """

    def __init__(self, config: TrainConfig, run_dir: Path) -> None:
        if not config.task.name:
            raise RnnkitError("the config names no task: a language model trains with Trainer")
        self.task = config.task.build()  # the rest of the config is validated by TrainingRun
        super().__init__(config, run_dir, self._build_model)
        self.generator = torch.Generator().manual_seed(config.seed)  # the training batches
        # Drawn on the CPU (the generators are CPU ones, so a run draws the same on any device).
        self.validation_set = self.task.validation(config.task.validation_size, VALIDATION_SEED).to(self.device)

    def _build_model(self) -> nn.Module:
        return build_task_model(self.task, self.config.model, self.config.task)

    @classmethod
    def start(cls, config: TrainConfig, run_dir: Path) -> TaskTrainer:
        """A new run: refuses a directory that already holds one (resume it instead)."""
        cls.refuse_existing_run(run_dir)
        trainer = cls(config, run_dir)
        trainer.create_run_dir()
        return trainer

    @classmethod
    def resume(cls, config: TrainConfig, run_dir: Path, checkpoint: Checkpoint) -> TaskTrainer:
        """Continue from ``checkpoint`` with ``config`` (the saved one, budget possibly changed)."""
        trainer = cls(config, run_dir)
        trainer.continue_from(checkpoint)
        return trainer

    def training_loss(self) -> Tensor:
        batch = self.task.batch(self.config.task.batch_size, self.generator).to(self.device)
        return task_loss(self.task.kind, *teacher_forced(self.model, self.task.kind, batch))

    def progress(self, seconds: float) -> dict[str, float]:
        return {"examples_per_second": self.config.task.batch_size / seconds}

    def evaluate(self) -> dict[str, float]:
        return {**task_metrics(self.model, self.task.kind, self.validation_set), "baseline": self.task.baseline}

    def checkpoint_extras(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        return {"task_generator": self.generator.get_state()}, {}

    def restore_extras(self, checkpoint: Checkpoint) -> None:
        self.generator.set_state(checkpoint.tensors["task_generator"])
