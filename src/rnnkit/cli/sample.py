"""``rnnkit sample``: generate text from a trained model, streaming characters as they come.

With ``--beam K``, search for the likeliest continuation of ``--length`` characters instead of
sampling one; ``--n-best N`` prints the N best, one a line with its log-probability.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from ..decoding import LanguageModelStepper, SamplingOptions, beam_search, generate
from ..training.loading import TrainedModel, load_trained_model
from .arguments import non_negative_int, positive_float, positive_int
from .train import refuse_task_run

DEFAULT_PRIME = "\n"
USAGE = 2  # exit status of a command line that does not make sense


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="generate text from a trained model", description=__doc__)
    parser.add_argument("run_dir", metavar="DIR", type=Path, help="a run directory written by rnnkit train")
    parser.add_argument("--length", type=positive_int, default=500, help="characters to generate")
    # --temperature and --top-k default to None ("not given", so --beam can refuse them); the
    # defaults are SamplingOptions'.
    parser.add_argument("--temperature", type=positive_float, default=None, help="below 1: safer, above 1: wilder (default 1)")
    parser.add_argument("--top-k", type=non_negative_int, default=None, help="sample among the k likeliest (default 0: all)")
    parser.add_argument("--greedy", action="store_true", help="always take the likeliest character (argmax)")
    parser.add_argument("--beam", metavar="K", type=positive_int, default=None, help="beam search with K hypotheses: the likeliest continuation")
    parser.add_argument("--n-best", metavar="N", type=positive_int, default=None, help="with --beam: print the N best (N <= K), each with its log-probability, as JSON strings")
    parser.add_argument("--prime", default=None, help="text to start from (echoed before the sample)")
    parser.add_argument("--seed", type=non_negative_int, default=None, help="for a reproducible sample")


def run(args: argparse.Namespace) -> int:
    problem = _conflict(args)
    if problem:
        print(f"rnnkit sample: error: {problem}", file=sys.stderr)
        return USAGE
    refuse_task_run(args.run_dir, "sample")
    trained = load_trained_model(args.run_dir)
    vocabulary = trained.vocabulary
    prime = args.prime if args.prime is not None else DEFAULT_PRIME
    if prime == "" or (args.prime is None and prime not in vocabulary):
        prime = vocabulary.chars[0]
    prime_ids = vocabulary.encode(prime, what="the prime text")
    if args.beam is not None:
        return _search(args, trained, prime_ids)
    generator = torch.Generator()
    if args.seed is None:
        generator.seed()
    else:
        generator.manual_seed(args.seed)
    given = {"temperature": args.temperature, "top_k": args.top_k, "greedy": args.greedy}
    options = SamplingOptions(**{name: value for name, value in given.items() if value is not None})
    out = sys.stdout
    if args.prime:
        out.write(args.prime)
    for token in generate(trained.model, prime_ids, args.length, options, generator):
        out.write(vocabulary.decode([token]))
        out.flush()
    out.write("\n")
    return 0


def _search(args: argparse.Namespace, trained: TrainedModel, prime_ids: torch.Tensor) -> int:
    """Print the best continuation after the prime, or the ``--n-best`` lines."""
    (found,) = beam_search(
        LanguageModelStepper(trained.model), prime_ids.view(-1, 1), args.beam, args.length,
        n_best=args.n_best or 1,
    )
    texts = [trained.vocabulary.decode(list(hypothesis.tokens)) for hypothesis in found]
    if args.n_best is None:
        print((args.prime or "") + texts[0])
    else:  # one line each: JSON escapes the newlines in the text
        for text, hypothesis in zip(texts, found):
            print(f"{hypothesis.score:.4f}\t{json.dumps(text, ensure_ascii=False)}")
    return 0


def _conflict(args: argparse.Namespace) -> str:
    """What makes the flags contradict each other, or ``""``."""
    if args.beam is None:
        return "--n-best needs --beam" if args.n_best is not None else ""
    given = {"--temperature": args.temperature is not None, "--top-k": args.top_k is not None, "--greedy": args.greedy}
    sampling = [flag for flag, present in given.items() if present]
    if sampling:
        return f"--beam searches, it does not sample: it cannot be combined with {sampling[0]}"
    if args.n_best is not None and args.n_best > args.beam:
        return f"--n-best must be at most --beam ({args.beam}), got {args.n_best}"
    return ""
