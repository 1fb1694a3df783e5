"""Bad input gives one line naming the problem, a nonzero exit status and no traceback.

Every case of the issue's list has a test here: empty, binary or non-UTF-8 data; a corpus shorter
than one batch; a prime with characters outside the vocabulary; a missing, truncated or
non-safetensors checkpoint; invalid flag values; a loss that stops being finite. Usage errors
exit with 2, every other problem with 1, and none of them touches the last good checkpoint.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from cli_runner import run_cli
from rnnkit.cli import main
from rnnkit.training.checkpoint import MODEL_FILE, latest_checkpoint_path, load_checkpoint
from rnnkit.training.loading import load_trained_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

SRC = Path(__file__).resolve().parents[2] / "src"
TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20  # 900 characters, 29 distinct
# fmt: off
TINY = [
    "--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
    "--validation-streams", "4", "--no-progress",
]
# fmt: on
USAGE, FAILURE = 2, 1  # exit statuses: a command line that does not parse, any other problem
# Two sane updates (checkpointed at step 2), then the step schedule multiplies the learning rate
# by 1e25: the unbounded relu units overflow during update 3 and the loss of update 4 is NaN.
DIVERGING = [
    "--cell", "elman", "--cell-option", "nonlinearity=relu", "--optimizer", "adam", "--lr", "1e-3",
    "--lr-schedule", "step", "--lr-decay", "1e25", "--lr-decay-every", "2", "--clip", "0",
    "--checkpoint-every", "2",
]  # fmt: skip



@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "fox.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory, text_file: Path) -> Path:
    """A good run, trained once per module; tests that damage a run damage a copy."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    assert main(train_args(text_file, run_dir, "--steps 4 --checkpoint-every 2")) == 0
    return run_dir


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(trained_run, copy)
    return copy


def train_args(data: Path, out: Path, flags: str = "") -> list[str]:
    """``train --data DATA --out OUT``, the tiny model, and ``flags`` (separated by spaces)."""
    return ["train", "--data", str(data), "--out", str(out), *TINY, *flags.split()]


def assert_one_line_error(status: int, err: str, expected_status: int, *fragments: str) -> str:
    """The command failed with ``expected_status`` and one line on stderr holding ``fragments``."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].strip(), f"expected one line on stderr, got {err!r}"
    assert status == expected_status, (
        f"exit status {status}, expected {expected_status}; stderr: {err!r}"
    )
    line = lines[0]
    assert line.startswith("rnnkit"), line
    for fragment in fragments:
        assert fragment in line, f"{fragment!r} not in {line!r}"
    return line


def snapshot(run_dir: Path) -> dict[str, bytes]:
    """Every file under the run's checkpoints/ directory, by relative path."""
    root = run_dir / "checkpoints"
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


# ------------------------------------------------------------------------------------------------
# Data files

BAD_DATA: dict[str, tuple[bytes | None, str]] = {
    # name -> (file content, or None for no file at all; what the message must say)
    "empty": (b"", "is empty"),
    "only-a-byte-order-mark": ("\ufeff".encode(), "is empty"),
    "binary": (b"text\x00with\x00NUL bytes" * 10, "NUL"),
    "not-utf8": ("café au lait ".encode("latin-1") * 10, "UTF-8"),
    "missing": (None, "does not exist"),
}


def _data_file(tmp_path: Path, kind: str) -> Path:
    content, _ = BAD_DATA[kind]
    path = tmp_path / f"{kind}.txt"
    if content is not None:
        path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", list(BAD_DATA), ids=list(BAD_DATA))
def test_train_refuses_bad_data_file(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data, out_dir = _data_file(tmp_path, kind), tmp_path / "out"
    status, out, err = run_cli(capsys, *train_args(data, out_dir, "--steps 2"))
    assert_one_line_error(status, err, FAILURE, str(data), BAD_DATA[kind][1])
    assert out == ""
    assert not out_dir.exists()  # nothing half-made is left behind


@pytest.mark.parametrize("kind", list(BAD_DATA), ids=list(BAD_DATA))
def test_eval_refuses_bad_data_file(
    kind: str, tmp_path: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _data_file(tmp_path, kind)
    status, out, err = run_cli(capsys, "eval", trained_run, "--data", data)
    assert_one_line_error(status, err, FAILURE, str(data), BAD_DATA[kind][1])
    assert out == ""


def test_train_refuses_corpus_shorter_than_one_batch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "short.txt"
    data.write_text("abcdefghij" * 3, encoding="utf-8")  # 27 for training; a batch needs 65
    status, _, err = run_cli(capsys, *train_args(data, tmp_path / "out", "--steps 2"))
    assert_one_line_error(status, err, FAILURE, "fewer than one batch", "65")
    assert not (tmp_path / "out").exists()


def test_eval_refuses_text_outside_vocabulary(
    tmp_path: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "greek.txt"
    data.write_text("the fox λόγος\n", encoding="utf-8")
    status, _, err = run_cli(capsys, "eval", trained_run, "--data", data)
    assert_one_line_error(status, err, FAILURE, str(data), "outside the model's vocabulary", "'λ'")


def test_eval_refuses_one_character_text(
    tmp_path: Path, trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "one.txt"
    data.write_text("a", encoding="utf-8")
    status, _, err = run_cli(capsys, "eval", trained_run, "--data", data)
    assert_one_line_error(status, err, FAILURE, str(data), "at least 2")


# ------------------------------------------------------------------------------------------------
# The prime


def test_sample_refuses_prime_outside_vocabulary(
    trained_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(
        capsys, "sample", trained_run, "--prime", "the fox €λ", "--length", "5"
    )
    line = assert_one_line_error(status, err, FAILURE, "prime", "2 characters", "'€'", "'λ'")
    assert "'f'" not in line  # only the offending characters are named
    assert out == ""  # nothing is echoed before the prime is known to be good


# ------------------------------------------------------------------------------------------------
# Checkpoints


def _latest_dir(run_dir: Path) -> Path:
    path = latest_checkpoint_path(run_dir)
    assert path is not None
    return path


def _truncate(run_dir: Path) -> Path:
    model = _latest_dir(run_dir) / MODEL_FILE
    data = model.read_bytes()
    model.write_bytes(data[: len(data) // 2])
    return model


def _random_bytes(run_dir: Path) -> Path:
    model = _latest_dir(run_dir) / MODEL_FILE
    model.write_bytes(random.Random(0).randbytes(model.stat().st_size))
    return model


def _torch_pickle(run_dir: Path) -> Path:
    model = _latest_dir(run_dir) / MODEL_FILE
    torch.save({"weight": torch.zeros(3)}, model)  # what a careless user might drop in
    return model


def _missing_model_file(run_dir: Path) -> Path:
    model = _latest_dir(run_dir) / MODEL_FILE
    model.unlink()
    return model


def _latest_names_nothing(run_dir: Path) -> Path:
    latest = run_dir / "checkpoints" / "latest"
    latest.write_text("step-99999999\n", encoding="utf-8")
    return latest


def _garbled_record(run_dir: Path) -> Path:
    record = _latest_dir(run_dir) / "checkpoint.json"
    record.write_text("{not json", encoding="utf-8")
    return record


def _no_checkpoints(run_dir: Path) -> Path:
    shutil.rmtree(run_dir / "checkpoints")
    return run_dir


def _no_run_dir(run_dir: Path) -> Path:
    shutil.rmtree(run_dir)
    return run_dir


BAD_CHECKPOINTS: dict[str, tuple[Callable[[Path], Path], str]] = {
    # name -> (damage the run and return the path the message must name, what it must say)
    "truncated": (_truncate, "truncated"),
    "random-bytes": (_random_bytes, "not a safetensors file"),
    "torch-pickle": (_torch_pickle, "not a safetensors file"),
    "missing-model-file": (_missing_model_file, "missing"),
    "garbled-record": (_garbled_record, "not valid JSON"),
    "latest-names-nothing": (_latest_names_nothing, "does not exist"),
    "no-checkpoint": (_no_checkpoints, "has no checkpoint"),
    "no-run-directory": (_no_run_dir, "does not exist"),
}


@pytest.mark.parametrize("command", ["sample", "eval"])
@pytest.mark.parametrize("damage", list(BAD_CHECKPOINTS), ids=list(BAD_CHECKPOINTS))
def test_bad_checkpoint(
    damage: str, command: str, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    corrupt, problem = BAD_CHECKPOINTS[damage]
    named = corrupt(run_copy)
    status, out, err = run_cli(
        capsys, command, run_copy, *(["--length", "5"] if command == "sample" else [])
    )
    assert_one_line_error(status, err, FAILURE, str(named), problem)
    assert out == ""


def test_resume_refuses_truncated_checkpoint(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _truncate(run_copy)
    before = snapshot(run_copy)
    status, _, err = run_cli(capsys, "train", "--resume", run_copy, "--steps", "8", "--no-progress")
    assert_one_line_error(status, err, FAILURE, str(model), "truncated")
    assert snapshot(run_copy) == before


# ------------------------------------------------------------------------------------------------
# Flags

BAD_FLAGS: dict[str, tuple[str, list[str]]] = {
    # name -> (the command line, DIR standing for a fresh path; what the message must say)
    "negative-hidden": ("train --out DIR --hidden -3", ["--hidden", "-3"]),
    "zero-layers": ("train --out DIR --layers 0", ["--layers", "0"]),
    "negative-batch-size": ("train --out DIR --batch-size -1", ["--batch-size", "-1"]),
    "zero-seq-len": ("train --out DIR --seq-len 0", ["--seq-len", "0"]),
    "negative-lr": ("train --out DIR --lr -0.1", ["--lr", "-0.1"]),
    "dropout-above-one": ("train --out DIR --dropout 1.5", ["--dropout", "1.5"]),
    "non-integer-steps": ("train --out DIR --steps many", ["--steps", "many"]),
    "unknown-cell": ("train --out DIR --cell transformer", ["--cell", "transformer"]),
    "unknown-optimizer": ("train --out DIR --optimizer lion", ["--optimizer", "lion"]),
    "unknown-flag": ("train --out DIR --hiden 16", ["--hiden"]),
    "cell-option-without-value": ("train --out DIR --cell-option peephole", ["--cell-option"]),
    "data-and-corpus": ("train --out DIR --data a.txt --corpus python", ["--corpus", "--data"]),
    "no-out-or-resume": ("train --steps 2", ["--out", "--resume"]),
    "unknown-command": ("fit", ["fit"]),
    "negative-length": ("sample DIR --length -5", ["--length", "-5"]),
    "zero-temperature": ("sample DIR --temperature 0", ["--temperature", "0"]),
    "negative-top-k": ("sample DIR --top-k -1", ["--top-k", "-1"]),
    "zero-eval-batch-size": ("eval DIR --batch-size 0", ["--batch-size", "0"]),
}


@pytest.mark.parametrize("name", list(BAD_FLAGS), ids=list(BAD_FLAGS))
def test_invalid_flag_is_a_usage_error(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    command, fragments = BAD_FLAGS[name]
    argv = [str(tmp_path / "run") if a == "DIR" else a for a in command.split()]
    status, out, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, USAGE, *fragments)
    assert out == ""
    assert not (tmp_path / "run").exists()


BAD_SETTINGS: dict[str, tuple[str, list[str]]] = {
    # name -> (flags that parse but describe a model or schedule that cannot work; fragments)
    "unknown-cell-option": ("--steps 2 --cell-option forget_gate=1", ["forget_gate"]),
    "cell-option-out-of-range": ("--steps 2 --cell-option proj_size=32", ["proj_size", "32"]),
    "cell-option-wrong-type": ('--steps 2 --cell-option forget_bias="high"', ["forget_bias"]),
    "mut1-embedding-not-hidden": ("--steps 2 --cell mut1 --embedding 8", ["8", "16"]),
    "cosine-without-length": ("--lr-schedule cosine --minutes 1", ["cosine", "--steps"]),
}


@pytest.mark.parametrize("name", list(BAD_SETTINGS), ids=list(BAD_SETTINGS))
def test_unusable_setting_gives_one_line(
    name: str, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, fragments = BAD_SETTINGS[name]
    out_dir = tmp_path / "run"
    status, _, err = run_cli(capsys, *train_args(text_file, out_dir, flags))
    # Flags that parse but cannot be honoured are not usage errors in the argparse sense, but a
    # parser-level check (status 2) would be as good; what matters is one line and no traceback.
    assert_one_line_error(status, err, USAGE if status == USAGE else FAILURE, *fragments)
    assert latest_checkpoint_path(out_dir) is None


# ------------------------------------------------------------------------------------------------
# Runs that already exist


NON_BUDGET_FLAGS = ["--lr 0.1", "--hidden 32", "--cell-option forget_bias=0", "--corpus python"]


@pytest.mark.parametrize("flag", NON_BUDGET_FLAGS, ids=[f.split()[0] for f in NON_BUDGET_FLAGS])
def test_resume_refuses_non_budget_flag(
    flag: str, run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(run_copy)
    argv = ["train", "--resume", run_copy, "--steps", "8", "--no-progress", *flag.split()]
    status, _, err = run_cli(capsys, *argv)
    assert_one_line_error(status, err, FAILURE, "--resume", flag.split()[0], "--steps")
    assert snapshot(run_copy) == before


def test_out_refuses_existing_run(
    run_copy: Path, text_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = {
        name: (run_copy / name).read_bytes()
        for name in ("config.json", "vocab.json", "metrics.jsonl")
    }
    before = snapshot(run_copy)
    status, _, err = run_cli(capsys, *train_args(text_file, run_copy, "--steps 2 --hidden 8"))
    assert_one_line_error(status, err, FAILURE, str(run_copy), "already holds a run", "--resume")
    assert snapshot(run_copy) == before
    assert {name: (run_copy / name).read_bytes() for name in files} == files


def test_resume_refuses_missing_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run_cli(
        capsys, "train", "--resume", tmp_path / "nowhere", "--steps", "3", "--no-progress"
    )
    assert_one_line_error(status, err, FAILURE, str(tmp_path / "nowhere"), "does not exist")


# ------------------------------------------------------------------------------------------------
# A loss that stops being finite


def _failing_step(line: str) -> int:
    match = re.search(r"at step (\d+)", line)
    assert match, line
    return int(match[1])


def test_nan_loss_keeps_last_good_checkpoint(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    status, _, err = run_cli(capsys, *train_args(text_file, run_dir, "--steps 20"), *DIVERGING)
    line = assert_one_line_error(
        status, err, FAILURE, "loss became nan", "the last good checkpoint", "--lr"
    )
    failed_at = _failing_step(line)
    assert failed_at == 4
    kept = latest_checkpoint_path(run_dir)
    assert kept is not None and str(kept) in line
    checkpoint = load_checkpoint(run_dir)  # loads: the failure wrote nothing over it
    assert checkpoint.step == 2
    assert load_trained_model(run_dir).step == 2


def test_nan_on_resume_leaves_checkpoint_files_untouched(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    status, _, _ = run_cli(capsys, *train_args(text_file, run_dir, "--steps 2"), *DIVERGING)
    assert status == 0
    before, latest = snapshot(run_dir), latest_checkpoint_path(run_dir)
    status, _, err = run_cli(capsys, "train", "--resume", run_dir, "--steps", "20", "--no-progress")
    line = assert_one_line_error(
        status, err, FAILURE, "nan", "the last good checkpoint", str(latest)
    )
    assert _failing_step(line) == 4
    assert latest_checkpoint_path(run_dir) == latest
    assert snapshot(run_dir) == before  # byte for byte


def test_nan_before_any_checkpoint(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Noise of 3e38 overflows the embeddings to ±inf, and inf - inf in the first matmul is NaN.
    run_dir = tmp_path / "run"
    status, _, err = run_cli(
        capsys, *train_args(text_file, run_dir, "--steps 5 --input-noise 3e38")
    )
    line = assert_one_line_error(status, err, FAILURE, "nan", "no checkpoint had been written yet")
    assert _failing_step(line) == 1
    assert latest_checkpoint_path(run_dir) is None
    # With nothing saved, the directory can simply be used again.
    status, _, _ = run_cli(capsys, *train_args(text_file, run_dir, "--steps 1"))
    assert status == 0
    assert load_checkpoint(run_dir).step == 1


def test_learning_rate_beyond_float32_gives_one_line(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    status, _, err = run_cli(capsys, *train_args(text_file, run_dir, "--steps 5 --lr 1e39"))
    assert_one_line_error(status, err, FAILURE, "learning rate", "1e+39", "float32")
    assert latest_checkpoint_path(run_dir) is None


def test_checkpoint_called_good_holds_finite_weights(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The checkpoint the divergence message calls good can be used: finite weights, a sample."""
    run_dir = tmp_path / "run"
    status, _, err = run_cli(capsys, *train_args(text_file, run_dir, "--steps 20"), *DIVERGING)
    assert status == FAILURE and "the last good checkpoint" in err
    model_state = load_checkpoint(run_dir).model_state
    not_finite = sorted(
        name for name, tensor in model_state.items() if not torch.isfinite(tensor).all()
    )
    assert not not_finite, f"the 'good' checkpoint has non-finite {', '.join(not_finite)}"
    status, _, err = run_cli(capsys, "sample", run_dir, "--length", "10", "--seed", "0")
    assert status == 0, err


def test_sample_from_model_with_non_finite_outputs(
    run_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A checkpoint whose logits are not finite is a bad checkpoint: one line, no traceback."""
    checkpoint_dir = _latest_dir(run_copy)
    state = load_checkpoint(run_copy).model_state
    state["decoder.bias"] = torch.full_like(state["decoder.bias"], float("nan"))
    # Same names, shapes and dtypes: the file keeps its size, so only the values are wrong.
    save_file(state, str(checkpoint_dir / MODEL_FILE), metadata={"format": "pt"})
    status, _, err = run_cli(capsys, "sample", run_copy, "--length", "5", "--seed", "0")
    assert_one_line_error(status, err, FAILURE)


# ------------------------------------------------------------------------------------------------
# The real process


def test_process_prints_one_line_and_no_traceback(tmp_path: Path) -> None:
    """In a real process (``python -m rnnkit``) a bad file gives one stderr line and status 1."""
    data = tmp_path / "binary.bin"
    data.write_bytes(b"\x00\x01\x02" * 100)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")])),
    }
    done = subprocess.run(
        [sys.executable, "-m", "rnnkit", *train_args(data, tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == FAILURE
    assert done.stdout == ""
    assert done.stderr.splitlines() == [
        f"rnnkit train: error: data file {data} is not text: it contains NUL bytes (binary data?)"
    ]
