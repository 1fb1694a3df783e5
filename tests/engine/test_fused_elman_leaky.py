"""The fused Elman and leaky-integrator kernels against the reference loop, every option.

Every comparison runs on both back-ends of the fused executor, the C++ time loops and the Python
fall-back. Sizes are chosen for the C++ pointwise pass: 37 units leave a partial SIMD vector at the
end of each row, and 256 × 37 elements per step split the units over two threads. Everything else
runs on one thread, which is fastest for tiny sizes and immune to other work on a shared machine.
"""

from __future__ import annotations

import math

import pytest
import torch
from fused_backends import BACKENDS, use_backend

from rnnkit import Recurrent
from rnnkit.cells import ElmanCell, LeakyCell
from rnnkit.engine import fused
from rnnkit.engine.fused import FusedRecurrence, extension
from rnnkit.engine.threads import torch_threads

LAYOUTS = {"1-layer": (1, False), "2-layers": (2, False), "bidirectional": (1, True)}
STEPS, BATCH, SIZE = 5, 3, 37
LENGTHS = torch.tensor([5, 2, 4])
ALPHAS = torch.linspace(0.05, 0.95, SIZE).tolist()  # a spread of time constants
OPTIONS = {
    "elman-tanh": ("elman", {}),
    "elman-relu": ("elman", {"nonlinearity": "relu"}),
    "elman-nobias": ("elman", {"bias": False}),
    "leaky-fixed_alpha": ("leaky", {"alpha": 0.3}),
    "leaky-learned_alpha": ("leaky", {"alpha": ALPHAS, "learn_alpha": True}),
    "leaky-nobias": ("leaky", {"bias": False, "learn_alpha": True}),
    "leaky-nonrecurrent": ("leaky", {"alpha": ALPHAS, "learn_alpha": True, "recurrent": False}),
    "leaky-nonrecurrent-fixed_alpha": ("leaky", {"recurrent": False}),
}
TOL = {"rtol": 1e-5, "atol": 1e-5}
BOUNDED = [option for option, (_, options) in OPTIONS.items() if options.get("nonlinearity") != "relu"]

pytestmark = pytest.mark.usefixtures("one_thread")


def outputs_and_gradients(model: Recurrent, x: torch.Tensor, state: torch.Tensor, lengths: torch.Tensor | None):
    output, (final,) = model(x, state, lengths=lengths)
    weights = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)).to(t.dtype)
               for i, t in enumerate((output, final))]
    loss = (weights[0] * output).sum() + (weights[1] * final).sum()
    return output, final, torch.autograd.grad(loss, [x, state, *model.parameters()])


def assert_fused_equals_loop(option: str, num_layers: int, bidirectional: bool, batch: int,
                             lengths: torch.Tensor | None, scale: float = 1.0, steps: int = STEPS,
                             dtype: torch.dtype = torch.float32, tol: dict = TOL) -> None:
    """Outputs, final state and the gradients of input, initial state and every parameter agree.

    ``scale`` multiplies every parameter: large values saturate tanh, where a fast approximation
    would show.
    """
    name, options = OPTIONS[option]
    reference = Recurrent(name, SIZE, SIZE, num_layers, bidirectional, executor="loop", **options)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.mul_(scale)
    model = Recurrent(name, SIZE, SIZE, num_layers, bidirectional, executor="fused", **options)
    model.load_state_dict(reference.state_dict())
    reference, model = reference.to(dtype), model.to(dtype)
    x = torch.randn(steps, batch, SIZE, dtype=dtype, requires_grad=True)
    state = torch.randn(len(model.cells), batch, SIZE, dtype=dtype, requires_grad=True)
    expected = outputs_and_gradients(reference, x, state, lengths)
    actual = outputs_and_gradients(model, x, state, lengths)
    torch.testing.assert_close(actual[0], expected[0], **tol, msg=lambda m: f"outputs: {m}")
    torch.testing.assert_close(actual[1], expected[1], **tol, msg=lambda m: f"final state: {m}")
    labels = ["input", "initial state", *(n for n, _ in model.named_parameters())]
    for label, got, want in zip(labels, actual[2], expected[2], strict=True):
        torch.testing.assert_close(got, want, **tol, msg=lambda m, label=label: f"d/d {label}: {m}")


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", OPTIONS)
def test_fused_equals_loop(option, backend, layout, lengths, monkeypatch):
    use_backend(backend, monkeypatch)
    assert_fused_equals_loop(option, *layout, BATCH, lengths)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", OPTIONS)
def test_fused_equals_loop_split_over_two_threads(option, backend, monkeypatch):
    """In float64, where a different order of the sums over 256 rows cannot hide a wrong split."""
    use_backend(backend, monkeypatch)
    batch = 256
    lengths = torch.randint(1, STEPS + 1, (batch,))
    with torch_threads(2):
        assert_fused_equals_loop(option, 1, False, batch, lengths, dtype=torch.float64,
                                 tol={"rtol": 1e-10, "atol": 1e-10})


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", BOUNDED)
def test_fused_is_as_accurate_as_loop_with_saturated_units(option, backend, monkeypatch):
    """Weights 8 times torch's initialisation: many units sit where tanh' = 1 - tanh² is tiny and
    only an exact tanh near ±1 gets it right. There float32's own round-off, amplified through the
    steps, reaches 1e-5 in the gradients, and two correct float32 computations that merely sum in
    another order (a packed GEMM) part by as much: so both are measured against the float64 loop,
    and the fused kernel must be within twice the loop's own error, everywhere."""
    use_backend(backend, monkeypatch)
    name, options = OPTIONS[option]
    reference = Recurrent(name, SIZE, SIZE, executor="loop", **options)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.mul_(8.0)
    model = Recurrent(name, SIZE, SIZE, executor="fused", **options)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(STEPS, BATCH, SIZE, requires_grad=True)
    state = torch.randn(1, BATCH, SIZE, requires_grad=True)
    float32_loop = outputs_and_gradients(reference, x, state, LENGTHS)
    fused_result = outputs_and_gradients(model, x, state, LENGTHS)
    reference.double()
    x64, state64 = (t.detach().double().requires_grad_() for t in (x, state))
    truth = outputs_and_gradients(reference, x64, state64, LENGTHS)
    labels = ["outputs", "final state", "d/d input", "d/d initial state", *(f"d/d {n}" for n, _ in model.named_parameters())]
    flat = [[result[0], result[1], *result[2]] for result in (float32_loop, fused_result, truth)]
    for label, loop_value, fused_value, true_value in zip(labels, *flat, strict=True):
        loop_error = (loop_value.double() - true_value).abs().max().item()
        fused_error = (fused_value.double() - true_value).abs().max().item()
        assert fused_error <= 2 * loop_error + 1e-7, f"{label}: fused {fused_error:.3g}, loop {loop_error:.3g} from float64"


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", ["elman-tanh", "leaky-learned_alpha", "leaky-nonrecurrent"])
def test_fused_equals_loop_over_long_sequences(option, backend, monkeypatch):
    """300 steps, with lengths, in float64: every step's saved state is read back correctly."""
    use_backend(backend, monkeypatch)
    lengths = torch.tensor([300, 1, 157])
    assert_fused_equals_loop(option, 1, False, 3, lengths, steps=300, dtype=torch.float64,
                             tol={"rtol": 1e-10, "atol": 1e-10})


def the_cell(option: str) -> ElmanCell | LeakyCell:
    """A cell of 3 units, in float64, with per-unit alphas spread over 3 units."""
    name, options = OPTIONS[option]
    if isinstance(options.get("alpha"), list):
        options = {**options, "alpha": [0.1, 0.5, 0.9]}
    return (ElmanCell if name == "elman" else LeakyCell)(3, 3, **options).double()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", OPTIONS)
def test_gradcheck_of_the_recurrence(option, backend, monkeypatch):
    """The hand-derived BPTT against finite differences, every input and parameter at once."""
    use_backend(backend, monkeypatch)
    cell = the_cell(option)
    family = fused.family(cell.kernel)
    params = [p.detach().clone().requires_grad_(p.requires_grad) if p is not None else None
              for p in family.parameters(cell)]
    xp = torch.randn(4, 2, 3, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    alive = torch.tensor([[1.0, 1.0], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]], dtype=torch.float64).unsqueeze(-1)
    inputs = [xp, h0, *(p for p in params if p is not None and p.requires_grad)]

    def recurrence(*tensors):
        supplied = iter(tensors[2:])
        full = [next(supplied) if p is not None and p.requires_grad else p for p in params]
        return FusedRecurrence.apply(family, family.flags(cell), alive, 1, tensors[0], tensors[1], *full)

    assert torch.autograd.gradcheck(recurrence, inputs)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fixed_alpha_is_left_without_gradient(backend, monkeypatch):
    use_backend(backend, monkeypatch)
    model = Recurrent("leaky", SIZE, SIZE, executor="fused", alpha=0.7)
    output, _ = model(torch.randn(STEPS, BATCH, SIZE))
    output.sum().backward()
    assert model.cells[0].alpha_logit.grad is None
    assert model.cells[0].weight_hh.grad is not None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("option", OPTIONS)
def test_non_contiguous_state_and_input(option, backend, monkeypatch):
    """The kernels read their inputs through strides they do not assume."""
    use_backend(backend, monkeypatch)
    cell = the_cell(option)
    family = fused.family(cell.kernel)
    params = family.parameters(cell)
    xp = torch.randn(4, 2, 2, 3, dtype=torch.float64)[:, :, 0]  # (T, B, H), strided
    h0 = torch.randn(3, 2, dtype=torch.float64).t()  # (B, H), transposed
    alive = torch.ones(4, 2, 1, dtype=torch.float64)
    with torch.no_grad():
        got = FusedRecurrence.apply(family, family.flags(cell), alive, 1, xp, h0, *params)
        want = FusedRecurrence.apply(family, family.flags(cell), alive, 1, xp.contiguous(), h0.contiguous(), *params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=0)


@pytest.mark.parametrize("option", BOUNDED)
def test_composed_ops_path_equals_loop(option):
    """The C++ kernels' path for other devices and dtypes (composed ATen ops), run here in bfloat16.

    Its equations are those of the CPU loops; bfloat16 keeps 8 bits, hence the tolerance, and relu
    is left out: rounding flips units across its kink, which changes gradients by whole units.
    """
    if extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    assert_fused_equals_loop(option, 1, True, BATCH, LENGTHS, dtype=torch.bfloat16,
                             tol={"rtol": 0.1, "atol": 0.1})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_kernel_tanh_is_within_a_few_units_in_the_last_place(dtype, monkeypatch):
    """The kernels' own tanh (csrc/kernel_support.h: a series near 0 and exp beyond for double, a
    rational function and exp for float), read through a leaky cell that outputs tanh(x) itself
    (leak 1: alpha = sigmoid(-inf) = 0; identity input weights, no bias, no recurrent matrix)."""
    use_backend("cpp", monkeypatch)
    tiny = [0.0, -0.0, 1e-300, -1e-20, 1e-8, 0.0999999, -0.1, 0.1000001]
    x = torch.cat([torch.tensor(tiny, dtype=torch.float64), torch.linspace(-30, 30, 20001, dtype=torch.float64),
                   torch.logspace(-6, 1.5, 3000, dtype=torch.float64)]).to(dtype)
    model = Recurrent("leaky", 1, 1, executor="fused", bias=False, recurrent=False).to(dtype)
    with torch.no_grad():
        model.cells[0].weight_ih.fill_(1.0)
        model.cells[0].alpha_logit.fill_(-math.inf)
        output, _ = model(x.view(-1, 1, 1), torch.zeros(1, 1, 1, dtype=dtype))
    expected = torch.tanh(x.double())
    ulp = torch.finfo(dtype).eps
    if dtype == torch.float64:  # relative: exact to 4 ulp even for tiny x
        torch.testing.assert_close(output.view(-1).double(), expected, rtol=4 * ulp, atol=0)
    else:  # the rational function is within 2.5e-7 of tanh
        torch.testing.assert_close(output.view(-1).double(), expected, rtol=0, atol=2.5e-7)
