"""Echo state networks: teacher-forced fit, closed-loop generation, and a short Mackey-Glass run."""

from __future__ import annotations

import doctest

import pytest
import torch

import rnnkit.models.esn
from rnnkit.data import mackey_glass
from rnnkit.engine.threads import torch_threads
from rnnkit.layers.readout import RidgePath, RidgeReadout
from rnnkit.models.esn import EchoStateNetwork, nrmse

TRAIN, HORIZON = 1500, 84


@pytest.fixture(scope="module")
def series() -> torch.Tensor:
    """Jaeger's squashed Mackey-Glass signal, tanh(x - 1), as (T, 1, 1)."""
    return torch.tanh(mackey_glass(TRAIN + HORIZON, washout=1000) - 1).view(-1, 1, 1)


def bias_input(steps: int) -> torch.Tensor:
    return torch.full((steps, 1, 1), 0.02, dtype=torch.float64)  # Jaeger's constant input


def test_a_short_mackey_glass_run_predicts_84_steps_free(series):
    esn = EchoStateNetwork(1, 1, size=300, spectral_radius=0.8, density=0.05, feedback=True, seed=0)
    training_error, state = esn.fit(bias_input(TRAIN), series[:TRAIN], washout=300)
    generated = esn.generate(bias_input(HORIZON), state, series[TRAIN - 1])
    truth = series[TRAIN:]
    # holding the last value for 84 steps is the naive forecast; the ESN must be far better
    naive = nrmse(series[TRAIN - 1].expand_as(truth), truth)
    assert naive > 0.5
    assert training_error < 1e-3
    assert nrmse(generated, truth) < 1e-2, f"free-running NRMSE {nrmse(generated, truth):.2e}"


def test_the_first_free_step_is_the_teacher_forced_prediction(series):
    """Fed the true previous output, the closed loop's first step is the open loop's."""
    esn = EchoStateNetwork(1, 1, size=50, feedback=True, seed=1)
    _, state = esn.fit(bias_input(200), series[:200], washout=50)
    features, _ = esn.features(bias_input(201)[200:], series[199:200], state)
    open_loop = esn.readout.predict(features[0])
    closed_loop = esn.generate(bias_input(1), state, series[199])[0]
    torch.testing.assert_close(closed_loop, open_loop, rtol=1e-12, atol=1e-12)


def test_fit_refuses_mismatched_targets():
    esn = EchoStateNetwork(1, 2, size=10, seed=0)
    with pytest.raises(ValueError, match=r"targets must be \(T, B, 2\)"):
        esn.fit(bias_input(20), torch.zeros(20, 1, 1, dtype=torch.float64), washout=5)


def test_the_example_runs():
    failures, attempted = doctest.testmod(rnnkit.models.esn, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failures == 0


@pytest.mark.parametrize("batch", [1, 3], ids=["B1", "B3"])
def test_a_one_ridge_fit_in_overlapped_chunks_equals_the_fit_on_all_states(series, batch, monkeypatch):
    """One ridge: the reservoir runs in chunks while the readout sums their normal equations; the
    readout, training error and final state are those of the run over all steps at once, and the
    same to the last bit on one thread as on two."""
    steps, washout, ridge = 500, 50, 1e-3  # well conditioned: the readouts agree to round-off
    inputs = torch.randn(steps, batch, 1, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    targets = torch.cat([series[10 * b : 10 * b + steps] for b in range(batch)], dim=1)  # (T, B, 1)
    previous = torch.cat([torch.zeros_like(targets[:1]), targets[:-1]])

    whole = EchoStateNetwork(1, 1, size=60, spectral_radius=0.9, density=0.1, feedback=True, seed=4)
    features, final = whole.features(inputs, previous)
    whole.readout.fit(features, targets, washout=washout, ridges=(ridge,))
    error = nrmse(whole.readout.predict(features[washout:]), targets[washout:])

    monkeypatch.setattr(rnnkit.models.esn, "CHUNK_GRAM_MACS", 0)  # chunks of 128 rows (61 features)
    chunk_counts = []
    fit_chunks = RidgeReadout.fit_chunks

    def counted(readout, chunks, ridge):
        chunks = list(chunks)
        chunk_counts.append(len(chunks))
        return fit_chunks(readout, chunks, ridge)

    monkeypatch.setattr(RidgeReadout, "fit_chunks", counted)
    fits = []
    for threads in (1, 2):
        with torch_threads(threads):
            esn = EchoStateNetwork(1, 1, size=60, spectral_radius=0.9, density=0.1, feedback=True, seed=4)
            training_error, state = esn.fit(inputs, targets, washout=washout, ridges=(ridge,))
        fits.append(esn.readout.weight)
        torch.testing.assert_close(esn.readout.weight, whole.readout.weight, rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(esn.readout.bias, whole.readout.bias, rtol=1e-9, atol=1e-9)
        assert training_error == pytest.approx(error, rel=1e-9)
        torch.testing.assert_close(state, final, rtol=0, atol=1e-14)
    assert chunk_counts == [-(-(steps - washout) // (128 // batch))] * 2
    assert torch.equal(fits[0], fits[1])


def test_feedback_noise_is_seeded_and_changes_the_fit(series):
    def readout_after_fit(noise: float, seed: int) -> torch.Tensor:
        esn = EchoStateNetwork(1, 1, size=30, feedback=True, seed=0)
        esn.fit(bias_input(300), series[:300], washout=50, feedback_noise=noise,
                generator=torch.Generator().manual_seed(seed))
        return esn.readout.weight.clone()

    torch.testing.assert_close(readout_after_fit(1e-3, 5), readout_after_fit(1e-3, 5), rtol=0, atol=0)
    assert not torch.equal(readout_after_fit(1e-3, 5), readout_after_fit(0.0, 5))
    assert not torch.equal(readout_after_fit(1e-3, 5), readout_after_fit(1e-3, 6))


def test_free_run_validation_scores_each_ridge_by_its_closed_loop_error(series):
    steps, washout, horizon, ridges = 600, 100, 25, (1e-11, 1e-7, 1e-3)
    esn = EchoStateNetwork(1, 1, size=120, spectral_radius=0.9, density=0.1, feedback=True, seed=3)
    esn.fit(bias_input(steps), series[:steps], washout=washout, ridges=ridges, validation_horizon=horizon)

    # independently: each ridge fitted on the steps before the split (100 + 400 = 500), then run free
    # for 25 steps from the teacher-forced state at steps 500, 525, ..., 575, one run at a time
    split = 500
    twin = EchoStateNetwork(1, 1, size=120, spectral_radius=0.9, density=0.1, feedback=True, seed=3)
    previous = torch.cat([torch.zeros(1, 1, 1, dtype=torch.float64), series[: steps - 1]])
    features, _ = twin.features(bias_input(steps), previous)
    # several ridges are solved from one factorisation of the rows (RidgePath), so the twin's are too
    path = RidgePath(features[washout:split].reshape(-1, 121), series[washout:split].reshape(-1, 1))
    expected = {}
    for ridge in ridges:
        solution = path.solution(ridge)
        twin.readout.weight.copy_(solution[:-1].T)
        twin.readout.bias.copy_(solution[-1])
        errors = []
        for start in range(split, steps - horizon + 1, horizon):
            run = twin.generate(bias_input(horizon), features[start - 1, :, :120], series[start - 1])
            errors.append((run - series[start : start + horizon]).pow(2).mean())
        expected[ridge] = torch.stack(errors).mean().item()
    assert esn.readout.validation_errors == pytest.approx(expected, rel=1e-6)
    assert esn.readout.ridge == min(expected, key=expected.get)


def test_free_run_validation_needs_feedback_and_room_for_one_run(series):
    without_feedback = EchoStateNetwork(1, 1, size=30, seed=0)
    with pytest.raises(ValueError, match="feedback=True"):
        without_feedback.fit(bias_input(300), series[:300], washout=50, validation_horizon=10)
    esn = EchoStateNetwork(1, 1, size=30, feedback=True, seed=0)
    with pytest.raises(ValueError, match="Expected >= 84 steps, got 50"):
        esn.fit(bias_input(300), series[:300], washout=50, validation_horizon=84)
