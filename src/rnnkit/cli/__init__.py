"""The ``rnnkit`` command: one console script, one module per subcommand.

Each subcommand module exposes ``add_parser(subparsers)`` and ``run(args) -> int`` and can be
called in-process (``main(["train", ...])``). A problem with the user's input is reported as one
line on standard error with a nonzero exit status (2 for command-line usage, 1 otherwise), never
as a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from ..errors import RnnkitError
from . import caption, diagnose, esn, evaluate, plot, prepare, sample, train, viz

SUBCOMMANDS = {
    "train": train, "sample": sample, "eval": evaluate, "esn": esn, "diagnose": diagnose, "plot": plot, "viz": viz,
    "caption": caption, "prepare": prepare,
}


class UsageError(Exception):
    """A command line that does not parse; its message is one line."""


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (``rnnkit train: error: ...``), exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: error: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="rnnkit", description="Recurrent neural networks, the classic syllabus.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(subparsers, name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    logging.basicConfig(level=logging.WARNING, format="rnnkit: %(message)s")
    try:
        args = build_parser().parse_args(argv)
    except UsageError as error:
        print(error, file=sys.stderr)
        return 2
    try:
        return SUBCOMMANDS[args.command].run(args)
    except RnnkitError as error:
        print(f"rnnkit {args.command}: error: {error}", file=sys.stderr)
        return 1
