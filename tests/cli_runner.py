"""Running the ``rnnkit`` command in-process, for the CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from rnnkit.cli import main


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    """``main(argv)`` in-process: (exit status, stdout, stderr). An exception is a failure."""
    args = [str(a) for a in argv]
    capsys.readouterr()  # drop whatever fixtures printed
    try:
        status = main(args)
    except Exception as error:  # the user would have seen a traceback
        raise AssertionError(
            f"rnnkit {' '.join(args)} raised {error!r} instead of printing one line"
        ) from error
    out, err = capsys.readouterr()
    return status, out, err
