"""Training a character-level language model by truncated back-propagation through time.

The text is cut into B parallel streams (``StreamBatches``); each update reads the next T steps of
every stream, starting from the recurrent state the previous chunk left (detached, so gradients
flow back T steps at most), and the state is reset at the start of each epoch. Everything a run
needs to continue exactly — weights, optimiser, RNG, carried state, data position — goes into
its checkpoints, so a stopped run resumed from its last checkpoint reproduces the uninterrupted
run's losses bit for bit on the CPU. The loop, the update and the checkpoints are
:class:`~rnnkit.training.run_loop.TrainingRun`'s; this module adds the text, given as
:class:`~rnnkit.training.language_data.LanguageData`: encoded in memory, or a prepared corpus's
memory-mapped token file, read chunk by chunk.

In a data-parallel run of ``W`` processes (:mod:`~rnnkit.training.distributed`) the text is cut
into the same ``B`` streams (``--batch-size`` is global and must divide by ``W``), rank ``r``
reads its contiguous block of ``B / W`` of them and carries their state; checkpoints hold the
state of all ``B`` streams, gathered in stream order, so they read exactly like a one-process
run's and a resumed rank takes its block back. Validation splits its streams the same way and
sums the losses over the ranks, giving the one-process number up to float round-off.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..cells.base import State
from ..data.stream import StreamBatches
from ..data.token_file import VOCABULARY_FILE
from ..data.vocabulary import Vocabulary
from ..errors import CheckpointError, RnnkitError
from ..files import atomic_write_text
from .checkpoint import Checkpoint
from .config import TrainConfig, build_model
from .distributed import SINGLE, World
from .evaluation import evaluate_loss
from .language_data import LanguageData
from .run_loop import TrainingRun
from .tensor_tree import join_tensors, split_tensors


class Trainer(TrainingRun):
    """One training run of a :class:`LanguageModel` on one text's ``data``, writing into ``run_dir``.

    The run directory receives ``config.json`` (the resolved configuration), ``vocab.json``,
    ``metrics.jsonl`` (one JSON object per update and per validation), ``loss.png`` and
    ``checkpoints/``. Build with :meth:`start` for a new run or :meth:`resume` to continue one.
    """

    def __init__(self, config: TrainConfig, run_dir: Path, data: LanguageData, world: World = SINGLE) -> None:
        if config.task.name:
            raise RnnkitError(f"the config names the task {config.task.name!r}: train it with TaskTrainer")
        check_world(config, world)
        super().__init__(config, run_dir, functools.partial(build_model, config.model, len(data.vocabulary)), world)
        self.vocabulary = data.vocabulary
        self.batches = StreamBatches(
            data.train_ids, config.data.batch_size, config.data.seq_len, shard=(world.rank, world.size)
        )
        self.steps_per_epoch = len(self.batches)
        self.validation_ids = data.validation_ids
        self.state: State | None = None  # carried from one chunk to the next, detached

    @classmethod
    def start(cls, config: TrainConfig, run_dir: Path, data: LanguageData, world: World = SINGLE) -> Trainer:
        """A new run: refuses a directory that already holds one (resume it instead)."""
        cls.refuse_existing_run(run_dir)
        trainer = cls(config, run_dir, data, world)
        trainer.create_run_dir()
        if world.is_main:
            atomic_write_text(run_dir / VOCABULARY_FILE, json.dumps(trainer.vocabulary.to_json()) + "\n")
        return trainer

    @classmethod
    def resume(
        cls, config: TrainConfig, run_dir: Path, data: LanguageData, checkpoint: Checkpoint, world: World = SINGLE
    ) -> Trainer:
        """Continue from ``checkpoint`` with ``config`` (the saved one, budget possibly changed)."""
        try:
            vocabulary = Vocabulary.from_json(checkpoint.metadata["vocabulary"])
        except (KeyError, ValueError) as error:
            raise CheckpointError(f"checkpoint {checkpoint.path} has no usable vocabulary: {error}") from None
        if data.vocabulary != vocabulary:
            raise RnnkitError(f"the training text has changed since {run_dir} was started: its characters differ")
        trainer = cls(config, run_dir, data, world)
        trainer.continue_from(checkpoint)
        return trainer

    def training_loss(self) -> Tensor:
        """Next-character cross-entropy of the next chunk, carrying the state of the previous one."""
        chunk = self.step % len(self.batches)
        if chunk == 0:
            self.state = None  # a new epoch starts every stream from the beginning
        inputs, targets = (ids.to(self.device, non_blocking=True) for ids in self.batches.chunk(chunk))
        # inputs, targets (T, B); logits (T, B, V), B this rank's streams
        logits, state = self.parallel_model(inputs, self.state)
        self.state = tuple(s.detach() for s in state)
        return torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def progress(self, seconds: float) -> dict[str, float]:
        chars = self.config.data.batch_size * self.config.data.seq_len  # the global batch: all ranks
        return {"epoch": self.step / len(self.batches), "chars_per_second": chars / seconds}

    def evaluate(self) -> dict[str, float] | None:
        if len(self.validation_ids) < 2:
            return None
        data = self.config.data
        loss = evaluate_loss(
            self.model, self.validation_ids, data.validation_streams, data.seq_len, self.world
        )
        return {"val_loss": loss, "val_bits_per_char": loss / math.log(2)}

    def checkpoint_extras(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        # Every rank carries a state or none (they are at the same chunk), so all gather or none.
        state_tensors, state_skeleton = (
            ({}, None) if self.state is None
            else split_tensors(self.world.gather_streams(self.state), "carried_state")
        )
        metadata = {
            "vocabulary": self.vocabulary.to_json(),
            "carried_state": state_skeleton,
            "epoch": self.step / len(self.batches),
            "chunk": self.step % len(self.batches),  # the data position: next chunk to read
        }
        return state_tensors, metadata

    def restore_extras(self, checkpoint: Checkpoint) -> None:
        carried = checkpoint.metadata["carried_state"]
        if carried is not None:
            state = join_tensors(checkpoint.tensors, carried, source=checkpoint.path)  # all B streams
            self.state = tuple(s.to(self.device) for s in self.world.own_streams(state))


def check_world(config: TrainConfig, world: World) -> None:
    """Raise RnnkitError (one line) if ``config`` cannot be trained by ``world``'s processes:
    data-parallel training covers language models, whose global batch splits evenly."""
    if not world.parallel:
        return
    if config.task.name:
        raise RnnkitError(
            f"data-parallel training covers language models; expected one process for the task "
            f"{config.task.name}, got {world.size} (WORLD_SIZE)"
        )
    if config.data.batch_size % world.size:
        raise RnnkitError(
            f"--batch-size counts the streams of all {world.size} processes and must divide by "
            f"{world.size}, got {config.data.batch_size}"
        )
