"""``rnnkit esn --task mackey-glass``: fits, prints the forecast error, writes the plot; bad input is one line."""

from __future__ import annotations

import re

import matplotlib.image
import pytest

from rnnkit.cli import main

SMALL = ["--size", "200", "--train", "1000", "--washout", "200", "--horizon", "30"]


def test_fits_forecasts_and_plots(tmp_path, capsys):
    png = tmp_path / "forecast.png"
    assert main(["esn", "--task", "mackey-glass", *SMALL, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    error = float(re.search(r"after 30 free steps NRMSE (\S+)", out).group(1))
    assert error < 0.05  # a 200-unit reservoir already forecasts 30 steps closely (measured 2.4e-3)
    assert matplotlib.image.imread(png).shape[:2] == (550, 800)


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        (["--size", "0"], 2, "must be a positive integer, got 0"),
        (["--task", "lorenz"], 2, "invalid choice: 'lorenz'"),
        (["--leak", "2"], 1, r"leak must lie in \(0, 1\], got 2.0"),
        (["--washout", "1000"], 1, "washout must be shorter than train"),
    ],
    ids=["size", "task", "leak", "washout"],
)
def test_bad_input_is_one_line(argv, status, message, tmp_path, capsys):
    assert main(["esn", *SMALL, "--png", str(tmp_path / "x.png"), *argv]) == status
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err


def test_an_unwritable_plot_is_one_line(tmp_path, capsys):
    assert main(["esn", *SMALL, "--png", str(tmp_path / "missing" / "x.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err, err
