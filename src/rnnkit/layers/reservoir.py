"""``Reservoir``: the fixed random recurrent layer of an echo state network."""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn

from ..cells.leaky import LeakyCell
from ..engine import select_executor

EXACT_EIGENVALUES_LIMIT = 1000  # above this size a dense eigendecomposition (O(N^3)) is too slow
KRYLOV_SIZE = 200  # Arnoldi vectors: matches eigvals to ~1e-8 relative at N = 1200 (see tests)


def spectral_radius_of(weight: Tensor, generator: torch.Generator | None = None) -> float:
    """The largest eigenvalue modulus of the square matrix ``weight`` (N, N).

    Exact (``torch.linalg.eigvals``) for ``N <= EXACT_EIGENVALUES_LIMIT``; above, estimated by an
    Arnoldi iteration of ``KRYLOV_SIZE`` vectors as the largest modulus among the eigenvalues of
    its Hessenberg matrix (the Ritz values). Power iteration would not do: a real random matrix's
    dominant eigenvalue is often one of a complex pair, around which the iterate only rotates.
    ``generator`` draws the Arnoldi start vector.
    """
    w = weight.detach().to(torch.float64)
    if w.size(0) <= EXACT_EIGENVALUES_LIMIT:
        return torch.linalg.eigvals(w).abs().max().item()
    return arnoldi_radius(w, KRYLOV_SIZE, generator)


def arnoldi_radius(weight: Tensor, krylov_size: int, generator: torch.Generator | None = None) -> float:
    """Largest |Ritz value| of ``krylov_size`` Arnoldi steps on ``weight`` (N, N), float64."""
    size = weight.size(0)
    steps = min(krylov_size, size)
    basis = weight.new_zeros(steps + 1, size)  # (k + 1, N): orthonormal Krylov vectors, one per row
    hessenberg = weight.new_zeros(steps + 1, steps)
    start = torch.randn(size, dtype=weight.dtype, generator=generator)
    basis[0] = start / start.norm()
    for j in range(steps):
        z = weight @ basis[j]
        for _ in range(2):  # Gram-Schmidt twice: once loses orthogonality in floating point
            coefficients = basis[: j + 1] @ z
            z = z - coefficients @ basis[: j + 1]
            hessenberg[: j + 1, j] += coefficients
        norm = z.norm()
        hessenberg[j + 1, j] = norm
        if norm <= 1e-12 * hessenberg[: j + 1, j].abs().max():  # invariant subspace: Ritz values exact
            steps = j + 1
            break
        basis[j + 1] = z / norm
    return torch.linalg.eigvals(hessenberg[:steps, :steps]).abs().max().item()


def _sparse_csr(matrix: Tensor) -> Tensor:
    """``matrix`` in torch's sparse CSR layout, without torch's one-time notice that the layout is
    in beta (a warning, which would be an error in a test run): its operations used here, the
    fused kernel's product, ``F.linear``, ``.to()`` and the state dict, are tested."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta", category=UserWarning)
        return matrix.to_sparse_csr()


class Reservoir(nn.Module):
    r"""A reservoir of leaky-integrator units with fixed random weights (Jaeger 2001; Lukoševičius 2012).

    .. math::
        x_t = (1 - a)\, x_{t-1} + a \tanh(W_{in} u_t + W x_{t-1} + W_{fb} y_{t-1} + b)

    :math:`u_t` (I) is the input, :math:`x_t` (N) the reservoir state, :math:`a \in (0, 1]` the
    leak rate (``leak``; 1 is a plain tanh reservoir), and :math:`y_{t-1}` (F) the previous
    output, fed back through :math:`W_{fb}` when ``feedback_size > 0``. None of the weights is
    trained:

    - :math:`W` (N, N): each entry nonzero with probability ``density``, drawn uniform in
      [-1, 1], then scaled so that its spectral radius equals ``spectral_radius`` (exactly for
      N <= ``EXACT_EIGENVALUES_LIMIT``, by Arnoldi above; see :func:`spectral_radius_of`). Stored
      as a sparse CSR tensor: the fused leaky kernel's step product then reads only the nonzeros
      (at the usual 1% density, a hundredth of a dense matrix); ``W.to_dense()`` gives the matrix.
    - :math:`W_{in}` (N, I) uniform in ±``input_scaling``; :math:`W_{fb}` (N, F) uniform in
      ±``feedback_scaling``; :math:`b` (N) uniform in ±``bias_scaling``.

    The update is :class:`~rnnkit.cells.leaky.LeakyCell`'s with :math:`\alpha = 1 - a`, so the
    reservoir holds one (``self.cell``) and runs it with the fastest executor under
    ``torch.no_grad()``: the cell's ``weight_ih`` is :math:`[W_{in}; W_{fb}]`, ``weight_hh`` is
    :math:`W`, ``bias_ih`` is :math:`b`, ``bias_hh`` is zero, and all of them are buffers, not
    parameters: they move with ``.to()`` and are saved in the ``state_dict``, but an optimiser
    never sees them.

    Output feedback is teacher-forced: ``forward`` takes the feedback sequence, which during
    training is the target sequence shifted one step later (``feedback[t]`` = :math:`y_{t-1}`,
    ``feedback[0]`` the output before the sequence, usually zero). Running the trained network
    free, one step per call, feeds its own prediction back instead.

    ``forward(input, state=None, feedback=None)``: ``input`` (T, B, I), ``state`` (B, N) or None
    for zeros, ``feedback`` (T, B, F); returns ``(states, final)``, ``states`` (T, B, N) the
    :math:`x_t` of every step and ``final`` (B, N) the last.

    The buffers are created in ``dtype`` (default: torch's default dtype) and ``seed`` makes the
    draw reproducible. Pass ``dtype=torch.float64`` rather than calling ``.double()`` for float64
    to the last digit: the leak is stored as the cell's ``alpha_logit``, and a float32 logit
    converted later keeps :math:`a` to only about 1e-8.

    Reference: H. Jaeger, "The 'echo state' approach to analysing and training recurrent neural
    networks", GMD Report 148, 2001; M. Lukoševičius, "A practical guide to applying echo state
    networks", Neural Networks: Tricks of the Trade, 2012.

    Example:
        >>> reservoir = Reservoir(1, 100, spectral_radius=0.9, leak=0.3, seed=0)
        >>> states, final = reservoir(torch.randn(50, 2, 1))
        >>> states.shape, len(list(reservoir.parameters()))
        (torch.Size([50, 2, 100]), 0)
    """

    def __init__(
        self,
        input_size: int,
        size: int,
        spectral_radius: float = 0.9,
        leak: float = 1.0,
        density: float = 0.1,
        input_scaling: float = 1.0,
        bias_scaling: float = 0.0,
        feedback_size: int = 0,
        feedback_scaling: float = 1.0,
        seed: int | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 < leak <= 1.0:
            raise ValueError(f"leak must lie in (0, 1], got {leak}")
        if not 0.0 < density <= 1.0:
            raise ValueError(f"density must lie in (0, 1], got {density}")
        if spectral_radius <= 0.0:
            raise ValueError(f"spectral_radius must be positive, got {spectral_radius}")
        if feedback_size < 0:
            raise ValueError(f"feedback_size must be 0 or more, got {feedback_size}")
        self.input_size = input_size
        self.size = size
        self.spectral_radius = spectral_radius
        self.leak = leak
        self.density = density
        self.feedback_size = feedback_size
        generator = torch.Generator()
        if seed is None:
            generator.seed()  # a fresh random draw; the default generator state would always repeat
        else:
            generator.manual_seed(seed)

        def uniform(*shape: int, scale: float) -> Tensor:  # float64, uniform in ±scale
            return (torch.rand(*shape, generator=generator, dtype=torch.float64) * 2 - 1) * scale

        mask = torch.rand(size, size, generator=generator, dtype=torch.float64) < density
        recurrent = uniform(size, size, scale=1.0) * mask
        radius = spectral_radius_of(recurrent, generator)
        if radius == 0.0:  # e.g. a nilpotent (strictly triangular) draw at a tiny density
            raise ValueError(f"the random W of density {density} has spectral radius 0; raise density or size")
        recurrent = recurrent * (spectral_radius / radius)
        w_in = uniform(size, input_size, scale=input_scaling)
        w_fb = uniform(size, feedback_size, scale=feedback_scaling)
        bias = uniform(size, scale=bias_scaling)

        # alpha is a placeholder (LeakyCell refuses alpha = 0, our leak = 1); alpha_logit is set below
        self.cell = LeakyCell(input_size + feedback_size, size, bias=True, alpha=0.5)
        dtype = dtype or torch.get_default_dtype()
        fixed = {
            "weight_ih": torch.cat([w_in, w_fb], dim=1),  # (N, I + F): the input and feedback read together
            "weight_hh": recurrent,
            "bias_ih": bias,
            "bias_hh": torch.zeros(size, dtype=torch.float64),  # the reservoir has one bias, b
        }
        for name, value in fixed.items():  # parameters -> buffers: fixed, saved, never optimised
            del self.cell._parameters[name]
            self.cell.register_buffer(name, value.to(dtype))
        self.cell.weight_hh = _sparse_csr(self.cell.weight_hh)
        # alpha = 1 - a; a = 1 gives logit(0) = -inf, and sigmoid(-inf) = 0 exactly
        alpha_logit = math.log(1.0 - leak) - math.log(leak) if leak < 1.0 else -math.inf
        self.cell.alpha_logit = torch.full((size,), alpha_logit, dtype=dtype)
        self.executor = select_executor("auto", self.cell)

    def _load_from_state_dict(self, state_dict: dict[str, Tensor], prefix: str, *args: object) -> None:
        # torch copies a loaded tensor into the buffer in place, which for CSR requires the same
        # number of nonzeros; W is taken over whole instead (any draw, CSR or dense), before the
        # cell (a child, loaded after this) copies it onto itself
        key = f"{prefix}cell.weight_hh"
        if key in state_dict and state_dict[key].shape == self.cell.weight_hh.shape:
            loaded = state_dict[key].to(self.cell.weight_hh.device, self.cell.weight_hh.dtype)
            self.cell.weight_hh = _sparse_csr(loaded.to_dense())
        super()._load_from_state_dict(state_dict, prefix, *args)

    def forward(
        self, input: Tensor, state: Tensor | None = None, feedback: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        self._check(input, state, feedback)
        x = input if feedback is None else torch.cat([input, feedback], dim=-1)  # (T, B, I + F)
        if state is None:
            state = input.new_zeros(input.size(1), self.size)
        with torch.no_grad():  # nothing here is trained: no graph to build
            states, (final,) = self.executor(self.cell, x, (state,), None)
        return states, final

    def _check(self, input: Tensor, state: Tensor | None, feedback: Tensor | None) -> None:
        if input.dim() != 3 or input.size(-1) != self.input_size:
            raise ValueError(f"input must have shape (T, B, {self.input_size}), got {tuple(input.shape)}")
        steps, batch = input.shape[:2]
        if self.feedback_size and feedback is None:
            raise ValueError(f"this reservoir has feedback_size={self.feedback_size}: pass feedback (T, B, F)")
        if feedback is not None and tuple(feedback.shape) != (steps, batch, self.feedback_size):
            expected = (steps, batch, self.feedback_size)
            raise ValueError(f"feedback must have shape {expected}, got {tuple(feedback.shape)}")
        if state is not None and tuple(state.shape) != (batch, self.size):
            raise ValueError(f"state must have shape {(batch, self.size)}, got {tuple(state.shape)}")

    def extra_repr(self) -> str:
        options = f"{self.input_size}, {self.size}, spectral_radius={self.spectral_radius}, leak={self.leak}"
        options += f", density={self.density}"
        return options + (f", feedback_size={self.feedback_size}" if self.feedback_size else "")
