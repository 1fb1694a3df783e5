"""The activation page in a real browser: headless Chromium loads it without errors, draws it,
and colours each character by the selected cell's activation through the colour map.

Needs Debian's ``chromium`` package (``make test`` installs it where it can); skipped without it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from headless_chromium import CHROMIUM, Browser
from PIL import Image

from rnnkit.diagnostics.activation_page import activation_page, colour_map
from rnnkit.diagnostics.activations import CellActivations, record_activations
from rnnkit.models.language_model import LanguageModel

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found: apt-get install chromium (make test tries)"),
    pytest.mark.usefixtures("one_thread"),
]

TEXT = 'He said "go (now)" and\n    left [quietly].\n' * 6


@pytest.fixture(scope="module")
def cells() -> list[CellActivations]:
    torch.manual_seed(0)
    chars = sorted(set(TEXT))
    model = LanguageModel(len(chars), "gru", hidden_size=12, num_layers=2)
    return record_activations(model, torch.tensor([chars.index(c) for c in TEXT]).view(-1, 1))


@pytest.fixture(scope="module")
def page(cells: list[CellActivations], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Browser, Path]]:
    """The page, open in one browser for the module's tests; and the folder it lies in."""
    folder = tmp_path_factory.mktemp("browser")
    html = folder / "page.html"
    html.write_text(activation_page(TEXT, cells, title="browser test"), encoding="utf-8")
    with Browser(folder / "profile") as browser:
        browser.open(html.as_uri())
        yield browser, folder


def rendered_colour(browser: Browser, t: int) -> tuple[int, int, int]:
    """The background colour the browser computed for character ``t``."""
    css = browser.evaluate(f"getComputedStyle(document.getElementById('c{t}')).backgroundColor")
    assert css.startswith("rgb(")
    return tuple(int(part) for part in css[4:-1].split(","))


def assert_shows(browser: Browser, cells: list[CellActivations], cell: int, unit: int) -> None:
    """Every tenth character has the colour of ``cell``'s ``unit`` there, through the colour map;
    one step of 255 apart at most, as the page keeps 4 decimals of each activation."""
    for t in range(0, len(TEXT), 10):
        expected = colour_map(float(cells[cell].outputs[t, 0, unit]))
        got = rendered_colour(browser, t)
        assert max(abs(a - b) for a, b in zip(got, expected)) <= 1, (t, got, expected)


def test_the_page_loads_without_console_errors(page: tuple[Browser, Path]) -> None:
    browser, _ = page
    assert browser.console_errors == []
    assert browser.evaluate("document.querySelectorAll('#text span').length") == len(TEXT)
    assert browser.evaluate("document.getElementById('text').textContent") == TEXT


def test_the_screenshot_is_not_blank(page: tuple[Browser, Path]) -> None:
    """The drawn page has the text's colours: many distinct colours, reds and blues among them."""
    browser, folder = page
    png = folder / "page.png"
    browser.screenshot(png)
    with Image.open(png) as image:
        assert image.format == "PNG" and image.size[0] >= 800 and image.size[1] >= 600
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert len(colours) > 50
    assert any(r > g + 40 and r > b + 40 for _, (r, g, b) in colours)  # reddish: positive activations
    assert any(b > r + 40 and b > g + 40 for _, (r, g, b) in colours)  # bluish: negative ones


def test_the_characters_have_the_selected_cells_colours(page: tuple[Browser, Path], cells: list[CellActivations]) -> None:
    """At first the page selects the best cell for "inside quotes"; choosing a layer and a cell
    in the controls repaints the text with that cell's activations."""
    browser, _ = page
    data = json.loads(browser.evaluate("JSON.stringify(DATA.ranking['inside quotes'][0])"))
    assert_shows(browser, cells, data["cell"], data["unit"])
    browser.evaluate(
        "(() => { const s = document.getElementById('cell'); s.value = '1'; s.dispatchEvent(new Event('change'));"
        " const u = document.getElementById('unit'); u.value = '7'; u.dispatchEvent(new Event('input')); })()"
    )
    assert_shows(browser, cells, 1, 7)


def test_clicking_a_listed_cell_selects_it(page: tuple[Browser, Path], cells: list[CellActivations]) -> None:
    """The last cell listed for "bracket depth": after a click, the controls and the text show it."""
    browser, _ = page
    entry = json.loads(browser.evaluate("JSON.stringify(DATA.ranking['bracket depth'].at(-1))"))
    clicked = browser.evaluate(
        "(() => { const rows = [...document.querySelectorAll('#ranking tr')]"
        ".filter(r => r.dataset.feature === 'bracket depth');"
        " const row = rows[rows.length - 1]; row.querySelector('button').click();"
        " return [document.getElementById('cell').value, document.getElementById('unit').value,"
        " row.classList.contains('selected')]; })()"
    )
    assert clicked == [str(entry["cell"]), str(entry["unit"]), True]
    assert_shows(browser, cells, entry["cell"], entry["unit"])
    gate_rows = browser.evaluate("document.querySelectorAll('#cellgates tr').length")
    assert gate_rows == 1 + len(cells[entry["cell"]].gates)  # a header, then GRU's r and z
    assert browser.console_errors == []
