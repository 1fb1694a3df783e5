"""Recording cells from inside: the gates are the textbook gates, the recording is the model's own
forward pass, and gate saturation counts what it should."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from rnnkit import Recurrent
from rnnkit.cells import make_cell
from rnnkit.diagnostics.activations import gate_saturation, record_activations, saturated_fractions
from rnnkit.engine.loop import run_loop, run_loop_with_gates
from rnnkit.models.language_model import LanguageModel

pytestmark = pytest.mark.usefixtures("one_thread")

# name, options, the gates it reports
CELLS = [
    ("lstm", {}, ("i", "f", "o")),
    ("peephole", {}, ("i", "f", "o")),
    ("cifg", {}, ("i", "f", "o")),
    ("lstm", {"proj_size": 3}, ("i", "f", "o")),
    ("gru", {}, ("r", "z")),
    ("gru", {"reset_after": False}, ("r", "z")),
    ("mut1", {}, ("r", "z")),
    ("mut2", {}, ("r", "z")),
    ("mut3", {}, ("r", "z")),
    ("lstm", {"transition_depth": 2}, ("i", "f", "o")),
    ("elman", {}, ()),
    ("leaky", {}, ()),
    ("clockwork", {"periods": (1, 2)}, ()),
]
CELL_IDS = [name + "".join(f"-{k}={v}" for k, v in options.items()) for name, options, _ in CELLS]
I = H = 6  # MUT1 and MUT2 need input_size == hidden_size
T, B = 7, 3


@pytest.mark.parametrize(("name", "options", "gates"), CELLS, ids=CELL_IDS)
def test_the_loop_with_gates_is_the_loop(name: str, options: dict, gates: tuple[str, ...]) -> None:
    """Keeping the gates changes nothing: outputs and final states equal the plain loop exactly,
    with lengths too; every gated cell reports its sigmoid gates, (T, B, H) in (0, 1)."""
    cell = make_cell(name, I, H, **options)
    x, lengths = torch.randn(T, B, I), torch.tensor([T, 3, 1])
    state = tuple(torch.randn(B, size) for size in cell.state_sizes)
    outputs, final = run_loop(cell, x, state, lengths)
    outputs_too, final_too, recorded = run_loop_with_gates(cell, x, state, lengths)
    assert torch.equal(outputs_too, outputs)
    assert all(torch.equal(a, b) for a, b in zip(final_too, final, strict=True))
    assert tuple(recorded) == gates
    for gate in recorded.values():
        assert gate.shape == (T, B, H)
        assert bool(((gate > 0) & (gate < 1)).all())


def _sigmoid_of_rows(cell: torch.nn.Module, x: Tensor, h: Tensor, rows: slice) -> Tensor:
    """sigma(W_i x + b_i + W_h h + b_h) for the gate whose weights are ``rows`` of the stacks."""
    W_i, W_h = cell.weight_ih[rows], cell.weight_hh[rows]
    return torch.sigmoid(x @ W_i.T + cell.bias_ih[rows] + h @ W_h.T + cell.bias_hh[rows])


def test_lstm_gates_are_the_textbook_gates() -> None:
    """i, f, o = sigma(W_i* x + b_i* + W_h* h + b_h*) in torch's layout i, f, g, o."""
    cell = make_cell("lstm", I, H)
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    _, _, gates = cell.step_and_gates(cell.input_projection(x), (h, c), 0)
    for k, name in ((0, "i"), (1, "f"), (3, "o")):
        torch.testing.assert_close(gates[name], _sigmoid_of_rows(cell, x, h, slice(k * H, (k + 1) * H)))


def test_peephole_and_coupled_gates() -> None:
    """Peepholes: i sees c_{t-1} and o sees c_t; coupled: f = 1 - i."""
    cell = make_cell("peephole", I, H)
    x, h, c = torch.randn(B, I), torch.randn(B, H), torch.randn(B, H)
    _, (_, c_t), gates = cell.step_and_gates(cell.input_projection(x), (h, c), 0)
    pre = x @ cell.weight_ih.T + cell.bias_ih + h @ cell.weight_hh.T + cell.bias_hh  # (B, 4H)
    a_i, a_f, _, a_o = pre.chunk(4, dim=1)
    torch.testing.assert_close(gates["i"], torch.sigmoid(a_i + cell.weight_ci * c))
    torch.testing.assert_close(gates["f"], torch.sigmoid(a_f + cell.weight_cf * c))
    torch.testing.assert_close(gates["o"], torch.sigmoid(a_o + cell.weight_co * c_t))
    coupled = make_cell("cifg", I, H)
    _, _, gates = coupled.step_and_gates(coupled.input_projection(x), (h, c), 0)
    torch.testing.assert_close(gates["f"], 1 - gates["i"])


@pytest.mark.parametrize("reset_after", [True, False], ids=["reset-after", "reset-before"])
def test_gru_gates_are_the_textbook_gates(reset_after: bool) -> None:
    """r, z = sigma(W_i* x + b_i* + W_h* h + b_h*) in torch's layout r, z, n, wherever r acts."""
    cell = make_cell("gru", I, H, reset_after=reset_after)
    x, h = torch.randn(B, I), torch.randn(B, H)
    _, _, gates = cell.step_and_gates(cell.input_projection(x), (h,), 0)
    torch.testing.assert_close(gates["r"], _sigmoid_of_rows(cell, x, h, slice(0, H)))
    torch.testing.assert_close(gates["z"], _sigmoid_of_rows(cell, x, h, slice(H, 2 * H)))


def test_mut3_gates_are_its_equations() -> None:
    """MUT3: r = sigma(W_xr x + W_hr h + b_r), z = sigma(W_xz x + W_hz tanh(h) + b_z)."""
    cell = make_cell("mut3", I, H)
    x, h = torch.randn(B, I), torch.randn(B, H)
    _, _, gates = cell.step_and_gates(cell.input_projection(x), (h,), 0)
    W_x, W_h, b = cell.weight_ih.split(H), cell.weight_hh.split(H), cell.bias_ih.split(H)
    torch.testing.assert_close(gates["r"], torch.sigmoid(x @ W_x[0].T + h @ W_h[0].T + b[0]))
    torch.testing.assert_close(gates["z"], torch.sigmoid(x @ W_x[1].T + torch.tanh(h) @ W_h[1].T + b[1]))


def test_recording_is_the_forward_pass_of_a_bidirectional_stack() -> None:
    """With lengths and its usual executors the stack's output is the top layer's recorded
    outputs, both directions in forward time, and the stack gets its executors back."""
    rnn = Recurrent("gru", I, H, num_layers=2, bidirectional=True)
    x, lengths = torch.randn(T, B, I), torch.tensor([T, 4, 2])
    executors = list(rnn.executors)
    expected, _ = rnn(x, None, lengths)
    cells = record_activations(rnn, (x, None, lengths))
    assert [c.name for c in cells] == ["layer 0", "layer 0 reverse", "layer 1", "layer 1 reverse"]
    top = torch.cat([cells[2].outputs, cells[3].outputs], dim=-1)  # (T, B, 2H)
    torch.testing.assert_close(top, expected, atol=1e-6, rtol=1e-5)
    assert rnn.executors == executors


def test_recording_a_language_model_gives_its_logits_and_keeps_its_mode() -> None:
    """The top layer's recorded outputs, decoded, are the model's logits (dropout off); the model
    is back in training mode afterwards."""
    model = LanguageModel(vocab_size=11, cell="lstm", hidden_size=H, num_layers=2, dropout=0.5)
    tokens = torch.randint(11, (T, B))
    model.eval()
    expected, _ = model(tokens)
    model.train()
    cells = record_activations(model, tokens)
    assert model.training
    assert [c.name for c in cells] == ["rnn layer 0", "rnn layer 1"]
    torch.testing.assert_close(model.decoder(cells[-1].outputs), expected.detach(), atol=1e-6, rtol=1e-5)


def test_a_model_without_recurrent_layers_is_refused() -> None:
    with pytest.raises(ValueError, match="no Recurrent layers"):
        record_activations(torch.nn.Linear(3, 2), torch.randn(2, 3))


def test_saturated_fractions_per_unit() -> None:
    gate = torch.tensor([[[0.05, 0.5]], [[0.95, 0.5]], [[0.02, 0.91]], [[0.5, 0.09]]])  # (T=4, B=1, H=2)
    low, high = saturated_fractions(gate)
    assert low.tolist() == [0.5, 0.25]
    assert high.tolist() == [0.25, 0.25]


def test_gate_saturation_counts_the_saturated_values() -> None:
    """Gates driven by their biases alone: i = sigma(-10) and f = sigma(10) are always saturated,
    o = sigma(3) = 0.95 on half the units and sigma(0) = 0.5 on the other half."""
    model = LanguageModel(vocab_size=5, cell="lstm", hidden_size=4, num_layers=1)
    cell = model.rnn.cells[0]
    with torch.no_grad():
        cell.weight_ih.zero_()
        cell.weight_hh.zero_()
        cell.bias_hh.zero_()
        cell.bias_ih.copy_(torch.tensor([-10.0] * 4 + [10.0] * 4 + [0.0] * 4 + [3.0, 3.0, 0.0, 0.0]))
    saturation = gate_saturation(model, torch.randint(5, (9, 2)))
    assert saturation == {"rnn layer 0": {"i": 1.0, "f": 1.0, "o": 0.5}}


def test_gate_saturation_of_a_cell_without_gates_is_empty() -> None:
    model = LanguageModel(vocab_size=5, cell="elman", hidden_size=4, num_layers=2)
    assert gate_saturation(model, torch.randint(5, (9, 2))) == {}
