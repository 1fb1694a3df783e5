"""``rnnkit sample`` and ``rnnkit eval`` on a trained run: reproducible and equal to the library."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.data.corpus import split_train_validation
from rnnkit.decoding import SamplingOptions, generate
from rnnkit.training.evaluation import evaluate_loss
from rnnkit.training.loading import load_trained_model

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20  # 900 characters
STEPS, VALIDATION_STREAMS, SEQ_LEN = 30, 4, 16
EVAL_LINE = re.compile(
    r"(\d+\.\d{4}) nats/char  (\d+\.\d{4}) bits/char  \(([\d,]+) characters, step (\d+)\)"
)



@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sample_and_eval")
    data = root / "fox.txt"
    data.write_text(TEXT, encoding="utf-8")
    # fmt: off
    status = main([
        "train", "--data", str(data), "--out", str(root / "run"), "--hidden", "16", "--layers", "1",
        "--batch-size", "4", "--seq-len", str(SEQ_LEN),
        "--validation-streams", str(VALIDATION_STREAMS),
        "--steps", str(STEPS), "--eval-every", "10", "--lr", "0.01", "--no-progress",
    ])
    # fmt: on
    assert status == 0
    return root / "run"


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> str:
    """Run the command in-process; it must succeed silently on stderr. Returns stdout."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert err == ""
    return out


def library_sample(
    run_dir: Path, prime: str, length: int, options: SamplingOptions, seed: int
) -> str:
    trained = load_trained_model(run_dir)
    generator = torch.Generator().manual_seed(seed)
    ids = generate(trained.model, trained.vocabulary.encode(prime), length, options, generator)
    return trained.vocabulary.decode(list(ids))


# ------------------------------------------------------------------------------------------------
# sample


def test_same_seed_same_sample(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = cli(capsys, "sample", run_dir, "--seed", "3", "--length", "200")
    second = cli(capsys, "sample", run_dir, "--seed", "3", "--length", "200")
    assert first == second


def test_different_seed_different_sample(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    first = cli(capsys, "sample", run_dir, "--seed", "3", "--length", "200")
    other = cli(capsys, "sample", run_dir, "--seed", "4", "--length", "200")
    assert first != other


def test_sample_length_and_characters(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = cli(capsys, "sample", run_dir, "--seed", "3", "--length", "200")
    assert len(out) == 200 + 1  # the default prime is not echoed; a newline ends the output
    assert out.endswith("\n")
    assert set(out) <= set(TEXT)


def test_seeded_sample_equals_library_generate(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = cli(
        capsys,
        "sample",
        run_dir,
        "--seed",
        "3",
        "--length",
        "50",
        "--prime",
        "the ",
        "--temperature",
        "0.8",
    )
    expected = library_sample(run_dir, "the ", 50, SamplingOptions(temperature=0.8), seed=3)
    assert out == "the " + expected + "\n"


def test_prime_is_echoed_first(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prime = "the lazy dog"
    out = cli(capsys, "sample", run_dir, "--prime", prime, "--seed", "1", "--length", "200")
    assert out.startswith(prime)
    assert len(out) == len(prime) + 200 + 1


def test_greedy_ignores_the_seed(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    outputs = {
        cli(capsys, "sample", run_dir, "--greedy", "--length", "100", *seed)
        for seed in (["--seed", "1"], ["--seed", "2"], [])
    }
    assert len(outputs) == 1
    (out,) = outputs
    assert out == library_sample(run_dir, "\n", 100, SamplingOptions(greedy=True), seed=0) + "\n"


def test_top_k_1_equals_greedy(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    greedy = cli(capsys, "sample", run_dir, "--greedy", "--prime", "a ", "--length", "100")
    for seed in ("1", "2"):
        top1 = cli(
            capsys,
            "sample",
            run_dir,
            "--top-k",
            "1",
            "--prime",
            "a ",
            "--length",
            "100",
            "--seed",
            seed,
        )
        assert top1 == greedy


# ------------------------------------------------------------------------------------------------
# eval


def parse_eval(out: str) -> tuple[float, float, int, int]:
    match = EVAL_LINE.fullmatch(out.strip())
    assert match, out
    return float(match[1]), float(match[2]), int(match[3].replace(",", "")), int(match[4])


def test_eval_on_a_file(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text = "the lazy dog jumps over the quick brown fox.\n" * 5
    data = tmp_path / "other.txt"
    data.write_text(text, encoding="utf-8")
    nats, bits, characters, step = parse_eval(cli(capsys, "eval", run_dir, "--data", data))
    assert characters == len(text)
    assert step == STEPS
    # Both are printed to 4 decimals: bits = nats / ln 2 up to that rounding.
    assert bits == pytest.approx(nats / math.log(2), abs=0.5e-4 * (1 + 1 / math.log(2)))
    trained = load_trained_model(run_dir)
    expected = evaluate_loss(
        trained.model, trained.vocabulary.encode(text), VALIDATION_STREAMS, SEQ_LEN
    )
    assert nats == pytest.approx(expected, abs=0.5e-4)


def test_eval_defaults_to_validation_split(
    run_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    last_val_loss = [r["val_loss"] for r in records if "val_loss" in r][-1]
    _, validation_text = split_train_validation(TEXT, 0.1)
    for extra in ([], ["--batch-size", str(VALIDATION_STREAMS)]):
        nats, bits, characters, step = parse_eval(cli(capsys, "eval", run_dir, *extra))
        assert characters == len(validation_text)
        assert step == STEPS
        assert nats == pytest.approx(last_val_loss, abs=0.5e-4)
        assert bits == pytest.approx(last_val_loss / math.log(2), abs=0.5e-4)


def test_eval_batch_size_is_used(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Fewer streams carry the state over longer stretches, so the loss differs a little."""
    trained = load_trained_model(run_dir)
    _, validation_text = split_train_validation(TEXT, 0.1)
    ids = trained.vocabulary.encode(validation_text)
    one_stream = evaluate_loss(trained.model, ids, 1, SEQ_LEN)
    assert abs(one_stream - evaluate_loss(trained.model, ids, VALIDATION_STREAMS, SEQ_LEN)) > 1e-3
    nats, _, _, _ = parse_eval(cli(capsys, "eval", run_dir, "--batch-size", "1"))
    assert nats == pytest.approx(one_stream, abs=0.5e-4)
