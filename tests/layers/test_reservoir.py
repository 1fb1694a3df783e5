"""Reservoir, ridge and RLS readouts: the equations, the fixed weights, the echo state property, learning."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.cells.leaky import LeakyCell
from rnnkit.engine.loop import run_loop
from rnnkit.engine.threads import torch_threads
from rnnkit.layers import reservoir as reservoir_module
from rnnkit.layers.readout import NormalEquations, RidgePath, RidgeReadout, RLSReadout
from rnnkit.layers.reservoir import Reservoir, arnoldi_radius
from fused_backends import BACKENDS, use_backend


def exact_radius(weight: torch.Tensor) -> float:
    return torch.linalg.eigvals(weight.to_dense().double()).abs().max().item()


def nrmse(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return ((prediction - target).pow(2).mean().sqrt() / target.std()).item()


# --- spectral radius ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", [0.5, 0.9, 1.3], ids=["0.5", "0.9", "1.3"])
def test_spectral_radius_is_scaled_to_the_target_exactly(target: float) -> None:
    reservoir = Reservoir(2, 300, spectral_radius=target, density=0.05, seed=1)
    # stored in float32: the scaling itself is exact in float64
    assert exact_radius(reservoir.cell.weight_hh) == pytest.approx(target, rel=1e-6)


def test_large_reservoirs_use_arnoldi_and_match_eigvals(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reservoir_module, "EXACT_EIGENVALUES_LIMIT", 100)  # force the iterative path at N = 800
    calls = []
    original = reservoir_module.arnoldi_radius
    monkeypatch.setattr(reservoir_module, "arnoldi_radius", lambda *a: calls.append(a) or original(*a))
    reservoir = Reservoir(1, 800, spectral_radius=0.9, seed=2)
    assert len(calls) == 1
    assert exact_radius(reservoir.cell.weight_hh) == pytest.approx(0.9, rel=1e-3)


def test_arnoldi_finds_a_complex_dominant_pair_where_power_iteration_rotates() -> None:
    # W = 2 R(θ) ⊕ (a random block of radius < 1): the dominant eigenvalues are 2 e^{±iθ}
    generator = torch.Generator().manual_seed(3)
    theta = 0.7
    rotation = 2.0 * torch.tensor([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    rest = torch.randn(150, 150, generator=generator, dtype=torch.float64) / math.sqrt(150) * 0.8
    weight = torch.block_diag(rotation.double(), rest)
    assert arnoldi_radius(weight, 100, generator) == pytest.approx(2.0, rel=1e-8)
    # Power iteration's Rayleigh quotient v^T W v / v^T v on the rotation plane is 2 cos θ, not 2
    vector = torch.randn(152, generator=generator, dtype=torch.float64)
    for _ in range(200):
        vector = weight @ vector
        vector = vector / vector.norm()
    assert abs(vector @ weight @ vector - 2.0) > 0.2


# --- fixed weights ---------------------------------------------------------------------------------


def test_fixed_weights_are_buffers_and_the_state_dict_round_trips() -> None:
    reservoir = Reservoir(3, 40, leak=0.4, bias_scaling=0.5, feedback_size=2, seed=4)
    assert list(reservoir.parameters()) == []
    buffers = dict(reservoir.named_buffers())
    assert set(buffers) == {f"cell.{n}" for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "alpha_logit")}
    assert reservoir.cell.weight_ih.shape == (40, 5)
    other = Reservoir(3, 40, leak=0.4, bias_scaling=0.5, feedback_size=2, seed=5)
    u, y = torch.randn(6, 2, 3), torch.randn(6, 2, 2)
    assert not torch.allclose(other(u, feedback=y)[0], reservoir(u, feedback=y)[0])
    other.load_state_dict(reservoir.state_dict())
    torch.testing.assert_close(other(u, feedback=y)[0], reservoir(u, feedback=y)[0], rtol=0, atol=0)


def test_seed_makes_the_reservoir_reproducible() -> None:
    first, second = Reservoir(2, 30, seed=6), Reservoir(2, 30, seed=6)
    assert torch.equal(first.cell.weight_hh.to_dense(), second.cell.weight_hh.to_dense())
    density = (first.cell.weight_hh.to_dense() != 0).double().mean().item()
    assert 0.05 < density < 0.15  # density 0.1 of 900 entries


# --- the equation ----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("leak", [1.0, 0.3], ids=["plain", "leaky"])
def test_forward_equals_the_reservoir_equation(leak: float, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    use_backend(backend, monkeypatch)
    reservoir = Reservoir(3, 25, leak=leak, bias_scaling=0.3, feedback_size=2, input_scaling=0.7, seed=7,
                          dtype=torch.float64)
    generator = torch.Generator().manual_seed(8)
    u = torch.randn(12, 4, 3, generator=generator, dtype=torch.float64)
    y = torch.randn(12, 4, 2, generator=generator, dtype=torch.float64)
    x0 = torch.randn(4, 25, generator=generator, dtype=torch.float64)
    states, final = reservoir(u, x0, feedback=y)

    cell = reservoir.cell
    w_in, w_fb, w, b = cell.weight_ih[:, :3], cell.weight_ih[:, 3:], cell.weight_hh.to_dense(), cell.bias_ih
    x, expected = x0, []
    for t in range(12):  # x_t = (1 - a) x_{t-1} + a tanh(W_in u_t + W x_{t-1} + W_fb y_{t-1} + b)
        x = (1 - leak) * x + leak * torch.tanh(u[t] @ w_in.T + x @ w.T + y[t] @ w_fb.T + b)
        expected.append(x)
    torch.testing.assert_close(states, torch.stack(expected), rtol=0, atol=1e-10)
    torch.testing.assert_close(final, expected[-1], rtol=0, atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sparse_recurrent_matrix_runs_as_the_dense_loop_does(dtype: torch.dtype) -> None:
    # W is stored in CSR; the fused kernel's sparse product (here large enough to split over two
    # threads) must give what the reference loop gives with the same matrix dense
    reservoir = Reservoir(2, 400, density=0.5, leak=0.6, bias_scaling=0.2, seed=12, dtype=dtype)
    assert reservoir.cell.weight_hh.layout == torch.sparse_csr
    dense = LeakyCell(2, 400, alpha=0.5).to(dtype)
    with torch.no_grad():
        for name, value in reservoir.cell.state_dict().items():
            getattr(dense, name).copy_(value.to_dense())
    u = torch.randn(30, 3, 2, generator=torch.Generator().manual_seed(13), dtype=dtype)
    with torch_threads(2):
        states, final = reservoir(u)
    expected, (expected_final,) = run_loop(dense, u, dense.init_state(3, None, dtype))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(states, expected, rtol=0, atol=tolerance)
    torch.testing.assert_close(final, expected_final, rtol=0, atol=tolerance)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_sparse_product_handles_rows_of_every_length(dtype: torch.dtype) -> None:
    # The kernel sorts W's rows by their nonzero count and runs them a SIMD vector at a time,
    # padded to the longest of each group: rows from empty to full, in shuffled order, and a
    # size that is no multiple of any vector width must still give the dense loop's states
    size = 37
    generator = torch.Generator().manual_seed(14)
    lengths = torch.randperm(size + 1, generator=generator)[:size]  # 0..37 nonzeros, each at most once
    keep = torch.rand(size, size, generator=generator).argsort(dim=1) < lengths.unsqueeze(1)
    w = torch.where(keep, torch.randn(size, size, generator=generator), 0.0).to(dtype) / 6
    reservoir = Reservoir(2, size, leak=0.7, seed=15, dtype=dtype)
    reservoir.load_state_dict({**reservoir.state_dict(), "cell.weight_hh": w.to_sparse_csr()})
    dense = LeakyCell(2, size, alpha=0.3).to(dtype)
    with torch.no_grad():
        for name, value in reservoir.cell.state_dict().items():
            getattr(dense, name).copy_(value.to_dense())
    u = torch.randn(20, 3, 2, generator=generator, dtype=dtype)
    states, _ = reservoir(u)
    expected, _ = run_loop(dense, u, dense.init_state(3, None, dtype))
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    torch.testing.assert_close(states, expected, rtol=0, atol=tolerance)


def test_forward_builds_no_graph_and_continues_from_its_final_state() -> None:
    reservoir = Reservoir(1, 20, leak=0.5, seed=9)
    u = torch.randn(10, 2, 1, requires_grad=True)
    whole, _ = reservoir(u)
    assert not whole.requires_grad
    first, state = reservoir(u[:4])
    second, _ = reservoir(u[4:], state)
    torch.testing.assert_close(torch.cat([first, second]), whole)


def test_echo_state_property_forgets_the_initial_state() -> None:
    reservoir = Reservoir(1, 100, spectral_radius=0.9, input_scaling=0.5, seed=10, dtype=torch.float64)
    generator = torch.Generator().manual_seed(11)
    u = torch.rand(300, 1, 1, generator=generator, dtype=torch.float64) - 0.5
    starts = torch.rand(2, 1, 100, generator=generator, dtype=torch.float64) * 2 - 1
    a, _ = reservoir(u, starts[0])
    b, _ = reservoir(u, starts[1])
    distance = (a - b).norm(dim=-1).squeeze(1)  # (T,)
    assert distance[0] > 0.1
    assert distance[-1] < 1e-6


def test_bad_input_is_refused_with_expected_and_got() -> None:
    reservoir = Reservoir(2, 10, feedback_size=1, seed=0)
    with pytest.raises(ValueError, match=r"\(T, B, 2\), got \(5, 3, 4\)"):
        reservoir(torch.randn(5, 3, 4), feedback=torch.randn(5, 3, 1))
    with pytest.raises(ValueError, match="pass feedback"):
        reservoir(torch.randn(5, 3, 2))
    with pytest.raises(ValueError, match="leak must lie in"):
        Reservoir(2, 10, leak=0.0)


# --- ridge readout ---------------------------------------------------------------------------------


def test_ridge_equals_lstsq_of_the_regularised_problem() -> None:
    generator = torch.Generator().manual_seed(12)
    x = torch.randn(30, 4, 8, generator=generator, dtype=torch.float64)  # (T, B, N)
    y = torch.randn(30, 4, 3, generator=generator, dtype=torch.float64)
    ridge, washout = 0.3, 5
    readout = RidgeReadout(8, 3).fit(x, y, washout=washout, ridges=(ridge,))
    rows = torch.cat([x[washout:].reshape(-1, 8), torch.ones(100, 1, dtype=torch.float64)], dim=1)
    penalty = torch.cat([math.sqrt(ridge) * torch.eye(8, dtype=torch.float64), torch.zeros(8, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(
        torch.cat([rows, penalty]), torch.cat([y[washout:].reshape(-1, 3), torch.zeros(8, 3, dtype=torch.float64)])
    ).solution  # (N + 1, O): the bias row unpenalised
    torch.testing.assert_close(readout.weight, solution[:-1].T, rtol=0, atol=1e-8)
    torch.testing.assert_close(readout.bias, solution[-1], rtol=0, atol=1e-8)
    torch.testing.assert_close(readout.predict(x), x @ solution[:-1] + solution[-1], rtol=0, atol=1e-8)


def test_ridge_fitted_to_chunks_equals_the_fit_to_all_rows_at_once() -> None:
    generator = torch.Generator().manual_seed(13)
    x = torch.randn(90, 2, 300, generator=generator, dtype=torch.float64)  # (T, B, N): ten Gram blocks
    y = torch.randn(90, 2, 3, generator=generator, dtype=torch.float64)
    whole = RidgeReadout(300, 3).fit(x, y, ridges=(0.5,))
    with torch_threads(2):
        chunked = RidgeReadout(300, 3).fit_chunks(zip(x.split([1, 40, 49]), y.split([1, 40, 49])), 0.5)
    torch.testing.assert_close(chunked.weight, whole.weight, rtol=0, atol=1e-12)
    torch.testing.assert_close(chunked.bias, whole.bias, rtol=0, atol=1e-12)
    assert chunked.ridge == 0.5


def test_ridge_fitted_to_chunks_refuses_bad_chunks_and_ridges() -> None:
    readout = RidgeReadout(4, 1)
    with pytest.raises(ValueError, match="at least one chunk"):
        readout.fit_chunks([], 1.0)
    with pytest.raises(ValueError, match="ridge must be >= 0"):
        readout.fit_chunks([(torch.zeros(3, 4), torch.zeros(3, 1))], -1.0)
    with pytest.raises(ValueError, match="must end in 4 and 1 features"):
        readout.fit_chunks([(torch.zeros(3, 4), torch.zeros(3, 1)), (torch.zeros(3, 5), torch.zeros(3, 1))], 1.0)


def test_ridge_without_regularisation_on_a_rank_deficient_problem_is_the_least_squares_fit() -> None:
    # A repeated feature: X^T X is singular, its Cholesky factorisation fails and LU solves it
    generator = torch.Generator().manual_seed(17)
    base = torch.randn(40, 3, generator=generator, dtype=torch.float64)
    x = torch.cat([base, base[:, :1]], dim=1)  # (S, 4), rank 3
    y = base @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.25
    readout = RidgeReadout(4, 1).fit(x, y, ridges=(0.0,))
    torch.testing.assert_close(readout.predict(x), y, rtol=0, atol=1e-9)


def test_ridge_choice_is_the_best_on_the_validation_split() -> None:
    # Few noisy rows and many features: too little ridge overfits, too much underfits
    generator = torch.Generator().manual_seed(13)
    x = torch.randn(60, 30, generator=generator, dtype=torch.float64)  # (S, N)
    truth = torch.randn(30, 1, generator=generator, dtype=torch.float64) * 0.3
    y = x @ truth + 0.5 * torch.randn(60, 1, generator=generator, dtype=torch.float64)
    ridges = (1e-6, 1e-2, 1.0, 10.0, 100.0, 1e4)
    readout = RidgeReadout(30, 1).fit(x, y, ridges=ridges, validation_fraction=0.25)

    errors = {}
    for ridge in ridges:  # fit on the first 45 rows, score the last 15, independently of the readout
        errors[ridge] = RidgeReadout(30, 1).fit(x[:45], y[:45], ridges=(ridge,)).predict(x[45:]).sub(y[45:]).pow(2).mean()
    best = min(errors, key=errors.get)
    assert best not in (ridges[0], ridges[-1])  # an interior optimum: the choice means something
    assert readout.ridge == best
    assert readout.validation_errors == pytest.approx({r: e.item() for r, e in errors.items()}, rel=1e-10)
    # then refitted on every row: by the one factorisation several ridges share (RidgePath), which a
    # one-ridge fit's normal equations match up to round-off
    torch.testing.assert_close(readout.weight, RidgePath(x, y).solution(best)[:-1].T, rtol=0, atol=0)
    refit = RidgeReadout(30, 1).fit(x, y, ridges=(best,))
    torch.testing.assert_close(readout.weight, refit.weight, rtol=0, atol=1e-12)


def test_ridge_path_solves_an_ill_conditioned_problem_as_lstsq_where_the_normal_equations_cannot() -> None:
    # Nearly collinear columns (condition ~1e7): the normal equations square it to ~1e14 and lose
    # most digits at a small ridge; the path's QR keeps them (against lstsq of the stacked problem)
    generator = torch.Generator().manual_seed(18)
    base = torch.randn(300, 6, generator=generator, dtype=torch.float64)
    x = torch.cat([base, base[:, :4] + 1e-7 * torch.randn(300, 4, generator=generator, dtype=torch.float64)], 1)
    y = x @ torch.randn(10, 2, generator=generator, dtype=torch.float64) + 3.0
    ridge = 1e-12
    rows = torch.cat([x, torch.ones(300, 1, dtype=torch.float64)], 1)
    penalty = torch.cat([math.sqrt(ridge) * torch.eye(10, dtype=torch.float64), torch.zeros(10, 1, dtype=torch.float64)], 1)
    exact = torch.linalg.lstsq(torch.cat([rows, penalty]), torch.cat([y, torch.zeros(10, 2, dtype=torch.float64)])).solution
    path_error = (RidgePath(x, y).solution(ridge) - exact).abs().max().item()
    normal_error = (NormalEquations(x, y).solution(ridge) - exact).abs().max().item()
    assert path_error < 1e-6 * exact.abs().max().item() < normal_error


@pytest.mark.parametrize("refit_scores, chosen", [([2.0], 1e-3), ([1000.0, 2.0], 1.0)], ids=["kept", "runaway"])
def test_a_refit_that_runs_away_takes_the_next_larger_ridge(refit_scores: list[float], chosen: float) -> None:
    # The score prefers 1e-3 among the candidates (1 against 5, 3 and 4); the refit on all rows is then
    # scored too, and only where it scores over RUNAWAY_FACTOR times that is the next ridge taken
    generator = torch.Generator().manual_seed(17)
    x = torch.randn(40, 6, generator=generator, dtype=torch.float64)
    y = torch.randn(40, 1, generator=generator, dtype=torch.float64)
    scores = iter([5.0, 1.0, 3.0, 4.0, *refit_scores])
    readout = RidgeReadout(6, 1).fit(x, y, ridges=(1e-6, 1e-3, 1.0, 10.0), score=lambda: next(scores))
    assert readout.ridge == chosen
    assert next(scores, None) is None  # every refit was scored until one held
    torch.testing.assert_close(readout.weight, RidgePath(x, y).solution(chosen)[:-1].T, rtol=0, atol=0)


def test_ridge_refuses_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match=r"same leading shape"):
        RidgeReadout(4, 1).fit(torch.randn(10, 2, 4), torch.randn(10, 3, 1))
    with pytest.raises(ValueError, match=r"end in 4 and 1 features"):
        RidgeReadout(4, 1).fit(torch.randn(10, 2, 5), torch.randn(10, 2, 1))


# --- RLS readout -----------------------------------------------------------------------------------


def test_rls_without_forgetting_is_the_ridge_solution_with_penalty_delta() -> None:
    generator = torch.Generator().manual_seed(14)
    x = torch.randn(25, 3, 6, generator=generator, dtype=torch.float64)  # (T, B, N)
    y = torch.randn(25, 3, 2, generator=generator, dtype=torch.float64)
    delta = 0.5
    rls = RLSReadout(6, 2, delta=delta)
    for x_t, y_t in zip(x, y):
        rls.update(x_t, y_t)
    rows = torch.cat([x.reshape(-1, 6), torch.ones(75, 1, dtype=torch.float64)], dim=1)
    solution = torch.linalg.lstsq(  # penalty δ on every weight, the bias included
        torch.cat([rows, math.sqrt(delta) * torch.eye(7, dtype=torch.float64)]),
        torch.cat([y.reshape(-1, 2), torch.zeros(7, 2, dtype=torch.float64)]),
    ).solution
    torch.testing.assert_close(rls.theta, solution, rtol=0, atol=1e-10)


@pytest.mark.parametrize("forgetting", [1.0, 0.99], ids=["no-forgetting", "forgetting"])
def test_rls_converges_to_the_noiseless_linear_map(forgetting: float) -> None:
    generator = torch.Generator().manual_seed(15)
    weight = torch.randn(2, 10, generator=generator, dtype=torch.float64)
    bias = torch.randn(2, generator=generator, dtype=torch.float64)
    x = torch.randn(200, 4, 10, generator=generator, dtype=torch.float64)
    rls = RLSReadout(10, 2, forgetting=forgetting, delta=1e-6)
    for x_t in x:
        rls.update(x_t, x_t @ weight.T + bias)
    torch.testing.assert_close(rls.weight, weight, rtol=0, atol=1e-8)
    torch.testing.assert_close(rls.bias, bias, rtol=0, atol=1e-8)
    test = torch.randn(7, 10, generator=generator, dtype=torch.float64)
    torch.testing.assert_close(rls.predict(test), test @ weight.T + bias, rtol=0, atol=1e-8)


# --- learning --------------------------------------------------------------------------------------


def test_esn_predicts_a_sine_one_step_ahead() -> None:
    steps, washout = 600, 100
    signal = torch.sin(0.2 * torch.arange(steps + 1, dtype=torch.float64)).reshape(-1, 1, 1)  # (T + 1, 1, 1)
    u, target = signal[:-1], signal[1:]
    reservoir = Reservoir(1, 100, spectral_radius=0.9, input_scaling=0.5, bias_scaling=0.2, seed=16, dtype=torch.float64)
    states, _ = reservoir(u)  # (T, 1, 100)
    train, test = slice(0, 450), slice(450, steps)
    readout = RidgeReadout(100, 1)
    untrained = nrmse(readout.predict(states[test]), target[test])
    readout.fit(states[train], target[train], washout=washout)
    trained = nrmse(readout.predict(states[test]), target[test])
    assert untrained > 0.5
    assert trained < 1e-3
