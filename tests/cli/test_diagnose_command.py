"""``rnnkit diagnose`` and ``rnnkit plot`` in-process: a trained task run and a fresh model, the
spectral radius that training records, and bad command lines."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from cli_runner import run_cli
from rnnkit.cli import main
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.metrics import read_metrics

pytestmark = pytest.mark.usefixtures("one_thread")

USAGE, FAILURE = 2, 1
# fmt: off
TINY = ["--hidden", "8", "--batch-size", "8", "--validation-size", "16", "--task-option", "length=10"]
# fmt: on


@pytest.fixture(scope="module")
def elman_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``rnnkit train --task adding --cell elman --steps 20``, validating every 10 steps."""
    run_dir = tmp_path_factory.mktemp("elman") / "run"
    argv = ["train", "--task", "adding", "--cell", "elman", "--steps", "20", "--eval-every", "10"]
    assert main([*argv, "--out", str(run_dir), *TINY, "--no-progress"]) == 0
    return run_dir


def assert_png(path: Path) -> None:
    height, width, _ = matplotlib.image.imread(path).shape
    assert height > 100 and width > 100


def table_value(out: str, label: str) -> float:
    """The number at the end of the summary row that starts with ``label``."""
    (row,) = [line for line in out.splitlines() if line.startswith(label)]
    return float(row.split()[-1])


def test_training_records_the_spectral_radius_at_every_validation(elman_run: Path) -> None:
    validations = [r for r in read_metrics(elman_run / "metrics.jsonl") if "val_loss" in r]
    assert [r["step"] for r in validations] == [10, 20]
    weight = load_checkpoint(elman_run).model_state["rnn.weight_hh_l0"].double().numpy()
    expected = np.abs(np.linalg.eigvals(weight)).max()
    assert validations[-1]["spectral_radius_rnn_l0"] == pytest.approx(expected, rel=1e-5)
    assert validations[0]["spectral_radius_rnn_l0"] != validations[-1]["spectral_radius_rnn_l0"]  # it trained


def test_diagnose_a_run_directory(elman_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run_cli(capsys, "diagnose", elman_run, "--out", tmp_path, "--batch-size", "4")
    assert status == 0, err
    for name in ("gradient_flow.png", "eigenvalues.png"):
        assert_png(tmp_path / name)
    assert out.startswith("elman after 20 steps, layer 0, adding batch of 4, T = 10")
    weight = load_checkpoint(elman_run).model_state["rnn.weight_hh_l0"].double().numpy()
    radius, singular = (float(v) for v in next(l for l in out.splitlines() if l.startswith("hh*")).split()[1:3])
    assert radius == pytest.approx(np.abs(np.linalg.eigvals(weight)).max(), abs=1e-4)
    assert singular == pytest.approx(np.linalg.norm(weight, 2), abs=1e-4)
    first, last = table_value(out, "gradient norm at the first"), table_value(out, "gradient norm at the last")
    assert table_value(out, "ratio first / last") == pytest.approx(first / last, rel=1e-3)
    assert table_value(out, "bound") == pytest.approx(singular**10, rel=1e-3)  # tanh: lambda_phi = 1
    assert "gate saturation" not in out  # Elman has no gates


def test_diagnose_a_fresh_lstm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["diagnose", "--cell", "lstm", "--hidden", "6", "--task-option", "length=8", "--loss", "sum"]
    status, out, err = run_cli(capsys, *argv, "--out", tmp_path)
    assert status == 0, err
    assert [line.split()[0] for line in out.splitlines()[2:6]] == ["i", "f", "g*", "o"]
    assert out.startswith("lstm at initialisation, layer 0, adding batch of 32, T = 8, loss summed over steps")
    # gate_saturation's counts are tested in tests/diagnostics; here: one line per gated layer, every gate
    saturation = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("gate saturation of")]
    assert len(saturation) == 2  # rnnkit train's default of two layers
    for line in saturation:
        fractions = dict(item.split() for item in line.split(", "))
        assert list(fractions) == ["i", "f", "o"] and all(0.0 <= float(v) <= 1.0 for v in fractions.values())
    for name in ("gradient_flow.png", "eigenvalues.png"):
        assert_png(tmp_path / name)


def test_diagnose_a_language_model_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    run_dir = tmp_path / "run"
    argv = ["train", "--data", text, "--out", run_dir, "--cell", "gru", "--hidden", "8", "--steps", "3",
            "--seq-len", "12", "--batch-size", "4", "--no-progress"]
    assert run_cli(capsys, *argv)[0] == 0
    status, out, err = run_cli(capsys, "diagnose", run_dir, "--out", tmp_path / "out", "--batch-size", "5")
    assert status == 0, err
    assert out.startswith("gru after 3 steps, layer 0, 5 windows of the validation text, T = 12, loss at the last step")
    assert [line.split()[0] for line in out.splitlines()[2:5]] == ["r", "z", "n*"]
    assert sum(line.startswith("gate saturation of") for line in out.splitlines()) == 2  # two layers
    for name in ("gradient_flow.png", "eigenvalues.png"):
        assert_png(tmp_path / "out" / name)


def test_plot_draws_loss_gradient_norm_and_spectral_radius(
    elman_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(capsys, "plot", elman_run, "--out", tmp_path)
    assert status == 0, err
    for name in ("loss.png", "grad_norm.png", "spectral_radius.png"):
        assert_png(tmp_path / name)
        assert str(tmp_path / name) in out


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["diagnose", "{missing}"], FAILURE, "does not exist"),
        (["diagnose", "{file}"], FAILURE, "is not a run directory"),
        (["plot", "{missing}"], FAILURE, "expected a run directory holding metrics.jsonl"),
        (["diagnose"], USAGE, "give a run directory DIR or a fresh model's --cell"),
        (["diagnose", "{missing}", "--cell", "lstm"], USAGE, "--cell describes a fresh model"),
        (["diagnose", "--cell", "lstm", "--layers", "1", "--layer", "3"], FAILURE, "expected a layer in [0, 1), got 3"),
    ],
    ids=["missing-dir", "file", "plot-missing", "nothing", "dir-and-cell", "layer"],
)
def test_bad_input_is_one_line(
    argv: list[str], status: int, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("not a run")
    paths = {"missing": tmp_path / "missing", "file": tmp_path / "file"}
    argv = [a.format(**paths) for a in argv]
    got, out, err = run_cli(capsys, *argv, "--out", tmp_path / "out") if argv[0] == "diagnose" else run_cli(capsys, *argv)
    assert got == status
    assert message in err and len(err.strip().splitlines()) == 1 and out == ""
