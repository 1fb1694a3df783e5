"""Checkpoints round-trip bit-exactly, are written atomically and never unpickle on load."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rnnkit.errors import CheckpointError
from rnnkit.training import checkpoint as ckpt_module
from rnnkit.training.checkpoint import (
    atomic_write_text,
    latest_checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)
from rnnkit.training.tensor_tree import (
    join_tensors,
    optimizer_state_from_tensors,
    optimizer_state_to_tensors,
    split_tensors,
)


def _model_state(seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "weight_ih": torch.randn(8, 3, generator=gen),
        "weight_hh": torch.randn(8, 2, generator=gen, dtype=torch.float64),
        "bias": torch.randn(8, generator=gen).to(torch.bfloat16),
        "half": torch.randn(4, generator=gen).to(torch.float16),
    }


def _tensors() -> dict[str, torch.Tensor]:
    return {
        "rng.torch": torch.get_rng_state(),  # uint8 bytes
        "data.position": torch.tensor(12345, dtype=torch.int64),  # 0-dim
        "hidden.0": torch.randn(2, 5),
        "mask": torch.tensor([True, False, True]),
        "empty": torch.empty(0, 7),
        # Bit patterns that a lossy format would change: -0.0, inf, nan, a subnormal.
        "special": torch.tensor([-0.0, float("inf"), float("nan"), 1e-45]),
    }


_METADATA = {
    "config": {"cell": "lstm", "hidden_size": 64, "lr": 0.1, "clip": None, "tied": True},
    "vocabulary": ["<unk>", "a", "é", "\n", "😀"],
    "data": {"epoch": 3, "offset": 2**40 + 1},
    "losses": [1.0000000000000002, 1e-300, -2.5],
}


def _bits(t: torch.Tensor) -> torch.Tensor:
    # Compare float tensors bit for bit (torch.equal treats nan != nan and -0.0 == 0.0).
    if t.is_floating_point():
        return t.view({2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])
    return t


def _assert_same_tensors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].dtype == value.dtype, key
        assert got[key].shape == value.shape, key
        assert torch.equal(_bits(got[key]), _bits(value)), key


# ----------------------------------------------------------------------------------- round trip


def test_round_trip_is_bit_exact(tmp_path):
    model_state, tensors = _model_state(), _tensors()
    path = save_checkpoint(tmp_path, 500, model_state, tensors, _METADATA)

    assert path == tmp_path / "checkpoints" / "step-00000500"
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 500
    assert loaded.path == path
    _assert_same_tensors(loaded.model_state, model_state)
    _assert_same_tensors(loaded.tensors, tensors)
    assert loaded.metadata == _METADATA


def test_layout_model_file_stands_alone(tmp_path):
    model_state = _model_state()
    path = save_checkpoint(tmp_path, 7, model_state, _tensors(), {"k": 1})

    assert sorted(p.name for p in path.iterdir()) == [
        "checkpoint.json",
        "model.safetensors",
        "state.safetensors",
    ]
    assert (tmp_path / "checkpoints" / "latest").read_text() == "step-00000007\n"
    # model.safetensors holds the state_dict and nothing else.
    _assert_same_tensors(load_file(path / "model.safetensors"), model_state)
    record = json.loads((path / "checkpoint.json").read_text())
    assert record["format_version"] == 1
    assert record["step"] == 7
    assert record["metadata"] == {"k": 1}
    assert latest_checkpoint_path(tmp_path) == path


def test_views_and_tied_parameters(tmp_path):
    # safetensors refuses non-contiguous tensors and tensors sharing memory; the save copies.
    base = torch.randn(4, 6)
    state = {"base": base, "row": base[1], "transposed": base.t(), "strided": base[:, ::2]}
    encoder = torch.nn.Embedding(5, 3)
    decoder = torch.nn.Linear(3, 5, bias=False)
    decoder.weight = encoder.weight  # weight tying: two state_dict keys, one tensor
    tied = torch.nn.ModuleDict({"encoder": encoder, "decoder": decoder})

    save_checkpoint(tmp_path, 1, tied.state_dict(), state, {})
    loaded = load_checkpoint(tmp_path)

    _assert_same_tensors(loaded.tensors, {k: v.contiguous() for k, v in state.items()})
    fresh = torch.nn.ModuleDict(
        {"encoder": torch.nn.Embedding(5, 3), "decoder": torch.nn.Linear(3, 5, bias=False)}
    )
    fresh["decoder"].weight = fresh["encoder"].weight
    fresh.load_state_dict(loaded.model_state)
    assert torch.equal(fresh["encoder"].weight, encoder.weight)
    assert fresh["decoder"].weight is fresh["encoder"].weight


def test_save_snapshots_tensors(tmp_path):
    weight = torch.zeros(3)
    save_checkpoint(tmp_path, 1, {"w": weight}, {}, {})
    weight.add_(1.0)  # training goes on after the save
    assert torch.equal(load_checkpoint(tmp_path).model_state["w"], torch.zeros(3))


# ------------------------------------------------------------------------- latest and pruning


@pytest.mark.parametrize("keep", [1, 2, 3], ids=["keep1", "keep2", "keep3"])
def test_latest_follows_newest_and_pruning_keeps_keep(tmp_path, keep):
    for step in (100, 200, 300, 400):
        save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step))}, {}, {}, keep=keep)
        assert load_checkpoint(tmp_path).step == step

    remaining = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    expected = [f"step-{s:08d}" for s in (100, 200, 300, 400)[-keep:]]
    assert remaining == sorted([*expected, "latest"])
    assert torch.equal(load_checkpoint(tmp_path).model_state["w"], torch.full((2,), 400.0))


def test_resaving_a_step_replaces_it(tmp_path):
    save_checkpoint(tmp_path, 50, {"w": torch.zeros(2)}, {}, {"v": 0})
    save_checkpoint(tmp_path, 100, {"w": torch.ones(2)}, {}, {"v": 1})
    path = save_checkpoint(tmp_path, 100, {"w": torch.full((2,), 2.0)}, {}, {"v": 2})

    loaded = load_checkpoint(tmp_path)
    assert loaded.path == path
    assert loaded.metadata == {"v": 2}
    assert torch.equal(loaded.model_state["w"], torch.full((2,), 2.0))
    remaining = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert remaining == ["latest", "step-00000050", path.name]


def test_resuming_from_an_earlier_step_prunes_the_abandoned_later_ones(tmp_path):
    for step in (100, 200, 300):
        save_checkpoint(tmp_path, step, {"w": torch.zeros(1)}, {}, {}, keep=3)
    (tmp_path / "checkpoints" / "latest").write_text("step-00000100\n")  # resume from 100

    save_checkpoint(tmp_path, 150, {"w": torch.zeros(1)}, {}, {}, keep=3)

    remaining = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert remaining == ["latest", "step-00000100", "step-00000150"]


def test_latest_checkpoint_path_is_none_before_the_first_save(tmp_path):
    assert latest_checkpoint_path(tmp_path) is None
    assert latest_checkpoint_path(tmp_path / "not-yet-created") is None


# ---------------------------------------------------------------------------- failed saves


def _failing_save_file(fail_on_call: int, exc: BaseException):
    calls = []
    real = ckpt_module.save_file

    def save_file(tensors, filename, metadata=None):
        calls.append(filename)
        if len(calls) == fail_on_call:
            Path(filename).write_bytes(b"half a file")  # a partial write, then the failure
            raise exc
        return real(tensors, filename, metadata=metadata)

    return save_file


@pytest.mark.parametrize(
    ("fail_on_call", "exc", "raised"),
    [
        (1, OSError(errno.ENOSPC, "No space left on device"), CheckpointError),
        (2, OSError(errno.ENOSPC, "No space left on device"), CheckpointError),
        (2, RuntimeError("bug in a tensor"), RuntimeError),
    ],
    ids=["model-file-disk-full", "state-file-disk-full", "state-file-other-error"],
)
def test_failed_save_leaves_the_previous_checkpoint(
    tmp_path, monkeypatch, fail_on_call, exc, raised
):
    good = save_checkpoint(tmp_path, 100, _model_state(), _tensors(), _METADATA)
    latest_before = (tmp_path / "checkpoints" / "latest").read_text()
    monkeypatch.setattr(ckpt_module, "save_file", _failing_save_file(fail_on_call, exc))

    with pytest.raises(raised) as info:
        save_checkpoint(tmp_path, 200, _model_state(1), _tensors(), _METADATA)

    if raised is CheckpointError:
        assert "step-00000200" in str(info.value) and "No space left" in str(info.value)
    assert (tmp_path / "checkpoints" / "latest").read_text() == latest_before
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["latest", good.name]
    loaded = load_checkpoint(tmp_path)
    assert loaded.step == 100
    _assert_same_tensors(loaded.model_state, _model_state())


def test_failure_before_latest_is_replaced_keeps_latest(tmp_path, monkeypatch):
    save_checkpoint(tmp_path, 100, {"w": torch.zeros(2)}, {}, {})
    real = ckpt_module.atomic_write_text

    def failing_for_latest(path, text):
        if Path(path).name == "latest":
            raise OSError(errno.EIO, "I/O error")
        real(path, text)

    monkeypatch.setattr(ckpt_module, "atomic_write_text", failing_for_latest)
    with pytest.raises(CheckpointError, match="I/O error"):
        save_checkpoint(tmp_path, 200, {"w": torch.ones(2)}, {}, {})
    monkeypatch.undo()

    assert load_checkpoint(tmp_path).step == 100
    # The next save still works and leaves a clean directory.
    save_checkpoint(tmp_path, 300, {"w": torch.ones(2)}, {}, {}, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        "latest",
        "step-00000300",
    ]


def test_next_save_removes_leftovers_of_a_crash(tmp_path):
    save_checkpoint(tmp_path, 100, {"w": torch.zeros(2)}, {}, {})
    root = tmp_path / "checkpoints"
    (root / ".step-00000200.dead.tmp").mkdir()
    (root / ".step-00000200.dead.tmp" / "model.safetensors").write_bytes(b"partial")
    (root / ".latest.dead.tmp").write_text("step-00000200")

    save_checkpoint(tmp_path, 200, {"w": torch.zeros(2)}, {}, {})
    assert sorted(p.name for p in root.iterdir()) == ["latest", "step-00000100", "step-00000200"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"step": -1}, ValueError, "step must be"),
        ({"keep": 0}, ValueError, "keep must be"),
        ({"metadata": {"betas": (0.9, 0.99)}}, TypeError, r"metadata\['betas'\] is a tuple"),
        ({"metadata": {1: "a"}}, TypeError, "JSON keys are str"),
        ({"tensors": {"x": 1.0}}, TypeError, "must map str to Tensor"),
    ],
    ids=["negative-step", "keep-zero", "tuple-in-metadata", "int-key-in-metadata", "non-tensor"],
)
def test_save_rejects_bad_arguments(tmp_path, kwargs, error, match):
    args = {"step": 1, "model_state": {"w": torch.zeros(1)}, "tensors": {}, "metadata": {}}
    with pytest.raises(error, match=match):
        save_checkpoint(tmp_path, **{**args, **kwargs})
    assert latest_checkpoint_path(tmp_path) is None


# ------------------------------------------------------------------------------ load errors


def _cut_in_half(file: Path) -> None:
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _setup_missing_run_dir(run: Path) -> tuple[Path, str]:
    return run / "nope", "does not exist"


def _setup_no_checkpoint(run: Path) -> tuple[Path, str]:
    run.mkdir(exist_ok=True)
    return run, "has no checkpoint; train first with rnnkit train --out"


def _setup_latest_names_missing_dir(run: Path) -> tuple[Path, str]:
    (run / "checkpoints" / "latest").write_text("step-00000999\n")
    return run / "checkpoints" / "step-00000999", "does not exist"


def _setup_latest_is_garbage(run: Path) -> tuple[Path, str]:
    (run / "checkpoints" / "latest").write_text("../../etc\n")
    return run / "checkpoints" / "latest", "does not name a checkpoint directory"


def _setup_model_truncated(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "model.safetensors"
    _cut_in_half(file)
    return file, "is truncated"


def _setup_state_truncated(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "state.safetensors"
    _cut_in_half(file)
    return file, "is truncated"


def _setup_model_random_bytes(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "model.safetensors"
    file.write_bytes(random.Random(0).randbytes(4096))
    return file, "is not a safetensors file"


def _setup_model_is_a_pickle(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "model.safetensors"
    torch.save(_model_state(), file)
    return file, "is not a safetensors file"


def _setup_state_missing(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "state.safetensors"
    file.unlink()
    return file, "is missing"


def _setup_json_missing(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "checkpoint.json"
    file.unlink()
    return file, "is missing"


def _setup_json_invalid(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "checkpoint.json"
    file.write_text('{"format": "rnnkit-checkpoint", "step": ')
    return file, "is not valid JSON"


def _setup_json_future_version(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "checkpoint.json"
    record = json.loads(file.read_text())
    file.write_text(json.dumps({**record, "format_version": 99}))
    return file, "format version 99"


def _setup_json_not_ours(run: Path) -> tuple[Path, str]:
    file = run / "checkpoints" / "step-00000100" / "checkpoint.json"
    file.write_text('{"hello": "world"}')
    return file, "is not an rnnkit checkpoint"


_LOAD_ERRORS = {
    "missing-run-dir": _setup_missing_run_dir,
    "no-checkpoint": _setup_no_checkpoint,
    "latest-names-missing-dir": _setup_latest_names_missing_dir,
    "latest-is-garbage": _setup_latest_is_garbage,
    "model-truncated": _setup_model_truncated,
    "state-truncated": _setup_state_truncated,
    "model-random-bytes": _setup_model_random_bytes,
    "model-is-a-torch-save-pickle": _setup_model_is_a_pickle,
    "state-missing": _setup_state_missing,
    "json-missing": _setup_json_missing,
    "json-invalid": _setup_json_invalid,
    "json-future-version": _setup_json_future_version,
    "json-not-rnnkit": _setup_json_not_ours,
}


@pytest.mark.parametrize("setup", list(_LOAD_ERRORS.values()), ids=list(_LOAD_ERRORS))
def test_load_errors_are_one_line_naming_the_path(tmp_path, setup):
    run = tmp_path / "run"
    if setup not in (_setup_missing_run_dir, _setup_no_checkpoint):
        save_checkpoint(run, 100, _model_state(), _tensors(), _METADATA)
    named, problem = setup(run)
    target = run / "nope" if setup is _setup_missing_run_dir else run

    with pytest.raises(CheckpointError) as info:
        load_checkpoint(target)

    message = str(info.value)
    assert "\n" not in message
    assert str(named) in message
    assert problem in message


def test_loading_never_unpickles(tmp_path, monkeypatch):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.randn(4, 3)).sum().backward()
    optimizer.step()
    opt_tensors, opt_meta = optimizer_state_to_tensors(optimizer.state_dict())
    save_checkpoint(tmp_path, 1, model.state_dict(), opt_tensors, {"optimizer": opt_meta})

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load must not unpickle")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)

    loaded = load_checkpoint(tmp_path)
    state = optimizer_state_from_tensors(loaded.tensors, loaded.metadata["optimizer"])
    torch.optim.Adam(model.parameters()).load_state_dict(state)


# ---------------------------------------------------------------------------- optimizer state


_OPTIMIZERS = {
    "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    "adam-amsgrad": lambda params: torch.optim.Adam(params, lr=0.01, amsgrad=True),
    "adamw": lambda params: torch.optim.AdamW(params, lr=0.01, betas=(0.8, 0.95)),
    "sgd-momentum": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
    "sgd-nesterov": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=True),
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=0.01, momentum=0.5, centered=True),
}


def _train(model, optimizer, batches):
    for x, y in batches:
        optimizer.zero_grad()
        torch.nn.functional.mse_loss(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("make_optimizer", list(_OPTIMIZERS.values()), ids=list(_OPTIMIZERS))
def test_resumed_optimizer_matches_uninterrupted_run_bitwise(tmp_path, make_optimizer):
    gen = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(5, 4, generator=gen), torch.randn(5, 3, generator=gen)) for _ in range(6)
    ]
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    optimizer = make_optimizer(model.parameters())
    _train(model, optimizer, batches[:3])

    opt_tensors, opt_meta = optimizer_state_to_tensors(optimizer.state_dict())
    save_checkpoint(tmp_path, 3, model.state_dict(), opt_tensors, {"optimizer": opt_meta})
    loaded = load_checkpoint(tmp_path)
    torch.manual_seed(1)  # the resumed model starts from different weights until it loads
    resumed = torch.nn.Linear(4, 3)
    resumed.load_state_dict(loaded.model_state)
    resumed_optimizer = make_optimizer(resumed.parameters())
    resumed_optimizer.load_state_dict(
        optimizer_state_from_tensors(loaded.tensors, loaded.metadata["optimizer"])
    )
    # Hyper-parameters come back exactly, tuples (betas) as tuples.
    assert resumed_optimizer.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]

    _train(model, optimizer, batches[3:])
    _train(resumed, resumed_optimizer, batches[3:])

    for (name, want), got in zip(model.named_parameters(), resumed.parameters(), strict=True):
        assert torch.equal(got, want), name
    want_state, got_state = optimizer.state_dict()["state"], resumed_optimizer.state_dict()["state"]
    assert want_state.keys() == got_state.keys()
    for pid in want_state:
        _assert_same_tensors(got_state[pid], want_state[pid])


def test_optimizer_state_with_none_values_round_trips(tmp_path):
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    state = optimizer.state_dict()
    state["state"] = {0: {"momentum_buffer": None}, 1: {"momentum_buffer": torch.ones(2)}}

    opt_tensors, opt_meta = optimizer_state_to_tensors(state)
    assert sorted(opt_tensors) == ["optimizer.state.1.momentum_buffer"]
    save_checkpoint(tmp_path, 1, model.state_dict(), opt_tensors, {"optimizer": opt_meta})
    loaded = load_checkpoint(tmp_path)
    restored = optimizer_state_from_tensors(loaded.tensors, loaded.metadata["optimizer"])

    assert restored["state"][0] == {"momentum_buffer": None}
    assert torch.equal(restored["state"][1]["momentum_buffer"], torch.ones(2))
    assert restored["param_groups"] == state["param_groups"]
    torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9).load_state_dict(restored)


def test_split_and_join_restore_structure_exactly(tmp_path):
    value = {
        "python": random.Random(3).getstate(),  # (int, tuple of 625 ints, None)
        "torch": torch.get_rng_state(),
        "by_id": {0: [1.5, (2, "x")], 7: {"__odd": torch.arange(3)}},
        "lr": torch.tensor(0.01),
    }
    tensors, skeleton = split_tensors(value, "rng")
    assert sorted(tensors) == ["rng.by_id.7.__odd", "rng.lr", "rng.torch"]
    save_checkpoint(tmp_path, 1, {}, tensors, {"rng": skeleton})
    loaded = load_checkpoint(tmp_path)

    restored = join_tensors(loaded.tensors, loaded.metadata["rng"], source=loaded.path)
    assert restored["python"] == value["python"]
    assert restored["by_id"][0] == [1.5, (2, "x")]
    assert torch.equal(restored["by_id"][7]["__odd"], torch.arange(3))
    assert torch.equal(restored["torch"], value["torch"])
    generator = random.Random()
    generator.setstate(restored["python"])
    assert generator.random() == random.Random(3).random()


def test_split_rejects_unknown_types_and_join_reports_missing_tensors():
    with pytest.raises(TypeError, match=r"cannot store the object at 'p\.x'"):
        split_tensors({"x": object()}, "p")
    with pytest.raises(CheckpointError, match=r"run-x has no tensor 'p\.w'"):
        join_tensors({}, {"w": {"__tensor__": "p.w"}}, source="run-x")
    with pytest.raises(CheckpointError, match="unknown tagged value"):
        join_tensors({}, {"__mystery__": 1}, source="run-x")


# ------------------------------------------------------------------------------ atomic write


def test_atomic_write_text_replaces_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "config.json"
    atomic_write_text(target, "first\n")
    atomic_write_text(target, "second\r\nline ✓\n")
    assert target.read_bytes() == "second\r\nline ✓\n".encode()
    assert os.listdir(tmp_path) == ["config.json"]


def test_atomic_write_text_failure_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic_write_text(target, "old")

    def failing_replace(src, dst):
        raise OSError(errno.EXDEV, "cannot replace")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="cannot replace"):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert os.listdir(tmp_path) == ["config.json"]
