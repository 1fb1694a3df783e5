"""Vector to sequence: generate a sequence conditioned on a fixed vector (a class, an image code)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import State
from ..layers import Recurrent

CONDITIONINGS = ("input", "state", "both")


class ConditionedGenerator(nn.Module):
    r"""A language model whose every sequence is conditioned on a vector :math:`c`
    (Goodfellow, Bengio & Courville 2016, section 10.2.4 and figure 10.9).

    .. math::
        x'_t &= [e(y_{t-1});\ R c] \quad \text{("input", "both"), else } x'_t = e(y_{t-1}) \\
        s_0 &= \tanh(W_c c + b_c) \quad \text{("state", "both"), else } s_0 = 0 \\
        o_t, s_t &= \mathrm{Recurrent}(x'_t, s_{t-1}), \qquad
        \mathrm{logits}_t = W_{out} o_t + b_{out}

    :math:`c` (C) is the condition, :math:`y_{t-1}` the previous token (the start token at
    t = 1), :math:`e` its embedding (E features), :math:`R` (E × C, ``condition_input``, no bias)
    the condition's own input matrix — :math:`R c` enters at every step, as an extra input —
    and :math:`W_c` (``condition_state``) maps :math:`c` to the initial value of every state
    tensor of every layer (an LSTM's h and c alike). ``conditioning`` selects either path or both.

    Args:
        condition_size: C, the features of the condition.
        vocab_size: V, the tokens (start and end tokens included).
        cell, hidden_size, num_layers, dropout, executor, **cell_options: the
            :class:`rnnkit.Recurrent` stack's; ``dropout`` also acts on the inputs and before
            the output layer.
        conditioning: ``"input"``, ``"state"`` or ``"both"``.
        embedding_size: E (0: ``hidden_size``); :math:`R c` has E features too.

    ``forward(condition (B, C), tokens_in (T, B)) -> logits (T, B, V)`` runs the whole
    teacher-forced sequence as one Recurrent call. For generation, :meth:`start` gives the state
    and :meth:`step` advances it one token; the state is a tuple of tensors, each with the batch in
    dim 1 (for beam search): the recurrent state (one ``(num_layers, B, size)`` tensor per state
    tensor of the cell), then with input conditioning :math:`R c` as ``(1, B, E)``.

    Example:
        >>> import torch
        >>> model = ConditionedGenerator(4, 12, cell="gru", hidden_size=16, conditioning="both")
        >>> condition = torch.eye(4)[torch.tensor([0, 3])]          # (B, C), one-hot
        >>> model(condition, torch.randint(12, (5, 2))).shape
        torch.Size([5, 2, 12])
    """

    def __init__(
        self,
        condition_size: int,
        vocab_size: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        conditioning: str = "input",
        embedding_size: int = 0,
        dropout: float = 0.0,
        executor: str = "auto",
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {', '.join(CONDITIONINGS)}, got {conditioning!r}")
        if condition_size <= 0:
            raise ValueError(f"condition_size must be positive, got {condition_size}")
        self.condition_size = condition_size
        self.conditioning = conditioning
        embedding_size = embedding_size or hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size)
        through_input = conditioning in ("input", "both")
        self.condition_input = nn.Linear(condition_size, embedding_size, bias=False) if through_input else None
        self.rnn = Recurrent(
            cell, embedding_size * (2 if through_input else 1), hidden_size, num_layers,
            dropout=dropout, executor=executor, **cell_options,
        )
        self.state_sizes = self.rnn.cells[0].state_sizes
        self.condition_state = (
            nn.Linear(condition_size, num_layers * sum(self.state_sizes))
            if conditioning in ("state", "both") else None
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.rnn.output_size, vocab_size)

    def forward(self, condition: Tensor, tokens_in: Tensor) -> Tensor:
        state = self.start(condition)  # checks the condition
        if tokens_in.dim() != 2 or tokens_in.size(1) != condition.size(0):
            raise ValueError(
                f"tokens_in must be (T, B) with the condition's batch of {condition.size(0)}, "
                f"got shape {tuple(tokens_in.shape)}"
            )
        return self._run(tokens_in, state)[0]

    def start(self, condition: Tensor) -> State:
        """The state before the first token, for ``condition`` ``(B, C)`` (see the class)."""
        if condition.dim() != 2 or condition.size(1) != self.condition_size:
            raise ValueError(
                f"condition must be (B, {self.condition_size}), got shape {tuple(condition.shape)}"
            )
        batch, layers = condition.size(0), self.rnn.num_layers
        if self.condition_state is None:
            state = tuple(condition.new_zeros(layers, batch, size) for size in self.state_sizes)
        else:
            flat = torch.tanh(self.condition_state(condition))  # (B, L * sum(sizes))
            per_layer = flat.view(batch, layers, -1).transpose(0, 1)  # (L, B, sum(sizes))
            state = tuple(s.contiguous() for s in per_layer.split(self.state_sizes, dim=-1))
        if self.condition_input is None:
            return state
        return (*state, self.condition_input(condition).unsqueeze(0))  # R c: (1, B, E)

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One step: the previous tokens ``(B,)`` -> logits ``(B, V)`` and the next state."""
        logits, state = self._run(tokens.unsqueeze(0), state)
        return logits.squeeze(0), state

    def _run(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Teacher-forced ``tokens`` ``(T, B)`` in one Recurrent call -> logits ``(T, B, V)``."""
        rnn_state, condition = state[: len(self.state_sizes)], state[len(self.state_sizes) :]
        inputs = self.embedding(tokens)  # (T, B, E)
        if condition:
            # The same R c at every step: (1, B, E) expanded to (T, B, E).
            inputs = torch.cat([inputs, condition[0].expand(tokens.size(0), -1, -1)], dim=-1)
        output, rnn_state = self.rnn(self.dropout(inputs), rnn_state)  # (T, B, H)
        return self.output(self.dropout(output)), (*rnn_state, *condition)
