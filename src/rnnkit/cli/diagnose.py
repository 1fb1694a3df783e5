"""``rnnkit diagnose``: vanishing and exploding gradients, and the recurrent matrix's eigenvalues,
of a trained model (``rnnkit diagnose DIR``, DIR written by ``rnnkit train``: a task's model on a
batch of its task, a language model on windows of its run's validation text, --seq-len
characters each) or of a fresh task model at initialisation (``rnnkit diagnose --cell NAME --task adding``).

Writes ``gradient_flow.png`` (the gradient norm at each step and the norm of the Jacobian
product against the lag, with the bound (lambda_W lambda_phi)^lag, on log scales) and
``eigenvalues.png`` (each recurrent block's eigenvalues with the unit circle) into --out, and
prints a summary table and, for gated cells, the fraction of each gate's values that are saturated.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..cells import cell_names
from ..data.tasks import TASKS, Task
from ..diagnostics.activations import gate_saturation
from ..diagnostics.gradient_flow import GradientFlow
from ..diagnostics.plots import plot_eigenvalues, plot_gradient_flow
from ..diagnostics.spectra import RecurrentBlock, recurrent_blocks, spectrum
from ..diagnostics.model_flow import LOSSES, language_model_gradient_flow, task_gradient_flow
from ..training.config import TrainConfig
from ..training.language_data import token_tensor, validation_ids
from ..training.loading import load_trained_model, load_trained_task_model
from ..training.task_trainer import build_task_model
from ..errors import DataError
from .arguments import key_value, non_negative_int, positive_int
from .train import trained_task

USAGE = 2
FRESH_FLAGS = ("--cell", "--task", "--hidden", "--layers", "--cell-option", "--task-option")


@dataclass(frozen=True)
class Subject:
    """The model under diagnosis, the batch it reads and how to name them."""

    model: nn.Module
    inputs: Tensor  # what the model reads: a task batch's inputs, or token ids (T, B)
    flow: Callable[[str, int, int], GradientFlow]  # (loss, layer, examples) -> the gradient flow on the batch
    description: str  # "lstm at initialisation", "elman after 300 steps"
    batch: str  # "adding batch of 32", "32 windows of the validation text"
    out: Path  # the default output directory


def add_parser(subparsers: argparse._SubParsersAction, name: str) -> None:
    parser = subparsers.add_parser(name, help="gradient flow and eigenvalues of a recurrent model", description=__doc__)
    parser.add_argument("run_dir", nargs="?", type=Path, metavar="DIR", help="a run directory of rnnkit train (a task's or a language model's)")
    fresh = parser.add_argument_group("a fresh model at initialisation, instead of DIR")
    fresh.add_argument("--cell", choices=cell_names(), help="recurrent cell")
    fresh.add_argument("--task", choices=sorted(TASKS), help="the task whose batch it reads (default: adding)")
    fresh.add_argument("--hidden", type=positive_int, help="units per layer (default: rnnkit train's)")
    fresh.add_argument("--layers", type=positive_int, help="stacked recurrent layers (default: rnnkit train's)")
    fresh.add_argument("--cell-option", metavar="KEY=VALUE", type=key_value, action="append",
                       help="a cell option, e.g. forget_bias=0 (repeatable)")
    fresh.add_argument("--task-option", metavar="KEY=VALUE", type=key_value, action="append",
                       help="a task option, e.g. length=50 (repeatable)")
    parser.add_argument("--loss", choices=LOSSES, default=LOSSES[0],
                        help="the loss of the last step's prediction, or the sum over every step's")
    parser.add_argument("--layer", type=non_negative_int, default=0, help="the recurrent layer to measure")
    parser.add_argument("--batch-size", type=positive_int, default=32, help="examples in the batch")
    parser.add_argument("--examples", type=positive_int, default=4,
                        help="examples whose Jacobian products are measured (each costs an SVD per lag)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="the model's (fresh) and the batch's seed")
    parser.add_argument("--out", type=Path, help="where the PNGs go (default: DIR, or diagnose-CELL-TASK)")


def run(args: argparse.Namespace) -> int:
    given = [flag for flag in FRESH_FLAGS if getattr(args, flag[2:].replace("-", "_")) is not None]
    if args.run_dir is not None and given:
        return _usage(f"{given[0]} describes a fresh model; DIR's model is described by its run")
    if args.run_dir is None and args.cell is None:
        return _usage("give a run directory DIR or a fresh model's --cell")
    subject = _trained(args) if args.run_dir is not None else _fresh(args)
    flow = subject.flow(args.loss, args.layer, args.examples)
    cell = subject.model.rnn.cells[args.layer * subject.model.rnn.num_directions]
    blocks = recurrent_blocks(cell)

    out = args.out or subject.out
    out.mkdir(parents=True, exist_ok=True)
    loss = "loss at the last step" if args.loss == "last" else "loss summed over steps"
    title = f"{subject.description}, {subject.batch}, {loss}"
    plot_gradient_flow(flow, out / "gradient_flow.png", title)
    plot_eigenvalues({block.name: spectrum(block.matrix) for block in blocks}, out / "eigenvalues.png", f"{subject.description}, layer {args.layer}")
    print(f"{subject.description}, layer {args.layer}, {subject.batch}, T = {len(flow.jacobian_norms)}, {loss}")
    print(summary_table(flow, blocks))
    for name, gates in gate_saturation(subject.model, subject.inputs).items():
        fractions = ", ".join(f"{gate} {fraction:.3f}" for gate, fraction in gates.items())
        print(f"gate saturation of {name} (fraction below 0.1 or above 0.9): {fractions}")
    print(f"plots: {out / 'gradient_flow.png'}, {out / 'eigenvalues.png'}")
    return 0


def summary_table(flow: GradientFlow, blocks: list[RecurrentBlock]) -> str:
    """Per recurrent block its spectral radius, largest singular value and activation-derivative
    bound, then the gradient's measures; the block the bound is drawn from is starred."""
    lines = [f"{'block':<8}{'spectral radius':>17}{'largest sing. value':>21}{'activation bound':>18}"]
    for block in blocks:
        found = spectrum(block.matrix)
        name = block.name + ("*" if block.name == flow.block else "")
        lines.append(
            f"{name:<8}{found.spectral_radius:>17.4f}{found.largest_singular_value:>21.4f}{block.derivative_bound:>18g}"
        )
    steps = len(flow.jacobian_norms)
    rows = [
        ("gradient norm at the first step ||dL/ds_0||", flow.state_gradient_norms[0]),
        ("gradient norm at the last step ||dL/ds_T||", flow.state_gradient_norms[-1]),
        ("ratio first / last", flow.gradient_ratio),
        ("Jacobian product norm at lag 1", flow.jacobian_norms[0]),
        (f"Jacobian product norm at lag T = {steps}", flow.jacobian_norms[-1]),
        (f"bound (lambda_W lambda_phi)^T, block {flow.block}*", flow.bound[-1]),
    ]
    lines += [f"{label:<52}{value:>12.4g}" for label, value in rows]
    return "\n".join(lines)


def _trained(args: argparse.Namespace) -> Subject:
    if trained_task(args.run_dir):
        trained = load_trained_task_model(args.run_dir)
        return _task_subject(trained.model, trained.task, args, f"{trained.config.model.cell} after {trained.step} steps",
                             args.run_dir)
    language_model = load_trained_model(args.run_dir)
    tokens = validation_ids(language_model.config.data, language_model.vocabulary)  # a tensor, or a memory map
    steps = language_model.config.data.seq_len
    if len(tokens) < steps + 1:
        raise DataError(f"the validation text must hold at least {steps + 1} characters, got {len(tokens)}")
    generator = torch.Generator().manual_seed(args.seed)
    starts = torch.randint(len(tokens) - steps, (args.batch_size,), generator=generator)
    windows = torch.stack([token_tensor(tokens[start : start + steps + 1]) for start in starts.tolist()], dim=1)  # (T + 1, B)
    model = language_model.model

    def flow(loss: str, layer: int, examples: int) -> GradientFlow:
        return language_model_gradient_flow(model, windows, loss, layer, examples)

    return Subject(model, windows[:-1], flow, f"{language_model.config.model.cell} after {language_model.step} steps",
                   f"{args.batch_size} windows of the validation text", args.run_dir)


def _fresh(args: argparse.Namespace) -> Subject:
    config = TrainConfig()
    config.model.cell = args.cell
    config.model.hidden_size = args.hidden or config.model.hidden_size
    config.model.num_layers = args.layers or config.model.num_layers
    config.model.cell_options = dict(args.cell_option or [])
    config.task.name = args.task or "adding"
    config.task.options = dict(args.task_option or [])
    task = config.task.build()
    torch.manual_seed(args.seed)
    model = build_task_model(task, config.model, config.task).eval()
    return _task_subject(model, task, args, f"{args.cell} at initialisation", Path(f"diagnose-{args.cell}-{task.name}"))


def _task_subject(model: nn.Module, task: Task, args: argparse.Namespace, description: str, out: Path) -> Subject:
    batch = task.batch(args.batch_size, torch.Generator().manual_seed(args.seed))

    def flow(loss: str, layer: int, examples: int) -> GradientFlow:
        return task_gradient_flow(model, task.kind, batch, loss, layer, examples)

    return Subject(model, batch.inputs, flow, description, f"{task.name} batch of {args.batch_size}", out)


def _usage(message: str) -> int:
    print(f"rnnkit diagnose: error: {message}", file=sys.stderr)
    return USAGE
