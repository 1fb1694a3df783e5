r"""Gradient flow and spectra against their closed forms on a linear RNN, and on real cells.

A linear RNN :math:`h_t = W h_{t-1} + U x_t` has the same Jacobian :math:`W` at every step, so
the product over a lag :math:`\ell` is :math:`W^\ell` and the gradient of a loss at the last
step reaches step k as :math:`(W^\top)^{T-k}\, \partial L / \partial h_T`.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from rnnkit import Recurrent
from rnnkit.cells.base import RecurrentCell, State
from rnnkit.data.tasks import make_task
from rnnkit.diagnostics.gradient_flow import StateRecorder, gradient_flow, recording
from rnnkit.diagnostics.spectra import SIGMOID_BOUND, TANH_BOUND, recurrent_blocks, spectral_radii, spectrum
from rnnkit.diagnostics.model_flow import (
    language_model_gradient_flow,
    language_model_step_losses,
    step_losses,
    task_gradient_flow,
)
from rnnkit.engine.loop import run_loop
from rnnkit.models import LanguageModel, SequenceClassifier
from rnnkit.training.task_trainer import task_loss, teacher_forced

STEPS, BATCH, INPUT, HIDDEN = 12, 3, 2, 5


class LinearCell(RecurrentCell):
    """``h_t = W h_{t-1} + U x_t``: an Elman cell with the identity activation and no bias."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__(input_size, hidden_size)
        self.weight_ih = nn.Parameter(torch.randn(hidden_size, input_size, dtype=torch.float64))
        self.weight_hh = nn.Parameter(torch.randn(hidden_size, hidden_size, dtype=torch.float64) / hidden_size**0.5)

    def input_projection(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.weight_ih)

    def step(self, xp_t: Tensor, state: State, t: int) -> tuple[Tensor, State]:
        (h,) = state
        h = xp_t + nn.functional.linear(h, self.weight_hh)
        return h, (h,)


def linear_run(loss_of_outputs) -> tuple[LinearCell, StateRecorder, Tensor]:
    """A linear RNN over random float64 inputs, its recorder and ``loss_of_outputs(outputs)``."""
    cell = LinearCell(INPUT, HIDDEN)
    recorder = StateRecorder(cell)
    x = torch.randn(STEPS, BATCH, INPUT, dtype=torch.float64)
    outputs, _ = run_loop(recorder, x, recorder.init_state(BATCH, x.device, x.dtype))
    return cell, recorder, loss_of_outputs(outputs)


def test_jacobian_products_of_a_linear_rnn_are_powers_of_w() -> None:
    cell, recorder, loss = linear_run(lambda outputs: outputs[-1].pow(2).sum())
    flow = gradient_flow(recorder, loss, examples=BATCH)
    W = cell.weight_hh.detach().numpy()
    expected = [np.linalg.norm(np.linalg.matrix_power(W, lag), 2) for lag in range(1, STEPS + 1)]
    np.testing.assert_allclose(flow.jacobian_norms, expected, rtol=1e-10)
    # the bound of a linear cell: lambda_phi = 1, lambda_W = sigma_max(W), and it holds
    assert flow.derivative_bound == 1.0
    np.testing.assert_allclose(flow.bound, np.linalg.norm(W, 2) ** np.arange(1, STEPS + 1), rtol=1e-12)
    assert np.all(flow.jacobian_norms <= flow.bound * (1 + 1e-12))


def test_state_gradients_of_a_linear_rnn_are_powers_of_w_transposed() -> None:
    cell, recorder, loss = linear_run(lambda outputs: outputs[-1].pow(3).sum())
    flow = gradient_flow(recorder, loss)
    W = cell.weight_hh.detach().numpy()
    last = 3 * recorder.leaving[-1][0].detach().numpy() ** 2  # dL/dh_T, (B, H)
    for k in range(STEPS + 1):
        analytic = last @ np.linalg.matrix_power(W, STEPS - k)  # rows: (W^T)^(T-k) dL/dh_T
        np.testing.assert_allclose(flow.state_gradient_norms[k], np.linalg.norm(analytic), rtol=1e-10)
    np.testing.assert_array_equal(flow.lags, np.arange(STEPS, -1, -1))


def test_summed_loss_adds_a_direct_term_at_every_step() -> None:
    """With L = sum_t L_t, dL/dh_k = sum_{t >= k} (W^T)^(t-k) dL_t/dh_t (here dL_t/dh_t = 1)."""
    cell, recorder, loss = linear_run(lambda outputs: outputs.sum())
    flow = gradient_flow(recorder, loss)
    W = cell.weight_hh.detach().numpy()
    ones = np.ones((BATCH, HIDDEN))
    for k in range(STEPS + 1):
        analytic = sum(ones @ np.linalg.matrix_power(W, t - k) for t in range(max(k, 1), STEPS + 1))
        np.testing.assert_allclose(flow.state_gradient_norms[k], np.linalg.norm(analytic), rtol=1e-10)


def test_spectral_radius_is_numpys() -> None:
    matrix = torch.randn(7, 7, dtype=torch.float64)
    found = spectrum(matrix)
    eigenvalues = np.linalg.eigvals(matrix.numpy())
    assert found.spectral_radius == pytest.approx(np.abs(eigenvalues).max(), rel=1e-12)
    np.testing.assert_allclose(np.sort_complex(found.eigenvalues), np.sort_complex(eigenvalues), rtol=1e-10)
    assert found.largest_singular_value == pytest.approx(np.linalg.svd(matrix.numpy(), compute_uv=False)[0], rel=1e-12)


@pytest.mark.parametrize(
    ("cell", "options", "gates"),
    [
        ("elman", {}, {"hh": TANH_BOUND}),
        ("lstm", {}, {"i": SIGMOID_BOUND, "f": SIGMOID_BOUND, "g": TANH_BOUND, "o": SIGMOID_BOUND}),
        ("cifg", {}, {"i": SIGMOID_BOUND, "g": TANH_BOUND, "o": SIGMOID_BOUND}),
        ("gru", {}, {"r": SIGMOID_BOUND, "z": SIGMOID_BOUND, "n": TANH_BOUND}),
    ],
    ids=["elman", "lstm", "cifg", "gru"],
)
def test_recurrent_blocks_are_the_gates_slices_of_weight_hh(cell: str, options: dict, gates: dict) -> None:
    rnn = Recurrent(cell, 3, 4, **options)
    blocks = recurrent_blocks(rnn.cells[0])
    assert {block.name: block.derivative_bound for block in blocks} == gates
    torch.testing.assert_close(torch.cat([block.matrix for block in blocks]), rnn.weight_hh_l0.detach(), rtol=0, atol=0)


def test_lstm_with_projection_reads_its_blocks_through_w_hr() -> None:
    rnn = Recurrent("lstm", 3, 6, proj_size=2)
    g = recurrent_blocks(rnn.cells[0])[2]
    torch.testing.assert_close(g.matrix, rnn.weight_hh_l0.detach()[12:18] @ rnn.weight_hr_l0.detach())


def test_spectral_radii_name_every_layer_and_direction() -> None:
    rnn = Recurrent("gru", 3, 4, num_layers=2, bidirectional=True)
    radii = spectral_radii(nn.ModuleDict({"encoder": rnn}))
    assert list(radii) == [f"spectral_radius_encoder_l{layer}{suffix}" for layer in (0, 1) for suffix in ("", "_reverse")]
    expected = np.abs(np.linalg.eigvals(rnn.weight_hh_l1_reverse.detach()[8:].numpy())).max()  # the n block
    assert radii["spectral_radius_encoder_l1_reverse"] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("cell", ["elman", "lstm"])
def test_recording_leaves_the_model_as_it_was(cell: str) -> None:
    """The recorded run computes what the layer's own executor computes, and is undone after."""
    rnn = Recurrent(cell, 2, 6, num_layers=2)
    x = torch.randn(9, 3, 2)
    expected, _ = rnn(x)
    executors = list(rnn.executors)
    with recording(rnn, layer=1) as recorder:
        recorded, _ = rnn(x)
    torch.testing.assert_close(recorded, expected)
    assert len(recorder.states()) == 10 and rnn.executors == executors


def test_last_step_loss_of_a_task_model_is_the_task_loss() -> None:
    task = make_task("adding", length=15)
    model = SequenceClassifier(1, input_size=2, cell="lstm", hidden_size=8).eval()
    batch = task.batch(6, torch.Generator().manual_seed(1))
    losses = step_losses(model, task.kind, batch)
    torch.testing.assert_close(losses[-1], task_loss(task.kind, *teacher_forced(model, task.kind, batch)))
    last = task_gradient_flow(model, task.kind, batch, loss="last")
    summed = task_gradient_flow(model, task.kind, batch, loss="sum")
    # the Jacobians do not depend on the loss; the gradient at the first step grows with the
    # direct terms of the summed loss
    np.testing.assert_allclose(last.jacobian_norms, summed.jacobian_norms, rtol=1e-6)
    assert summed.state_gradient_norms[0] > last.state_gradient_norms[0]


def test_language_model_flow_is_the_gradient_of_the_last_characters_loss() -> None:
    # The last two state gradients by hand: run the first T - 1 steps, make the state a leaf, run
    # the last step from it; the gradient of the last character's loss reaches that leaf and the
    # last output (both as Frobenius norms over the batch)
    torch.manual_seed(3)
    model = LanguageModel(11, "elman", 7, num_layers=1).double().eval()
    tokens = torch.randint(11, (10, 4))  # (T + 1, B): reads 9 characters, predicts 9
    flow = language_model_gradient_flow(model, tokens, loss="last")
    embedded = model.embedding(tokens[:-1])
    _, (state,) = model.rnn(embedded[:-1])
    state = state.detach().requires_grad_()
    last_output, _ = model.rnn(embedded[-1:], (state,))
    last_output.retain_grad()
    nn.functional.cross_entropy(model.decoder(last_output[-1]), tokens[-1]).backward()
    np.testing.assert_allclose(flow.state_gradient_norms[-1], last_output.grad.norm().item(), rtol=1e-9)
    np.testing.assert_allclose(flow.state_gradient_norms[-2], state.grad.norm().item(), rtol=1e-9)
    torch.testing.assert_close(  # the summed loss is the training loss times T
        language_model_step_losses(model, tokens).sum(),
        nn.functional.cross_entropy(model(tokens[:-1])[0].flatten(0, 1), tokens[1:].flatten()) * 9,
    )
