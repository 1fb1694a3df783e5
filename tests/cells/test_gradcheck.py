"""Float64 ``torch.autograd.gradcheck`` for every cell and option, run through ``Recurrent``.

Each case checks the analytic gradients of the outputs and final states with respect to the
input, the initial state and every parameter (passed in through ``torch.func.functional_call``)
against finite differences, over sequences of different lengths in a 2-layer stack — once through
the reference loop (autograd) and once through each implementation of the fused executor's
hand-derived BPTT (C++ and the Python fall-back).
"""

from __future__ import annotations

import pytest
import torch
from cell_cases import CASES
from torch.func import functional_call

from rnnkit import Recurrent
from rnnkit.cells import PRESETS, REGISTRY, cell_names, cell_options, make_cell
from rnnkit.engine import fused
from rnnkit.engine.fused import extension

# (executor, fused backend): the reference loop, and the fused BPTT in C++ and in Python
EXECUTORS = [("loop", None), ("fused", "cpp"), ("fused", "python")]

STEPS, BATCH, SIZE = 4, 2, 2  # I = H, because MUT1 and MUT2 need it
LENGTHS = torch.tensor([4, 2])

# every case through the loop, and through both fused back-ends where the cell has a kernel family
RUNS = [
    pytest.param(name, options, num_layers, bidirectional, executor, backend, id=f"{case}-{variant}")
    for case, name, options, num_layers, bidirectional in CASES
    for (executor, backend), variant in zip(EXECUTORS, ["loop", "fused-cpp", "fused-python"], strict=True)
    if executor == "loop" or fused.supports(make_cell(name, SIZE, SIZE, **options))
]


@pytest.mark.parametrize(("name", "options", "num_layers", "bidirectional", "executor", "backend"), RUNS)
def test_gradcheck(name, options, num_layers, bidirectional, executor, backend, monkeypatch):
    model = Recurrent(
        name, SIZE, SIZE, num_layers=num_layers, bidirectional=bidirectional, executor="loop", **options
    )
    if executor == "fused":
        if backend == "cpp" and extension.ops() is None:
            pytest.skip("the C++ kernels could not be built here (no compiler?)")
        if backend == "python":
            monkeypatch.setattr(extension, "ops", lambda: None)
        reference, model = model, Recurrent(
            name, SIZE, SIZE, num_layers=num_layers, bidirectional=bidirectional, executor=executor, **options
        )
        model.load_state_dict(reference.state_dict())  # the same weights as the loop case
    model = model.double()
    names = [key for key, _ in model.named_parameters()]
    parameters = [p.detach().clone().requires_grad_() for p in model.parameters()]
    assert parameters, "a cell without parameters cannot be gradchecked"
    x = torch.randn(STEPS, BATCH, SIZE, dtype=torch.float64, requires_grad=True)
    state = [
        torch.randn(len(model.cells), BATCH, size, dtype=torch.float64, requires_grad=True)
        for size in model.cells[0].state_sizes
    ]

    def outputs_and_final_state(x, *tensors):
        initial, values = tensors[: len(state)], tensors[len(state) :]
        arguments, keywords = (x, initial), {"lengths": LENGTHS}
        output, final = functional_call(model, dict(zip(names, values)), arguments, keywords)
        return (output, *final)

    inputs = (x, *state, *parameters)
    # Not vacuous: every input, parameters included, reaches the outputs through functional_call.
    results = outputs_and_final_state(*inputs)
    grads = torch.autograd.grad(sum((r * torch.randn_like(r)).sum() for r in results), inputs)
    assert all(bool(g.ne(0).any()) for g in grads)
    assert torch.autograd.gradcheck(outputs_and_final_state, inputs)


def _options_of_cases(family: str) -> set[str]:
    """The options that some case gives a value other than its default, for one cell family."""
    covered = set()
    for _, name, options, _, _ in CASES:
        case_family, fixed = PRESETS.get(name, (name, {}))
        if case_family != family:
            continue
        defaults = cell_options(family)
        covered |= {
            key for key, value in {**fixed, **options}.items() if value != defaults[key].default
        }
    return covered


def test_every_registered_cell_has_a_case():
    assert {name for _, name, *_ in CASES} == set(cell_names())


@pytest.mark.parametrize("family", sorted(REGISTRY))
def test_every_option_is_exercised(family):
    """A new cell option needs a gradcheck case that sets it away from its default."""
    assert set(cell_options(family)) <= _options_of_cases(family)
