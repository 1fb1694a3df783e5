"""``rnnkit sample``: generate text from a trained model, streaming characters as they come."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ..decoding import SamplingOptions, generate
from ..training.loading import load_trained_model
from .arguments import non_negative_int, positive_float, positive_int

DEFAULT_PRIME = "\n"


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="generate text from a trained model", description=__doc__)
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="a run directory written by rnnkit train")
    parser.add_argument("--length", type=positive_int, default=500, help="characters to generate")
    parser.add_argument("--temperature", type=positive_float, default=1.0, help="below 1: safer, above 1: wilder")
    parser.add_argument("--top-k", type=non_negative_int, default=0, help="sample among the k likeliest (0: all)")
    parser.add_argument("--greedy", action="store_true", help="always take the likeliest character (argmax)")
    parser.add_argument("--prime", default=None, help="text to start from (echoed before the sample)")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="for a reproducible sample")


def run(args: argparse.Namespace) -> int:
    trained = load_trained_model(args.run_dir)
    vocabulary = trained.vocabulary
    prime = args.prime if args.prime is not None else DEFAULT_PRIME
    if prime == "" or (args.prime is None and prime not in vocabulary):
        prime = vocabulary.chars[0]
    prime_ids = vocabulary.encode(prime, what="the prime text")
    generator = torch.Generator()
    if args.seed is None:
        generator.seed()
    else:
        generator.manual_seed(args.seed)
    options = SamplingOptions(args.temperature, args.top_k, args.greedy)
    out = sys.stdout
    if args.prime:
        out.write(args.prime)
    for token in generate(trained.model, prime_ids, args.length, options, generator):
        out.write(vocabulary.decode([token]))
        out.flush()
    out.write("\n")
    return 0
