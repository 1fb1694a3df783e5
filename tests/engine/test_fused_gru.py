"""The fused GRU kernels, both reset placements with and without biases, against the reference loop.

Every comparison runs on both back-ends of the fused executor, the C++ time loops and the Python
fall-back. Sizes are chosen for the C++ gate math: 37 units leave a partial SIMD vector at the end
of each row, and 128 × 37 elements per step split the rows over two threads. Everything else runs
on one thread, which is fastest for tiny sizes and immune to other work on a shared machine.
"""

from __future__ import annotations

import pytest
import torch
from fused_backends import BACKENDS, use_backend

from rnnkit import Recurrent
from rnnkit.cells import GRUCell
from rnnkit.engine import fused
from rnnkit.engine.fused import FusedRecurrence, extension, gru
from rnnkit.engine.threads import torch_threads

LAYOUTS = {"1-layer": (1, False), "2-layers": (2, False), "bidirectional": (1, True)}
OPTIONS = {
    "reset_after": {"reset_after": True},
    "reset_after-nobias": {"reset_after": True, "bias": False},
    "reset_before": {"reset_after": False},
    "reset_before-nobias": {"reset_after": False, "bias": False},
}
STEPS, BATCH, SIZE = 5, 3, 37
LENGTHS = torch.tensor([5, 2, 4])
TOL = {"rtol": 1e-5, "atol": 1e-5}

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_fused_equals_loop(name: str, options: dict, num_layers: int, bidirectional: bool, batch: int,
                             lengths: torch.Tensor | None, scale: float = 1.0) -> None:
    """Outputs, final state and the gradients of input, initial state and every parameter agree.

    ``scale`` multiplies every parameter: large values saturate the gates, where a fast sigmoid
    or tanh would lose its accuracy first.
    """
    reference = Recurrent(name, SIZE, SIZE, num_layers, bidirectional, executor="loop", **options)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.mul_(scale)
    model = Recurrent(name, SIZE, SIZE, num_layers, bidirectional, executor="fused", **options)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(STEPS, batch, SIZE, requires_grad=True)
    h0 = torch.randn(len(model.cells), batch, SIZE, requires_grad=True)
    results = []
    for module in (reference, model):
        output, (h,) = module(x, (h0,), lengths=lengths)
        weights = torch.Generator().manual_seed(1)
        loss = (output * torch.randn(output.shape, generator=weights)).sum() + (h * torch.randn(h.shape, generator=weights)).sum()
        results.append((output, h, *torch.autograd.grad(loss, [x, h0, *module.parameters()])))
    labels = ["output", "final h", "d/d input", "d/d h0", *(f"d/d {n}" for n, _ in model.named_parameters())]
    for label, got, want in zip(labels, results[1], results[0]):
        torch.testing.assert_close(got, want, **TOL, msg=lambda m, label=label: f"{label}: {m}")


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_equals_loop(backend, options, layout, lengths, monkeypatch):
    use_backend(backend, monkeypatch)
    assert_fused_equals_loop("gru", options, *layout, BATCH, lengths)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("backend", BACKENDS)
def test_fused_equals_loop_with_rows_split_over_threads_and_saturated_gates(backend, options, monkeypatch):
    use_backend(backend, monkeypatch)
    lengths = torch.randint(1, STEPS + 1, (128,))
    with torch_threads(2):
        assert_fused_equals_loop("gru", options, 1, False, 128, lengths, scale=4.0)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
def test_cpp_and_python_kernels_agree_step_for_step(options, monkeypatch):
    """The two back-ends' forward, saved tensors and backward, called directly, one sequence empty."""
    if extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    cell = GRUCell(SIZE, SIZE, **options)
    xp = cell.input_projection(torch.randn(STEPS, 4, SIZE)).detach()
    h0 = torch.randn(4, SIZE)
    alive = (torch.arange(STEPS).unsqueeze(1) < torch.tensor([5, 0, 3, 1])).unsqueeze(-1).float()
    grad_outputs, grad_h = torch.randn(STEPS, 4, SIZE), torch.randn(4, SIZE)
    params, variant = tuple(p.detach() if p is not None else None for p in gru.parameters(cell)), gru.flags(cell)
    results = []
    for backend in BACKENDS:
        with monkeypatch.context() as patch:
            use_backend(backend, patch)
            outputs, final, saved = gru.forward(variant, xp, (h0,), params, alive)
            grads = gru.backward(variant, saved, params, alive, grad_outputs, (grad_h,))
            results.append([outputs, *final, *saved, grads[0], *grads[1], *(g for g in grads[2] if g is not None)])
    for got, want in zip(*results, strict=True):
        torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("options", OPTIONS.values(), ids=OPTIONS.keys())
@pytest.mark.parametrize("backend", BACKENDS)
def test_gradcheck(backend, options, monkeypatch):
    """float64 gradients of the whole fused recurrence, one sequence finishing early, one empty."""
    use_backend(backend, monkeypatch)
    cell = GRUCell(2, 2, **options).double()
    params = tuple(p.detach().clone().requires_grad_() for p in gru.parameters(cell) if p is not None)
    xp = torch.randn(4, 3, 6, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(3, 2, dtype=torch.float64, requires_grad=True)
    alive = (torch.arange(4).unsqueeze(1) < torch.tensor([4, 2, 0])).unsqueeze(-1).double()

    def recurrence(xp, h0, *params):
        return FusedRecurrence.apply(gru, gru.flags(cell), alive, 1, xp, h0, *params, *(None,) * (2 - len(params)))

    assert torch.autograd.gradcheck(recurrence, (xp, h0, *params))


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset_after", "reset_before"])
def test_the_gru_kernel_runs_both_placements(reset_after):
    cell = GRUCell(3, 4, reset_after=reset_after)
    assert fused.supports(cell)
    assert gru.flags(cell) == gru.Variant(reset_after=reset_after)
