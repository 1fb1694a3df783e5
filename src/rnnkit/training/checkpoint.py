"""Checkpoints: a training run's state saved atomically and loaded without unpickling anything.

Layout of a run directory::

    RUN_DIR/
      checkpoints/
        latest                 # one line: the name of the newest complete checkpoint directory
        step-00000500/
          model.safetensors    # the model's state_dict and nothing else, so it is usable alone
          state.safetensors    # every other tensor: optimizer moments, RNG bytes, hidden state
          checkpoint.json      # format version, step, file sizes and the caller's JSON metadata
        step-00001000/
          ...

Atomicity: a checkpoint is written into a hidden temporary directory inside ``checkpoints/``
(``.step-00000500.<random>.tmp``), every file is fsync'ed, the directory is renamed to its final
name (a rename is atomic), and only then is ``latest`` replaced (temporary file, fsync,
``os.replace``). An error or a crash at any point leaves ``latest`` naming the previous complete
checkpoint; what it leaves behind is hidden ``*.tmp`` entries, which the next save removes. Older
checkpoints are pruned only after ``latest`` names the new one. Saving a step that already has a
directory writes under a fresh name (``step-00000500-1``) and prunes the old one afterwards, so
``latest`` never names a directory that is missing or half written.

Loading reads only safetensors and JSON -- no ``torch.load``, no pickle -- so opening someone
else's checkpoint cannot run code. Anything wrong with a checkpoint raises
:class:`~rnnkit.errors.CheckpointError` with one line naming the file and the problem.

One process writes a run directory at a time (rank 0 under DDP): a save removes any temporary
entries it finds, assuming they were left by a crashed writer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..errors import CheckpointError
from ..files import TEMPORARY_SUFFIX, atomic_write_text, fsync_dir, fsync_file, temporary_sibling

logger = logging.getLogger(__name__)

FORMAT_NAME = "rnnkit-checkpoint"
FORMAT_VERSION = 1
CHECKPOINTS_DIR = "checkpoints"
LATEST_FILE = "latest"
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.safetensors"
RECORD_FILE = "checkpoint.json"

# step-00000500, or step-00000500-1 for a re-save of a step whose directory still existed.
_DIR_PATTERN = re.compile(r"step-(\d{8,})(?:-(\d+))?")



@dataclass(frozen=True)
class Checkpoint:
    """One loaded checkpoint; every tensor is on the CPU and owned by this object."""

    step: int
    model_state: dict[str, torch.Tensor] = field(repr=False)
    tensors: dict[str, torch.Tensor] = field(repr=False)  # everything that is not the model
    metadata: dict = field(repr=False)  # exactly the JSON the caller passed to save_checkpoint
    path: Path  # the checkpoint directory


# --------------------------------------------------------------------------------------------
# Writing


def save_checkpoint(
    run_dir: str | os.PathLike,
    step: int,
    model_state: Mapping[str, torch.Tensor],
    tensors: Mapping[str, torch.Tensor],
    metadata: dict,
    keep: int = 2,
) -> Path:
    """Save a checkpoint of ``step`` into ``run_dir/checkpoints`` and point ``latest`` at it.

    ``model_state`` is the model's state_dict; ``tensors`` holds every other tensor; ``metadata``
    is plain JSON (dicts with str keys, lists, str, int, float, bool, None -- no tuples, which
    JSON would turn into lists; encode richer values with :func:`~rnnkit.training.tensor_tree.split_tensors`). Tensors are
    copied to contiguous CPU memory, so views and tied parameters are fine. Afterwards only the
    new checkpoint and the ``keep - 1`` newest checkpoints of earlier steps remain; directories of
    later steps belong to an abandoned continuation (the run was resumed from an earlier point)
    and are removed. Returns the checkpoint directory. An ``OSError`` while writing becomes a
    :class:`CheckpointError`; whatever fails, ``latest`` and the previous checkpoint are untouched.
    """
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise ValueError(f"step must be a non-negative int, got {step!r}")
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise ValueError(f"keep must be an int >= 1, got {keep!r}")
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, got {type(metadata).__name__}")
    _check_plain_json(metadata, "metadata")
    # Copy before touching the disk: a snapshot that later training steps cannot change, and
    # contiguous tensors that share no memory, which safetensors requires.
    model_copy = _cpu_copies(model_state, "model_state")
    tensors_copy = _cpu_copies(tensors, "tensors")

    root = Path(run_dir) / CHECKPOINTS_DIR
    name = f"step-{step:08d}"
    final = root / name
    tmp = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        _remove_leftovers(root)
        name = _fresh_name(root, name)
        final = root / name
        tmp = temporary_sibling(root / name)
        tmp.mkdir()
        _write_safetensors(tmp / MODEL_FILE, model_copy)
        _write_safetensors(tmp / STATE_FILE, tensors_copy)
        record = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "step": step,
            # Sizes let the loader tell a truncated file from one that is not safetensors at all.
            "files": {f: (tmp / f).stat().st_size for f in (MODEL_FILE, STATE_FILE)},
            "metadata": metadata,
        }
        atomic_write_text(tmp / RECORD_FILE, json.dumps(record, indent=2) + "\n")
        fsync_dir(tmp)
        os.rename(tmp, final)
        tmp = None
        fsync_dir(root)
        # The commit point: until this replace succeeds, `latest` names the previous checkpoint.
        atomic_write_text(root / LATEST_FILE, name + "\n")
    except OSError as exc:
        raise CheckpointError(f"could not write checkpoint {final}: {_one_line(exc)}") from exc
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    logger.info("saved checkpoint %s", final)
    _prune(root, name, step, keep)
    return final


def _cpu_copies(mapping: Mapping[str, torch.Tensor], what: str) -> dict[str, torch.Tensor]:
    if not isinstance(mapping, Mapping):
        raise TypeError(f"{what} must be a mapping of str to Tensor, got {type(mapping).__name__}")
    copies = {}
    for key, value in mapping.items():
        if not isinstance(key, str) or not isinstance(value, torch.Tensor):
            raise TypeError(
                f"{what} must map str to Tensor, got {type(key).__name__} -> "
                f"{type(value).__name__} for key {key!r}"
            )
        if value.layout != torch.strided:
            raise TypeError(f"{what}[{key!r}] has layout {value.layout}; only dense tensors")
        # empty_like + copy_ makes one contiguous CPU copy whatever the source device or strides.
        copy = torch.empty_like(value, device="cpu", memory_format=torch.contiguous_format)
        copies[key] = copy.copy_(value.detach())
    return copies


def _write_safetensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    # "format": "pt" is what Hugging Face tooling expects of a PyTorch safetensors file.
    save_file(tensors, str(path), metadata={"format": "pt"})
    fsync_file(path)


def _fresh_name(root: Path, name: str) -> str:
    # Never write over an existing directory: `latest` may name it, and there is no atomic way
    # to replace a non-empty directory. The old one is pruned once `latest` names the new one.
    candidate, suffix = name, 0
    while os.path.lexists(root / candidate):
        suffix += 1
        candidate = f"{name}-{suffix}"
    return candidate


def _remove_leftovers(root: Path) -> None:
    for entry in root.iterdir():
        if entry.name.startswith(".") and entry.name.endswith(TEMPORARY_SUFFIX):
            logger.info("removing %s, left by an interrupted save", entry)
            try:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
            except OSError as exc:
                # Harmless to leave: hidden, and never named by `latest`.
                logger.warning("could not remove %s: %s", entry, exc)


def _prune(root: Path, latest_name: str, latest_step: int, keep: int) -> None:
    # The new checkpoint is safe by now: a failure here only costs disk space, so it is logged.
    others = []
    try:
        for entry in root.iterdir():
            match = _DIR_PATTERN.fullmatch(entry.name)
            if match and entry.name != latest_name and entry.is_dir():
                others.append((int(match[1]), int(match[2] or 0), entry))
    except OSError as exc:
        logger.warning("could not list %s to prune old checkpoints: %s", root, exc)
        return
    earlier = sorted((o for o in others if o[0] < latest_step), reverse=True)
    kept = {entry for _, _, entry in earlier[: keep - 1]}
    for _, _, entry in others:
        if entry in kept:
            continue
        try:
            shutil.rmtree(entry)
            logger.debug("pruned checkpoint %s", entry)
        except OSError as exc:
            logger.warning("could not prune checkpoint %s: %s", entry, exc)


def _check_plain_json(value: Any, where: str) -> None:
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, list):
        for i, item in enumerate(value):
            _check_plain_json(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where} has the key {key!r}; JSON keys are str")
            _check_plain_json(item, f"{where}[{key!r}]")
        return
    raise TypeError(
        f"{where} is a {type(value).__name__}; metadata must be plain JSON (dict, list, str, "
        "int, float, bool, None); encode tensors and tuples with split_tensors"
    )


# --------------------------------------------------------------------------------------------
# Reading


def latest_checkpoint_path(run_dir: str | os.PathLike) -> Path | None:
    """Return the checkpoint directory that ``latest`` names, or None if there is none yet.

    Raises :class:`CheckpointError` when ``latest`` exists but cannot be read, does not hold a
    checkpoint name, or names a directory that does not exist.
    """
    root = Path(run_dir) / CHECKPOINTS_DIR
    latest = root / LATEST_FILE
    try:
        text = latest.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {latest}: {_one_line(exc)}") from exc
    name = text.strip()
    # Only a bare checkpoint name is accepted: `latest` must not lead outside checkpoints/.
    if not _DIR_PATTERN.fullmatch(name):
        raise CheckpointError(f"{latest} does not name a checkpoint directory: {name[:60]!r}")
    path = root / name
    if not path.is_dir():
        raise CheckpointError(f"{latest} names {path}, which does not exist")
    return path


def load_checkpoint(run_dir: str | os.PathLike) -> Checkpoint:
    """Load the checkpoint that ``run_dir/checkpoints/latest`` names (all tensors on the CPU)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        raise CheckpointError(f"run directory {run_dir} does not exist")
    if not run_dir.is_dir():
        raise CheckpointError(f"{run_dir} is not a run directory (it is a file)")
    path = latest_checkpoint_path(run_dir)
    if path is None:
        raise CheckpointError(
            f"{run_dir} has no checkpoint; train first with rnnkit train --out {run_dir}"
        )
    return read_checkpoint(path)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Load one checkpoint directory, validating every file; tensors are loaded onto the CPU."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"checkpoint directory {path} does not exist")
    record = _read_record(path / RECORD_FILE)
    model_state = _read_safetensors(path / MODEL_FILE, record["files"].get(MODEL_FILE))
    tensors = _read_safetensors(path / STATE_FILE, record["files"].get(STATE_FILE))
    logger.info("loaded checkpoint %s (step %d)", path, record["step"])
    return Checkpoint(
        step=record["step"],
        model_state=model_state,
        tensors=tensors,
        metadata=record["metadata"],
        path=path,
    )


def _read_record(file: Path) -> dict:
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise CheckpointError(f"{file} is missing; the checkpoint is incomplete") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"cannot read {file}: {_one_line(exc)}") from exc
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{file} is not valid JSON: {_one_line(exc)}") from exc
    if not isinstance(record, dict) or record.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{file} is not an rnnkit checkpoint record")
    version = record.get("format_version")
    if type(version) is not int or version != FORMAT_VERSION:
        raise CheckpointError(
            f"{file} has format version {version!r}; this rnnkit reads version {FORMAT_VERSION}"
        )
    step, files = record.get("step"), record.get("files")
    if type(step) is not int or step < 0:
        raise CheckpointError(f"{file} has an invalid step {step!r}")
    if not isinstance(files, dict) or not all(
        type(files.get(f)) is int for f in (MODEL_FILE, STATE_FILE)
    ):
        raise CheckpointError(f"{file} does not record the sizes of {MODEL_FILE} and {STATE_FILE}")
    if not isinstance(record.get("metadata"), dict):
        raise CheckpointError(f"{file} has no metadata object")
    return record


def _read_safetensors(file: Path, expected_size: int) -> dict[str, torch.Tensor]:
    try:
        tensors = load_file(file, device="cpu")
        size = file.stat().st_size
    except FileNotFoundError as exc:
        raise CheckpointError(f"{file} is missing; the checkpoint is incomplete") from exc
    except SafetensorError as exc:
        raise CheckpointError(_diagnose(file, expected_size, exc)) from exc
    except OSError as exc:
        raise CheckpointError(f"cannot read {file}: {_one_line(exc)}") from exc
    if size != expected_size:
        raise CheckpointError(
            f"{file} has {size} bytes but {expected_size} were written; it was replaced"
        )
    return tensors


def _diagnose(file: Path, expected_size: int, exc: SafetensorError) -> str:
    """Say whether a file safetensors rejects is a cut-short checkpoint file or something else."""
    try:
        size = file.stat().st_size
        with open(file, "rb") as handle:
            head = handle.read(9)
    except OSError as err:
        return f"cannot read {file}: {_one_line(err)}"
    # A safetensors file starts with the header length (u64, little-endian) and then "{".
    header_fits = len(head) < 9 or (
        head[8:9] == b"{" and int.from_bytes(head[:8], "little") + 8 <= expected_size
    )
    if size < expected_size and header_fits:
        return f"{file} is truncated: {size} of {expected_size} bytes"
    return f"{file} is not a safetensors file ({_one_line(exc)})"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
