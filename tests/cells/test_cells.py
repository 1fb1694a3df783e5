"""Each cell's ``step`` computes the equations in its docstring, and torch.nn's where torch has it.

The equations are written out again here, gate by gate, from explicit slices of the stacked
weights, so that a wrong gate order or a misplaced term shows up as a mismatch.
"""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch
from torch import Tensor, nn

from rnnkit.cells import ElmanCell, GRUCell, LeakyCell, LSTMCell, MUT1Cell, MUT2Cell, MUT3Cell
from rnnkit.cells.base import RecurrentCell
from rnnkit.engine.loop import run_loop

BATCH, INPUT, HIDDEN = 3, 4, 5
TOL = {"rtol": 1e-5, "atol": 1e-6}
sigmoid, tanh = torch.sigmoid, torch.tanh


def randomised(cell: RecurrentCell) -> RecurrentCell:
    """``cell`` with every parameter drawn afresh, biases included, so that every slice matters."""
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.normal_(0.0, 0.5)
    return cell


def one_step(
    cell: RecurrentCell, x: Tensor, state: tuple[Tensor, ...]
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The cell's step on ``x`` (B, I), through its input projection as the engine runs it."""
    return cell.step(cell.input_projection(x.unsqueeze(0))[0], state, 0)


def random_state(cell: RecurrentCell) -> tuple[Tensor, ...]:
    return tuple(torch.randn(BATCH, size) for size in cell.state_sizes)


def rows(weight: Tensor, k: int, size: int) -> Tensor:
    """The ``k``-th block of ``size`` rows of a stacked weight or bias."""
    return weight[k * size : (k + 1) * size]


def affine(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``W x + b`` for a batch of row vectors."""
    return x @ weight.T + (0.0 if bias is None else bias)


# ---- Elman --------------------------------------------------------------------------------------


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_elman_equations(nonlinearity):
    cell = randomised(ElmanCell(INPUT, HIDDEN, nonlinearity=nonlinearity))
    x, (h,) = torch.randn(BATCH, INPUT), random_state(cell)
    phi = torch.tanh if nonlinearity == "tanh" else torch.relu
    expected = phi(
        affine(x, cell.weight_ih, cell.bias_ih) + affine(h, cell.weight_hh, cell.bias_hh)
    )
    y, (h_new,) = one_step(cell, x, (h,))
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(h_new, expected, **TOL)


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_elman_equals_torch_rnn_cell(nonlinearity, bias):
    cell = randomised(ElmanCell(INPUT, HIDDEN, nonlinearity=nonlinearity, bias=bias))
    ref = nn.RNNCell(INPUT, HIDDEN, bias=bias, nonlinearity=nonlinearity)
    ref.load_state_dict(cell.state_dict())
    x, (h,) = torch.randn(BATCH, INPUT), random_state(cell)
    torch.testing.assert_close(one_step(cell, x, (h,))[0], ref(x, h), **TOL)


def test_elman_rejects_unknown_nonlinearity():
    with pytest.raises(
        ValueError, match="nonlinearity must be one of \\['relu', 'tanh'\\], got 'sigmoid'"
    ):
        ElmanCell(INPUT, HIDDEN, nonlinearity="sigmoid")


# ---- LSTM ---------------------------------------------------------------------------------------


def lstm_by_hand(cell: LSTMCell, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
    """The LSTMCell docstring's equations, one gate at a time."""
    H = cell.hidden_size

    def pre_activation(k: int) -> Tensor:  # W_i* x + b_i* + W_h* h + b_h* for gate block k
        return affine(x, rows(cell.weight_ih, k, H), rows(cell.bias_ih, k, H)) + affine(
            h, rows(cell.weight_hh, k, H), rows(cell.bias_hh, k, H)
        )

    if cell.coupled:  # gates stacked i, g, o
        a_i, a_g, a_o = pre_activation(0), pre_activation(1), pre_activation(2)
    else:  # gates stacked i, f, g, o
        a_i, a_f, a_g, a_o = (pre_activation(k) for k in range(4))
    if cell.peephole:
        a_i = a_i + cell.weight_ci * c
    i = sigmoid(a_i)
    if cell.coupled:
        f = 1.0 - i
    else:
        f = sigmoid(a_f + cell.weight_cf * c) if cell.peephole else sigmoid(a_f)
    g = tanh(a_g)
    c_new = f * c + i * g
    o = sigmoid(a_o + cell.weight_co * c_new) if cell.peephole else sigmoid(a_o)
    h_new = o * tanh(c_new)
    if cell.proj_size:
        h_new = h_new @ cell.weight_hr.T
    return h_new, c_new


LSTM_OPTIONS = {
    "default": {},
    "peephole": {"peephole": True},
    "coupled": {"coupled": True},
    "peephole_coupled": {"peephole": True, "coupled": True},
    "proj": {"proj_size": 2},
    "peephole_proj": {"peephole": True, "proj_size": 3},
}


@pytest.mark.parametrize("options", list(LSTM_OPTIONS.values()), ids=list(LSTM_OPTIONS))
def test_lstm_equations(options):
    cell = randomised(LSTMCell(INPUT, HIDDEN, **options))
    x, (h, c) = torch.randn(BATCH, INPUT), random_state(cell)
    expected_h, expected_c = lstm_by_hand(cell, x, h, c)
    y, (h_new, c_new) = one_step(cell, x, (h, c))
    torch.testing.assert_close(h_new, expected_h, **TOL)
    torch.testing.assert_close(c_new, expected_c, **TOL)
    torch.testing.assert_close(y, expected_h, **TOL)
    assert y.shape == (BATCH, cell.output_size)


def test_lstm_equals_torch_lstm_cell():
    cell = randomised(LSTMCell(INPUT, HIDDEN))
    ref = nn.LSTMCell(INPUT, HIDDEN)
    ref.load_state_dict(cell.state_dict())
    x, (h, c) = torch.randn(BATCH, INPUT), random_state(cell)
    y, (h_new, c_new) = one_step(cell, x, (h, c))
    ref_h, ref_c = ref(x, (h, c))
    torch.testing.assert_close(y, ref_h, **TOL)
    torch.testing.assert_close(h_new, ref_h, **TOL)
    torch.testing.assert_close(c_new, ref_c, **TOL)


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
def test_lstm_with_projection_equals_one_step_of_torch_lstm():
    cell = randomised(LSTMCell(INPUT, HIDDEN, proj_size=2))
    ref = nn.LSTM(INPUT, HIDDEN, proj_size=2)
    ref.load_state_dict({f"{key}_l0": value for key, value in cell.state_dict().items()})
    x, (h, c) = torch.randn(BATCH, INPUT), random_state(cell)
    y, (h_new, c_new) = one_step(cell, x, (h, c))
    ref_y, (ref_h, ref_c) = ref(x.unsqueeze(0), (h.unsqueeze(0), c.unsqueeze(0)))
    torch.testing.assert_close(y, ref_y[0], **TOL)
    torch.testing.assert_close(h_new, ref_h[0], **TOL)
    torch.testing.assert_close(c_new, ref_c[0], **TOL)


@pytest.mark.parametrize("forget_bias", [1.0, 0.0, 2.5])
@pytest.mark.parametrize("coupled", [False, True], ids=["lstm", "cifg"])
def test_lstm_forget_bias_initialisation(coupled, forget_bias):
    H = HIDDEN
    cell = LSTMCell(INPUT, H, forget_bias=forget_bias, coupled=coupled)
    # LSTM: the forget gate's block (the second) of bias_ih; CIFG: the input gate's, negated,
    # because there f = 1 - sigmoid(a_i) = sigmoid(-a_i).
    block, value = (0, -forget_bias) if coupled else (1, forget_bias)
    assert rows(cell.bias_ih, block, H).eq(value).all()
    assert rows(cell.bias_hh, block, H).eq(0.0).all()
    bound = 1.0 / math.sqrt(H)
    others = [k for k in range(3 if coupled else 4) if k != block]
    for k in others:
        for bias in (cell.bias_ih, cell.bias_hh):
            assert rows(bias, k, H).abs().le(bound).all()
            assert not rows(bias, k, H).eq(value).all()
    # Both variants start with the forget gate at sigmoid(forget_bias) for zero input and state:
    # c_new = f * c + i * g, so the difference between c = 1 and c = 0 is f.
    zeros = torch.zeros(1, INPUT), torch.zeros(1, H)
    _, (_, c_from_one) = one_step(cell, zeros[0], (zeros[1], torch.ones(1, H)))
    _, (_, c_from_zero) = one_step(cell, zeros[0], (zeros[1], torch.zeros(1, H)))
    expected_f = torch.sigmoid(torch.tensor(forget_bias)).expand(1, H)
    torch.testing.assert_close(c_from_one - c_from_zero, expected_f, **TOL)


def test_lstm_forget_bias_is_reapplied_by_reset_parameters():
    cell = LSTMCell(INPUT, HIDDEN, forget_bias=3.0)
    with torch.no_grad():
        cell.bias_ih.zero_()
    cell.reset_parameters()
    assert rows(cell.bias_ih, 1, HIDDEN).eq(3.0).all()


def test_lstm_without_bias_ignores_forget_bias():
    cell = LSTMCell(INPUT, HIDDEN, bias=False, forget_bias=2.0)
    assert cell.bias_ih is None and cell.bias_hh is None
    assert "bias_ih" not in cell.state_dict()


@pytest.mark.parametrize("peephole", [False, True], ids=["plain", "peephole"])
def test_cifg_has_three_gate_blocks_and_f_is_one_minus_i(peephole):
    H = HIDDEN
    cell = randomised(LSTMCell(INPUT, H, coupled=True, peephole=peephole))
    assert cell.weight_ih.shape == (3 * H, INPUT)
    assert cell.weight_hh.shape == (3 * H, H)
    assert cell.bias_ih.shape == cell.bias_hh.shape == (3 * H,)
    assert cell.weight_cf is None and "weight_cf" not in cell.state_dict()
    x, (h, c) = torch.randn(BATCH, INPUT), random_state(cell)
    a_i = affine(x, rows(cell.weight_ih, 0, H), rows(cell.bias_ih, 0, H)) + affine(
        h, rows(cell.weight_hh, 0, H), rows(cell.bias_hh, 0, H)
    )
    i = sigmoid(a_i + cell.weight_ci * c if peephole else a_i)
    g = tanh(
        affine(x, rows(cell.weight_ih, 1, H), rows(cell.bias_ih, 1, H))
        + affine(h, rows(cell.weight_hh, 1, H), rows(cell.bias_hh, 1, H))
    )
    _, (_, c_new) = one_step(cell, x, (h, c))
    torch.testing.assert_close(c_new, (1.0 - i) * c + i * g, **TOL)


@pytest.mark.parametrize("proj_size", [-1, HIDDEN, HIDDEN + 1])
def test_lstm_rejects_bad_proj_size(proj_size):
    with pytest.raises(
        ValueError, match=f"proj_size must be in \\[0, hidden_size={HIDDEN}\\), got {proj_size}"
    ):
        LSTMCell(INPUT, HIDDEN, proj_size=proj_size)


def test_lstm_projection_shapes():
    cell = LSTMCell(INPUT, HIDDEN, proj_size=2)
    assert cell.output_size == 2
    assert cell.state_sizes == (2, HIDDEN)
    assert cell.weight_hh.shape == (4 * HIDDEN, 2)
    assert cell.weight_hr.shape == (2, HIDDEN)
    assert [tuple(s.shape) for s in cell.init_state(BATCH, None, None)] == [
        (BATCH, 2),
        (BATCH, HIDDEN),
    ]


# ---- GRU ----------------------------------------------------------------------------------------


def gru_by_hand(cell: GRUCell, x: Tensor, h: Tensor) -> Tensor:
    """The GRUCell docstring's equations, gates stacked r, z, n."""
    H = cell.hidden_size
    W_i = [rows(cell.weight_ih, k, H) for k in range(3)]
    W_h = [rows(cell.weight_hh, k, H) for k in range(3)]
    b_i = [rows(cell.bias_ih, k, H) for k in range(3)] if cell.bias_ih is not None else [None] * 3
    b_h = [rows(cell.bias_hh, k, H) for k in range(3)] if cell.bias_hh is not None else [None] * 3
    r = sigmoid(affine(x, W_i[0], b_i[0]) + affine(h, W_h[0], b_h[0]))
    z = sigmoid(affine(x, W_i[1], b_i[1]) + affine(h, W_h[1], b_h[1]))
    if cell.reset_after:
        n = tanh(affine(x, W_i[2], b_i[2]) + r * affine(h, W_h[2], b_h[2]))
    else:
        n = tanh(affine(x, W_i[2], b_i[2]) + affine(r * h, W_h[2], b_h[2]))
    return (1.0 - z) * n + z * h


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_gru_equations(reset_after, bias):
    cell = randomised(GRUCell(INPUT, HIDDEN, reset_after=reset_after, bias=bias))
    x, (h,) = torch.randn(BATCH, INPUT), random_state(cell)
    y, (h_new,) = one_step(cell, x, (h,))
    expected = gru_by_hand(cell, x, h)
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(h_new, expected, **TOL)


def test_gru_reset_after_equals_torch_gru_cell():
    cell = randomised(GRUCell(INPUT, HIDDEN, reset_after=True))
    ref = nn.GRUCell(INPUT, HIDDEN)
    ref.load_state_dict(cell.state_dict())
    x, (h,) = torch.randn(BATCH, INPUT), random_state(cell)
    torch.testing.assert_close(one_step(cell, x, (h,))[0], ref(x, h), **TOL)


def test_gru_reset_placement_matters():
    """The two variants are different functions (else the tests above could not tell them apart)."""
    after = randomised(GRUCell(INPUT, HIDDEN, reset_after=True))
    before = GRUCell(INPUT, HIDDEN, reset_after=False)
    before.load_state_dict(after.state_dict())
    x, (h,) = torch.randn(BATCH, INPUT), random_state(after)
    assert not torch.allclose(one_step(after, x, (h,))[0], one_step(before, x, (h,))[0])


# ---- MUT1-3 -------------------------------------------------------------------------------------


def mut_by_hand(cell: RecurrentCell, x: Tensor, h: Tensor) -> Tensor:
    """Jozefowicz et al. (2015), with the weight blocks each cell's docstring lists."""
    H = cell.hidden_size
    b_r, b_z, b_h = (rows(cell.bias_ih, k, H) for k in range(3))
    if isinstance(cell, MUT1Cell):
        W_xr, W_xz = rows(cell.weight_ih, 0, H), rows(cell.weight_ih, 1, H)
        W_hr, W_hh = rows(cell.weight_hh, 0, H), rows(cell.weight_hh, 1, H)
        z = sigmoid(affine(x, W_xz) + b_z)
        r = sigmoid(affine(x, W_xr) + affine(h, W_hr) + b_r)
        n = tanh(affine(r * h, W_hh) + tanh(x) + b_h)
    elif isinstance(cell, MUT2Cell):
        W_xz, W_xh = rows(cell.weight_ih, 0, H), rows(cell.weight_ih, 1, H)
        W_hr, W_hz, W_hh = (rows(cell.weight_hh, k, H) for k in range(3))
        z = sigmoid(affine(x, W_xz) + affine(h, W_hz) + b_z)
        r = sigmoid(x + affine(h, W_hr) + b_r)
        n = tanh(affine(r * h, W_hh) + affine(x, W_xh) + b_h)
    else:
        W_xr, W_xz, W_xh = (rows(cell.weight_ih, k, H) for k in range(3))
        W_hr, W_hz, W_hh = (rows(cell.weight_hh, k, H) for k in range(3))
        z = sigmoid(affine(x, W_xz) + affine(tanh(h), W_hz) + b_z)
        r = sigmoid(affine(x, W_xr) + affine(h, W_hr) + b_r)
        n = tanh(affine(r * h, W_hh) + affine(x, W_xh) + b_h)
    return n * z + h * (1.0 - z)


@pytest.mark.parametrize(
    ("cls", "input_size", "ih_blocks", "hh_blocks"),
    [
        pytest.param(MUT1Cell, HIDDEN, 2, 2, id="mut1"),
        pytest.param(MUT2Cell, HIDDEN, 2, 3, id="mut2"),
        pytest.param(MUT3Cell, INPUT, 3, 3, id="mut3"),
    ],
)
def test_mut_equations(cls, input_size, ih_blocks, hh_blocks):
    cell = randomised(cls(input_size, HIDDEN))
    assert cell.weight_ih.shape == (ih_blocks * HIDDEN, input_size)
    assert cell.weight_hh.shape == (hh_blocks * HIDDEN, HIDDEN)
    assert cell.bias_ih.shape == (3 * HIDDEN,)
    x, (h,) = torch.randn(BATCH, input_size), random_state(cell)
    y, (h_new,) = one_step(cell, x, (h,))
    expected = mut_by_hand(cell, x, h)
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(h_new, expected, **TOL)


@pytest.mark.parametrize("cls", [MUT1Cell, MUT2Cell], ids=["mut1", "mut2"])
def test_mut1_and_mut2_need_square_input(cls):
    with pytest.raises(
        ValueError, match=f"input_size must equal hidden_size. Expected {HIDDEN}, got {INPUT}"
    ):
        cls(INPUT, HIDDEN)


# ---- leaky integrators --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "alpha", [0.3, [0.05, 0.2, 0.5, 0.9, 0.99]], ids=["shared_alpha", "per_unit_alpha"]
)
def test_leaky_equations(alpha):
    cell = randomised(LeakyCell(INPUT, HIDDEN, alpha=alpha, learn_alpha=True))
    x, (mu,) = torch.randn(BATCH, INPUT), random_state(cell)
    a = sigmoid(cell.alpha_logit)
    v = tanh(affine(x, cell.weight_ih, cell.bias_ih) + affine(mu, cell.weight_hh, cell.bias_hh))
    expected = a * mu + (1.0 - a) * v
    y, (mu_new,) = one_step(cell, x, (mu,))
    torch.testing.assert_close(y, expected, **TOL)
    torch.testing.assert_close(mu_new, expected, **TOL)


@pytest.mark.parametrize(
    "alpha", [0.3, [0.05, 0.2, 0.5, 0.9, 0.99]], ids=["shared_alpha", "per_unit_alpha"]
)
def test_leaky_alpha_initialisation(alpha):
    cell = LeakyCell(INPUT, HIDDEN, alpha=alpha)
    torch.testing.assert_close(
        cell.alpha, torch.as_tensor(alpha, dtype=torch.float32).expand(HIDDEN)
    )


@pytest.mark.parametrize(
    "alpha",
    [0.0, 1.0, -0.5, 1.5, [0.5, 0.0, 0.5, 0.5, 0.5], [0.5, 0.5, 0.5, 0.5, 1.0]],
    ids=["zero", "one", "negative", "above_one", "a_unit_at_zero", "a_unit_at_one"],
)
def test_leaky_rejects_alpha_outside_the_open_unit_interval(alpha):
    with pytest.raises(ValueError, match="alpha must lie strictly between 0 and 1"):
        LeakyCell(INPUT, HIDDEN, alpha=alpha)


def test_leaky_rejects_a_per_unit_alpha_of_the_wrong_length():
    """One value per unit, H of them: a list of another length is a ValueError saying so."""
    with pytest.raises(ValueError, match="alpha") as error:
        LeakyCell(INPUT, HIDDEN, alpha=[0.5, 0.9])
    assert str(HIDDEN) in str(error.value)  # expected vs got


def test_leaky_learned_alpha_is_a_parameter():
    cell = LeakyCell(INPUT, HIDDEN, learn_alpha=True)
    assert isinstance(cell.alpha_logit, nn.Parameter)
    assert "alpha_logit" in dict(cell.named_parameters())
    assert "alpha_logit" not in dict(cell.named_buffers())
    assert "alpha_logit" in cell.state_dict()


def test_leaky_fixed_alpha_is_a_buffer():
    cell = LeakyCell(INPUT, HIDDEN, learn_alpha=False)
    assert not isinstance(cell.alpha_logit, nn.Parameter)
    assert "alpha_logit" not in dict(cell.named_parameters())
    assert "alpha_logit" in dict(cell.named_buffers())
    assert "alpha_logit" in cell.state_dict()


def test_leaky_with_alpha_near_zero_is_an_elman_cell():
    leaky = randomised(LeakyCell(INPUT, HIDDEN, alpha=1e-6))
    elman = ElmanCell(INPUT, HIDDEN)
    elman.load_state_dict({k: v for k, v in leaky.state_dict().items() if k != "alpha_logit"})
    x, state = torch.randn(6, BATCH, INPUT), random_state(leaky)
    leaky_out, (leaky_final,) = run_loop(leaky, x, state)
    elman_out, (elman_final,) = run_loop(elman, x, state)
    torch.testing.assert_close(leaky_out, elman_out, rtol=0, atol=1e-5)
    torch.testing.assert_close(leaky_final, elman_final, rtol=0, atol=1e-5)


# ---- every cell ---------------------------------------------------------------------------------

ALL_CELLS = {
    "elman": lambda: ElmanCell(INPUT, HIDDEN),
    "lstm": lambda: LSTMCell(INPUT, HIDDEN, peephole=True, proj_size=2, forget_bias=0.0),
    "gru": lambda: GRUCell(INPUT, HIDDEN),
    "mut1": lambda: MUT1Cell(HIDDEN, HIDDEN),
    "mut2": lambda: MUT2Cell(HIDDEN, HIDDEN),
    "mut3": lambda: MUT3Cell(INPUT, HIDDEN),
    "leaky": lambda: LeakyCell(INPUT, HIDDEN, learn_alpha=True),
}


@pytest.mark.parametrize("make", list(ALL_CELLS.values()), ids=list(ALL_CELLS))
def test_initialisation_is_uniform_within_one_over_sqrt_hidden(make):
    cell = make()
    bound = 1.0 / math.sqrt(HIDDEN)
    for name, parameter in cell.named_parameters():
        if name != "alpha_logit":  # the leak's logit, set from alpha
            assert parameter.abs().le(bound).all(), name
            assert parameter.std() > 0, name


@pytest.mark.parametrize("make", list(ALL_CELLS.values()), ids=list(ALL_CELLS))
def test_init_state_is_zero_with_the_declared_sizes(make):
    cell = make()
    state = cell.init_state(BATCH, torch.device("cpu"), torch.float64)
    assert [tuple(s.shape) for s in state] == [(BATCH, size) for size in cell.state_sizes]
    assert all(s.dtype == torch.float64 and s.eq(0).all() for s in state)


@pytest.mark.parametrize(
    "sizes", [(0, HIDDEN), (INPUT, 0), (-1, HIDDEN)], ids=["input", "hidden", "negative"]
)
def test_sizes_must_be_positive(sizes):
    with pytest.raises(ValueError, match="input_size and hidden_size must be positive"):
        ElmanCell(*sizes)


@pytest.mark.parametrize("module", ["elman", "lstm", "gru", "mut", "leaky"])
def test_docstring_examples_run(module):
    results = doctest.testmod(
        importlib.import_module(f"rnnkit.cells.{module}"), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert results.attempted > 0
    assert results.failed == 0
