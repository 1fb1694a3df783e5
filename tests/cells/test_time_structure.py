"""Time structure as cells (skip connections through time, the clockwork RNN) and the deep
transition that wraps any cell.

Each cell is checked against a reference written out by hand, with its history kept in plain
Python lists; the structure each one promises (which past steps a skip cell reads, which module
of a clockwork cell may influence which) is checked with autograd; and every one of them, run
through ``Recurrent`` with ``lengths``, equals each sequence run alone. All in float64.
"""

from __future__ import annotations

import doctest
import importlib
import math

import pytest
import torch
from torch import Tensor

from rnnkit import Recurrent
from rnnkit.cells import (
    REGISTRY,
    ClockworkCell,
    DeepTransitionCell,
    ElmanCell,
    GRUCell,
    LeakyCell,
    LSTMCell,
    SkipCell,
    cell_names,
    cell_options,
    make_cell,
)
from rnnkit.cells.base import RecurrentCell
from rnnkit.engine import fastest_executor, fused, native, scan
from rnnkit.engine.loop import run_loop

BATCH, INPUT, HIDDEN = 3, 4, 6
TOL = {"rtol": 1e-6, "atol": 1e-6}
PHI = {"tanh": torch.tanh, "relu": torch.relu}


def randomised(cell: RecurrentCell) -> RecurrentCell:
    """``cell`` in float64 with every parameter drawn afresh — a clockwork cell's masked weights
    included, which must then make no difference."""
    cell = cell.double()
    with torch.no_grad():
        for parameter in cell.parameters():
            parameter.normal_(0.0, 0.5)
    return cell


def random_state(cell: RecurrentCell) -> tuple[Tensor, ...]:
    return tuple(torch.randn(BATCH, size, dtype=torch.float64) for size in cell.state_sizes)


def affine(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``W x + b`` for a batch of row vectors."""
    return x @ weight.T + (0.0 if bias is None else bias)


# ---- skip connections through time --------------------------------------------------------------


def skip_reference(cell: SkipCell, x: Tensor, state: tuple[Tensor, ...]) -> tuple[Tensor, tuple]:
    """The docstring's equation over ``x`` (T, B, I), the history kept oldest first in a list."""
    history = list(reversed(state))  # h_{-d}, ..., h_{-1}
    for x_t in x:
        history.append(PHI[cell.nonlinearity](
            affine(x_t, cell.weight_ih, cell.bias_ih)
            + affine(history[-1], cell.weight_hh, cell.bias_hh)
            + history[-cell.delay] @ cell.weight_hd.T
        ))
    outputs = torch.stack(history[len(state):])
    return outputs, tuple(reversed(history[-cell.delay:]))


@pytest.mark.parametrize("delay", [2, 3])
@pytest.mark.parametrize(("nonlinearity", "bias"), [("tanh", True), ("relu", False)])
def test_skip_equations(delay, nonlinearity, bias):
    cell = randomised(SkipCell(INPUT, HIDDEN, delay=delay, nonlinearity=nonlinearity, bias=bias))
    x, state = torch.randn(7, BATCH, INPUT, dtype=torch.float64), random_state(cell)
    outputs, final = run_loop(cell, x, state)
    expected_outputs, expected_final = skip_reference(cell, x, state)
    torch.testing.assert_close(outputs, expected_outputs, **TOL)
    assert len(final) == delay
    for got, want in zip(final, expected_final):
        torch.testing.assert_close(got, want, **TOL)


def test_skip_path_reaches_exactly_the_steps_a_multiple_of_d_back():
    """Without the one-step path, h_6 with d = 3 reads h_3, which reads h_0, which reads h_{-3}."""
    cell = randomised(SkipCell(INPUT, HIDDEN, delay=3))
    with torch.no_grad():
        cell.weight_hh.zero_()
    x = torch.randn(7, BATCH, INPUT, dtype=torch.float64, requires_grad=True)
    state = tuple(s.requires_grad_() for s in random_state(cell))  # h_{-1}, h_{-2}, h_{-3}
    outputs, _ = run_loop(cell, x, state)
    grad_x, *grad_state = torch.autograd.grad(outputs[6].sum(), [x, *state])
    assert grad_x.ne(0).any(dim=2).all(dim=1).tolist() == [True, False, False, True, False, False, True]
    assert grad_x.eq(0).all(dim=2).all(dim=1).tolist() == [False, True, True, False, True, True, False]
    assert [bool(g.ne(0).any()) for g in grad_state] == [False, False, True]


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
def test_skip_cell_without_delayed_weights_is_an_elman_cell(nonlinearity):
    skip = Recurrent("skip", INPUT, HIDDEN, executor="loop", delay=3, nonlinearity=nonlinearity).double()
    elman = Recurrent("elman", INPUT, HIDDEN, executor="loop", nonlinearity=nonlinearity).double()
    with torch.no_grad():
        skip.weight_hd_l0.zero_()
    elman.load_state_dict({k: v for k, v in skip.state_dict().items() if k != "weight_hd_l0"})
    x = torch.randn(6, BATCH, INPUT, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(1, BATCH, HIDDEN, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([6, 2, 4])
    older = torch.randn(2, 1, BATCH, HIDDEN, dtype=torch.float64)  # read only through W_hd = 0
    results = []
    for model, state in ((skip, (h0, *older)), (elman, (h0,))):
        output, final = model(x, state, lengths=lengths)
        loss = (output * torch.linspace(-1, 1, HIDDEN, dtype=torch.float64)).sum() + final[0].sum()
        shared = [getattr(model, n) for n in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")]
        results.append((output, final[0], *torch.autograd.grad(loss, [x, h0, *shared])))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, **TOL)


def test_skip_history_carries_across_chunks():
    """The state holds all d past states, so truncated BPTT's chunks add up to the whole run."""
    model = Recurrent("skip", INPUT, HIDDEN, executor="loop", delay=3).double()
    x = torch.randn(8, BATCH, INPUT, dtype=torch.float64)
    whole, final = model(x)
    first, carried = model(x[:5])
    second, chunked_final = model(x[5:], carried)
    torch.testing.assert_close(torch.cat([first, second]), whole, **TOL)
    for got, want in zip(chunked_final, final):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("delay", [1, 0, 2.5, True])
def test_skip_rejects_a_delay_below_two(delay):
    with pytest.raises(ValueError, match=f"delay must be an integer of at least 2, got {delay!r}"):
        SkipCell(INPUT, HIDDEN, delay=delay)


# ---- clockwork ----------------------------------------------------------------------------------


def clockwork_reference(cell: ClockworkCell, x: Tensor, h: Tensor) -> tuple[Tensor, Tensor]:
    """Module by module: module i, when t mod T_i = 0, reads the input and every module j with
    T_j >= T_i; otherwise it keeps its value."""
    periods = cell.periods.tolist()
    size = cell.hidden_size // len(periods)
    blocks = [slice(i * size, (i + 1) * size) for i in range(len(periods))]
    outputs = []
    for t, x_t in enumerate(x):
        new = h.clone()
        for rows, period in zip(blocks, periods):
            if t % period:
                continue
            total = affine(x_t, cell.weight_ih[rows], None if cell.bias_ih is None else cell.bias_ih[rows])
            total = total + (0.0 if cell.bias_hh is None else cell.bias_hh[rows])
            for columns, other_period in zip(blocks, periods):
                if other_period >= period:
                    total = total + h[:, columns] @ cell.weight_hh[rows, columns].T
            new[:, rows] = torch.tanh(total)
        h = new
        outputs.append(h)
    return torch.stack(outputs), h


@pytest.mark.parametrize(
    "options",
    [{"modules": 3}, {"periods": (1, 3, 5)}, {"modules": 2, "bias": False}],
    ids=["powers_of_two", "periods", "nobias"],
)
def test_clockwork_equations(options):
    cell = randomised(ClockworkCell(INPUT, HIDDEN, **options))  # masked weights nonzero too
    x, (h0,) = torch.randn(11, BATCH, INPUT, dtype=torch.float64), random_state(cell)
    outputs, (final,) = run_loop(cell, x, (h0,))
    expected_outputs, expected_final = clockwork_reference(cell, x, h0)
    torch.testing.assert_close(outputs, expected_outputs, **TOL)
    torch.testing.assert_close(final, expected_final, **TOL)


def test_a_module_changes_only_when_its_period_divides_t():
    cell = randomised(ClockworkCell(INPUT, HIDDEN, modules=3))  # periods 1, 2, 4: two units each
    x, (h0,) = torch.randn(10, BATCH, INPUT, dtype=torch.float64), random_state(cell)
    outputs, _ = run_loop(cell, x, (h0,))
    previous = torch.cat([h0.unsqueeze(0), outputs[:-1]])
    changed = outputs.ne(previous).view(10, BATCH, 3, 2).any(dim=3).all(dim=1)  # (T, modules)
    kept = outputs.eq(previous).view(10, BATCH, 3, 2).all(dim=3).all(dim=1)
    for module, expected_ticks in enumerate([list(range(10)), [0, 2, 4, 6, 8], [0, 4, 8]]):
        assert [t for t in range(10) if changed[t, module]] == expected_ticks
        assert [t for t in range(10) if not kept[t, module]] == expected_ticks


def test_recurrent_weights_are_block_upper_triangular_and_masked_ones_get_no_gradient():
    cell = ClockworkCell(INPUT, HIDDEN, modules=3).double()
    expected = torch.kron(torch.ones(3, 3).triu(), torch.ones(2, 2)).double()  # (H, H)
    torch.testing.assert_close(cell.weight_hh_mask, expected, rtol=0, atol=0)
    assert cell.weight_hh[expected == 0].eq(0).all()  # absent connections start at 0
    assert cell.weight_hh[expected == 1].ne(0).all()
    outputs, _ = run_loop(cell, torch.randn(9, BATCH, INPUT, dtype=torch.float64), random_state(cell))
    (grad,) = torch.autograd.grad(outputs.square().sum(), cell.weight_hh)
    assert grad[expected == 0].eq(0).all()
    assert grad[expected == 1].ne(0).all()
    assert "weight_hh_mask" not in cell.state_dict()  # derived from the options, not saved


def test_a_faster_module_never_influences_a_slower_one():
    """Perturb the fast module's state at every step: the slow module's outputs do not move,
    while the slow module does reach the fast one (connections run from slow to fast)."""
    cell = randomised(ClockworkCell(INPUT, HIDDEN, modules=3))  # masked weights nonzero
    fast, middle, slow = slice(0, 2), slice(2, 4), slice(4, 6)
    x, (h,) = torch.randn(9, BATCH, INPUT, dtype=torch.float64), random_state(cell)
    kicks = torch.zeros(9, BATCH, HIDDEN, dtype=torch.float64, requires_grad=True)  # d/d h_{t-1}
    outputs = []
    for t, (x_t, kick) in enumerate(zip(cell.input_projection(x), kicks)):
        h, _ = cell.step(x_t, (h + kick,), t)
        outputs.append(h)
    outputs = torch.stack(outputs)  # (T, B, H)
    (to_slow,) = torch.autograd.grad(outputs[:, :, slow].sum(), kicks, retain_graph=True)
    assert to_slow[:, :, fast].eq(0).all() and to_slow[:, :, middle].eq(0).all()
    assert to_slow[:, :, slow].ne(0).any()
    (to_fast,) = torch.autograd.grad(outputs[:, :, fast].sum(), kicks)
    assert to_fast[:, :, slow].ne(0).any() and to_fast[:, :, middle].ne(0).any()


def test_default_periods_are_powers_of_two():
    assert ClockworkCell(INPUT, 8).periods.tolist() == [1, 2, 4, 8]
    assert ClockworkCell(INPUT, HIDDEN, periods=[1, 5]).periods.tolist() == [1, 5]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"modules": 4}, "hidden_size must be a multiple of modules. Expected a multiple of 4, got 6"),
        ({"modules": 0}, "modules must be a positive integer, got 0"),
        ({"modules": 3, "periods": (1, 2)}, "periods needs one entry per module. Expected 3, got 2"),
        ({"periods": (2, 1, 4)}, r"periods must be strictly increasing, got \[2, 1, 4\]"),
        ({"periods": (0, 1, 2)}, r"periods must be positive integers, got \[0, 1, 2\]"),
    ],
    ids=["indivisible", "no_modules", "periods_count", "decreasing", "zero_period"],
)
def test_clockwork_rejects_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        ClockworkCell(INPUT, HIDDEN, **options)


# ---- deep transition ----------------------------------------------------------------------------


def transition_reference(cell: DeepTransitionCell, h: Tensor) -> Tensor:
    """z_k = φ(W_tr,k z_{k-1} + b_tr,k), layer by layer from z_0 = h."""
    for k in range(cell.depth):
        h = PHI[cell.activation](affine(h, cell.weight_tr[k], cell.bias_tr[k]))
    return h


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_deep_transition_of_an_elman_cell_equations(activation):
    """h_t = tanh(W_ih x_t + b_ih + W_hh z_L + b_hh), z_L the transition of h_{t-1}, over time."""
    cell = randomised(DeepTransitionCell(ElmanCell(INPUT, HIDDEN), depth=3, activation=activation))
    x, (h,) = torch.randn(5, BATCH, INPUT, dtype=torch.float64), random_state(cell)
    outputs, (final,) = run_loop(cell, x, (h,))
    inner = cell.cell
    for t, x_t in enumerate(x):
        z = transition_reference(cell, h)
        h = torch.tanh(affine(x_t, inner.weight_ih, inner.bias_ih) + affine(z, inner.weight_hh, inner.bias_hh))
        torch.testing.assert_close(outputs[t], h, **TOL)
    torch.testing.assert_close(final, h, **TOL)


@pytest.mark.parametrize(
    "inner",
    [lambda: LSTMCell(INPUT, HIDDEN, proj_size=2), lambda: GRUCell(INPUT, HIDDEN), lambda: SkipCell(INPUT, HIDDEN, delay=3)],
    ids=["lstm-proj", "gru", "skip"],
)
def test_deep_transition_transforms_only_the_first_state_tensor(inner):
    cell = randomised(DeepTransitionCell(inner(), depth=2))
    xp, state = cell.input_projection(torch.randn(1, BATCH, INPUT, dtype=torch.float64))[0], random_state(cell)
    output, new_state = cell.step(xp, state, 0)
    expected_output, expected_state = cell.cell.step(xp, (transition_reference(cell, state[0]), *state[1:]), 0)
    torch.testing.assert_close(output, expected_output, **TOL)
    for got, want in zip(new_state, expected_state):
        torch.testing.assert_close(got, want, **TOL)
    assert cell.weight_tr.shape == (2, cell.state_sizes[0], cell.state_sizes[0])  # P for the LSTM


def test_depth_zero_is_the_bare_cell():
    for name in cell_names():  # 8 units: a clockwork cell's default 4 modules need a multiple of 4
        size = 8 if name in ("mut1", "mut2") else INPUT
        assert type(make_cell(name, size, 8, transition_depth=0)) is type(make_cell(name, size, 8))
    torch.manual_seed(1)
    bare = Recurrent("gru", INPUT, HIDDEN)
    torch.manual_seed(1)
    zero = Recurrent("gru", INPUT, HIDDEN, transition_depth=0)
    x = torch.randn(5, BATCH, INPUT)
    torch.testing.assert_close(zero(x)[0], bare(x)[0], rtol=0, atol=0)


def test_deep_transition_state_dict_is_the_bare_cells_plus_the_transition():
    model = Recurrent("gru", INPUT, HIDDEN, num_layers=2, bidirectional=True, transition_depth=2)
    bare = torch.nn.GRU(INPUT, HIDDEN, num_layers=2, bidirectional=True)
    transition = {f"{w}_tr_l{layer}{r}" for w in ("weight", "bias") for layer in (0, 1) for r in ("", "_reverse")}
    assert set(model.state_dict()) == set(bare.state_dict()) | transition
    assert model.weight_hh_l1_reverse is model.cells[3].cell.weight_hh  # attributes by the same names
    result = model.load_state_dict(bare.state_dict(), strict=False)  # torch's weights, a fresh transition
    assert sorted(result.missing_keys) == sorted(transition) and not result.unexpected_keys
    torch.testing.assert_close(model.cells[3].cell.weight_hh, bare.weight_hh_l1_reverse, rtol=0, atol=0)
    copy = Recurrent("gru", INPUT, HIDDEN, num_layers=2, bidirectional=True, transition_depth=2)
    partial = {k: v for k, v in model.state_dict().items() if k not in ("weight_ih_l1", "bias_tr_l0")}
    assert sorted(copy.load_state_dict(partial, strict=False).missing_keys) == ["bias_tr_l0", "weight_ih_l1"]
    copy.load_state_dict(model.state_dict())
    x = torch.randn(5, BATCH, INPUT)
    torch.testing.assert_close(copy(x)[0], model(x)[0], rtol=0, atol=0)


def test_make_cell_offers_transition_depth_for_every_cell():
    assert all(cell_options(name)["transition_depth"].default == 0 for name in cell_names())
    with pytest.raises(ValueError, match="its options are .*reset_after, transition_depth"):
        make_cell("gru", INPUT, HIDDEN, transition_dpth=2)
    for depth in (-1, 1.5, True):
        with pytest.raises(ValueError, match=f"transition_depth must be a non-negative integer, got {depth!r}"):
            make_cell("gru", INPUT, HIDDEN, transition_depth=depth)
    with pytest.raises(ValueError, match="already has a deep transition of depth 2"):
        DeepTransitionCell(make_cell("gru", INPUT, HIDDEN, transition_depth=2), depth=1)
    with pytest.raises(ValueError, match="activation must be one of"):
        DeepTransitionCell(GRUCell(INPUT, HIDDEN), depth=1, activation="sigmoid")


# ---- all three: the engine runs them with the loop, lengths included ---------------------------

NEW_CELLS = {
    "skip": lambda: SkipCell(INPUT, HIDDEN, delay=3),
    "clockwork": lambda: ClockworkCell(INPUT, HIDDEN, modules=3),
    "deep-elman": lambda: DeepTransitionCell(ElmanCell(INPUT, HIDDEN), depth=2),
    "deep-lstm": lambda: DeepTransitionCell(LSTMCell(INPUT, HIDDEN), depth=1),
    "deep-gru": lambda: DeepTransitionCell(GRUCell(INPUT, HIDDEN), depth=1),
    "deep-linear_leaky": lambda: DeepTransitionCell(LeakyCell(INPUT, HIDDEN, recurrent=False), depth=1),
}


@pytest.mark.parametrize("make", NEW_CELLS.values(), ids=NEW_CELLS.keys())
def test_only_the_loop_runs_them(make):
    cell = make()
    assert cell.kernel is None
    assert not (fused.supports(cell) or native.supports(cell) or scan.supports(cell))
    for device in ("cpu", "cuda"):
        for with_lengths in (False, True):
            assert fastest_executor(cell, torch.device(device), with_lengths) is run_loop


RECURRENT_CASES = {
    "skip": ("skip", {"delay": 3}),
    "clockwork": ("clockwork", {"modules": 3}),
    "deep-gru": ("gru", {"transition_depth": 2}),
    "deep-lstm": ("lstm", {"transition_depth": 1}),
}


@pytest.mark.parametrize(("name", "options"), RECURRENT_CASES.values(), ids=RECURRENT_CASES.keys())
def test_recurrent_with_lengths_equals_each_sequence_alone(name, options):
    with pytest.raises(ValueError, match="the fused executor cannot run"):
        Recurrent(name, INPUT, HIDDEN, executor="fused", **options)
    model = Recurrent(name, INPUT, HIDDEN, num_layers=2, bidirectional=True, **options).double()  # auto
    x = torch.randn(7, BATCH, INPUT, dtype=torch.float64)
    state = tuple(torch.randn(4, BATCH, size, dtype=torch.float64) for size in model.cells[0].state_sizes)
    lengths = torch.tensor([7, 3, 5])
    output, final = model(x, state, lengths=lengths)
    for b, length in enumerate(lengths.tolist()):
        alone, alone_final = model(x[:length, b : b + 1], tuple(s[:, b : b + 1] for s in state))
        torch.testing.assert_close(output[:length, b : b + 1], alone, **TOL)
        assert output[length:, b].eq(0).all()
        for got, want in zip(final, alone_final):
            torch.testing.assert_close(got[:, b : b + 1], want, **TOL)


@pytest.mark.parametrize("make", NEW_CELLS.values(), ids=NEW_CELLS.keys())
def test_initialisation_and_initial_state(make):
    """Own parameters uniform in ±1/sqrt(S), S the (first) state's size; a wrapped cell keeps its
    own initialisation, tested with the cell."""
    cell = make()
    bound = 1.0 / math.sqrt(cell.state_sizes[0])
    for name, parameter in cell.named_parameters(recurse=False):
        assert parameter.abs().le(bound).all() and parameter.ne(0).any(), name
    state = cell.init_state(BATCH, torch.device("cpu"), torch.float64)
    assert [tuple(s.shape) for s in state] == [(BATCH, size) for size in cell.state_sizes]
    assert all(s.eq(0).all() for s in state)


def test_registered():
    assert REGISTRY["skip"] is SkipCell and REGISTRY["clockwork"] is ClockworkCell


@pytest.mark.parametrize("module", ["skip", "clockwork", "deep_transition"])
def test_docstring_examples_run(module):
    results = doctest.testmod(
        importlib.import_module(f"rnnkit.cells.{module}"), optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert results.attempted > 0
    assert results.failed == 0
