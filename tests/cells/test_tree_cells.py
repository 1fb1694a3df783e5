"""Tree cells: float64 gradcheck of each node's equations, and each equals its docstring's maths
written out child by child."""

from __future__ import annotations

import pytest
import torch

from rnnkit.cells import TREE_CELLS, ChildSumTreeLSTMCell, NaryTreeLSTMCell, TreeRNNCell, make_tree_cell

I, H, K, N = 2, 3, 3, 3  # input features, units, children per node, nodes (gradcheck cost grows with each)

CELLS = {
    "treernn": ("treernn", {"arity": K}),
    "childsum": ("childsum", {}),
    "nary": ("nary", {"arity": K}),
    "childsum-no-bias": ("childsum", {"bias": False}),
}


def children_states(cell, dtype=torch.float64) -> tuple[torch.Tensor, ...]:
    """Random children's states, with the last child of the first two nodes missing (zeros)."""
    states = tuple(torch.randn(N, K, H, dtype=dtype) for _ in cell.state_sizes)
    for state in states:
        state[:2, -1] = 0.0
    return states


@pytest.mark.parametrize("variant", list(CELLS))
def test_gradcheck(variant: str) -> None:
    name, options = CELLS[variant]
    cell = make_tree_cell(name, I, H, **options).double()
    x = torch.randn(N, I, dtype=torch.float64, requires_grad=True)
    children = tuple(s.requires_grad_() for s in children_states(cell))
    params = tuple(cell.parameters())

    def node(x, *inputs):
        states = inputs[: len(children)]
        output, state = cell.node(cell.input_projection(x), states)
        return (output, *state)

    assert torch.autograd.gradcheck(node, (x, *children, *params))


def test_every_tree_cell_is_checked() -> None:
    assert {name for name, _ in CELLS.values()} == set(TREE_CELLS)


def test_treernn_is_its_equation() -> None:
    cell = TreeRNNCell(I, H, arity=K).double()
    x = torch.randn(N, I, dtype=torch.float64)
    (h_children,) = children_states(cell)
    h, _ = cell.node(cell.input_projection(x), (h_children,))
    W_left = cell.weight_hh.view(H, K, H)  # one H x H block per child position
    expected = cell.weight_ih @ x.T + cell.bias_ih[:, None] + cell.bias_hh[:, None]
    for k in range(K):
        expected = expected + W_left[:, k] @ h_children[:, k].T
    torch.testing.assert_close(h, torch.tanh(expected.T))


def sig(v: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(v)


def test_childsum_is_its_equation() -> None:
    cell = ChildSumTreeLSTMCell(I, H).double()
    x = torch.randn(N, I, dtype=torch.float64)
    h_c, c_c = children_states(cell)
    h, (h_out, c) = cell.node(cell.input_projection(x), (h_c, c_c))
    Wi, Wf, Wg, Wo = cell.weight_ih.chunk(4)
    Ui, Uf, Ug, Uo = cell.weight_hh.chunk(4)
    bi, bf, bg, bo = (cell.bias_ih + cell.bias_hh).chunk(4)
    for j in range(N):
        h_sum = h_c[j].sum(0)
        i = sig(Wi @ x[j] + Ui @ h_sum + bi)
        g = torch.tanh(Wg @ x[j] + Ug @ h_sum + bg)
        o = sig(Wo @ x[j] + Uo @ h_sum + bo)
        c_j = i * g + sum(sig(Wf @ x[j] + Uf @ h_c[j, k] + bf) * c_c[j, k] for k in range(K))
        torch.testing.assert_close(c[j], c_j)
        torch.testing.assert_close(h[j], o * torch.tanh(c_j))
    assert h is h_out


def test_nary_is_its_equation() -> None:
    cell = NaryTreeLSTMCell(I, H, arity=K).double()
    x = torch.randn(N, I, dtype=torch.float64)
    h_c, c_c = children_states(cell)
    h, (_, c) = cell.node(cell.input_projection(x), (h_c, c_c))
    Wi, Wf, Wg, Wo = cell.weight_ih.chunk(4)
    U = cell.weight_hh.view(K + 3, H, K, H)  # gate rows i, f_1..f_K, g, o; column block per child
    b_x = cell.bias_ih.chunk(4)
    b_h = cell.bias_hh.chunk(K + 3)

    def pre(gate: int, j: int) -> torch.Tensor:  # sum over child positions l of U_l h_jl
        return sum(U[gate, :, l] @ h_c[j, l] for l in range(K)) + b_h[gate]

    for j in range(N):
        i = sig(Wi @ x[j] + b_x[0] + pre(0, j))
        g = torch.tanh(Wg @ x[j] + b_x[2] + pre(K + 1, j))
        o = sig(Wo @ x[j] + b_x[3] + pre(K + 2, j))
        f = [sig(Wf @ x[j] + b_x[1] + pre(1 + k, j)) for k in range(K)]
        c_j = i * g + sum(f[k] * c_c[j, k] for k in range(K))
        torch.testing.assert_close(c[j], c_j)
        torch.testing.assert_close(h[j], o * torch.tanh(c_j))


@pytest.mark.parametrize("name", ["childsum", "nary"])
def test_forget_bias_initialises_the_forget_gate(name: str) -> None:
    cell = make_tree_cell(name, I, H, forget_bias=2.5)
    assert torch.equal(cell.bias_ih[H : 2 * H], torch.full((H,), 2.5))
    assert "forget_bias=2.5" in repr(cell)


def test_make_tree_cell_refuses_unknown_names_and_options() -> None:
    with pytest.raises(ValueError, match="unknown tree cell 'lstm'; choose one of treernn, childsum, nary"):
        make_tree_cell("lstm", I, H)
    with pytest.raises(ValueError, match="tree cell 'childsum' cannot use the options"):
        make_tree_cell("childsum", I, H, arity=2)
    with pytest.raises(ValueError, match="arity must be at least 1, got 0"):
        make_tree_cell("nary", I, H, arity=0)
