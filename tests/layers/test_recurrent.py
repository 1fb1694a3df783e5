"""``Recurrent``: lengths, packing, layout, validation and torch-style names, for every cell.

The lengths tests compare against an independent computation: each sequence run alone, unpadded.
"""

from __future__ import annotations

import doctest

import pytest
import torch
from torch import Tensor
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import rnnkit.layers.recurrent
from rnnkit import Recurrent
from rnnkit.cells import LSTMCell, cell_names, make_cell, register_cell

INPUT, HIDDEN = 3, 3  # equal, because MUT1 and MUT2 need it
STEPS, BATCH = 4, 3
LENGTHS = torch.tensor([2, 4, 1])
TOL = {"rtol": 1e-5, "atol": 1e-6}

# id -> (cell name, options): every registered name, and the options that change the state layout.
CELLS = {
    "elman": ("elman", {}),
    "lstm": ("lstm", {}),
    "lstm_proj": ("lstm", {"proj_size": 2}),
    "peephole": ("peephole", {}),
    "cifg": ("cifg", {}),
    "gru": ("gru", {}),
    "gru_reset_before": ("gru", {"reset_after": False}),
    "mut1": ("mut1", {}),
    "mut2": ("mut2", {}),
    "mut3": ("mut3", {}),
    "leaky": ("leaky", {"alpha": [0.1, 0.5, 0.9], "learn_alpha": True}),
}
SQUARE_ONLY = {"mut1", "mut2"}  # cannot read a bidirectional layer's 2H outputs


def possible(cell: str, num_layers: int, bidirectional: bool) -> bool:
    return not (CELLS[cell][0] in SQUARE_ONLY and num_layers > 1 and bidirectional)


# Every cell in every stack layout it can be built in.
CELL_LAYOUTS = [
    pytest.param(
        cell,
        num_layers,
        bidirectional,
        id=f"{cell}-{num_layers}layer-{'bidir' if bidirectional else 'unidir'}",
    )
    for cell in CELLS
    for num_layers in (1, 2)
    for bidirectional in (False, True)
    if possible(cell, num_layers, bidirectional)
]


def build(cell: str, num_layers: int = 2, bidirectional: bool = True, **kwargs) -> Recurrent:
    """Two bidirectional layers unless told otherwise, or as much of that as the cell allows."""
    if not possible(cell, num_layers, bidirectional):
        num_layers = 1
    name, options = CELLS[cell]
    return Recurrent(
        name, INPUT, HIDDEN, num_layers=num_layers, bidirectional=bidirectional, **options, **kwargs
    )


def random_state(model: Recurrent, batch: int) -> tuple[Tensor, ...]:
    return tuple(torch.randn(len(model.cells), batch, size) for size in model.cells[0].state_sizes)


def padded_input(lengths: Tensor) -> Tensor:
    """(T, B, I) with large garbage past each sequence's end, which must not matter."""
    x = torch.randn(STEPS, BATCH, INPUT)
    padding = torch.arange(STEPS).unsqueeze(1) >= lengths  # (T, B)
    return torch.where(padding.unsqueeze(-1), 100.0 * torch.randn_like(x), x)


@pytest.mark.parametrize(("cell", "num_layers", "bidirectional"), CELL_LAYOUTS)
def test_lengths_equal_each_sequence_run_alone(cell, num_layers, bidirectional):
    model = build(cell, num_layers, bidirectional)
    x = padded_input(LENGTHS).requires_grad_()
    state = random_state(model, BATCH)
    output, final = model(x, state, lengths=LENGTHS)
    assert output.shape == (STEPS, BATCH, model.output_size)

    weights = torch.randn_like(output), *(torch.randn_like(s) for s in final)
    loss = (output * weights[0]).sum() + sum((s * w).sum() for s, w in zip(final, weights[1:]))
    padded_grads = torch.autograd.grad(loss, [x, *model.parameters()])

    alone_loss = 0.0
    for b, length in enumerate(LENGTHS.tolist()):
        alone, alone_final = model(x[:length, b : b + 1], tuple(s[:, b : b + 1] for s in state))
        torch.testing.assert_close(output[:length, b : b + 1], alone, **TOL)
        assert output[length:, b].eq(0).all(), "padded outputs must be zero"
        for mine, theirs in zip(final, alone_final):
            torch.testing.assert_close(mine[:, b : b + 1], theirs, **TOL)
        alone_loss = alone_loss + (alone * weights[0][:length, b : b + 1]).sum()
        alone_loss = alone_loss + sum(
            (s * w[:, b : b + 1]).sum() for s, w in zip(alone_final, weights[1:])
        )

    # Gradients too: the batch's are the sums of the sequences', and padding gets none.
    alone_grads = torch.autograd.grad(alone_loss, [x, *model.parameters()])
    for mine, theirs in zip(padded_grads, alone_grads):
        torch.testing.assert_close(mine, theirs, **TOL)
    padding = torch.arange(STEPS).unsqueeze(1) >= LENGTHS
    assert padded_grads[0][padding].eq(0).all()


@pytest.mark.parametrize("enforce_sorted", [False, True], ids=["unsorted", "sorted"])
@pytest.mark.parametrize("cell", list(CELLS))
def test_packed_input_equals_padded_with_lengths(cell, enforce_sorted):
    model = build(cell)
    lengths = torch.tensor([4, 2, 1]) if enforce_sorted else LENGTHS
    x = padded_input(lengths)
    state = random_state(model, BATCH)
    packed_output, packed_final = model(
        pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted), state
    )
    output, final = model(x, state, lengths=lengths)
    unpacked, unpacked_lengths = pad_packed_sequence(packed_output, total_length=STEPS)
    torch.testing.assert_close(unpacked, output, rtol=0, atol=0)
    torch.testing.assert_close(unpacked_lengths, lengths, rtol=0, atol=0)
    for mine, theirs in zip(packed_final, final):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("cell", list(CELLS))
def test_batch_first_output_is_the_transpose(cell):
    seq_first = build(cell, num_layers=1)
    batch_first = build(cell, num_layers=1, batch_first=True)
    batch_first.load_state_dict(seq_first.state_dict())
    x, state = torch.randn(STEPS, BATCH, INPUT), random_state(seq_first, BATCH)
    output, final = seq_first(x, state, lengths=LENGTHS)
    output_bf, final_bf = batch_first(x.transpose(0, 1), state, lengths=LENGTHS)
    torch.testing.assert_close(output_bf, output.transpose(0, 1), rtol=0, atol=0)
    for mine, theirs in zip(final_bf, final):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_unbatched_input_is_a_batch_of_one(cell):
    model = build(cell)
    x, state = torch.randn(STEPS, INPUT), random_state(model, 1)
    output, final = model(x, tuple(s.squeeze(1) for s in state))
    batched, batched_final = model(x.unsqueeze(1), state)
    torch.testing.assert_close(output, batched.squeeze(1), rtol=0, atol=0)
    for mine, theirs in zip(final, batched_final):
        torch.testing.assert_close(mine, theirs.squeeze(1), rtol=0, atol=0)


def test_lengths_may_be_a_list():
    model = build("gru")
    x = torch.randn(STEPS, BATCH, INPUT)
    torch.testing.assert_close(model(x, lengths=LENGTHS.tolist())[0], model(x, lengths=LENGTHS)[0])


# ---- validation at the boundary: ValueError, saying expected vs got ----------------------------


def test_wrong_state_shape():
    model = build("lstm", num_layers=2, bidirectional=True)
    h, c = random_state(model, BATCH)
    with pytest.raises(
        ValueError, match=r"state\[1\] must have shape \(4, 3, 3\), got \(4, 2, 3\)"
    ):
        model(torch.randn(STEPS, BATCH, INPUT), (h, c[:, :2]))
    with pytest.raises(
        ValueError, match=r"state\[0\] must have shape \(4, 3, 3\), got \(2, 3, 3\)"
    ):
        model(torch.randn(STEPS, BATCH, INPUT), (h[:2], c))


def test_wrong_number_of_state_tensors():
    lstm, gru = build("lstm"), build("gru")
    with pytest.raises(ValueError, match=r"lstm state has 2 tensor\(s\), got 1"):
        lstm(torch.randn(STEPS, BATCH, INPUT), random_state(lstm, BATCH)[:1])
    with pytest.raises(ValueError, match=r"gru state has 1 tensor\(s\), got 2"):
        gru(torch.randn(STEPS, BATCH, INPUT), random_state(gru, BATCH) * 2)


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        pytest.param([0, 2, 3], r"lengths must lie in \[1, 4\], got \[0, 2, 3\]", id="zero"),
        pytest.param([5, 2, 3], r"lengths must lie in \[1, 4\], got \[5, 2, 3\]", id="too_long"),
        pytest.param([2, 3], r"lengths must have shape \(3,\), got \(2,\)", id="too_few"),
        pytest.param([[2, 3, 4]], r"lengths must have shape \(3,\), got \(1, 3\)", id="2d"),
    ],
)
def test_bad_lengths(lengths, message):
    with pytest.raises(ValueError, match=message):
        build("gru")(torch.randn(STEPS, BATCH, INPUT), lengths=torch.tensor(lengths))


def test_wrong_input_size():
    with pytest.raises(ValueError, match="input_size. Expected 3, got 5"):
        build("gru")(torch.randn(STEPS, BATCH, 5))


def test_wrong_input_rank():
    with pytest.raises(ValueError, match="2-D .* or 3-D, got 4-D"):
        build("gru")(torch.randn(STEPS, BATCH, 1, INPUT))


def test_packed_input_with_lengths_too():
    packed = pack_padded_sequence(torch.randn(STEPS, BATCH, INPUT), LENGTHS, enforce_sorted=False)
    with pytest.raises(ValueError, match="PackedSequence carries its own lengths"):
        build("gru")(packed, lengths=LENGTHS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"num_layers": 0}, "num_layers must be at least 1, got 0", id="num_layers"),
        pytest.param({"dropout": 1.5}, r"dropout must be in \[0, 1\], got 1.5", id="dropout"),
        pytest.param(
            {"executor": "warp"}, "unknown executor 'warp'; choose one of auto, loop", id="executor"
        ),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Recurrent("gru", INPUT, HIDDEN, **kwargs)


def test_mut1_cannot_read_a_bidirectional_layer():
    with pytest.raises(ValueError, match="input_size must equal hidden_size. Expected 3, got 6"):
        Recurrent("mut1", INPUT, HIDDEN, num_layers=2, bidirectional=True)


# ---- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize("cell", list(CELLS))
def test_state_dict_names_are_torch_style_and_load_back(cell):
    model = build(cell)
    suffixes = [
        f"_l{layer}{rev}"
        for layer in range(model.num_layers)
        for rev in ["", "_reverse"][: model.num_directions]
    ]
    expected = [
        f"{key}{suffix}" for suffix, c in zip(suffixes, model.cells) for key in c.state_dict()
    ]
    state = model.state_dict()
    assert list(state) == expected
    for key, tensor in state.items():
        assert getattr(model, key) is not None and torch.equal(getattr(model, key), tensor), key

    other = build(cell)
    other.load_state_dict(state)  # strict
    x = torch.randn(STEPS, BATCH, INPUT)
    torch.testing.assert_close(
        other(x, lengths=LENGTHS)[0], model(x, lengths=LENGTHS)[0], rtol=0, atol=0
    )


@pytest.mark.parametrize(
    ("name", "options", "keys"),
    [
        pytest.param("leaky", {}, ["alpha_logit_l0", "alpha_logit_l1_reverse"], id="leaky_buffer"),
        pytest.param(
            "leaky",
            {"learn_alpha": True},
            ["alpha_logit_l0", "alpha_logit_l1_reverse"],
            id="leaky_param",
        ),
        pytest.param(
            "peephole", {}, ["weight_ci_l0", "weight_cf_l1_reverse", "weight_co_l1"], id="peephole"
        ),
        pytest.param(
            "lstm", {"proj_size": 2}, ["weight_hr_l0", "weight_hr_l1_reverse"], id="lstm_proj"
        ),
    ],
)
def test_extra_parameters_have_torch_style_names(name, options, keys):
    model = Recurrent(name, INPUT, HIDDEN, num_layers=2, bidirectional=True, **options)
    assert set(keys) <= set(model.state_dict())


def test_cifg_has_no_forget_peephole():
    model = Recurrent("cifg", INPUT, HIDDEN, peephole=True)
    assert {"weight_ci_l0", "weight_co_l0"} <= set(model.state_dict())
    assert "weight_cf_l0" not in model.state_dict()


# ---- the registry -------------------------------------------------------------------------------


def test_unknown_cell_name_lists_the_valid_ones():
    listing = ", ".join(cell_names())
    with pytest.raises(ValueError, match=f"unknown cell 'lstn'; choose one of {listing}"):
        make_cell("lstn", INPUT, HIDDEN)
    with pytest.raises(ValueError, match="unknown cell 'lstn'"):
        Recurrent("lstn", INPUT, HIDDEN)


def test_unknown_option_lists_the_valid_ones():
    with pytest.raises(
        ValueError,
        match="cell 'lstm' has no option 'peepholes'; "
        "its options are bias, forget_bias, peephole, coupled, proj_size",
    ):
        make_cell("lstm", INPUT, HIDDEN, peepholes=True)
    with pytest.raises(ValueError, match="cell 'mut3' has no option 'bias'; its options are transition_depth"):
        Recurrent("mut3", INPUT, HIDDEN, bias=False)


def test_preset_options_are_not_options_of_the_preset():
    """``peephole`` fixes peephole=True: passing it again is an error, not a silent override."""
    with pytest.raises(ValueError, match="cell 'peephole' has no option 'peephole'"):
        make_cell("peephole", INPUT, HIDDEN, peephole=False)


@pytest.mark.parametrize("name", ["lstm", "elman", "peephole", "cifg"])
def test_registry_refuses_duplicates(name):
    before = list(cell_names())
    with pytest.raises(ValueError, match=f"a cell named '{name}' is already registered"):
        register_cell(name, LSTMCell)
    assert cell_names() == before


def test_registry_is_read_only():
    from rnnkit.cells import REGISTRY

    with pytest.raises(TypeError):
        REGISTRY["mine"] = LSTMCell  # type: ignore[index]


def test_docstring_example_runs():
    failures, attempted = doctest.testmod(
        rnnkit.layers.recurrent, optionflags=doctest.NORMALIZE_WHITESPACE
    )
    assert attempted > 0 and failures == 0
