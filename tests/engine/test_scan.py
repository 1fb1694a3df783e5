"""The scan executor equals the reference loop: outputs, final states and every gradient.

A leaky cell without a recurrent matrix is linear in its state; ``run_scan`` computes it by a
parallel prefix scan whose gradients come from autograd. Sequence lengths cover one step, fewer
steps than a block, lengths that leave a partial block, several levels of the recursion, and 2000
steps (where products of many alphas underflow).
"""

from __future__ import annotations

import pytest
import torch

from rnnkit import Recurrent
from rnnkit.cells import ElmanCell, GRUCell, LeakyCell
from rnnkit.engine import scan
from rnnkit.engine.loop import run_loop
from rnnkit.engine.scan import run_scan, supports

INPUT, HIDDEN, BATCH = 5, 6, 3
ALPHAS = [0.01, 0.2, 0.5, 0.8, 0.9, 0.95]  # time constants from 1 to 20 steps
TOL = {"rtol": 1e-5, "atol": 1e-5}
OPTIONS = {
    "learned_alpha": {"alpha": ALPHAS, "learn_alpha": True},
    "fixed_alpha": {"alpha": 0.7},
    "nobias": {"alpha": ALPHAS, "learn_alpha": True, "bias": False},
}
STEPS = [1, scan.BLOCK - 1, 2 * scan.BLOCK + 3, scan.BLOCK**3 + 5]

pytestmark = pytest.mark.usefixtures("one_thread")


def leaky(dtype: torch.dtype = torch.float32, **options) -> LeakyCell:
    cell = LeakyCell(INPUT, HIDDEN, recurrent=False, **options).to(dtype)
    with torch.no_grad():  # biases and weights large enough that every term matters
        for name, parameter in cell.named_parameters():
            if name != "alpha_logit":
                parameter.normal_(0.0, 0.5)
    return cell


def results(executor, cell: LeakyCell, x: torch.Tensor, mu: torch.Tensor, lengths: torch.Tensor | None):
    """Outputs, final state, and the gradients of a random loss w.r.t. input, state and parameters."""
    output, (final,) = executor(cell, x, (mu,), lengths)
    weights = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i), dtype=t.dtype)
               for i, t in enumerate((output, final))]
    loss = (weights[0] * output).sum() + (weights[1] * final).sum()
    return [output, final, *torch.autograd.grad(loss, [x, mu, *cell.parameters()])]


def assert_scan_equals_loop(cell: LeakyCell, steps: int, lengths: torch.Tensor | None, tol: dict = TOL) -> None:
    dtype = cell.weight_ih.dtype
    x = torch.randn(steps, len(lengths) if lengths is not None else BATCH, INPUT, dtype=dtype, requires_grad=True)
    mu = torch.randn(x.size(1), HIDDEN, dtype=dtype, requires_grad=True)
    labels = ["outputs", "final state", "d/d input", "d/d initial state",
              *(f"d/d {name}" for name, _ in cell.named_parameters())]
    expected, actual = results(run_loop, cell, x, mu, lengths), results(run_scan, cell, x, mu, lengths)
    for label, got, want in zip(labels, actual, expected, strict=True):
        torch.testing.assert_close(got, want, **tol, msg=lambda m, label=label: f"{label}: {m}")


@pytest.mark.parametrize("lengths", ["full", "lengths"])
@pytest.mark.parametrize("steps", STEPS, ids=[f"T={s}" for s in STEPS])
@pytest.mark.parametrize("option", OPTIONS)
def test_scan_equals_loop(option, steps, lengths):
    lengths = None if lengths == "full" else torch.tensor([steps, max(1, steps // 2), 1])
    assert_scan_equals_loop(leaky(**OPTIONS[option]), steps, lengths)


@pytest.mark.parametrize("lengths", [None, torch.tensor([2000, 1999, 1, 1024, 777])], ids=["full", "lengths"])
def test_scan_equals_loop_over_2000_steps(lengths):
    assert_scan_equals_loop(leaky(**OPTIONS["learned_alpha"]), 2000, lengths)


def test_scan_is_exact_algebra_for_slow_units_in_float64():
    """Time constants of 1000 steps over 3000 steps: float32 rounding alone parts the two orders
    of summation by 1e-5 there, so the scan's algebra is checked in float64."""
    cell = leaky(torch.float64, alpha=[0.9, 0.99, 0.995, 0.999, 0.9995, 0.9999], learn_alpha=True)
    assert_scan_equals_loop(cell, 3000, torch.tensor([3000, 2500, 17]), tol={"rtol": 1e-10, "atol": 1e-10})


class Scanned(torch.nn.Module):
    """A cell run by ``run_scan`` as a module, for ``functional_call``."""

    def __init__(self, cell: LeakyCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, x: torch.Tensor, mu: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output, (final,) = run_scan(self.cell, x, (mu,), lengths)
        return output, final


def test_gradcheck():
    """Every input and parameter against finite differences, in float64."""
    module = Scanned(leaky(torch.float64, **OPTIONS["learned_alpha"]))
    names = [name for name, _ in module.named_parameters()]
    steps = 2 * scan.BLOCK + 3  # two levels of blocks, the last one partial
    x = torch.randn(steps, 2, INPUT, dtype=torch.float64, requires_grad=True)
    mu = torch.randn(2, HIDDEN, dtype=torch.float64, requires_grad=True)
    parameters = [p.detach().clone().requires_grad_() for p in module.parameters()]
    lengths = torch.tensor([steps, 5])

    def run(x, mu, *values):
        return torch.func.functional_call(module, dict(zip(names, values)), (x, mu, lengths))

    assert torch.autograd.gradcheck(run, (x, mu, *parameters))


def test_supports_only_state_linear_cells():
    assert supports(LeakyCell(INPUT, HIDDEN, recurrent=False))
    assert not supports(LeakyCell(INPUT, HIDDEN))
    assert not supports(ElmanCell(INPUT, HIDDEN))
    assert not supports(GRUCell(INPUT, HIDDEN))


def test_recurrent_refuses_the_scan_for_a_nonlinear_cell():
    with pytest.raises(ValueError, match="the scan executor cannot run LeakyCell"):
        Recurrent("leaky", INPUT, HIDDEN, executor="scan")


def test_a_leaky_cell_without_recurrence_reads_only_its_input():
    """v_t = tanh(W_ih x_t + b_ih) and mu_t = alpha mu_{t-1} + (1 - alpha) v_t; no W_hh, no b_hh."""
    cell = leaky(**OPTIONS["learned_alpha"])
    assert cell.weight_hh is None and cell.bias_hh is None
    assert "weight_hh" not in dict(cell.named_parameters()) and "bias_hh" not in dict(cell.named_parameters())
    x, mu = torch.randn(BATCH, INPUT), torch.randn(BATCH, HIDDEN)
    alpha = torch.sigmoid(cell.alpha_logit)
    expected = alpha * mu + (1 - alpha) * torch.tanh(x @ cell.weight_ih.t() + cell.bias_ih)
    output, (mu_new,) = cell.step(cell.input_projection(x.unsqueeze(0))[0], (mu,), 0)
    torch.testing.assert_close(output, expected, **TOL)
    torch.testing.assert_close(mu_new, expected, **TOL)
    assert "recurrent=False" in repr(cell)
