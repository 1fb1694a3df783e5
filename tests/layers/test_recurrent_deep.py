"""Deep-RNN connections of ``Recurrent`` (Pascanu et al. 2014): residual and input skip.

The reference is an independent composition: single-layer ``Recurrent`` layers holding the same
weights, wired by hand.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from rnnkit import Recurrent

INPUT, HIDDEN, LAYERS = 3, 4, 3
STEPS, BATCH = 5, 3
LENGTHS = torch.tensor([3, 5, 1])
TOL = {"rtol": 1e-5, "atol": 1e-6}

CONNECTIONS = {
    "residual": {"residual": True},
    "input_skip": {"input_skip": True},
    "both": {"residual": True, "input_skip": True},
}


def by_hand(stack: Recurrent, x: Tensor, lengths: Tensor) -> tuple[Tensor, tuple[Tensor, ...]]:
    """``stack``'s output and final state, from one single-layer Recurrent per layer."""
    directions = stack.num_directions
    below, finals = x, []
    for layer in range(stack.num_layers):
        layer_input = torch.cat([below, x], dim=-1) if layer and stack.input_skip else below
        single = Recurrent(
            stack.cell_name, layer_input.size(-1), HIDDEN, bidirectional=stack.bidirectional
        )
        for direction in range(directions):
            source = stack.cells[layer * directions + direction]
            single.cells[direction].load_state_dict(source.state_dict())
        output, final = single(layer_input, lengths=lengths)
        below = output + below if layer and stack.residual else output
        finals.append(final)
    return below, tuple(torch.cat(parts) for parts in zip(*finals))


@pytest.mark.parametrize("bidirectional", [False, True], ids=["unidir", "bidir"])
@pytest.mark.parametrize("connections", list(CONNECTIONS))
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_connections_equal_single_layers_wired_by_hand(cell, connections, bidirectional):
    stack = Recurrent(
        cell, INPUT, HIDDEN, LAYERS, bidirectional=bidirectional, **CONNECTIONS[connections]
    )
    x = torch.randn(STEPS, BATCH, INPUT, requires_grad=True)
    output, final = stack(x, lengths=LENGTHS)
    expected, expected_final = by_hand(stack, x, LENGTHS)
    torch.testing.assert_close(output, expected, **TOL)
    for mine, theirs in zip(final, expected_final):
        torch.testing.assert_close(mine, theirs, **TOL)
    padding = torch.arange(STEPS).unsqueeze(1) >= LENGTHS
    assert output[padding].eq(0).all(), "padded outputs must stay zero"

    # The input's gradient reaches it through every path: the skips and the layers.
    weights = torch.randn_like(output)
    grad = torch.autograd.grad((output * weights).sum(), x)[0]
    expected_grad = torch.autograd.grad((expected * weights).sum(), x)[0]
    torch.testing.assert_close(grad, expected_grad, **TOL)


def test_residual_changes_the_output_and_adds_no_parameters():
    plain = Recurrent("gru", INPUT, HIDDEN, LAYERS)
    residual = Recurrent("gru", INPUT, HIDDEN, LAYERS, residual=True)
    residual.load_state_dict(plain.state_dict())  # strict: the same names and shapes
    x = torch.randn(STEPS, BATCH, INPUT)
    assert not torch.allclose(plain(x)[0], residual(x)[0])


def test_input_skip_widens_the_upper_layers_inputs_and_keeps_torch_names():
    stack = Recurrent("lstm", INPUT, HIDDEN, LAYERS, bidirectional=True, input_skip=True)
    shapes = {key: tuple(t.shape) for key, t in stack.state_dict().items()}
    assert shapes["weight_ih_l0"] == (4 * HIDDEN, INPUT)
    assert shapes["weight_ih_l1_reverse"] == (4 * HIDDEN, 2 * HIDDEN + INPUT)
    assert shapes["weight_ih_l2"] == (4 * HIDDEN, 2 * HIDDEN + INPUT)
    plain = Recurrent("lstm", INPUT, HIDDEN, LAYERS, bidirectional=True)
    assert list(shapes) == list(plain.state_dict())


@pytest.mark.parametrize("option", ["residual", "input_skip"])
def test_connections_need_two_layers(option):
    with pytest.raises(
        ValueError, match=f"{option}=True connects stacked layers and needs num_layers >= 2, got 1"
    ):
        Recurrent("gru", INPUT, HIDDEN, 1, **{option: True})


def test_square_cells_cannot_take_the_input_skip():
    with pytest.raises(
        ValueError,
        match="layer 1 reads the 8 features of the layer below and the input: .*"
        "input_size must equal hidden_size. Expected 4, got 8",
    ):
        Recurrent("mut1", HIDDEN, HIDDEN, 2, input_skip=True)


def test_repr_names_the_connections():
    text = repr(Recurrent("gru", INPUT, HIDDEN, 2, residual=True, input_skip=True))
    assert "residual=True" in text and "input_skip=True" in text
