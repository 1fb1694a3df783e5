"""``rnnkit train``: what a run writes; every cell, optimiser, schedule and budget works."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.corpus import split_train_validation
from rnnkit.data.stream import StreamBatches
from rnnkit.data.vocabulary import Vocabulary
from rnnkit.training.checkpoint import latest_checkpoint_path, load_checkpoint
from rnnkit.training.config import OptimConfig, TrainConfig, config_from_dict
from rnnkit.training.optim import learning_rate

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20  # 900 characters
BATCH, SEQ_LEN, HIDDEN = 4, 16, 16
# fmt: off
TINY = [
    "--hidden", str(HIDDEN), "--layers", "1", "--batch-size", str(BATCH), "--seq-len", str(SEQ_LEN),
    "--validation-streams", "4", "--no-progress",
]
# fmt: on
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"



@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "fox.txt"
    path.write_text(TEXT, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def six_steps(tmp_path_factory: pytest.TempPathFactory, text_file: Path) -> tuple[Path, str]:
    """One run of 6 steps validating and checkpointing every 3: (run directory, its stdout)."""
    run_dir = tmp_path_factory.mktemp("six") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(
            train_args(text_file, run_dir, "--steps 6 --eval-every 3 --checkpoint-every 3")
        )
    assert status == 0, stderr.getvalue()
    assert stderr.getvalue() == ""
    return run_dir, stdout.getvalue()


def train_args(data: Path | None, out: Path, flags: str = "") -> list[str]:
    """``train [--data DATA] --out OUT``, the tiny model, and ``flags`` (separated by spaces)."""
    source = [] if data is None else ["--data", str(data)]
    return ["train", *source, "--out", str(out), *TINY, *flags.split()]


def train(capsys: pytest.CaptureFixture[str], data: Path | None, out: Path, flags: str = "") -> str:
    """Run ``rnnkit train`` in-process; it must succeed. Returns stdout."""
    capsys.readouterr()
    status = main(train_args(data, out, flags))
    out, err = capsys.readouterr()
    assert status == 0, err
    return out


def read_records(run_dir: Path) -> list[dict]:
    return [
        json.loads(line)
        for line in (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    ]


def train_records(run_dir: Path) -> list[dict]:
    return [r for r in read_records(run_dir) if "loss" in r]


def chunks_per_epoch() -> int:
    train_text, _ = split_train_validation(TEXT, 0.1)
    return len(StreamBatches(Vocabulary.from_text(TEXT).encode(train_text), BATCH, SEQ_LEN))


# ------------------------------------------------------------------------------------------------
# What a run writes


def test_config_json_is_the_resolved_config(six_steps: tuple[Path, str], text_file: Path) -> None:
    run_dir, _ = six_steps
    saved = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
    config = config_from_dict(TrainConfig, saved)
    assert config.data.path == str(text_file)
    assert (config.model.hidden_size, config.model.num_layers) == (HIDDEN, 1)
    data = config.data
    assert (data.batch_size, data.seq_len, data.validation_streams) == (BATCH, SEQ_LEN, 4)
    assert (config.budget.steps, config.eval_every, config.checkpoint_every) == (6, 3, 3)
    # Flags not given take the dataclass defaults, written out in full.
    defaults = TrainConfig()
    assert config.optim == defaults.optim
    assert (config.model.cell, config.seed) == (defaults.model.cell, defaults.seed)
    assert load_checkpoint(run_dir).metadata["config"] == saved


def test_vocab_json(six_steps: tuple[Path, str]) -> None:
    run_dir, _ = six_steps
    assert json.loads((run_dir / "vocab.json").read_text(encoding="utf-8")) == sorted(set(TEXT))


def test_metrics_jsonl(six_steps: tuple[Path, str]) -> None:
    run_dir, _ = six_steps
    records = read_records(run_dir)
    training = [r for r in records if "loss" in r]
    validation = [r for r in records if "val_loss" in r]
    assert len(training) + len(validation) == len(records)
    assert [r["step"] for r in training] == [1, 2, 3, 4, 5, 6]
    for r in training:
        assert {"step", "epoch", "loss", "lr", "grad_norm", "chars_per_second", "seconds"} <= set(r)
        assert r["epoch"] == pytest.approx(r["step"] / chunks_per_epoch())
        assert 0 < r["loss"] < 10 and r["grad_norm"] > 0 and r["chars_per_second"] > 0
        assert r["lr"] == OptimConfig().lr
    seconds = [r["seconds"] for r in training]
    assert seconds == sorted(seconds) and seconds[0] >= 0  # wall time so far, never decreasing
    assert [r["step"] for r in validation] == [3, 6]
    for r in validation:
        assert r["val_bits_per_char"] == pytest.approx(r["val_loss"] / math.log(2))


def test_loss_png(six_steps: tuple[Path, str]) -> None:
    run_dir, _ = six_steps
    png = (run_dir / "loss.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    assert png[12:16] == b"IHDR" and png.endswith(b"IEND\xaeB`\x82")
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width, height) == (800, 450)  # figsize (8, 4.5) at 100 dpi


def test_checkpoints(six_steps: tuple[Path, str]) -> None:
    run_dir, _ = six_steps
    latest = latest_checkpoint_path(run_dir)
    assert latest is not None
    assert latest.name == "step-00000006"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == latest.name
    assert load_checkpoint(run_dir).step == 6
    kept = sorted(p.name for p in (run_dir / "checkpoints").glob("step-*"))
    assert kept == ["step-00000003", "step-00000006"]  # the newest two


def test_prints_validation_loss(six_steps: tuple[Path, str]) -> None:
    run_dir, stdout = six_steps
    validation = {r["step"]: r["val_loss"] for r in read_records(run_dir) if "val_loss" in r}
    final = validation[6]

    def loss(value: float) -> str:
        return f"validation loss {value:.4f} nats/char ({value / math.log(2):.4f} bits/char)"

    assert stdout.splitlines() == [
        f"step 3: {loss(validation[3])}",
        f"step 6: {loss(final)}",
        f"{loss(final)} after 6 steps",
        f"run directory: {run_dir}",
    ]


# ------------------------------------------------------------------------------------------------
# Data sources


def test_bundled_python_corpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    # Many validation streams: the held-out tenth of the corpus is ~400k characters.
    train(capsys, None, run_dir, "--corpus python --validation-streams 2048 --steps 2")
    config = config_from_dict(TrainConfig, json.loads((run_dir / "config.json").read_text()))
    assert (config.data.corpus, config.data.path) == ("python", "")
    assert {"(", ")", ":", "_", "=", "\n"} <= set(json.loads((run_dir / "vocab.json").read_text()))
    assert len(train_records(run_dir)) == 2


def test_data_file(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    crlf = tmp_path / "crlf.txt"
    # A byte-order mark and Windows line endings, which reading removes.
    crlf.write_bytes(b"\xef\xbb\xbf" + TEXT.replace("\n", "\r\n").encode())
    run_dir = tmp_path / "run"
    train(capsys, crlf, run_dir, "--steps 2")
    assert json.loads((run_dir / "vocab.json").read_text()) == sorted(set(TEXT))  # no \r, no BOM


# ------------------------------------------------------------------------------------------------
# Cells


def forget_gate_bias(run_dir: Path) -> torch.Tensor:
    return load_checkpoint(run_dir).model_state["rnn.bias_ih_l0"][HIDDEN : 2 * HIDDEN]


def test_cell_option_forget_bias(
    text_file: Path, tmp_path: Path, six_steps: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    train(capsys, text_file, run_dir, "--steps 2 --cell-option forget_bias=0")
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["model"]["cell_options"] == {"forget_bias": 0}
    # Two Adam steps of lr 2e-3 move a bias by about 4e-3 at most from where it started.
    assert forget_gate_bias(run_dir).abs().max() < 0.05
    assert forget_gate_bias(six_steps[0]).min() > 0.9  # the default forget bias is 1


def test_peephole_cell(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir = tmp_path / "run"
    train(capsys, text_file, run_dir, "--steps 2 --cell peephole")
    state = load_checkpoint(run_dir).model_state
    for name in ("rnn.weight_ci_l0", "rnn.weight_cf_l0", "rnn.weight_co_l0"):
        assert state[name].shape == (HIDDEN,)
    assert len(train_records(run_dir)) == 2


def test_mut1_embedding_defaults_to_hidden(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    train(capsys, text_file, run_dir, "--steps 2 --cell mut1")
    state = load_checkpoint(run_dir).model_state
    assert state["embedding.weight"].shape == (len(set(TEXT)), HIDDEN)
    assert all(math.isfinite(r["loss"]) for r in train_records(run_dir))


# ------------------------------------------------------------------------------------------------
# Optimisers and schedules

OPTIMIZER_SIGNS = {
    # optimizer -> (a hyper-parameter its saved param group must have, and its value)
    "adam": ("decoupled_weight_decay", False),
    "adamw": ("decoupled_weight_decay", True),
    "rmsprop": ("alpha", 0.99),
    "sgd": ("nesterov", False),
}


@pytest.mark.parametrize("optimizer", list(OPTIMIZER_SIGNS))
def test_optimizer(
    optimizer: str, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    train(capsys, text_file, run_dir, f"--steps 2 --optimizer {optimizer} --lr 0.01")
    checkpoint = load_checkpoint(run_dir)
    assert checkpoint.metadata["config"]["optim"]["optimizer"] == optimizer
    group = checkpoint.metadata["optimizer"]["param_groups"][0]
    key, value = OPTIMIZER_SIGNS[optimizer]
    assert group[key] == value
    records = train_records(run_dir)
    assert [r["lr"] for r in records] == [0.01, 0.01]
    assert all(math.isfinite(r["loss"]) for r in records)


SCHEDULE_LRS = {
    # --lr 0.01 --steps 5 --warmup 1, and --lr-decay 0.5 --lr-decay-every 2 --lr-min-ratio 0.1
    "constant": [0.01, 0.01, 0.01, 0.01, 0.01],
    "step": [0.01, 0.01, 0.01, 0.005, 0.005],
    # after warm-up, cos over 4 steps: 0.001 + 0.009 * (1 + cos(pi * k / 4)) / 2 for k = 0..3
    "cosine": [0.01] + [0.001 + 0.009 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)],
}


@pytest.mark.parametrize("schedule", list(SCHEDULE_LRS))
def test_lr_schedule(
    schedule: str, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    flags = "--steps 5 --lr 0.01 --warmup 1 --lr-decay 0.5 --lr-decay-every 2 --lr-min-ratio 0.1"
    train(capsys, text_file, run_dir, f"{flags} --lr-schedule {schedule}")
    lrs = [r["lr"] for r in train_records(run_dir)]
    assert lrs == pytest.approx(SCHEDULE_LRS[schedule], rel=1e-12)
    config = config_from_dict(TrainConfig, json.loads((run_dir / "config.json").read_text()))
    assert lrs == [learning_rate(step, config.optim, 5) for step in range(5)]


# ------------------------------------------------------------------------------------------------
# Budgets


def test_minutes_budget_stops(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / "run"
    started = time.monotonic()
    out = train(capsys, text_file, run_dir, "--minutes 0.01")  # 0.6 s
    assert time.monotonic() - started < 60
    steps = len(train_records(run_dir))
    assert steps >= 1
    assert load_checkpoint(run_dir).step == steps
    assert f"after {steps} steps" in out


EPOCH_BUDGETS = {
    # budget flags -> updates, with 12 chunks per epoch
    "--epochs 1": 12,
    "--epochs 0.5": 6,
    "": 12,  # no budget at all: one epoch
    "--epochs 1 --steps 3": 3,  # the first limit reached
    "--epochs 0.1": 2,  # 1.2 chunks, rounded up
}


@pytest.mark.parametrize("flags", list(EPOCH_BUDGETS), ids=lambda f: f or "no-budget")
def test_epoch_budget(
    flags: str, text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chunks, steps = chunks_per_epoch(), EPOCH_BUDGETS[flags]
    assert chunks == 12  # 810 training characters, 4 x 16 per chunk
    run_dir = tmp_path / "run"
    train(capsys, text_file, run_dir, f"--eval-every 1000 {flags}")
    records = train_records(run_dir)
    assert [r["step"] for r in records] == list(range(1, steps + 1))
    assert records[-1]["epoch"] == pytest.approx(steps / chunks)
    assert load_checkpoint(run_dir).step == steps
