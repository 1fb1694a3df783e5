"""``rnnkit prepare`` and training from its directory: the same run as from the text file, resumed,
sampled and evaluated alike, and one-line errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from cli_runner import run_cli

from rnnkit.cli import main
from rnnkit.training.config import TrainConfig, config_from_dict

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

# \r\n line endings and characters of two and three UTF-8 bytes: normalised and encoded alike.
TEXT = "".join(f"Line {i}: the quick brown fox — naïve café {i % 7}\r\n" for i in range(40))
# fmt: off
TINY = [
    "--cell", "lstm", "--hidden", "16", "--layers", "2", "--dropout", "0.1", "--batch-size", "4",
    "--seq-len", "16", "--validation-streams", "4", "--seed", "3", "--no-progress",
]
# fmt: on
RUN = ["--steps", "8", "--eval-every", "4", "--checkpoint-every", "4"]


@pytest.fixture(scope="module")
def text_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("text") / "fox.txt"
    path.write_bytes(TEXT.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory, text_file: Path) -> Path:
    directory = tmp_path_factory.mktemp("prepared") / "fox"
    assert main(["prepare", "--data", str(text_file), "--out", str(directory), "--no-progress"]) == 0
    return directory


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, text_file: Path, prepared: Path) -> tuple[Path, Path]:
    """The same 8 steps trained (from the text file, from the prepared directory)."""
    root = tmp_path_factory.mktemp("runs")
    for data, name in ((text_file, "from-file"), (prepared, "from-dir")):
        assert main(["train", "--data", str(data), "--out", str(root / name), *TINY, *RUN]) == 0
    return root / "from-file", root / "from-dir"


def records(run_dir: Path) -> list[dict]:
    """metrics.jsonl without the wall-clock measures, which differ from run to run."""
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    timed = ("seconds", "chars_per_second")
    return [{key: value for key, value in json.loads(line).items() if key not in timed} for line in lines]


def test_prepare_shows_progress_on_stderr_and_a_summary(
    text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = run_cli(capsys, "prepare", "--data", text_file, "--out", tmp_path / "prepared")
    assert status == 0
    assert "pass 1/2: characters" in err and "pass 2/2: tokens" in err and "100%" in err
    text = TEXT.replace("\r\n", "\n")
    characters, split = len(text), len(text) - len(text) // 10
    assert out.splitlines() == [
        f"{characters:,} tokens ({len(set(text))} distinct characters, uint8) in {tmp_path / 'prepared'}: "
        f"{split:,} to train, {characters - split:,} to validate",
        f"train with: rnnkit train --data {tmp_path / 'prepared'} --out RUN_DIR",
    ]


def test_training_from_the_directory_is_training_from_the_file(runs: tuple[Path, Path], prepared: Path) -> None:
    """Same seed, same split: every update's loss and gradient norm, and every validation, equal."""
    from_file, from_dir = runs
    assert records(from_dir) == records(from_file)
    assert sum("val_loss" in record for record in records(from_dir)) == 2
    config = config_from_dict(TrainConfig, json.loads((from_dir / "config.json").read_text(encoding="utf-8")))
    assert (config.data.path, config.data.validation_fraction) == (str(prepared.resolve()), 0.1)


def test_resume_sample_eval_and_diagnose_of_a_directory_run(
    runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A run from the directory continues, samples, evaluates and is diagnosed (on windows of its
    validation text) as the file's run is."""
    outputs = []
    for run in runs:
        copy = tmp_path / run.name
        shutil.copytree(run, copy)
        assert run_cli(capsys, "train", "--resume", copy, "--steps", "12", "--no-progress")[0] == 0
        evaluated = run_cli(capsys, "eval", copy)
        sampled = run_cli(capsys, "sample", copy, "--length", "40", "--seed", "5")
        diagnosed = run_cli(capsys, "diagnose", copy, "--batch-size", "2", "--out", tmp_path / f"{run.name}-plots")
        assert evaluated[0] == sampled[0] == diagnosed[0] == 0
        outputs.append((records(copy), evaluated[1], sampled[1], diagnosed[1].replace(run.name, "RUN")))
    assert outputs[0] == outputs[1]
    assert [record["step"] for record in outputs[1][0] if "val_loss" in record] == [4, 8, 12]


# ------------------------------------------------------------------------------------------------
# Errors: one line each


def assert_one_line(result: tuple[int, str, str], status: int, fragment: str) -> None:
    code, _, err = result
    assert (code, len(err.splitlines())) == (status, 1), err
    assert err.startswith("rnnkit") and fragment in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [(None, "does not exist"), (b"", "is empty"), (b"caf\xe9\n", "is not valid UTF-8 (first bad byte at offset 3)")],
    ids=["missing", "empty", "latin-1"],
)
def test_prepare_refuses_unusable_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes | None, problem: str
) -> None:
    path = tmp_path / "data.txt"
    if content is not None:
        path.write_bytes(content)
    result = run_cli(capsys, "prepare", "--data", path, "--out", tmp_path / "prepared", "--no-progress")
    assert_one_line(result, 1, f"data file {path} {problem}")


def test_prepare_refuses_a_directory_in_use(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.md").write_text("mine", encoding="utf-8")
    result = run_cli(capsys, "prepare", "--data", text_file, "--out", tmp_path / "busy", "--no-progress")
    assert_one_line(result, 1, "is not empty: it holds other files")


def test_prepare_refuses_a_bad_fraction(text_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "prepare", "--data", text_file, "--out", tmp_path / "p", "--validation-fraction", "1")
    assert_one_line(result, 2, "must be in [0, 1), got 1")


def test_train_keeps_the_prepared_split(prepared: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "train", "--data", prepared, "--out", tmp_path / "run", "--validation-fraction", "0.2", *TINY)
    assert_one_line(result, 2, "was prepared with 0.1, got 0.2; the split is fixed by rnnkit prepare --validation-fraction")
    assert not (tmp_path / "run").exists()


def test_train_refuses_a_directory_not_prepared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "texts").mkdir()
    result = run_cli(capsys, "train", "--data", tmp_path / "texts", "--out", tmp_path / "run", *TINY)
    assert_one_line(result, 1, "is not a corpus prepared by rnnkit prepare: it has no corpus.json")
