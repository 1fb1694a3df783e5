"""``rnnkit viz``: an HTML page of a text coloured by the activations of a trained model's cells.

The page (one self-contained file, open it in any browser) shows every layer's cells on the
text, the cells that best track quotes, the position in the line, bracket depth and
indentation, and how often each gate saturates (Karpathy, Johnson & Fei-Fei 2015).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.corpus import read_text_file
from ..diagnostics.activation_page import activation_page
from ..diagnostics.activations import record_activations
from ..errors import RnnkitError
from ..training.loading import load_trained_model
from .arguments import positive_int
from .train import refuse_task_run

DEFAULT_MAX_CHARS = 3000  # every unit's activation on every character goes into the page


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="an HTML page of a text coloured by cell activations", description=__doc__)
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="a run directory written by rnnkit train --corpus/--data")
    parser.add_argument("--text", metavar="FILE", required=True, help="UTF-8 text to show (characters of the model's vocabulary)")
    parser.add_argument("--out", metavar="PAGE", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--max-chars", type=positive_int, default=DEFAULT_MAX_CHARS, help=f"show the text's first N characters (default {DEFAULT_MAX_CHARS})")
    parser.add_argument("--top", type=positive_int, default=5, help="cells listed per feature (default 5)")


def run(args: argparse.Namespace) -> int:
    refuse_task_run(args.run_dir, "viz")
    text = read_text_file(args.text)
    if len(text) > args.max_chars:
        shown = f"the first {args.max_chars:,} of the {len(text):,} characters of {args.text}"
        print(f"rnnkit viz: showing {shown} (--max-chars)", file=sys.stderr)
        text = text[: args.max_chars]
    trained = load_trained_model(args.run_dir)
    ids = trained.vocabulary.encode(text, what=f"the text in {args.text}")
    cells = record_activations(trained.model, ids.view(-1, 1))  # (T, B=1)
    title = f"{args.run_dir.name}: {trained.config.model.cell} activations, step {trained.step}"
    page = activation_page(text, cells, title, args.top)
    try:
        args.out.write_text(page, encoding="utf-8")
    except OSError as error:
        raise RnnkitError(f"cannot write the page {args.out}: {error.strerror}") from None
    print(f"wrote {args.out} ({len(text):,} characters, {len(cells)} layer{'s' if len(cells) != 1 else ''})")
    return 0
