"""rnnkit.RNN, rnnkit.LSTM and rnnkit.GRU are drop-in replacements for the torch.nn classes.

Each test builds the torch.nn model, loads its ``state_dict()`` into ours (strictly), runs both on
the same input and compares outputs, final states and the gradients of every parameter, of the
input and of the initial state.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

import rnnkit

# torch.nn.LSTM's own note that its oneDNN path lacks projections; it says nothing about rnnkit.
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")

INPUT, HIDDEN, PROJ = 3, 4, 2
STEPS, BATCH = 5, 3
LENGTHS = torch.tensor([3, 5, 2])  # unsorted, so packing permutes the batch; one fills all steps
TOL = {"rtol": 1e-5, "atol": 1e-5}

# id -> (torch.nn class, rnnkit class, constructor options)
MODELS = {
    "rnn_tanh": (nn.RNN, rnnkit.RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (nn.RNN, rnnkit.RNN, {"nonlinearity": "relu"}),
    "lstm": (nn.LSTM, rnnkit.LSTM, {}),
    "lstm_proj": (nn.LSTM, rnnkit.LSTM, {"proj_size": PROJ}),
    "gru": (nn.GRU, rnnkit.GRU, {}),
}


def build(model: str, **kwargs) -> tuple[nn.Module, rnnkit.Recurrent]:
    """torch.nn's model and ours with the torch.nn weights loaded into it."""
    ref_cls, our_cls, options = MODELS[model]
    ref = ref_cls(INPUT, HIDDEN, **options, **kwargs)
    ours = our_cls(INPUT, HIDDEN, **options, **kwargs)
    ours.load_state_dict(ref.state_dict())  # strict
    return ref, ours


def state_shapes(ref: nn.Module, batch: int | None) -> list[tuple[int, ...]]:
    """Shapes of torch.nn's ``hx``: one (L*D, B, size) tensor, or LSTM's (h, c)."""
    lead = (ref.num_layers * (2 if ref.bidirectional else 1),)
    lead = lead if batch is None else (*lead, batch)
    if isinstance(ref, nn.LSTM):
        return [(*lead, ref.proj_size or ref.hidden_size), (*lead, ref.hidden_size)]
    return [(*lead, ref.hidden_size)]


def as_hx(tensors: list[Tensor]) -> Tensor | tuple[Tensor, ...]:
    """torch.nn's convention: LSTM's ``hx`` is ``(h, c)``, the others' a bare tensor."""
    return tuple(tensors) if len(tensors) > 1 else tensors[0]


def states_of(state: Tensor | tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def run(model: nn.Module, x: Tensor, hx: list[Tensor] | None, packed: bool, batch_first: bool):
    """Forward ``model`` on fresh leaf copies of ``x`` and ``hx``; return leaves and results."""
    x = x.detach().clone().requires_grad_()
    hx = None if hx is None else [h.detach().clone().requires_grad_() for h in hx]
    inp = (
        pack_padded_sequence(x, LENGTHS, batch_first=batch_first, enforce_sorted=False)
        if packed
        else x
    )
    output, state = model(inp, None if hx is None else as_hx(hx))
    return x, hx, output, states_of(state)


def weighted_sum(output: Tensor | PackedSequence, states: tuple[Tensor, ...], weights) -> Tensor:
    """A scalar that depends on every output and every final state, with random weights."""
    data = output.data if isinstance(output, PackedSequence) else output
    return (data * weights[0]).sum() + sum((s * w).sum() for s, w in zip(states, weights[1:]))


def assert_same_results(ref_results, our_results) -> None:
    (_, _, ref_out, ref_states), (_, _, our_out, our_states) = ref_results, our_results
    if isinstance(ref_out, PackedSequence):
        assert isinstance(our_out, PackedSequence)
        torch.testing.assert_close(our_out.data, ref_out.data, **TOL)
        for field in ("batch_sizes", "sorted_indices", "unsorted_indices"):
            torch.testing.assert_close(
                getattr(our_out, field), getattr(ref_out, field), rtol=0, atol=0
            )
    else:
        torch.testing.assert_close(our_out, ref_out, **TOL)
    assert len(our_states) == len(ref_states)
    for ours, ref in zip(our_states, ref_states):
        torch.testing.assert_close(ours, ref, **TOL)


def assert_same_gradients(ref: nn.Module, ours: nn.Module, ref_results, our_results) -> None:
    for name in ref.state_dict():
        assert getattr(ours, name).grad is not None, name
        torch.testing.assert_close(
            getattr(ours, name).grad, getattr(ref, name).grad, **TOL, msg=name
        )
    (ref_x, ref_hx, *_), (our_x, our_hx, *_) = ref_results, our_results
    assert our_x.grad is not None
    torch.testing.assert_close(our_x.grad, ref_x.grad, **TOL)
    for ours_h, ref_h in zip(our_hx or [], ref_hx or []):
        assert ours_h.grad is not None
        torch.testing.assert_close(ours_h.grad, ref_h.grad, **TOL)


def check_parity(ref: nn.Module, ours: nn.Module, x: Tensor, hx, packed: bool, batch_first: bool):
    ref_results = run(ref, x, hx, packed, batch_first)
    our_results = run(ours, x, hx, packed, batch_first)
    assert_same_results(ref_results, our_results)

    _, _, ref_out, ref_states = ref_results
    data = ref_out.data if packed else ref_out
    weights = [torch.randn_like(data), *(torch.randn_like(s) for s in ref_states)]
    weighted_sum(*ref_results[2:], weights).backward()
    weighted_sum(*our_results[2:], weights).backward()
    assert_same_gradients(ref, ours, ref_results, our_results)


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_hx", "given_hx"])
@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
@pytest.mark.parametrize("batch_first", [False, True], ids=["seq_first", "batch_first"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["unidir", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["1layer", "2layers"])
@pytest.mark.parametrize("model", list(MODELS))
def test_matches_torch(model, num_layers, bidirectional, batch_first, packed, with_hx):
    ref, ours = build(
        model, num_layers=num_layers, bidirectional=bidirectional, batch_first=batch_first
    )
    x = torch.randn(BATCH, STEPS, INPUT) if batch_first else torch.randn(STEPS, BATCH, INPUT)
    hx = [torch.randn(shape) for shape in state_shapes(ref, BATCH)] if with_hx else None
    check_parity(ref, ours, x, hx, packed, batch_first)


@pytest.mark.parametrize("with_hx", [False, True], ids=["zero_hx", "given_hx"])
@pytest.mark.parametrize("model", list(MODELS))
def test_unbatched_input_matches_torch(model, with_hx):
    ref, ours = build(model, num_layers=2, bidirectional=True)
    hx = [torch.randn(shape) for shape in state_shapes(ref, None)] if with_hx else None
    x = torch.randn(STEPS, INPUT)  # (T, I): no batch dimension
    ref_results = run(ref, x, hx, packed=False, batch_first=False)
    our_results = run(ours, x, hx, packed=False, batch_first=False)
    assert our_results[2].shape == (STEPS, ours.output_size)
    assert_same_results(ref_results, our_results)
    weights = [torch.randn_like(ref_results[2]), *(torch.randn_like(s) for s in ref_results[3])]
    weighted_sum(*ref_results[2:], weights).backward()
    weighted_sum(*our_results[2:], weights).backward()
    assert_same_gradients(ref, ours, ref_results, our_results)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["unidir", "bidir"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["1layer", "2layers"])
@pytest.mark.parametrize("model", list(MODELS))
def test_state_dict_keys_match_torch(model, num_layers, bidirectional):
    ref, ours = build(model, num_layers=num_layers, bidirectional=bidirectional)
    assert list(ours.state_dict()) == list(ref.state_dict())
    for name, tensor in ref.state_dict().items():
        assert getattr(ours, name).shape == tensor.shape, name


@pytest.mark.parametrize("model", list(MODELS))
def test_without_bias_matches_torch(model):
    ref, ours = build(model, num_layers=2, bidirectional=True, bias=False)
    assert not any("bias" in name for name in ours.state_dict())
    assert list(ours.state_dict()) == list(ref.state_dict())
    hx = [torch.randn(shape) for shape in state_shapes(ref, BATCH)]
    check_parity(ref, ours, torch.randn(STEPS, BATCH, INPUT), hx, packed=True, batch_first=False)


@pytest.mark.parametrize("model", list(MODELS))
def test_dropout_in_eval_mode_matches_torch(model):
    ref, ours = build(model, num_layers=2, bidirectional=True, dropout=0.5)
    ref.eval()
    ours.eval()
    check_parity(ref, ours, torch.randn(STEPS, BATCH, INPUT), None, packed=True, batch_first=False)


def test_dropout_in_training_mode_drops():
    _, ours = build("gru", num_layers=2, dropout=0.5)
    x = torch.randn(STEPS, BATCH, INPUT)
    ours.train()
    train_output, _ = ours(x)
    ours.eval()
    eval_output, _ = ours(x)
    assert not torch.allclose(train_output, eval_output)


@pytest.mark.parametrize("model", list(MODELS))
def test_state_dict_of_ours_loads_into_torch(model):
    _, our_cls, options = MODELS[model]
    ref_cls = MODELS[model][0]
    ours = our_cls(INPUT, HIDDEN, num_layers=2, bidirectional=True, **options)
    ref = ref_cls(INPUT, HIDDEN, num_layers=2, bidirectional=True, **options)
    ref.load_state_dict(ours.state_dict())  # strict
    x = torch.randn(STEPS, BATCH, INPUT)
    ref_output, ref_state = ref(x)
    our_output, our_state = ours(x)
    torch.testing.assert_close(our_output, ref_output, **TOL)
    for mine, theirs in zip(states_of(our_state), states_of(ref_state)):
        torch.testing.assert_close(mine, theirs, **TOL)


@pytest.mark.parametrize("model", list(MODELS))
def test_loads_inside_a_container(model):
    """The torch-style names hold under a prefix too (``encoder.weight_ih_l0``)."""
    ref, ours = build(model, num_layers=2, bidirectional=True)
    ref_outer, our_outer = nn.ModuleDict({"encoder": ref}), nn.ModuleDict({"encoder": ours})
    assert list(our_outer.state_dict()) == list(ref_outer.state_dict())
    fresh = MODELS[model][1](INPUT, HIDDEN, num_layers=2, bidirectional=True, **MODELS[model][2])
    nn.ModuleDict({"encoder": fresh}).load_state_dict(ref_outer.state_dict())  # strict
    for name, tensor in ref.state_dict().items():
        torch.testing.assert_close(getattr(fresh, name), tensor, rtol=0, atol=0)


def test_torch_names_are_the_cells_parameters():
    _, ours = build("lstm_proj", num_layers=2, bidirectional=True)
    assert ours.weight_hh_l0 is ours.cells[0].weight_hh
    assert ours.weight_ih_l0_reverse is ours.cells[1].weight_ih
    assert ours.bias_hh_l1 is ours.cells[2].bias_hh
    assert ours.weight_hr_l1_reverse is ours.cells[3].weight_hr
    named = dict(ours.named_parameters())
    for name in ours.state_dict():
        assert any(getattr(ours, name) is p for p in named.values()), name


def test_torch_names_beyond_the_stack_are_attribute_errors():
    _, ours = build("gru", num_layers=2)
    for name in ("weight_ih_l2", "weight_ih_l0_reverse", "no_such_thing"):
        assert not hasattr(ours, name)


@pytest.mark.parametrize("model", list(MODELS))
def test_positional_constructor_arguments_match_torch(model):
    ref_cls, our_cls, options = MODELS[model]
    # torch.nn's positional order:
    # num_layers, [nonlinearity,] bias, batch_first, dropout, bidirectional
    head = [2, options["nonlinearity"]] if "nonlinearity" in options else [2]
    args = (INPUT, HIDDEN, *head, True, True, 0.0, True)
    extra = {"proj_size": options["proj_size"]} if "proj_size" in options else {}
    ref, ours = ref_cls(*args, **extra), our_cls(*args, **extra)
    for name in (
        "num_layers",
        "bidirectional",
        "batch_first",
        "dropout",
        "hidden_size",
        "input_size",
    ):
        assert getattr(ours, name) == getattr(ref, name), name
    assert {k: v.shape for k, v in ours.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }


@pytest.mark.parametrize("model", list(MODELS))
def test_dtype_argument_matches_torch(model):
    ref, ours = build(model, num_layers=2, bidirectional=True, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in ours.parameters())
    hx = [torch.randn(shape, dtype=torch.float64) for shape in state_shapes(ref, BATCH)]
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)
    check_parity(ref, ours, x, hx, packed=True, batch_first=False)


def test_hx_may_be_passed_by_keyword():
    ref, ours = build("lstm", num_layers=2)
    x = torch.randn(STEPS, BATCH, INPUT)
    hx = tuple(torch.randn(shape) for shape in state_shapes(ref, BATCH))
    for ref_t, our_t in itertools.zip_longest(ref(x, hx=hx)[1], ours(x, hx=hx)[1]):
        torch.testing.assert_close(our_t, ref_t, **TOL)


def test_partial_load_reports_the_keys_torch_reports():
    """``load_state_dict(strict=False)`` names missing and unexpected keys as torch.nn does."""
    ref, ours = build("lstm", num_layers=2, bidirectional=True)
    state = ref.state_dict()
    del state["bias_hh_l1_reverse"]
    state["weight_xx_l0"] = torch.zeros(1)
    ref_result = ref.load_state_dict(state, strict=False)
    our_result = ours.load_state_dict(state, strict=False)
    assert our_result.missing_keys == ref_result.missing_keys == ["bias_hh_l1_reverse"]
    assert our_result.unexpected_keys == ref_result.unexpected_keys == ["weight_xx_l0"]
