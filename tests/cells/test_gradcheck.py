"""Float64 ``torch.autograd.gradcheck`` for every cell and option, run through ``Recurrent``.

Each case checks the analytic gradients of the outputs and final states with respect to the
input, the initial state and every parameter (passed in through ``torch.func.functional_call``)
against finite differences, over sequences of different lengths in a 2-layer stack.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch.func import functional_call

from rnnkit import Recurrent
from rnnkit.cells import PRESETS, REGISTRY, cell_names, cell_options

STEPS, BATCH, SIZE = 4, 2, 2  # I = H, because MUT1 and MUT2 need it
LENGTHS = torch.tensor([4, 2])

# (id, cell name, options, num_layers, bidirectional). MUT1 and MUT2 add the input to an H-sized
# sum, so they cannot read a bidirectional layer's 2H outputs: they get one stacked and one
# bidirectional layout instead of both at once. Presets and bias=False, which change no code path
# of the stack, run on one bidirectional layer to keep the suite fast.
CASES = [
    ("elman-tanh", "elman", {"nonlinearity": "tanh"}, 2, True),
    ("elman-relu", "elman", {"nonlinearity": "relu"}, 2, True),
    ("elman-nobias", "elman", {"bias": False}, 1, True),
    ("lstm", "lstm", {}, 2, True),
    ("lstm-forget_bias0", "lstm", {"forget_bias": 0.0}, 1, True),
    ("lstm-peephole", "lstm", {"peephole": True}, 2, True),
    ("lstm-coupled", "lstm", {"coupled": True}, 2, True),
    ("lstm-peephole-coupled", "lstm", {"peephole": True, "coupled": True}, 2, True),
    ("lstm-proj", "lstm", {"proj_size": 1}, 2, True),
    ("lstm-nobias", "lstm", {"bias": False}, 1, True),
    ("peephole", "peephole", {}, 1, True),
    ("cifg", "cifg", {}, 1, True),
    ("gru-reset_after", "gru", {"reset_after": True}, 2, True),
    ("gru-reset_before", "gru", {"reset_after": False}, 2, True),
    ("gru-reset_before-nobias", "gru", {"reset_after": False, "bias": False}, 1, True),
    ("mut1-stacked", "mut1", {}, 2, False),
    ("mut1-bidir", "mut1", {}, 1, True),
    ("mut2-stacked", "mut2", {}, 2, False),
    ("mut2-bidir", "mut2", {}, 1, True),
    ("mut3", "mut3", {}, 2, True),
    ("leaky-fixed_alpha", "leaky", {"alpha": 0.3}, 2, True),
    ("leaky-learned_alpha", "leaky", {"learn_alpha": True}, 2, True),
    ("leaky-per_unit_alpha", "leaky", {"alpha": [0.2, 0.9], "learn_alpha": True}, 2, True),
    ("leaky-nobias", "leaky", {"bias": False}, 1, True),
]


@pytest.mark.parametrize(
    ("name", "options", "num_layers", "bidirectional"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_gradcheck(name, options, num_layers, bidirectional):
    model = Recurrent(
        name, SIZE, SIZE, num_layers=num_layers, bidirectional=bidirectional, **options
    )
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
        defaults = inspect.signature(REGISTRY[family]).parameters
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
