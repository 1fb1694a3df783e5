"""Every executor equals the reference loop: outputs, final states and every gradient.

For every built-in cell and option × every executor that runs it {fused in C++, fused in Python,
native, scan} × {with, without lengths} × {1 layer, 2 layers, bidirectional}, in float32, within
1e-5.
"""

from __future__ import annotations

import pytest
import torch
from cell_cases import CASES

from rnnkit import Recurrent
from rnnkit.cells import make_cell
from rnnkit.engine import EXECUTORS, fastest_executor, fused, native, scan
from rnnkit.engine.fused import extension
from rnnkit.engine.loop import run_loop

# torch's own kernel choice for projected LSTMs, not rnnkit's concern
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

STEPS, BATCH, SIZE = 6, 3, 20  # 20 units: a full 16-lane SIMD vector and a tail
LENGTHS = torch.tensor([6, 2, 4])
LAYOUTS = {"1-layer": (1, False), "2-layers": (2, False), "bidirectional": (1, True)}
VARIANTS = {
    "fused-cpp": ("fused", "cpp"),
    "fused-python": ("fused", "python"),
    "native": ("native", None),
    "scan": ("scan", None),
}
SUPPORTS = {"fused": fused.supports, "native": native.supports, "scan": scan.supports}


def _sized(options: dict) -> dict:
    """Per-unit option lists (a leaky cell's alpha) stretched to SIZE units."""
    return {
        key: torch.linspace(value[0], value[-1], SIZE).tolist() if isinstance(value, list) else value
        for key, value in options.items()
    }


# one case per distinct cell configuration: the layouts are varied here instead
CONFIGURATIONS = list({(name, repr(options)): (name, _sized(options)) for _, name, options, _, _ in CASES}.values())


def _configuration_id(configuration: tuple[str, dict]) -> str:
    name, options = configuration
    return "-".join([name, *(f"{k}={v}" for k, v in options.items())])


def _gradients(model: Recurrent, x: torch.Tensor, state: list[torch.Tensor], lengths):
    output, final = model(x, tuple(state), lengths=lengths)
    weights = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)).to(t.device) for i, t in enumerate((output, *final))]
    loss = sum((w * t).sum() for w, t in zip(weights, (output, *final)))
    grads = torch.autograd.grad(loss, [x, *state, *model.parameters()])
    return output, final, grads


# every (configuration, executor) pair where the executor runs the cell
RUNS = [
    pytest.param(configuration, variant, id=f"{_configuration_id(configuration)}-{variant_id}")
    for configuration in CONFIGURATIONS
    for variant_id, variant in VARIANTS.items()
    if SUPPORTS[variant[0]](make_cell(configuration[0], SIZE, SIZE, **configuration[1]))
]


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=LAYOUTS.keys())
@pytest.mark.parametrize(("configuration", "variant"), RUNS)
def test_executor_equals_loop(configuration, variant, layout, lengths, monkeypatch):
    (name, options), (executor, backend), (num_layers, bidirectional) = configuration, variant, layout
    reference = Recurrent(name, SIZE, SIZE, num_layers, bidirectional, executor="loop", **options)
    if backend == "cpp" and extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    if backend == "python":
        monkeypatch.setattr(extension, "ops", lambda: None)
    model = Recurrent(name, SIZE, SIZE, num_layers, bidirectional, executor=executor, **options)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(STEPS, BATCH, SIZE, requires_grad=True)
    state = [
        torch.randn(len(model.cells), BATCH, size, requires_grad=True) for size in model.cells[0].state_sizes
    ]
    expected = _gradients(reference, x, state, lengths)
    actual = _gradients(model, x, state, lengths)
    torch.testing.assert_close(actual[0], expected[0], rtol=1e-5, atol=1e-5)
    for got, want in zip(actual[1], expected[1]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    names = ["input", *(f"state[{i}]" for i in range(len(state))), *(n for n, _ in model.named_parameters())]
    for label, got, want in zip(names, actual[2], expected[2]):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=lambda m, label=label: f"d/d {label}: {m}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize(("configuration", "variant"), RUNS)
def test_executor_on_gpu_equals_loop_on_cpu(configuration, variant, monkeypatch):
    """Off the CPU the C++ kernels compose ATen ops and native is cuDNN: bidirectional, with lengths."""
    (name, options), (executor, backend) = configuration, variant
    if backend == "cpp" and extension.ops() is None:
        pytest.skip("the C++ kernels could not be built here (no compiler?)")
    if backend == "python":
        monkeypatch.setattr(extension, "ops", lambda: None)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # full float32 products, as on the CPU
    reference = Recurrent(name, SIZE, SIZE, bidirectional=True, executor="loop", **options)
    model = Recurrent(name, SIZE, SIZE, bidirectional=True, executor=executor, **options)
    model.load_state_dict(reference.state_dict())
    model.cuda()
    x = torch.randn(STEPS, BATCH, SIZE, requires_grad=True)
    state = [torch.randn(2, BATCH, size, requires_grad=True) for size in model.cells[0].state_sizes]
    x_gpu = x.detach().cuda().requires_grad_()
    state_gpu = [s.detach().cuda().requires_grad_() for s in state]
    expected = _gradients(reference, x, state, LENGTHS)
    actual = _gradients(model, x_gpu, state_gpu, LENGTHS)
    flat_expected = [expected[0], *expected[1], *expected[2]]
    flat_actual = [actual[0], *actual[1], *actual[2]]
    for got, want in zip(flat_actual, flat_expected, strict=True):
        torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("configuration", CONFIGURATIONS, ids=map(_configuration_id, CONFIGURATIONS))
def test_auto_picks_a_kernel_that_runs_the_cell(configuration):
    name, options = configuration
    cell = make_cell(name, SIZE, SIZE, **options)
    plain_lstm = name == "lstm" and not options.get("proj_size") and native.supports(cell)
    kernel = fused.run_fused if fused.supports(cell) else run_loop  # cells without a kernel family: the loop
    cpu = torch.device("cpu")
    assert fastest_executor(cell, cpu, with_lengths=False) is (native.run_native if plain_lstm else kernel)
    assert fastest_executor(cell, cpu, with_lengths=True) is kernel
    cuda = torch.device("cuda")
    assert fastest_executor(cell, cuda, with_lengths=True) is (native.run_native if native.supports(cell) else kernel)


def test_auto_runs_the_chosen_executor():
    """``auto`` decides per call; its results are the loop's (the executors' equivalence above)."""
    reference = Recurrent("lstm", SIZE, SIZE, executor="loop")
    model = Recurrent("lstm", SIZE, SIZE)
    model.load_state_dict(reference.state_dict())
    x = torch.randn(STEPS, BATCH, SIZE)
    for lengths in (None, LENGTHS):
        torch.testing.assert_close(model(x, lengths=lengths)[0], reference(x, lengths=lengths)[0], rtol=1e-5, atol=1e-5)


def test_native_refuses_cells_torch_does_not_have():
    with pytest.raises(ValueError, match="the native executor cannot run LSTMCell"):
        Recurrent("peephole", SIZE, SIZE, executor="native")
    with pytest.raises(ValueError, match="the native executor cannot run GRUCell"):
        Recurrent("gru", SIZE, SIZE, executor="native", reset_after=False)


def test_unknown_executor_lists_the_names():
    with pytest.raises(ValueError, match="unknown executor 'fast'; choose one of auto, " + ", ".join(EXECUTORS)):
        Recurrent("lstm", SIZE, SIZE, executor="fast")
