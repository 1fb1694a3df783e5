"""``rnnkit sample --beam K``: the library's beam search, printed; bad flags are usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.decoding import LanguageModelStepper, beam_search
from rnnkit.decoding.beam import Hypothesis
from rnnkit.training.loading import load_trained_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20  # 900 characters
USAGE = 2


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample_beam")
    data = root / "fox.txt"
    data.write_text(TEXT, encoding="utf-8")
    # fmt: off
    status = main([
        "train", "--data", str(data), "--out", str(root / "run"), "--hidden", "16", "--layers", "1",
        "--executor", "loop",  # the reference: no compiled kernels needed
        "--batch-size", "4", "--seq-len", "16", "--validation-streams", "4",
        "--steps", "30", "--eval-every", "30", "--lr", "0.01", "--no-progress",
    ])
    # fmt: on
    assert status == 0
    return root / "run"


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """Run the command in-process: (exit status, stdout, stderr)."""
    capsys.readouterr()  # drop what fixtures printed
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def library_beam(run_dir: Path, prime: str, beam: int, length: int, n_best: int) -> list[Hypothesis]:
    trained = load_trained_model(run_dir)
    prime_ids = trained.vocabulary.encode(prime).view(-1, 1)  # (P, 1)
    (found,) = beam_search(LanguageModelStepper(trained.model), prime_ids, beam, length, n_best=n_best)
    return found


def test_beam_prints_the_best_continuation(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(capsys, "sample", run_dir, "--beam", "4", "--length", "40", "--prime", "the ")
    assert (status, err) == (0, "")
    best = library_beam(run_dir, "the ", beam=4, length=40, n_best=1)[0]
    vocabulary = load_trained_model(run_dir).vocabulary
    assert out == "the " + vocabulary.decode(list(best.tokens)) + "\n"
    assert len(out) == len("the ") + 40 + 1


def test_beam_1_equals_greedy(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, greedy, _ = cli(capsys, "sample", run_dir, "--greedy", "--prime", "a ", "--length", "60")
    status, beam, err = cli(capsys, "sample", run_dir, "--beam", "1", "--prime", "a ", "--length", "60")
    assert (status, err) == (0, "")
    assert beam == greedy


def test_n_best_prints_sorted_scored_lines(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = cli(
        capsys, "sample", run_dir, "--beam", "5", "--n-best", "3", "--length", "30", "--prime", "fox"
    )
    assert (status, err) == (0, "")
    lines = [line.split("\t") for line in out.splitlines()]
    assert len(lines) == 3 and all(len(fields) == 2 for fields in lines)
    scores = [float(score) for score, _ in lines]
    texts = [json.loads(text) for _, text in lines]
    assert scores == sorted(scores, reverse=True) and len(set(texts)) == 3
    vocabulary = load_trained_model(run_dir).vocabulary
    expected = library_beam(run_dir, "fox", beam=5, length=30, n_best=3)
    assert texts == [vocabulary.decode(list(h.tokens)) for h in expected]
    assert scores == pytest.approx([h.score for h in expected], abs=0.5e-4)  # printed to 4 places


BAD_FLAGS = {
    # name -> (flags, what the one line must say)
    "beam-0": (["--beam", "0"], "must be a positive integer, got 0"),
    "beam-negative": (["--beam", "-3"], "must be a positive integer, got -3"),
    "beam-not-a-number": (["--beam", "wide"], "must be an integer, got 'wide'"),
    "beam-and-temperature": (["--beam", "3", "--temperature", "0.5"], "cannot be combined with --temperature"),
    "beam-and-top-k": (["--beam", "3", "--top-k", "2"], "cannot be combined with --top-k"),
    "beam-and-greedy": (["--beam", "3", "--greedy"], "cannot be combined with --greedy"),
    "n-best-above-beam": (["--beam", "2", "--n-best", "3"], "--n-best must be at most --beam (2), got 3"),
    "n-best-without-beam": (["--n-best", "2"], "--n-best needs --beam"),
    "n-best-0": (["--beam", "2", "--n-best", "0"], "must be a positive integer, got 0"),
}


@pytest.mark.parametrize("name", list(BAD_FLAGS), ids=list(BAD_FLAGS))
def test_bad_flags_are_usage_errors(name: str, run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flags, fragment = BAD_FLAGS[name]
    status, out, err = cli(capsys, "sample", run_dir, *flags)
    assert status == USAGE, err
    assert out == "" and "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith("rnnkit sample: error:") and fragment in line, line
