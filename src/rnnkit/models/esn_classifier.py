r"""Many-to-one echo state networks: one class per whole sequence from pooled reservoir states.

.. math::
    x_t &= (1 - a)\, x_{t-1} + a \tanh(W_{in} u_t + W x_{t-1} + b), \qquad x_0 = 0 \\
    s &= x_L \ (\text{``last''}) \quad\text{or}\quad s = \frac{1}{L} \sum_{t=1}^{L} x_t \ (\text{``mean''}) \\
    \hat y &= W_{out} s + c, \qquad \text{class} = \arg\max_k \hat y_k

:math:`u_t` (I) is step :math:`t` of a sequence of length :math:`L`, :math:`x_t` (N) the state of a
:class:`~rnnkit.layers.Reservoir` (leak :math:`a`, fixed random weights), :math:`s` (N) the
sequence's summary and :math:`W_{out}` (C, N), :math:`c` (C) the only trained weights: a
:class:`~rnnkit.layers.RidgeReadout` from the summaries onto one-hot targets (C classes). Every
sequence starts from :math:`x_0 = 0`, so no washout is needed.

Leaky-integrator reservoirs classifying whole utterances this way go back to Jaeger, Lukoševičius,
Popovici & Siewert (2007), "Optimization and applications of echo state networks with
leaky-integrator neurons", Neural Networks 20(3), whose benchmark was Japanese Vowels
(:func:`rnnkit.data.japanese_vowels`; Kudo, Toyama & Shimbo 1999, "Multidimensional curve
classification using passing-through regions", Pattern Recognition Letters 20).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pad_sequence

from ..layers import Reservoir, RidgeReadout

POOLINGS = ("last", "mean")
DEFAULT_RIDGES = tuple(10.0**k for k in range(-6, 3))


class EchoStateClassifier(nn.Module):
    """Classify variable-length sequences with a reservoir, a pooled state and a ridge readout.

    Sequences are given as a list of ``(T_i, I)`` tensors. They are zero-padded into one
    time-major batch ``(T, B, I)`` (``T = max T_i``) and run through the reservoir together;
    ``pooling`` then reads each sequence's states ``(T, B, N)`` up to its own length only:
    ``"last"`` gathers :math:`x_{L_b}`, ``"mean"`` averages :math:`x_1 .. x_{L_b}`. The reservoir is
    causal, so the padding steps after :math:`L_b` change neither.

    :meth:`fit` chooses the ridge :math:`\\lambda` from ``ridges`` by the readout's squared error on
    a validation split of the training sequences, drawn at random with ``generator`` (a
    chronological split would hold out whole classes of a file sorted by class), then refits on
    all of them. :meth:`predict` returns class indices ``(S,)``, :meth:`scores` the readout's
    outputs ``(S, C)``.

    Args:
        input_size: features per step, I.
        num_classes: classes C (at least 2); labels are ``0 .. C - 1``.
        size: reservoir units N.
        pooling: ``"last"`` or ``"mean"``.
        dtype: the reservoir's dtype; float64 by default, as reservoir computing needs.
        **reservoir_options: the rest of :class:`~rnnkit.layers.Reservoir`'s arguments
            (``spectral_radius``, ``leak``, ``density``, ``input_scaling``, ``bias_scaling``,
            ``seed``) with its defaults; no output feedback.

    Example:
        >>> model = EchoStateClassifier(12, 9, size=100, leak=0.2, seed=0)
        >>> sequences = [torch.randn(length, 12, dtype=torch.float64) for length in (7, 29, 15)]
        >>> model.fit(sequences, torch.tensor([0, 4, 8])).predict(sequences).shape
        torch.Size([3])
    """

    def __init__(
        self,
        input_size: int,
        num_classes: int,
        size: int = 500,
        pooling: str = "last",
        dtype: torch.dtype = torch.float64,
        **reservoir_options: Any,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        if "feedback_size" in reservoir_options:
            raise ValueError("a classifier's reservoir has no output feedback: there is no output sequence")
        self.num_classes = num_classes
        self.pooling = pooling
        self.reservoir = Reservoir(input_size, size, dtype=dtype, **reservoir_options)
        self.readout = RidgeReadout(size, num_classes)

    def features(self, sequences: Sequence[Tensor]) -> Tensor:
        """The pooled reservoir state :math:`s` of each of ``sequences`` (``(T_i, I)`` each): ``(S, N)``."""
        if not sequences:
            raise ValueError("sequences must hold at least one (T_i, I) tensor")
        for i, sequence in enumerate(sequences):
            if sequence.dim() != 2 or sequence.size(0) == 0:
                raise ValueError(f"sequences[{i}] must be (T_i, I) with T_i >= 1, got {tuple(sequence.shape)}")
        dtype = self.reservoir.cell.weight_ih.dtype  # the reservoir's own dtype
        inputs = pad_sequence([s.to(dtype) for s in sequences])  # (T, B, I), zeros after each length
        lengths = torch.tensor([s.size(0) for s in sequences], device=inputs.device)  # (B,)
        states, _ = self.reservoir(inputs)  # (T, B, N)
        batch = torch.arange(len(sequences), device=inputs.device)
        if self.pooling == "mean":
            # the running sum at step L_b is the sum over the valid steps: padding comes later
            return states.cumsum(0)[lengths - 1, batch] / lengths.unsqueeze(1).to(dtype)
        return states[lengths - 1, batch]  # (B, N): x at each sequence's own last step

    def fit(
        self,
        sequences: Sequence[Tensor],
        labels: Tensor,
        ridges: Sequence[float] = DEFAULT_RIDGES,
        validation_fraction: float = 0.2,
        generator: torch.Generator | None = None,
    ) -> EchoStateClassifier:
        """Fit the readout on ``sequences`` and their ``labels`` ``(S,)`` (int64 in ``[0, C)``).

        ``generator`` shuffles the sequences before the readout takes its last
        ``validation_fraction`` as the validation split (a fixed seed, 0, when None).
        """
        if labels.dim() != 1 or labels.numel() != len(sequences):
            raise ValueError(f"labels must be ({len(sequences)},), one per sequence, got {tuple(labels.shape)}")
        if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.num_classes:
            raise ValueError(f"labels must lie in [0, {self.num_classes}), got {int(labels.min())}..{int(labels.max())}")
        features = self.features(sequences)  # (S, N)
        targets = nn.functional.one_hot(labels.long(), self.num_classes).to(features.dtype)  # (S, C)
        generator = generator or torch.Generator().manual_seed(0)
        order = torch.randperm(len(sequences), generator=generator)
        self.readout.fit(features[order], targets[order], ridges=ridges, validation_fraction=validation_fraction)
        return self

    def scores(self, sequences: Sequence[Tensor]) -> Tensor:
        """The readout's output :math:`\\hat y` for each sequence: ``(S, C)``."""
        return self.readout.predict(self.features(sequences))

    def predict(self, sequences: Sequence[Tensor]) -> Tensor:
        """The predicted class of each sequence, ``(S,)`` int64."""
        return self.scores(sequences).argmax(-1)
