r"""Echo state networks: a fixed random reservoir and a linear readout trained in closed form.

.. math::
    x_t &= (1 - a)\, x_{t-1} + a \tanh(W_{in} u_t + W_{fb}\, y_{t-1} + W x_{t-1} + b) \\
    \hat y_t &= W_{out} [x_t; u_t] + b_{out}

:math:`u_t` (I) is the input, :math:`x_t` (N) the reservoir state (:class:`~rnnkit.layers.Reservoir`,
whose weights are never trained), :math:`y_{t-1}` (O) the previous output fed back when
``feedback=True``, and :math:`W_{out}, b_{out}` the only trained weights, fitted by ridge regression
(:class:`~rnnkit.layers.RidgeReadout`) on the states of a teacher-forced run (Jaeger 2001, "The
'echo state' approach to analysing and training recurrent neural networks"; Jaeger & Haas 2004,
Science 304). With feedback, training feeds the *target* :math:`y_{t-1}` (teacher forcing), and
:meth:`EchoStateNetwork.generate` runs free: each prediction is fed back as the next step's
:math:`y_{t-1}` (closed loop), one step at a time — a generation loop, like decoding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..engine.threads import torch_threads
from ..layers import Reservoir, RidgeReadout
from ..layers.readout import fitting_steps

DEFAULT_RIDGES = tuple(10.0**k for k in range(-12, 0))
# A one-ridge fit's chunks (RidgeReadout.fit_chunks): the Gram matrix of one chunk's rows is summed
# on the second core while the reservoir runs the next chunk's steps on the first. A chunk holds at
# least 128 rows and enough for this many multiply-adds of its Gram matrix (F² per row), so that
# the per-chunk overhead stays small where the Gram matrix is (at 1000 units: 128 steps a chunk;
# at 100 units 12,800, so that 2000 steps are one chunk, and the fit runs as with several ridges).
CHUNK_GRAM_MACS = 128 * 1000**2


class EchoStateNetwork(nn.Module):
    """An echo state network (module docstring); float64 by default, as reservoir computing needs.

    Shapes are time-major: inputs ``(T, B, I)``, targets and outputs ``(T, B, O)``, states
    ``(B, N)``. The readout reads the reservoir state and the input, ``[x_t; u_t]``.

    Example:
        >>> esn = EchoStateNetwork(1, 1, size=50, feedback=True, seed=0)
        >>> t = torch.arange(600, dtype=torch.float64)
        >>> wave = torch.sin(t / 8).view(-1, 1, 1)
        >>> error, state = esn.fit(torch.ones(600, 1, 1, dtype=torch.float64), wave, washout=100)
        >>> esn.generate(torch.ones(20, 1, 1, dtype=torch.float64), state, wave[-1]).shape
        torch.Size([20, 1, 1])
    """

    def __init__(
        self,
        input_size: int,
        output_size: int,
        size: int = 500,
        spectral_radius: float = 0.9,
        leak: float = 1.0,
        density: float = 0.1,
        input_scaling: float = 1.0,
        bias_scaling: float = 0.0,
        feedback: bool = False,
        feedback_scaling: float = 1.0,
        seed: int | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        super().__init__()
        self.output_size = output_size
        self.feedback = feedback
        self.reservoir = Reservoir(
            input_size, size, spectral_radius=spectral_radius, leak=leak, density=density,
            input_scaling=input_scaling, bias_scaling=bias_scaling,
            feedback_size=output_size if feedback else 0, feedback_scaling=feedback_scaling,
            seed=seed, dtype=dtype,
        )  # fmt: skip
        self.readout = RidgeReadout(size + input_size, output_size)

    def features(self, inputs: Tensor, previous_outputs: Tensor | None = None, state: Tensor | None = None
                 ) -> tuple[Tensor, Tensor]:
        """``[x_t; u_t]`` for every step ``(T, B, N + I)`` and the final state ``(B, N)``.

        ``previous_outputs`` ``(T, B, O)`` are the :math:`y_{t-1}` fed back (required with feedback).
        """
        states, final = self.reservoir(inputs, state, previous_outputs if self.feedback else None)
        return torch.cat([states, inputs], dim=-1), final

    def fit(self, inputs: Tensor, targets: Tensor, washout: int = 100, ridges: Sequence[float] = DEFAULT_RIDGES,
            validation_fraction: float = 0.2, state: Tensor | None = None, initial_output: Tensor | None = None,
            feedback_noise: float = 0.0, generator: torch.Generator | None = None,
            validation_horizon: int = 0) -> tuple[float, Tensor]:
        """Teacher-forced run over ``inputs`` ``(T, B, I)``, then the ridge readout onto ``targets``.

        With feedback the targets shifted by one step are fed back (``initial_output`` ``(B, O)``,
        zeros by default, before the first); ``feedback_noise`` adds Gaussian noise of that standard
        deviation to them, which makes the closed loop robust to its own small errors (Jaeger 2001).

        The ridge is chosen on the last ``validation_fraction`` of the steps after the washout, by
        the error of one-step predictions there, or, with ``validation_horizon`` > 0 (feedback
        only), by the error of free runs: each candidate readout runs in closed loop for
        ``validation_horizon`` steps from the teacher-forced state at every such many steps of the
        validation part, and its mean squared error over these windows scores it. A readout can
        predict one step well and still run away in closed loop (the smallest ridges do); the free
        runs choose for what :meth:`generate` will do. The readout refitted on all steps is run free
        over the same windows, and where it runs away the next larger ridge is taken
        (:class:`~rnnkit.layers.RidgeReadout`).

        With a single ridge (nothing to choose) and more than one chunk of steps after the washout
        (``CHUNK_GRAM_MACS``), the reservoir runs those steps chunk by chunk while a second thread
        sums the readout's Gram matrix of the last chunk (:meth:`~rnnkit.layers.RidgeReadout.fit_chunks`):
        the same readout, to round-off, in less time on two cores.

        Returns the training NRMSE after the washout and the final reservoir state, from which
        :meth:`generate` continues.
        """
        if targets.shape[:2] != inputs.shape[:2] or targets.size(-1) != self.output_size:
            raise ValueError(
                f"targets must be (T, B, {self.output_size}) for inputs of shape {tuple(inputs.shape)}, "
                f"got {tuple(targets.shape)}"
            )
        first = torch.zeros_like(targets[0]) if initial_output is None else initial_output
        previous = torch.cat([first.unsqueeze(0), targets[:-1]])  # y_{t-1}, (T, B, O)
        if feedback_noise:
            noise = torch.randn(previous.shape, generator=generator, dtype=previous.dtype)
            previous = previous + feedback_noise * noise.to(previous.device)
        chunk_steps = self._chunk_steps(inputs)
        if len(ridges) == 1 and not validation_horizon and chunk_steps < inputs.size(0) - washout:
            # no ridge to choose and more than one chunk: the run and the readout's sums overlap
            return self._fit_one_ridge(inputs, previous, targets, washout, ridges[0], state, chunk_steps)
        features, final = self.features(inputs, previous, state)
        score = None
        if validation_horizon:
            split = washout + fitting_steps(inputs.size(0) - washout, validation_fraction)
            score = self._free_run_score(features, inputs, targets, split, validation_horizon)
        self.readout.fit(features, targets, washout=washout, ridges=ridges, validation_fraction=validation_fraction,
                         score=score)
        predicted = self.readout.predict(features[washout:])
        return nrmse(predicted, targets[washout:]), final

    def _chunk_steps(self, inputs: Tensor) -> int:
        """Steps per chunk of a one-ridge fit over ``inputs`` (T, B, I) (``CHUNK_GRAM_MACS``)."""
        features = self.reservoir.size + inputs.size(-1)
        return max(1, max(128, CHUNK_GRAM_MACS // features**2) // inputs.size(1))

    def _fit_one_ridge(self, inputs: Tensor, previous: Tensor, targets: Tensor, washout: int, ridge: float,
                       state: Tensor | None, steps: int) -> tuple[float, Tensor]:
        """``fit`` with one ridge: the reservoir runs the steps after the washout in chunks of
        ``steps``, and the readout sums the normal equations of each chunk while the reservoir
        computes the next (:meth:`~rnnkit.layers.RidgeReadout.fit_chunks`)."""
        if not 0 <= washout < inputs.size(0) - 1:
            raise ValueError(f"washout must lie in [0, {inputs.size(0) - 1}), got {washout}")
        if washout:  # on one thread, as the chunks will run (StreamedGram: OpenMP's spinning)
            with torch_threads(1):
                _, state = self.reservoir(inputs[:washout], state, previous[:washout] if self.feedback else None)
        chunks: list[Tensor] = []

        def teacher_forced_chunks() -> Iterator[tuple[Tensor, Tensor]]:
            nonlocal state
            for start in range(washout, inputs.size(0), steps):
                features, state = self.features(inputs[start : start + steps], previous[start : start + steps], state)
                chunks.append(features)
                yield features, targets[start : start + steps]

        self.readout.fit_chunks(teacher_forced_chunks(), ridge)
        predicted = torch.cat([self.readout.predict(features) for features in chunks])
        return nrmse(predicted, targets[washout:]), state

    def _free_run_score(self, features: Tensor, inputs: Tensor, targets: Tensor, split: int, horizon: int
                        ) -> Callable[[], float]:
        """The mean squared error of free runs of ``horizon`` steps starting at steps ``split``,
        ``split + horizon``, ... (all at once, as one batch), for the readout as it stands."""
        if not self.feedback:
            raise ValueError("validation_horizon needs an output fed back (feedback=True)")
        starts = range(split, inputs.size(0) - horizon + 1, horizon)
        if not starts:
            raise ValueError(f"the validation steps must hold at least one free run. Expected >= {horizon} "
                             f"steps, got {inputs.size(0) - split}")
        size = self.reservoir.size
        state = torch.cat([features[s - 1, :, :size] for s in starts])  # (K * B, N): where each run starts
        last_output = torch.cat([targets[s - 1] for s in starts])  # (K * B, O)
        window_inputs = torch.cat([inputs[s : s + horizon] for s in starts], dim=1)  # (horizon, K * B, I)
        truth = torch.cat([targets[s : s + horizon] for s in starts], dim=1)

        def score() -> float:  # self.readout holds the candidate
            error = (self.generate(window_inputs, state, last_output) - truth).pow(2).mean().item()
            return error if math.isfinite(error) else math.inf

        return score

    @torch.no_grad()
    def generate(self, inputs: Tensor, state: Tensor, last_output: Tensor) -> Tensor:
        """Run free for ``inputs.size(0)`` steps from ``state`` ``(B, N)``, feeding back each
        prediction (the first step gets ``last_output`` ``(B, O)``); returns ``(T, B, O)``."""
        outputs = []
        previous = last_output
        for u_t in inputs.unbind(0):  # closed loop: step t needs the prediction of step t - 1
            features, state = self.features(u_t.unsqueeze(0), previous.unsqueeze(0), state)
            previous = self.readout.predict(features[0])
            outputs.append(previous)
        return torch.stack(outputs)


def nrmse(predicted: Tensor, target: Tensor) -> float:
    """Root-mean-square error divided by the target's standard deviation (Jaeger's NRMSE)."""
    return float(((predicted - target) ** 2).mean().sqrt() / target.std())
