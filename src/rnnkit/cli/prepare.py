"""``rnnkit prepare``: encode a text corpus once into a memory-mapped token file and its vocabulary,
for ``rnnkit train --data DIR`` to train from without reading the text into memory.

Two streaming passes over the file (its characters, then its ids) in constant memory, with a
progress bar by bytes on standard error. The validation split is fixed here: the last
``--validation-fraction`` of the text, as ``rnnkit train`` splits a text file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..data.prepare import STAGES, prepare_corpus
from ..training.config import DataConfig
from .arguments import fraction


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="encode a large text once for training from disk", description=__doc__)
    parser.add_argument("--data", metavar="PATH", type=Path, required=True, help="a UTF-8 text file")
    parser.add_argument("--out", metavar="DIR", type=Path, required=True, help=(
        "the directory to write (new or empty, or a corpus prepared earlier from the same file, which is replaced)"))
    parser.add_argument("--validation-fraction", type=fraction, default=DataConfig.validation_fraction,
                        help="final part of the text held out for validation (default %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    size = args.data.stat().st_size if args.data.is_file() else 0
    # One bar over both passes (each reads the whole file), named after the pass under way.
    bar = tqdm(total=len(STAGES) * size, desc=_describe(STAGES[0]), unit="B", unit_scale=True, unit_divisor=1024,
               dynamic_ncols=True, file=sys.stderr, disable=args.no_progress)

    current = STAGES[0]

    def on_progress(stage: str, n_bytes: int) -> None:
        nonlocal current
        if stage != current:
            current = stage
            bar.set_description(_describe(stage))  # shown at once, however short the pass
        bar.update(n_bytes)

    try:
        corpus = prepare_corpus(args.data, args.out, args.validation_fraction, on_progress=on_progress)
    finally:
        bar.close()
    dtype = corpus.tokens.dtype.name
    print(
        f"{len(corpus):,} tokens ({len(corpus.vocabulary)} distinct characters, {dtype}) in {args.out}: "
        f"{corpus.split:,} to train, {len(corpus) - corpus.split:,} to validate"
    )
    print(f"train with: rnnkit train --data {args.out} --out RUN_DIR")
    return 0


def _describe(stage: str) -> str:
    return f"pass {STAGES.index(stage) + 1}/{len(STAGES)}: {stage}"
