"""``rnnkit caption``: a run trained by ``rnnkit train --task captions`` names what PNG files show,
prints the library's greedy and beam-search captions, and refuses bad files and flags in one line."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.captions import load_image, render, save_image
from rnnkit.data.tasks import CaptionsTask
from rnnkit.decoding import SamplingOptions
from rnnkit.models.captioner import beam_captions, sample_captions
from rnnkit.training.loading import load_trained_task_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

OPTIONS = {"image_size": 16, "max_shapes": 1, "grid": 1, "kinds": 1}
TASK = CaptionsTask(**OPTIONS)
USAGE, ERROR = 2, 1


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("caption")
    options = [arg for key, value in OPTIONS.items() for arg in ("--task-option", f"{key}={value}")]
    # fmt: off
    status = main([
        "train", "--task", "captions", *options, "--out", str(root / "run"), "--hidden", "32",
        "--cell", "gru", "--conditioning", "both", "--steps", "250", "--lr", "0.005",
        "--validation-size", "100", "--eval-every", "250", "--no-progress",
    ])
    # fmt: on
    assert status == 0
    return root / "run"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, tuple[str, ...]]]:
    """Four scenes as PNG files, with their references."""
    root = tmp_path_factory.mktemp("images")
    scenes = TASK.scenes(4, torch.Generator().manual_seed(7))
    files = []
    for i, scene in enumerate(scenes):
        save_image(render(scene, TASK.image_size, TASK.grid), root / f"scene{i}.png")
        files.append((root / f"scene{i}.png", scene.references()))
    return files


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_greedy_captions_are_the_library_s_and_name_the_images(run_dir, images, capsys):
    paths = [path for path, _ in images]
    status, out, err = cli(capsys, "caption", run_dir, *paths)
    assert (status, err) == (0, "")
    model = load_trained_task_model(run_dir).model
    pixels = torch.stack([load_image(path, TASK.image_size) for path in paths])
    expected = sample_captions(model, pixels, SamplingOptions(greedy=True))
    assert out.splitlines() == [f"{path}\t{caption}" for path, caption in zip(paths, expected)]
    assert all(caption in references for caption, (_, references) in zip(expected, images))


def test_beam_n_best(run_dir, images, capsys):
    path = images[0][0]
    status, out, err = cli(capsys, "caption", run_dir, path, "--beam", "4", "--n-best", "3")
    assert (status, err) == (0, "")
    found = beam_captions(load_trained_task_model(run_dir).model, load_image(path, TASK.image_size)[None], 4, 3)[0]
    assert out.splitlines() == [f"{score:.4f}\t{text}" for text, score in found]
    scores = [float(line.split("\t")[0]) for line in out.splitlines()]
    assert scores == sorted(scores, reverse=True) and len(scores) == 3


@pytest.mark.parametrize(
    ("make", "message"),
    [
        pytest.param(None, r"expected an image file, got \S*nothing\.png, which does not exist", id="missing"),
        pytest.param(lambda p: p.write_bytes(b"GIF89a not really"), r"expected a PNG image, got \S*bad\.png, which cannot be read", id="not-an-image"),
        pytest.param(lambda p: save_image(torch.rand(3, 32, 32), p), r"expected a 16x16 image, got \S*bad\.png of 32x32", id="size"),
    ],
)  # fmt: skip
def test_bad_image_files_are_one_line_errors(run_dir, tmp_path, capsys, make, message):
    path = tmp_path / ("nothing.png" if make is None else "bad.png")
    if make is not None:
        make(path)
    status, out, err = cli(capsys, "caption", run_dir, path)
    assert (status, out) == (ERROR, "")
    assert err.count("\n") == 1 and err.startswith("rnnkit caption: error: ")
    assert re.search(message, err)


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        pytest.param(["--n-best", "2"], "--n-best needs --beam", id="n-best"),
        pytest.param(["--beam", "2", "--n-best", "3"], r"--n-best must be at most --beam \(2\), got 3", id="too-many"),
        pytest.param(["--beam", "2", "--temperature", "0.5"], "cannot be combined with --temperature", id="sample"),
        pytest.param(["--seed", "1"], "--seed needs --temperature", id="seed"),
    ],
)
def test_contradictory_flags_are_usage_errors(run_dir, images, capsys, flags, message):
    status, out, err = cli(capsys, "caption", run_dir, images[0][0], *flags)
    assert (status, out) == (USAGE, "")
    assert re.search(message, err) and err.count("\n") == 1


def test_a_run_of_another_task_is_refused(tmp_path, images, capsys):
    status = main(["train", "--task", "parity", "--steps", "2", "--hidden", "4", "--out", str(tmp_path / "run"), "--no-progress"])
    assert status == 0
    status, out, err = cli(capsys, "caption", tmp_path / "run", images[0][0])
    assert (status, out) == (ERROR, "")
    assert re.fullmatch(r"rnnkit caption: error: expected a captioning run \(rnnkit train --task captions\), got \S+, a parity run\n", err)


def test_a_captioner_needs_batches_of_two_images(tmp_path, capsys):
    status, out, err = cli(capsys, "train", "--task", "captions", "--batch-size", "1", "--steps", "1", "--out", tmp_path / "run")
    assert (status, out) == (ERROR, "")
    assert err == "rnnkit train: error: a captioning task needs batches of at least 2 images (the encoder's batch norm), got 1\n"
