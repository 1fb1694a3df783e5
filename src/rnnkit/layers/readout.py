"""Linear readouts of reservoir states, trained without gradients: ridge regression and RLS."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from .gram import StreamedGram, upper_gram_matrix

# A refit on all steps whose score is this many times its candidate's runs away: the next larger ridge is taken.
RUNAWAY_FACTOR = 100.0
DEFAULT_RIDGES = (1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def _rows(tensor: Tensor, name: str, washout: int) -> Tensor:
    """``(T, B, F)`` or ``(S, F)`` -> float64 rows ``(S', F)``, the first ``washout`` steps dropped."""
    if tensor.dim() not in (2, 3):
        raise ValueError(f"{name} must be (T, B, F) or (S, F), got {tuple(tensor.shape)}")
    return tensor[washout:].reshape(-1, tensor.size(-1)).to(torch.float64)


def fitting_steps(steps: int, validation_fraction: float) -> int:
    """Of ``steps``, how many come before the validation split (at least one step is held out)."""
    return steps - max(1, round(validation_fraction * steps))


def _linear(states: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``states`` (..., N) -> ``states W^T + c`` (..., O), computed in float64."""
    if states.size(-1) != weight.size(1):
        raise ValueError(f"states.size(-1) must be {weight.size(1)}, got {states.size(-1)}")
    return (states.to(torch.float64) @ weight.T + bias).to(states.dtype)


class RidgeReadout(nn.Module):
    r"""Linear readout :math:`y = W x + c` fitted by ridge regression in closed form (Lukoševičius 2012).

    With the rows :math:`X` (S, N) of reservoir states and :math:`Y` (S, O) of targets,
    :math:`\tilde X = [X \; 1]` adds a bias column and

    .. math::
        [W \; c] = Y^\top \tilde X \, (\tilde X^\top \tilde X + \lambda D)^{-1},
        \quad D = \mathrm{diag}(1, \dots, 1, 0),

    solved in float64 by a Cholesky factorisation. The bias :math:`c` is not regularised
    (:math:`D` has 0 in its place), unlike the common ESN practice of penalising every weight:
    shrinking :math:`c` would pull predictions towards 0 rather than towards the targets' mean,
    so the fit would depend on the targets' offset.

    ``fit`` picks :math:`\lambda` from ``ridges`` by the mean squared error on a validation
    split, the last ``validation_fraction`` of the steps (of the rows, for (S, N) input), fitted
    on the steps before it (a chronological split: the next steps of a time series are what
    the readout must predict). It then refits on all steps with that :math:`\lambda`. The first
    ``washout`` steps, where the state still remembers its arbitrary initial value, are dropped.
    ``validation_errors`` keeps the error of every ridge, ``ridge`` the one chosen. A ``score``
    replaces that error: called while the readout holds a candidate's weights (fitted on the
    steps before the split), it returns the candidate's error, e.g. of a free run over the
    validation steps (:meth:`~rnnkit.models.EchoStateNetwork.fit`). With a ``score``, the refit is
    scored too: where it scores over ``RUNAWAY_FACTOR`` times its candidate (a closed loop that runs
    away once the validation steps join the fit), the next larger ridge is refitted instead.

    ``weight`` (O, N) and ``bias`` (O,) are buffers (float64); ``predict(states)`` maps
    ``(..., N)`` to ``(..., O)`` in the states' dtype.

    Example:
        >>> readout = RidgeReadout(100, 1).fit(states, targets, washout=50)  # (T, B, 100), (T, B, 1)
        >>> prediction = readout.predict(states)  # (T, B, 1)
    """

    def __init__(self, state_size: int, output_size: int) -> None:
        super().__init__()
        self.state_size = state_size
        self.output_size = output_size
        self.register_buffer("weight", torch.zeros(output_size, state_size, dtype=torch.float64))
        self.register_buffer("bias", torch.zeros(output_size, dtype=torch.float64))
        self.ridge = 0.0
        self.validation_errors: dict[float, float] = {}

    def fit(
        self,
        states: Tensor,
        targets: Tensor,
        washout: int = 0,
        ridges: Sequence[float] = DEFAULT_RIDGES,
        validation_fraction: float = 0.2,
        score: Callable[[], float] | None = None,
    ) -> RidgeReadout:
        """Fit ``weight`` and ``bias`` to map ``states`` (T, B, N) or (S, N) to ``targets`` (…, O)."""
        self._check(states, targets, washout, ridges, validation_fraction)
        steps = states.size(0) - washout
        x, y = _rows(states, "states", washout), _rows(targets, "targets", washout)
        self.validation_errors = {}
        # One ridge: the normal equations. Several: one factorisation serves them all, and the
        # choice among them is not left to round-off (see RidgePath).
        solver = RidgePath if len(ridges) > 1 else NormalEquations
        if len(ridges) > 1:
            rows_per_step = x.size(0) // steps  # B for (T, B, N), 1 for (S, N)
            split = rows_per_step * fitting_steps(steps, validation_fraction)
            fitted = solver(x[:split], y[:split])  # once for every ridge
            for ridge in ridges:
                solution = fitted.solution(ridge)
                if score is None:
                    error = (x[split:] @ solution[:-1] + solution[-1] - y[split:]).pow(2).mean().item()
                else:
                    self._set(solution)
                    error = score()
                self.validation_errors[float(ridge)] = error
        self.ridge = float(min(self.validation_errors, key=self.validation_errors.get) if self.validation_errors
                           else ridges[0])
        everything = solver(x, y)
        self._set(everything.solution(self.ridge))
        if score is not None and self.validation_errors:
            chosen_error = self.validation_errors[self.ridge]
            for ridge in sorted(r for r in map(float, ridges) if r > self.ridge):
                if score() <= RUNAWAY_FACTOR * chosen_error:
                    break
                self.ridge = ridge  # the refit ran away where the candidate did not: more regularisation
                self._set(everything.solution(ridge))
        return self

    def fit_chunks(self, chunks: Iterable[tuple[Tensor, Tensor]], ridge: float) -> RidgeReadout:
        """Fit with the one ``ridge`` to every row of ``chunks``: pairs of states (T_i, B, N) or
        (S_i, N) and their targets, no washout, no validation split. The normal equations are summed
        as the chunks come, the Gram matrix on a second thread while the iterator computes the next
        chunk (:meth:`NormalEquations.summed`): a reservoir running its next steps and the Gram
        matrix of the last share the cores (:meth:`~rnnkit.models.EchoStateNetwork.fit`)."""
        if ridge < 0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")

        def rows() -> Iterator[tuple[Tensor, Tensor]]:
            for states, targets in chunks:
                self._check_shapes(states, targets)
                yield _rows(states, "states", 0), _rows(targets, "targets", 0)

        self._set(NormalEquations.summed(rows()).solution(ridge))
        self.ridge = float(ridge)
        self.validation_errors = {}
        return self

    def _set(self, solution: Tensor) -> None:
        """Take ``[W c]^T`` (N + 1, O) as the weights."""
        self.weight.copy_(solution[:-1].T)
        self.bias.copy_(solution[-1])

    def predict(self, states: Tensor) -> Tensor:
        """``(..., N) -> (..., O)``, in the states' dtype."""
        return _linear(states, self.weight, self.bias)

    def _check(self, states: Tensor, targets: Tensor, washout: int, ridges: Sequence[float],
               validation_fraction: float) -> None:
        self._check_shapes(states, targets)
        if not 0 <= washout < states.size(0) - 1:
            raise ValueError(f"washout must lie in [0, {states.size(0) - 1}), got {washout}")
        if not ridges or min(ridges) < 0:
            raise ValueError(f"ridges must be one or more values >= 0, got {tuple(ridges)}")
        if len(ridges) > 1 and not 0.0 < validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {validation_fraction}")

    def _check_shapes(self, states: Tensor, targets: Tensor) -> None:
        if states.size(-1) != self.state_size or targets.size(-1) != self.output_size:
            raise ValueError(
                f"states and targets must end in {self.state_size} and {self.output_size} features, "
                f"got {tuple(states.shape)} and {tuple(targets.shape)}"
            )
        if states.shape[:-1] != targets.shape[:-1]:
            raise ValueError(f"states and targets must have the same leading shape, got "
                             f"{tuple(states.shape)} and {tuple(targets.shape)}")


class NormalEquations:
    r"""``solution(ridge)``: ``[W c]^T`` (N + 1, O) from the normal equations of rows ``x`` (S, N) and
    ``y`` (S, O), by a Cholesky factorisation per ridge: fast, but its error grows with the square of
    the rows' condition number (:func:`_ridge_solution`).

    With :math:`\tilde X = [x \; 1]`, ``gram`` (N + 1, N + 1) holds :math:`\tilde X^\top \tilde X` on
    and above its diagonal only (what the Cholesky factorisation reads; below it is left unset) and
    ``moments`` (N + 1, O) :math:`\tilde X^\top Y`. The bias row and column are the column sums of
    ``x`` and S: :math:`\tilde X` itself, a copy of every row, is never formed."""

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self._bordered(x, y.size(1))
        upper_gram_matrix(x, out=self.gram[:-1, :-1])
        self._add_sums(x, y)

    @classmethod
    def summed(cls, chunks: Iterable[tuple[Tensor, Tensor]]) -> NormalEquations:
        """The normal equations of all the rows of ``chunks``, pairs ``(x_i, y_i)`` of (S_i, N) and
        (S_i, O), summed as they come: the Gram matrix on a second thread while the iterator
        computes the next chunk (:class:`~rnnkit.layers.gram.StreamedGram`)."""
        iterator = iter(chunks)
        first = next(iterator, None)
        if first is None:
            raise ValueError("chunks must yield at least one chunk of rows")
        equations = cls.__new__(cls)  # the sums, not the rows, make these equations
        equations._bordered(first[0], first[1].size(1))
        with StreamedGram(equations.gram[:-1, :-1]) as upper:  # zeroes its block, on one thread
            for x, y in itertools.chain([first], iterator):
                upper.add(x)
                equations._add_sums(x, y)
            upper.finish()
        return equations

    def _bordered(self, x: Tensor, outputs: int) -> None:
        """``gram`` unset but for its bias column (zeros) and ``moments`` zeros, for rows like ``x``."""
        size = x.size(1)
        self.gram = x.new_empty(size + 1, size + 1)
        self.gram[:, size] = 0
        self.moments = x.new_zeros(size + 1, outputs)

    def _add_sums(self, x: Tensor, y: Tensor) -> None:
        """Add what rows ``x``, ``y`` bring besides ``x^T x``: the bias column and ``X~^T Y``."""
        size = x.size(1)
        self.gram[:size, size] += x.sum(0)
        self.gram[size, size] += x.size(0)
        self.moments[:size].addmm_(x.T, y)
        self.moments[size] += y.sum(0)

    def solution(self, ridge: float) -> Tensor:
        return _ridge_solution(self.gram, self.moments, ridge)


class RidgePath:
    r"""``solution(ridge)``: ``[W c]^T`` (N + 1, O) for any ridge, from one factorisation of the rows.

    The bias, unpenalised, takes the means: with :math:`X_c = X - \bar x` and :math:`Y_c = Y - \bar y`,
    :math:`W^\top = \arg\min \|X_c W^\top - Y_c\|^2 + \lambda \|W\|^2` and :math:`c = \bar y - W \bar x`,
    the same minimiser as :class:`NormalEquations`'. With :math:`X_c = QR` (Householder) and
    :math:`R = U S V^\top`, :math:`W^\top = V \mathrm{diag}(s / (s^2 + \lambda)) U^\top Q^\top Y_c`:
    every ridge costs a small product, and the error follows the condition number of the rows, not
    its square as the normal equations' does. That matters at the small ridges an echo state
    network's free runs favour: on Mackey-Glass (20,000 steps, 1000 units) the normal equations'
    condition number is about 1e13 at ridge 1e-10, where round-off alone decided which ridge won
    and how well the readout ran free (seeds 39, 59, 70: NRMSE84 6.6e-4, 6.7e-4, 1.1e-3 with one
    rounding, 5.3e-6, 8.0e-5, 1.9e-4 with another; accurately solved 4.0e-6, 4.6e-5, 1.7e-5).
    Singular values below ``S · eps · s_max`` count as 0 (for ridge 0 the minimum-norm solution).
    """

    def __init__(self, x: Tensor, y: Tensor) -> None:
        self.x_mean, self.y_mean = x.mean(0), y.mean(0)
        factors, tau = torch.geqrf(x - self.x_mean)  # (S, N): R above the diagonal, Q's reflectors below
        rank_bound = min(x.shape)
        qty = torch.ormqr(factors, tau, y - self.y_mean, left=True, transpose=True)[:rank_bound]  # Q^T Y_c
        u, self.singular_values, self.vh = torch.linalg.svd(factors[:rank_bound].triu(), full_matrices=False)
        self.projected = u.mT @ qty  # U^T Q^T Y_c, (k, O)
        cutoff = max(x.shape) * torch.finfo(x.dtype).eps * self.singular_values.max().clamp(min=1e-300)
        self.kept = self.singular_values > cutoff

    def solution(self, ridge: float) -> Tensor:
        s = self.singular_values
        gain = torch.where(self.kept, s / (s * s + ridge), torch.zeros_like(s))
        weights = self.vh.mT @ (gain.unsqueeze(1) * self.projected)  # W^T, (N, O)
        return torch.cat([weights, (self.y_mean - self.x_mean @ weights).unsqueeze(0)])


def _ridge_solution(gram: Tensor, moments: Tensor, ridge: float) -> Tensor:
    r"""``[W c]^T`` (N + 1, O) solving ``(X^T X + ridge D) theta = X^T Y``; ``D`` spares the bias (last).

    ``gram`` holds ``X^T X`` on and above its diagonal (:class:`NormalEquations`). With ``ridge``
    > 0 the matrix is positive definite (the bias column is all ones), so a Cholesky factorisation
    :math:`U^\top U` solves it at half the cost of LU, reading the upper triangle alone. Where the
    factorisation fails (``ridge`` 0 and a rank-deficient X, or round-off at a vanishing ridge),
    the least-squares solution of the equations, made whole, is taken: on CPU by an SVD (gelsd),
    the minimum-norm one where the matrix is singular."""
    regularised = gram.clone()
    regularised.diagonal()[:-1] += ridge  # the bias (last) is not regularised
    factor, info = torch.linalg.cholesky_ex(regularised, upper=True)  # U
    if info.item() == 0:  # two triangular solves: torch.cholesky_solve copies U first, 40x slower at N = 1000
        below = torch.linalg.solve_triangular(factor.mT, moments, upper=False)  # U^T z = X^T Y
        return torch.linalg.solve_triangular(factor, below, upper=True)
    whole = regularised.triu() + regularised.triu(1).mT
    return torch.linalg.lstsq(whole, moments, driver="gelsd" if whole.is_cpu else None).solution


class RLSReadout(nn.Module):
    r"""Linear readout :math:`y = W x + c` trained online by recursive least squares (Jaeger 2002, §4.1).

    With :math:`\tilde x = [x; 1]` and :math:`\theta = [W \; c]^\top` (N + 1, O), each call
    ``update(x_t, y_t)`` takes the B rows of one step, :math:`X` (B, N + 1) and :math:`Y` (B, O),
    and applies the block form of RLS (the matrix inversion lemma on all B rows at once, the same
    as B single-row updates when :math:`\beta = 1`):

    .. math::
        K &= P X^\top (\beta I_B + X P X^\top)^{-1} \\
        \theta &\leftarrow \theta + K (Y - X \theta) \\
        P &\leftarrow (P - K X P) / \beta

    :math:`P` (N + 1, N + 1) estimates the inverse correlation matrix of the states, starting at
    :math:`P_0 = I / \delta` (``delta``: small, a weak prior that the weights are 0), and
    :math:`\beta \in (0, 1]` is the forgetting factor (``forgetting``): a row's weight decays by
    :math:`\beta` every step, so the readout tracks roughly the last :math:`1/(1 - \beta)` steps.
    With :math:`\beta = 1` the weights after S rows are the ridge solution with penalty
    :math:`\delta` on every weight, bias included. Everything is kept in float64.

    Reference: H. Jaeger, "Tutorial on training recurrent neural networks", GMD Report 159, 2002;
    S. Haykin, Adaptive Filter Theory, ch. 9.

    Example:
        >>> readout = RLSReadout(100, 1, forgetting=0.999)
        >>> for x_t, y_t in zip(states, targets):  # (T, B, 100), (T, B, 1)
        ...     readout.update(x_t, y_t)
    """

    def __init__(self, state_size: int, output_size: int, forgetting: float = 1.0, delta: float = 1e-4) -> None:
        super().__init__()
        if not 0.0 < forgetting <= 1.0:
            raise ValueError(f"forgetting must lie in (0, 1], got {forgetting}")
        if delta <= 0.0:
            raise ValueError(f"delta must be positive, got {delta}")
        self.state_size = state_size
        self.output_size = output_size
        self.forgetting = forgetting
        self.delta = delta
        self.register_buffer("theta", torch.zeros(state_size + 1, output_size, dtype=torch.float64))
        self.register_buffer("inverse_correlation", torch.eye(state_size + 1, dtype=torch.float64) / delta)

    @property
    def weight(self) -> Tensor:
        """``W`` (O, N)."""
        return self.theta[:-1].T

    @property
    def bias(self) -> Tensor:
        """``c`` (O,)."""
        return self.theta[-1]

    def update(self, x: Tensor, y: Tensor) -> None:
        """One RLS step on the rows ``x`` (B, N) and targets ``y`` (B, O)."""
        if x.dim() != 2 or x.size(1) != self.state_size or tuple(y.shape) != (x.size(0), self.output_size):
            raise ValueError(
                f"x and y must be (B, {self.state_size}) and (B, {self.output_size}), "
                f"got {tuple(x.shape)} and {tuple(y.shape)}"
            )
        x = torch.cat([x.to(torch.float64), x.new_ones(x.size(0), 1, dtype=torch.float64)], dim=1)  # (B, N + 1)
        p = self.inverse_correlation
        px = p @ x.T  # (N + 1, B)
        innovation = self.forgetting * torch.eye(x.size(0), dtype=torch.float64) + x @ px  # (B, B)
        gain = torch.linalg.solve(innovation, px.T).T  # (N + 1, B): P X^T (βI + X P X^T)^{-1}
        self.theta += gain @ (y.to(torch.float64) - x @ self.theta)
        p = (p - gain @ px.T) / self.forgetting
        self.inverse_correlation.copy_((p + p.T) / 2)  # symmetric in exact arithmetic; keep it so

    def predict(self, states: Tensor) -> Tensor:
        """``(..., N) -> (..., O)``, in the states' dtype."""
        return _linear(states, self.weight, self.bias)
