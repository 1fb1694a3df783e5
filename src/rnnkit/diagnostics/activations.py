"""Recording what the cells of a network do inside: each cell's outputs and gates, step by step.

:func:`record_activations` runs any model that contains :class:`~rnnkit.Recurrent` stacks (a
``LanguageModel``, a classifier, a bare ``Recurrent``) once and returns, for every cell of every
stack, its output at every step and the values of its sigmoid gates. Those feed the activation
pages (``rnnkit viz``) and :func:`gate_saturation`, the fraction of gate values near 0 or 1.

A gate :math:`g = \\sigma(a)` is saturated when :math:`g < 0.1` or :math:`g > 0.9`: there
:math:`\\sigma'(a) = g (1 - g) < 0.09`, so the gate passes little gradient, and it acts as a
switch (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and understanding recurrent networks",
whose figure 3 plots these fractions per gate and layer). A forget gate above 0.9 most of the
time is the LSTM remembering; a gate that never saturates is a soft, linear-ish mixer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..cells.base import RecurrentCell, State
from ..engine.loop import run_loop_with_gates
from ..layers.recurrent import Recurrent, reverse_padded

SATURATION_LOW = 0.1  # a sigmoid gate below this is saturated "closed"
SATURATION_HIGH = 0.9  # and above this saturated "open"


@dataclass(frozen=True)
class CellActivations:
    """What one cell of a ``Recurrent`` stack did during one forward pass.

    Attributes:
        name: where the cell sits: ``"layer 0"`` for a bare ``Recurrent``, ``"rnn layer 1"`` for
            the stack ``model.rnn``, with ``" reverse"`` for the backward direction.
        layer: the cell's layer in its stack.
        outputs: the cell's output :math:`y_t` at every step, ``(T, B, output_size)``, time
            running forwards in both directions. For tanh cells (Elman, LSTM's
            :math:`h_t = o_t \\odot \\tanh(c_t)`, GRU) it lies in (-1, 1).
        gates: the sigmoid gates by name (LSTM ``i, f, o``; GRU and MUT ``r, z``), each
            ``(T, B, H)`` in (0, 1); ``{}`` for a cell without gates.
    """

    name: str
    layer: int
    outputs: Tensor
    gates: dict[str, Tensor]


def record_activations(model: nn.Module, inputs: Tensor | tuple[Tensor, ...]) -> list[CellActivations]:
    """Run ``model(inputs)`` once without gradients and record every cell of every ``Recurrent``.

    For this call each cell runs on the reference loop executor (``run_loop_with_gates``), which
    all executors equal to float round-off, so the outputs are those of the model's usual forward
    pass. The model runs in eval mode (no dropout) and is put back in its mode afterwards. A
    model that calls a stack several times (step-by-step decoding) gets each cell's steps
    concatenated in the order of the calls.

    Args:
        model: a module with one or more ``Recurrent`` stacks (or a ``Recurrent`` itself).
        inputs: what ``model`` takes: a tensor, or a tuple of its positional arguments. For a
            ``LanguageModel``, token ids ``(T, B)``.

    Returns:
        One :class:`CellActivations` per cell, stacks in module order, cells in layer order.

    Example:
        >>> model = LanguageModel(vocab_size=10, cell="lstm", hidden_size=8, num_layers=2)
        >>> cells = record_activations(model, torch.randint(10, (20, 1)))
        >>> [c.name for c in cells], cells[0].outputs.shape, sorted(cells[0].gates)
        (['rnn layer 0', 'rnn layer 1'], torch.Size([20, 1, 8]), ['f', 'i', 'o'])
    """
    stacks = [(name, module) for name, module in model.named_modules() if isinstance(module, Recurrent)]
    if not stacks:
        raise ValueError(f"{type(model).__name__} has no Recurrent layers to record")
    calls: dict[tuple[int, int], list[tuple[Tensor, dict[str, Tensor]]]] = {}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _recording(stacks, calls):
            model(*(inputs if isinstance(inputs, tuple) else (inputs,)))
    finally:
        model.train(was_training)
    recorded = []
    for s, (prefix, rnn) in enumerate(stacks):
        for index in range(len(rnn.cells)):
            steps = calls.get((s, index))
            if not steps:
                continue  # a stack the forward pass did not use
            layer, direction = divmod(index, rnn.num_directions)
            name = f"{prefix} layer {layer}".strip() + (" reverse" if direction else "")
            outputs = torch.cat([outputs for outputs, _ in steps])
            gates = {gate: torch.cat([g[gate] for _, g in steps]) for gate in steps[0][1]}
            recorded.append(CellActivations(name, layer, outputs, gates))
    return recorded


@contextmanager
def _recording(
    stacks: list[tuple[str, Recurrent]], calls: dict[tuple[int, int], list[tuple[Tensor, dict[str, Tensor]]]]
) -> Iterator[None]:
    """Swap every stack's executors for recording loops, which append to ``calls[(stack, cell)]``;
    the stacks get their own executors back on leaving."""
    saved = [rnn.executors for _, rnn in stacks]
    try:
        for s, (_, rnn) in enumerate(stacks):
            rnn.executors = [
                _recorder(calls.setdefault((s, i), []), reverse=bool(i % rnn.num_directions))
                for i in range(len(rnn.cells))
            ]
        yield
    finally:
        for (_, rnn), executors in zip(stacks, saved):
            rnn.executors = executors


def _recorder(
    sink: list[tuple[Tensor, dict[str, Tensor]]], reverse: bool
) -> Callable[[RecurrentCell, Tensor, State, Tensor | None], tuple[Tensor, State]]:
    """An executor (the loop's contract) that also appends its outputs and gates to ``sink``."""

    def run(cell: RecurrentCell, x: Tensor, state: State, lengths: Tensor | None = None) -> tuple[Tensor, State]:
        outputs, final, gates = run_loop_with_gates(cell, x, state, lengths)
        if reverse:  # the layer hands the backward cell reversed sequences: turn them back
            sink.append((reverse_padded(outputs, lengths), {n: reverse_padded(g, lengths) for n, g in gates.items()}))
        else:
            sink.append((outputs, gates))
        return outputs, final

    return run


def saturated_fractions(
    gate: Tensor, low: float = SATURATION_LOW, high: float = SATURATION_HIGH
) -> tuple[Tensor, Tensor]:
    """The fraction of a gate's values below ``low`` and above ``high``, per unit.

    ``gate``: ``(..., H)`` sigmoid values; the fractions are taken over every leading dimension
    (time, batch) and returned as two ``(H,)`` tensors.
    """
    values = gate.reshape(-1, gate.size(-1))  # (N, H)
    return (values < low).double().mean(0), (values > high).double().mean(0)


def gate_saturation(
    model: nn.Module, inputs: Tensor | tuple[Tensor, ...], low: float = SATURATION_LOW, high: float = SATURATION_HIGH
) -> dict[str, dict[str, float]]:
    """The fraction of each gate's values that are saturated, below ``low`` or above ``high``.

    Runs ``model(inputs)`` once (see :func:`record_activations`) and counts, for every gated cell
    and each of its sigmoid gates :math:`g`, the fraction of values :math:`g_{t,b,j}` over steps
    t, batch entries b and units j with :math:`g < low` or :math:`g > high`.

    Args:
        model: a module with ``Recurrent`` stacks, e.g. a ``LanguageModel``.
        inputs: a batch for it, e.g. token ids ``(T, B)`` for a language model.
        low, high: the saturation thresholds, 0.1 and 0.9 by default.

    Returns:
        ``{cell name: {gate name: fraction}}`` in layer order, e.g.
        ``{"rnn layer 0": {"i": 0.12, "f": 0.41, "o": 0.05}, ...}``; cells without gates (Elman,
        leaky) are left out, so a model without gated cells gives ``{}``.
    """
    saturation = {}
    for cell in record_activations(model, inputs):
        if cell.gates:  # every unit has as many values, so the mean over units is the fraction
            saturation[cell.name] = {
                name: float(sum(saturated_fractions(gate, low, high)).mean()) for name, gate in cell.gates.items()
            }
    return saturation
