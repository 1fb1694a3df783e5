"""The fused MUT1–3 kernels (the GRU's reset-before loop, see ``fused/mut.py``) against the loop.

MUT1 and MUT2 add the input itself to an H-sized sum, so they cannot read a bidirectional layer's
2H outputs: they run in two stacked layers of one direction, and in one bidirectional layer.
"""

from __future__ import annotations

import pytest
import torch
from fused_backends import BACKENDS, use_backend
from test_fused_gru import LENGTHS, SIZE, STEPS, TOL, assert_fused_equals_loop

from rnnkit.cells import MUT1Cell, MUT2Cell, MUT3Cell
from rnnkit.engine import fused
from rnnkit.engine.fused import FusedRecurrence, extension, mut
from rnnkit.engine.threads import torch_threads

LAYOUTS = {"1-layer": (1, False), "2-layers": (2, False), "bidirectional": (1, True)}
CELLS = {"mut1": MUT1Cell, "mut2": MUT2Cell, "mut3": MUT3Cell}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_equals_loop(backend, name, layout, lengths, monkeypatch):
    use_backend(backend, monkeypatch)
    assert_fused_equals_loop(name, {}, *layout, 3, lengths)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_equals_loop_with_rows_split_over_threads_and_saturated_gates(backend, name, monkeypatch):
    use_backend(backend, monkeypatch)
    lengths = torch.randint(1, STEPS + 1, (128,))
    with torch_threads(2):
        assert_fused_equals_loop(name, {}, 1, False, 128, lengths, scale=4.0)


@pytest.mark.parametrize("name", CELLS)
def test_cpp_and_python_kernels_agree_step_for_step(name, monkeypatch):
    """The two back-ends' forward, saved tensors and backward, called directly, one sequence empty."""
    if extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    cell = CELLS[name](SIZE, SIZE)
    xp = cell.input_projection(torch.randn(STEPS, 4, SIZE)).detach()
    h0 = torch.randn(4, SIZE)
    alive = (torch.arange(STEPS).unsqueeze(1) < torch.tensor([5, 0, 3, 1])).unsqueeze(-1).float()
    grad_outputs, grad_h = torch.randn(STEPS, 4, SIZE), torch.randn(4, SIZE)
    w_hh, _ = mut.parameters(cell)
    params, variant = (w_hh.detach(), None), mut.flags(cell)
    results = []
    for backend in BACKENDS:
        with monkeypatch.context() as patch:
            use_backend(backend, patch)
            outputs, final, saved = mut.forward(variant, xp, (h0,), params, alive)
            grad_xp, grad_state, (grad_w, grad_b) = mut.backward(variant, saved, params, alive, grad_outputs, (grad_h,))
            assert grad_b is None
            results.append([outputs, *final, *saved, grad_xp, *grad_state, grad_w])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend, name, monkeypatch):
    """float64 gradients of the whole fused recurrence, one sequence finishing early, one empty."""
    use_backend(backend, monkeypatch)
    cell = CELLS[name](2, 2).double()
    w_hh = cell.weight_hh.detach().clone().requires_grad_()
    xp = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    alive = (torch.arange(4).unsqueeze(1) < torch.tensor([4, 2, 0])).unsqueeze(-1).double()

    def recurrence(xp, h0, w_hh):
        return FusedRecurrence.apply(mut, mut.flags(cell), alive, 1, xp, h0, w_hh, None)

    assert torch.autograd.gradcheck(recurrence, (xp, h0, w_hh))


def test_flags_tell_the_mutants_apart():
    variants = {name: mut.flags(cls(3, 3)) for name, cls in CELLS.items()}
    assert {v.z_reads for v in variants.values()} == {"nothing", "state", "tanh_state"}
    assert all(not v.reset_after and v.z_takes_candidate for v in variants.values())
    for cls in CELLS.values():
        cell = cls(3, 3)
        assert fused.supports(cell)
