"""``rnnkit caption``: describe images with a captioner trained by ``rnnkit train --task captions``.

Prints one caption per image, greedy by default (``--temperature T`` samples instead); with
``--beam K`` the likeliest caption by beam search, and with ``--n-best N`` the N best, one a line
after its log-probability. With several images each line starts with the image's path.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..data.captions import load_image
from ..decoding import SamplingOptions
from ..errors import RnnkitError
from ..models.captioner import beam_captions, sample_captions
from ..training.loading import load_trained_task_model
from .arguments import non_negative_int, positive_float, positive_int

USAGE = 2  # exit status of a command line that does not make sense


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="caption images with a trained captioner", description=__doc__)
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="a run directory of rnnkit train --task captions")
    parser.add_argument("images", metavar="IMAGE", type=Path, nargs="+", help="PNG images of the task's size")
    parser.add_argument("--temperature", type=positive_float, default=None, help="sample at this temperature instead of taking the likeliest word")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="with --temperature: a reproducible sample")
    parser.add_argument("--beam", metavar="K", type=positive_int, default=None, help="beam search with K hypotheses")
    parser.add_argument("--n-best", metavar="N", type=positive_int, default=None, help="with --beam: print the N best (N <= K), each after its log-probability")


def run(args: argparse.Namespace) -> int:
    problem = _conflict(args)
    if problem:
        print(f"rnnkit caption: error: {problem}", file=sys.stderr)
        return USAGE
    trained = load_trained_task_model(args.run_dir)
    if trained.task.kind != "captioning":
        raise RnnkitError(f"expected a captioning run (rnnkit train --task captions), got {args.run_dir}, a {trained.task.name} run")
    images = torch.stack([load_image(path, trained.task.image_size) for path in args.images])  # (B, 3, S, S)
    if args.beam is not None:
        found = beam_captions(trained.model, images, args.beam, args.n_best or 1)
        lines = [[f"{score:.4f}\t{text}" if args.n_best else text for text, score in best] for best in found]
    else:
        generator = torch.Generator()
        if args.seed is None:
            generator.seed()
        else:
            generator.manual_seed(args.seed)
        options = SamplingOptions(temperature=args.temperature) if args.temperature else SamplingOptions(greedy=True)
        lines = [[text] for text in sample_captions(trained.model, images, options, generator)]
    for path, captions in zip(args.images, lines):
        for line in captions:
            print(f"{path}\t{line}" if len(args.images) > 1 else line)
    return 0


def _conflict(args: argparse.Namespace) -> str:
    """What makes the flags contradict each other, or ``""``."""
    if args.seed is not None and args.temperature is None:
        return "--seed needs --temperature (greedy and beam search draw nothing)"
    if args.beam is None:
        return "--n-best needs --beam" if args.n_best is not None else ""
    if args.temperature is not None:
        return "--beam searches, it does not sample: it cannot be combined with --temperature"
    if args.n_best is not None and args.n_best > args.beam:
        return f"--n-best must be at most --beam ({args.beam}), got {args.n_best}"
    return ""
