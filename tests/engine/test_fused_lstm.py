"""The fused LSTM kernel (``rnnkit.engine.fused.lstm``) equals the reference loop.

Every option of ``LSTMCell`` (peepholes, coupled gates, projection, no bias) through both
implementations of its hand-derived BPTT, C++ and Python: outputs, final states and the gradients
of the input, the initial state and every parameter, against ``executor="loop"`` in float32 and by
float64 ``gradcheck``; the two implementations against each other; saturated gates; a step's gate
arithmetic split over two threads mid-row; and tensors off the CPU where a GPU is present.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from rnnkit import Recurrent
from rnnkit.engine import fused
from rnnkit.engine.fused import extension
from rnnkit.engine.threads import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

# id -> (cell name, options): every option of LSTMCell, alone and combined
OPTIONS = {
    "default": ("lstm", {}),
    "peephole": ("peephole", {}),
    "cifg": ("cifg", {}),
    "peephole-cifg": ("peephole", {"coupled": True}),
    "proj": ("lstm", {"proj_size": 7}),
    "proj-peephole-cifg": ("cifg", {"peephole": True, "proj_size": 7}),
    "proj-peephole": ("peephole", {"proj_size": 7}),
    "nobias": ("lstm", {"bias": False}),
}
LAYOUTS = {"1-layer": (1, False), "2-layers": (2, False), "bidirectional": (1, True)}
# 37 units: two full 16-lane SIMD vectors and a tail; I ≠ H; one sequence of a single step
STEPS, BATCH, INPUT, HIDDEN = 7, 4, 11, 37
LENGTHS = torch.tensor([7, 3, 1, 5])
TOL = {"rtol": 1e-5, "atol": 1e-5}
# gradcheck: T=4, B=2, I=H=3, P=2, one sequence ending early
GRAD_STEPS, GRAD_LENGTHS, GRAD_SIZE, GRAD_PROJ = 4, torch.tensor([4, 2]), 3, 2


@pytest.fixture(params=["cpp", "python"])
def backend(request, monkeypatch) -> str:
    """Runs a test once with the C++ kernels and once with their Python versions."""
    if request.param == "cpp" and extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    if request.param == "python":
        monkeypatch.setattr(extension, "ops", lambda: None)
    return request.param


@pytest.fixture
def two_threads() -> Iterator[None]:
    with torch_threads(2):
        yield


def pair(option: str, input_size: int, hidden_size: int, **layout) -> tuple[Recurrent, Recurrent]:
    """The reference (loop) and the fused model of ``option``, with the same weights."""
    name, options = OPTIONS[option]
    reference = Recurrent(name, input_size, hidden_size, executor="loop", **layout, **options)
    model = Recurrent(name, input_size, hidden_size, executor="fused", **layout, **options)
    model.load_state_dict(reference.state_dict())
    return reference, model


def results(model: Recurrent, x: Tensor, state: tuple[Tensor, ...], lengths: Tensor | None) -> list[Tensor]:
    """Outputs, final states, and the gradients of a random projection of them w.r.t. everything."""
    output, final = model(x, state, lengths=lengths)
    generator = torch.Generator().manual_seed(1)
    weights = [torch.randn(t.shape, generator=generator, dtype=t.dtype).to(t.device) for t in (output, *final)]
    loss = sum((w * t).sum() for w, t in zip(weights, (output, *final)))
    return [output, *final, *torch.autograd.grad(loss, [x, *state, *model.parameters()])]


def labels(model: Recurrent) -> list[str]:
    names = [name for name, _ in model.named_parameters()]
    return ["output", "h_T", "c_T", "d/d input", "d/d h_0", "d/d c_0", *(f"d/d {name}" for name in names)]


def inputs(model: Recurrent, steps: int, batch: int, scale: float = 1.0, dtype=torch.float32):
    x = (scale * torch.randn(steps, batch, model.input_size, dtype=dtype)).requires_grad_()
    state = tuple(
        torch.randn(len(model.cells), batch, size, dtype=dtype, requires_grad=True)
        for size in model.cells[0].state_sizes
    )
    return x, state


def assert_all_close(model: Recurrent, actual: list[Tensor], expected: list[Tensor], **tolerance) -> None:
    for label, got, want in zip(labels(model), actual, expected, strict=True):
        torch.testing.assert_close(got, want, **tolerance, msg=lambda m, label=label: f"{label}: {m}")


@pytest.mark.parametrize("option", OPTIONS)
def test_every_option_has_the_fused_kernel(option):
    name, options = OPTIONS[option]
    cell = Recurrent(name, INPUT, HIDDEN, **options).cells[0]
    assert fused.supports(cell)


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("option", OPTIONS)
def test_equals_loop(option, layout, lengths, backend):
    num_layers, bidirectional = layout
    reference, model = pair(option, INPUT, HIDDEN, num_layers=num_layers, bidirectional=bidirectional)
    x, state = inputs(model, STEPS, BATCH)
    assert_all_close(model, results(model, x, state, lengths), results(reference, x, state, lengths), **TOL)


@pytest.mark.parametrize("option", OPTIONS)
def test_saturated_gates_as_accurate_as_loop(option, backend):
    """Inputs 30× too large drive the gates to 0 or 1: nothing overflows, and the float32 results
    lie as close to float64's as the float32 loop's do. Not within 1e-5 of the loop's: a saturated
    derivative such as 1 - g² turns one rounding of g into a large relative error, and the C++
    kernels' fast exp and tanh round differently from torch's."""
    reference, model = pair(option, INPUT, HIDDEN)
    exact = copy.deepcopy(reference).double()
    x, state = inputs(model, STEPS, BATCH, scale=30.0)
    actual, loop = results(model, x, state, LENGTHS), results(reference, x, state, LENGTHS)
    x64, state64 = x.detach().double().requires_grad_(), tuple(s.detach().double().requires_grad_() for s in state)
    truth = results(exact, x64, state64, LENGTHS)
    for label, got, near, want in zip(labels(model), actual, loop, truth, strict=True):
        assert bool(got.isfinite().all()), label
        error, loop_error = (((t.double() - want).abs() / (want.abs() + 1)).max().item() for t in (got, near))
        assert error <= 4 * loop_error + 1e-6, f"{label}: {error:.1e} from float64, the loop {loop_error:.1e}"


@pytest.mark.parametrize("option", ["default", "peephole-cifg", "proj-peephole"])
def test_gate_arithmetic_split_over_threads_equals_loop(option, two_threads):
    """3 × 1500 units per step exceed the C++ kernels' grain (4096): two threads share each step,
    one of them starting mid-row at unit 750, off the SIMD vectors' boundaries."""
    if extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    reference, model = pair(option, 5, 1500)
    x, state = inputs(model, 3, 3)
    lengths = torch.tensor([3, 1, 2])
    assert_all_close(model, results(model, x, state, lengths), results(reference, x, state, lengths), **TOL)


@pytest.mark.parametrize("option", OPTIONS)
def test_gradcheck(option, backend):
    name, options = OPTIONS[option]
    options = {**options, "proj_size": GRAD_PROJ} if "proj_size" in options else options
    model = Recurrent(name, GRAD_SIZE, GRAD_SIZE, bidirectional=True, executor="fused", **options).double()
    names = [key for key, _ in model.named_parameters()]
    x, state = inputs(model, GRAD_STEPS, len(GRAD_LENGTHS), dtype=torch.float64)
    parameters = [p.detach().clone().requires_grad_() for p in model.parameters()]

    def outputs_and_final_state(x, h, c, *values):
        output, final = functional_call(model, dict(zip(names, values)), (x, (h, c)), {"lengths": GRAD_LENGTHS})
        return (output, *final)

    assert torch.autograd.gradcheck(outputs_and_final_state, (x, *state, *parameters))


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("option", OPTIONS)
def test_cpp_equals_python(option, lengths, monkeypatch):
    """The two implementations are the same equations: in float64 they agree to rounding."""
    if extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    _, model = pair(option, INPUT, HIDDEN, bidirectional=True)
    model = model.double()
    x, state = inputs(model, STEPS, BATCH, dtype=torch.float64)
    cpp = results(model, x, state, lengths)
    monkeypatch.setattr(extension, "ops", lambda: None)
    python = results(model, x, state, lengths)
    assert_all_close(model, cpp, python, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
@pytest.mark.parametrize("option", OPTIONS)
def test_on_gpu_equals_loop_on_cpu(option, backend):
    """Off the CPU the C++ kernels compose ATen ops instead of their SIMD loops."""
    reference, model = pair(option, INPUT, HIDDEN, bidirectional=True)
    x, state = inputs(model, STEPS, BATCH)
    expected = results(reference, x, state, LENGTHS)
    model = model.cuda()
    x_gpu = x.detach().cuda().requires_grad_()
    state_gpu = tuple(s.detach().cuda().requires_grad_() for s in state)
    actual = results(model, x_gpu, state_gpu, LENGTHS.cuda())
    assert_all_close(model, [t.cpu() for t in actual], expected, **TOL)
