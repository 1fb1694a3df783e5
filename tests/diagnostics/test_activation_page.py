"""The activation page's contents, and ``rnnkit viz`` on a trained run."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main
from rnnkit.diagnostics.activation_page import DIGITS, activation_page, colour_map, page_data
from rnnkit.diagnostics.activations import record_activations, saturated_fractions
from rnnkit.diagnostics.text_features import correlations, text_features
from rnnkit.models.language_model import LanguageModel
from rnnkit.training.loading import load_trained_model

pytestmark = pytest.mark.usefixtures("one_thread")

TEXT = 'def f(x):\n    return (a[b] + "q(x)") {c}\n' * 12  # about 500 characters
DATA_SCRIPT = re.compile(r'<script type="application/json" id="data">(.*?)</script>', re.S)


def assert_rounded(shown: list, exact: torch.Tensor) -> None:
    """``shown`` is ``exact`` rounded to the page's DIGITS decimals."""
    tolerance = 0.5 * 10.0**-DIGITS + 1e-12  # half a last digit, and the float64 round-off
    torch.testing.assert_close(torch.tensor(shown, dtype=torch.float64), exact.double(), atol=tolerance, rtol=0)


def embedded_data(page: str) -> dict:
    """The JSON object the page carries (the only <script type="application/json">)."""
    (payload,) = DATA_SCRIPT.findall(page)
    return json.loads(payload)


@pytest.mark.parametrize(
    ("value", "rgb"),
    [(-1.0, (0, 0, 255)), (-0.5, (128, 128, 255)), (0.0, (255, 255, 255)), (0.25, (255, 191, 191)),
     (1.0, (255, 0, 0)), (3.0, (255, 0, 0)), (-7.0, (0, 0, 255))],
)  # fmt: skip
def test_colour_map_is_blue_white_red(value: float, rgb: tuple[int, int, int]) -> None:
    """255 (1 - |v|) rounded half up in the two fading channels, clipped to [-1, 1]."""
    assert colour_map(value) == rgb


@pytest.fixture(scope="module")
def recorded() -> tuple[str, list]:
    torch.manual_seed(0)
    chars = sorted(set(TEXT))
    model = LanguageModel(len(chars), "lstm", hidden_size=8, num_layers=2)
    ids = torch.tensor([chars.index(c) for c in TEXT])
    return TEXT, record_activations(model, ids.view(-1, 1))


def test_page_data_holds_the_recording(recorded: tuple[str, list]) -> None:
    """Every unit's activations (to 4 decimals), the gate fractions, and the ranking's r, which
    is each listed unit's correlation with its feature."""
    text, cells = recorded
    data = page_data(text, cells, top=3)
    assert data["text"] == text
    assert [c["name"] for c in data["cells"]] == ["rnn layer 0", "rnn layer 1"]
    for cell, shown in zip(cells, data["cells"]):
        assert_rounded(shown["values"], cell.outputs[:, 0].T)  # (H, T)
        for gate, fractions in shown["gates"].items():
            low, high = saturated_fractions(cell.gates[gate])
            assert_rounded(fractions["low"], low)
            assert_rounded(fractions["high"], high)
    features = text_features(text)
    for name in data["features"]:
        ranking = data["ranking"][name]
        assert len(ranking) == 3
        for entry in ranking:
            r = correlations(cells[entry["cell"]].outputs[:, 0], features[name])[entry["unit"]]
            assert_rounded(entry["r"], r)


def test_page_is_self_contained(recorded: tuple[str, list]) -> None:
    """Nothing to fetch: no src or href attribute, no URL, no CSS import."""
    text, cells = recorded
    page = activation_page(text, cells, title="run")
    assert not re.search(r"\b(src|href)\s*=|https?://|@import|url\(", page)


def test_the_text_cannot_break_out_of_the_page(recorded: tuple[str, list]) -> None:
    """A text with ``</script>`` and markup comes back unchanged from the embedded data without
    adding an element; the title is escaped."""
    _, cells = recorded
    text = '</script><img src=x onerror="alert(1)"><!--'
    text = (text * (len(TEXT) // len(text) + 1))[: len(TEXT)]  # as many steps as were recorded
    page = activation_page(text, cells, title="<b>run</b>")
    assert embedded_data(page)["text"] == text
    assert "<title>&lt;b&gt;run&lt;/b&gt;</title>" in page
    assert (page.count("<script"), page.count("<img"), page.count("<!--")) == (2, 0, 1)  # 1: the template's comment


def test_page_data_refuses_a_recording_of_another_length(recorded: tuple[str, list]) -> None:
    text, cells = recorded
    with pytest.raises(ValueError, match=f"expected recordings of {len(text) - 1} steps"):
        page_data(text[:-1], cells)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("viz")
    data = root / "code.txt"
    data.write_text(TEXT, encoding="utf-8")
    # fmt: off
    status = main([
        "train", "--data", str(data), "--out", str(root / "run"), "--hidden", "8", "--layers", "2",
        "--batch-size", "4", "--seq-len", "16", "--steps", "5", "--eval-every", "5", "--no-progress",
    ])
    # fmt: on
    assert status == 0
    return root / "run"


def test_viz_writes_the_page_of_the_trained_model(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The page shows the run's model on the text: its values are the library's recording."""
    text = TEXT[:200]
    (tmp_path / "text.txt").write_text(text, encoding="utf-8")
    capsys.readouterr()
    status = main(["viz", str(run_dir), "--text", str(tmp_path / "text.txt"), "--out", str(tmp_path / "page.html")])
    out, err = capsys.readouterr()
    assert (status, err) == (0, "")
    assert "wrote" in out
    data = embedded_data((tmp_path / "page.html").read_text(encoding="utf-8"))
    trained = load_trained_model(run_dir)
    cells = record_activations(trained.model, trained.vocabulary.encode(text).view(-1, 1))
    assert data["text"] == text
    assert len(data["cells"]) == 2
    for cell, shown in zip(cells, data["cells"]):
        assert_rounded(shown["values"], cell.outputs[:, 0].T)


def test_viz_shows_the_first_max_chars(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    args = ["--text", str(tmp_path / "text.txt"), "--out", str(tmp_path / "page.html"), "--max-chars", "50"]
    capsys.readouterr()
    assert main(["viz", str(run_dir), *args]) == 0
    assert f"showing the first 50 of the {len(TEXT)} characters" in capsys.readouterr().err
    assert embedded_data((tmp_path / "page.html").read_text(encoding="utf-8"))["text"] == TEXT[:50]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.txt", None, "missing.txt does not exist"),
        (".", None, "is a directory"),
        ("odd.txt", "déf", "outside the model's vocabulary: 'é'"),
    ],
    ids=["missing", "directory", "unknown-character"],
)
def test_viz_bad_text_is_one_line_exit_1(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, message: str
) -> None:
    text = tmp_path / name
    if content is not None:
        text.write_text(content, encoding="utf-8")
    capsys.readouterr()
    status = main(["viz", str(run_dir), "--text", str(text), "--out", str(tmp_path / "page.html")])
    err = capsys.readouterr().err
    assert status == 1
    assert err.startswith("rnnkit viz: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "page.html").exists()
