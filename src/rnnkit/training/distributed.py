"""Data-parallel training: the processes of one run, and what they exchange.

``torchrun --nproc-per-node W -m rnnkit train ...`` (or ``--nnodes`` machines of it) starts ``W``
processes, each told its place by the environment: ``RANK`` ``r`` (0 ... W-1 over all machines),
``WORLD_SIZE`` ``W`` and ``LOCAL_RANK`` (its index on its machine). :func:`world_from_environment`
reads them into a :class:`World`; :func:`process_group` joins the processes with the gloo backend
on the CPU or NCCL on GPUs (:attr:`World.backend`) and a timeout on every collective operation,
and :meth:`World.wrap` puts the model in :class:`~torch.nn.parallel.DistributedDataParallel`,
which broadcasts rank 0's initial weights and averages the gradients during ``backward``.

Devices (``--device``, :func:`resolve_device`): a run trains on the CPU or on one GPU per
process, ``cuda:LOCAL_RANK``, so that the processes of one machine share its GPUs one each.
NCCL exchanges CUDA tensors only and gloo CPU ones, so every collective below puts its tensor
on :attr:`World.device` first.

Why that is one process's update: with a global batch of ``B`` streams cut into ``W`` equal
blocks of ``b = B / W`` (:func:`~rnnkit.data.stream.shard_streams`), the loss is a mean over
``B·T`` characters, ``ℓ = (1/W) Σ_r ℓ_r`` with ``ℓ_r`` the mean over rank ``r``'s ``b·T``, so
``∇ℓ = (1/W) Σ_r ∇ℓ_r``: exactly the average DDP computes, up to float32 round-off of the
summation order. Everything after the average (clipping, the optimiser step) then runs on equal
gradients in every process and keeps the weights equal.

A process in one alone (no ``WORLD_SIZE``, or ``WORLD_SIZE=1``) is :data:`SINGLE`, for which every
collective below is the identity, so the training loop reads the same either way.

Faults: a process that dies closes its connections, and gloo fails the collective the others
are in at once ("connection closed by peer"); one that hangs makes them wait ``timeout`` and
then fail. :meth:`World.failure` recognises these errors so that the training loop can turn them
into one line naming the last good checkpoint (which, written atomically by rank 0, survives).
torchrun's agent also stops the surviving processes, with SIGTERM, when one exits with an error:
:func:`process_group` turns that signal into :class:`Terminated`, recognised the same way.
"""

from __future__ import annotations

import dataclasses
import datetime
import gc
import os
import signal
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..data.stream import shard_streams
from ..errors import RnnkitError

DEVICES = ("auto", "cpu", "cuda")
CPU = torch.device("cpu")
DEFAULT_TIMEOUT_SECONDS = 300.0  # longer than rank 0 alone ever works (a checkpoint, a plot)
_ENVIRONMENT = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


class Terminated(Exception):
    """SIGTERM arrived while the processes trained together (torchrun stopping the survivors)."""


class CollectiveFailure(RnnkitError):
    """The processes of a data-parallel run lost one another; the message names the checkpoint."""


@dataclass(frozen=True)
class World:
    """This process's place among the ``size`` processes of one training run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0  # the index on this machine (a GPU's, where there are GPUs)
    timeout: float = DEFAULT_TIMEOUT_SECONDS  # seconds any collective may wait for the others
    device: torch.device = CPU  # where this process trains, and where its collectives' tensors are

    def on(self, device: torch.device) -> World:
        """This place in the world, training on ``device``."""
        return dataclasses.replace(self, device=device)

    @property
    def backend(self) -> str:
        """The process group's backend: NCCL between GPUs, gloo between CPUs."""
        return "nccl" if self.device.type == "cuda" else "gloo"

    @property
    def is_main(self) -> bool:
        """Rank 0, which alone writes the run directory, logs and shows progress."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """``model`` in DistributedDataParallel (a collective: every rank must call it), or
        ``model`` itself in a process alone. Train through the wrapper; save ``model``."""
        if not self.parallel:
            return model
        if self.device.type == "cuda":  # one GPU per process: DDP's single-device mode
            return DistributedDataParallel(model, device_ids=[self.device.index], output_device=self.device.index)
        return DistributedDataParallel(model)

    def mean(self, value: Tensor) -> Tensor:
        """The mean of the scalar ``value`` over the processes, as float64. (In a process alone, as
        in the methods below, nothing is copied to the device: they run on every training step.)"""
        if not self.parallel:
            return value.detach().to(torch.float64).reshape(())
        value = value.detach().to(self.device, torch.float64).reshape(1)
        dist.all_reduce(value)
        value /= self.size
        return value[0]

    def sum(self, values: Sequence[float]) -> list[float]:
        """Each of ``values`` summed over the processes (in float64)."""
        if not self.parallel:
            return [float(value) for value in values]
        total = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        return total.tolist()

    def any(self, flags: Sequence[bool]) -> list[bool]:
        """Each of ``flags``, true where it is true in any process: one decision for all."""
        return [value > 0 for value in self.sum([float(flag) for flag in flags])]

    def gather(self, tensor: Tensor) -> list[Tensor]:
        """Every process's ``tensor`` (equal shapes), in rank order, on this process's device (in a
        process alone: ``[tensor]``, where it is)."""
        if not self.parallel:
            return [tensor]
        tensor = tensor.to(self.device)
        parts = [torch.empty_like(tensor) for _ in range(self.size)]
        dist.all_gather(parts, tensor.contiguous())
        return parts

    def gather_streams(self, state: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """A carried state, each tensor ``(L, b, H)`` over this rank's ``b`` streams, joined over
        the ranks into ``(L, B, H)``: the state one process reading all ``B`` streams holds."""
        return tuple(torch.cat(self.gather(tensor), dim=1) for tensor in state)

    def own_streams(self, state: Sequence[Tensor]) -> tuple[Tensor, ...]:
        """This rank's block of a joined ``(L, B, H)`` state, the inverse of :meth:`gather_streams`."""
        mine = shard_streams(state[0].size(1), (self.rank, self.size))
        return tuple(tensor[:, mine.start : mine.stop].clone() for tensor in state)

    def broadcast(self, value: Any) -> Any:
        """Rank 0's ``value`` (any picklable object), in every process."""
        if not self.parallel:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def failure(self, error: BaseException) -> str | None:
        """What ``error`` says about the other processes, in words, if it is a failed collective
        or torchrun's SIGTERM; None if it is anything else."""
        if not self.parallel:
            return None
        if isinstance(error, Terminated):
            return "stopped by SIGTERM (torchrun stops every process when one fails)"
        text = str(error)
        if "timed out" in text.lower():
            return f"the other processes did not answer within --collective-timeout {self.timeout:g} s"
        if "Connection closed" in text or "Connection reset" in text or "Broken pipe" in text:
            return "another process closed its connection (it crashed or was killed)"
        if isinstance(error, dist.DistError) or "gloo" in text or "NCCL" in text:
            return f"a collective operation failed ({' '.join(text.split())[:200]})"
        return None


SINGLE = World()


def resolve_device(requested: str, local_rank: int = 0, gpus: int | None = None) -> torch.device:
    """The device that ``--device requested`` means for the process ``local_rank`` of its machine.

    ``cpu`` is the CPU; ``cuda`` is GPU ``local_rank`` (one process per GPU); ``auto`` is ``cuda``
    where there is a GPU, else the CPU. ``gpus`` is the machine's number of GPUs (default: as
    torch counts them). RnnkitError (one line) when ``cuda`` is asked for and this process has no GPU.
    """
    if requested not in DEVICES:
        raise RnnkitError(f"expected a device among {', '.join(DEVICES)}, got {requested!r}")
    if gpus is None:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if requested == "cpu" or (requested == "auto" and not gpus):
        return CPU
    if not gpus:
        raise RnnkitError("--device cuda: expected a CUDA GPU, got none (torch.cuda.is_available() is false)")
    if local_rank >= gpus:
        raise RnnkitError(
            f"--device cuda: expected a GPU for every process of this machine, got LOCAL_RANK {local_rank} "
            f"with {gpus} GPU(s); start at most {gpus} processes per machine"
        )
    return torch.device("cuda", local_rank)


def world_from_environment(
    environ: Mapping[str, str] = os.environ, timeout: float = DEFAULT_TIMEOUT_SECONDS
) -> World:
    """The World that torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` describe, or
    :data:`SINGLE` without them; RnnkitError (one line) when they are partial or not numbers."""
    given = [name for name in _ENVIRONMENT if name in environ]
    if not given:
        return SINGLE
    if len(given) < len(_ENVIRONMENT):
        missing = ", ".join(name for name in _ENVIRONMENT if name not in given)
        raise RnnkitError(
            f"expected RANK, WORLD_SIZE and LOCAL_RANK together (as torchrun sets them), got no {missing}"
        )
    values = {}
    for name in _ENVIRONMENT:
        try:
            values[name] = int(environ[name])
        except ValueError:
            raise RnnkitError(
                f"expected an integer in the environment variable {name}, got {environ[name]!r}"
            ) from None
    rank, size, local_rank = values["RANK"], values["WORLD_SIZE"], values["LOCAL_RANK"]
    if not (size >= 1 and 0 <= rank < size and 0 <= local_rank <= rank):
        raise RnnkitError(f"expected 0 <= LOCAL_RANK <= RANK < WORLD_SIZE, got {local_rank}, {rank}, {size}")
    return World(rank, size, local_rank, timeout)


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """The seed of rank ``rank``'s random numbers (dropout, input noise) in a run seeded ``seed``:
    distinct for every (seed, rank, step), from numpy's SeedSequence, so that no two ranks draw the
    same dropout masks. Rank 0 keeps the run's own stream instead (see TrainingRun)."""
    return int(np.random.SeedSequence([seed, rank, step]).generate_state(1, np.uint64)[0])


@contextmanager
def process_group(world: World) -> Iterator[None]:
    """Join the run's processes for the duration of the block (nothing for a process alone).

    Uses ``world.backend`` (gloo, or NCCL with this process's GPU made the current one) through torchrun's ``MASTER_ADDR``/``MASTER_PORT`` rendezvous;
    ``world.timeout`` bounds every collective, the first rendezvous included. While the block runs,
    SIGTERM raises :class:`Terminated` in the main thread (instead of killing the process without
    a word), and afterwards SIGTERM is ignored: the process, a torchrun worker, is about to exit.
    A block that ends normally waits at a barrier for the others; one left by an error does not
    (the others may be gone); either way the group is destroyed, so that the process exits
    cleanly, after a fault too.
    """
    if not world.parallel:
        yield
        return
    if world.device.type == "cuda":
        torch.cuda.set_device(world.device)  # NCCL's collectives and broadcast_object_list use it
    try:
        dist.init_process_group(world.backend, timeout=datetime.timedelta(seconds=world.timeout))
    except (RuntimeError, ValueError) as error:
        problem = " ".join(str(error).split())[:200]
        raise RnnkitError(f"rank {world.rank} of {world.size} could not join the others: {problem}") from None

    def terminate(signum: int, frame: Any) -> None:
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
        dist.barrier()  # leave together, none while another is still in a collective
    except BaseException as error:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # see below
        _release_frames(error)
        if isinstance(error, Terminated):  # outside the training loop, which says it itself
            raise RnnkitError(f"rank {world.rank} of {world.size}: {world.failure(error)}") from None
        raise
    finally:
        # From here the process is on its way out, perhaps with a line to print about a fault
        # that torchrun is now answering with SIGTERM: that signal must not cut the line short.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        # DDP's reducer must go before the group, or its destructor now and then aborts the
        # process at exit ("terminate called without an active exception"); DDP holds
        # reference cycles, so only a collection frees it.
        gc.collect()
        dist.destroy_process_group()


def _release_frames(error: BaseException) -> None:
    """Clear the local variables of the frames that ``error`` and the exceptions chained to it
    passed through (they hold the trainer, and so DDP), keeping the lines a traceback prints."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback.clear_frames(current.__traceback__)
        pending += [current.__context__, current.__cause__]
