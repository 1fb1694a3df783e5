"""A recurrent language model: embedding, a ``Recurrent`` stack, and a softmax decoder."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import State
from ..layers import Recurrent


@dataclass
class LanguageModelConfig:
    """The architecture of a :class:`LanguageModel` (the vocabulary size comes from the data)."""

    cell: str = "lstm"
    hidden_size: int = 256
    num_layers: int = 2
    embedding_size: int = 0  # 0: as large as hidden_size (MUT1 and MUT2 need that)
    dropout: float = 0.0
    input_noise: float = 0.0
    executor: str = "auto"
    cell_options: dict[str, Any] = field(default_factory=dict)


class LanguageModel(nn.Module):
    """Next-token model: ``p(x_{t+1} | x_1..x_t) = softmax(W_out h_t + b_out)``.

    Tokens are embedded (``embedding_size`` features), read by a stack of recurrent layers, and
    the top layer's output is decoded into logits over the vocabulary. Dropout (Zaremba et al.
    2014) acts on the non-recurrent connections only: the embeddings, between layers, and before
    the decoder. ``input_noise`` adds Gaussian noise of that standard deviation to the embeddings
    while training.

    Shapes are time-major: ``forward(tokens (T, B), state) -> (logits (T, B, V), state)``; the
    state is the ``Recurrent`` state and can be carried from one chunk of text to the next.

    Example:
        >>> model = LanguageModel(vocab_size=65, cell="gru", hidden_size=64, num_layers=2)
        >>> logits, state = model(torch.randint(65, (100, 8)))
        >>> logits.shape
        torch.Size([100, 8, 65])
    """

    def __init__(
        self,
        vocab_size: int,
        cell: str = "lstm",
        hidden_size: int = 256,
        num_layers: int = 2,
        embedding_size: int = 0,
        dropout: float = 0.0,
        input_noise: float = 0.0,
        executor: str = "auto",
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if input_noise < 0:
            raise ValueError(f"input_noise must be non-negative, got {input_noise}")
        self.vocab_size = vocab_size
        self.input_noise = input_noise
        self.embedding = nn.Embedding(vocab_size, embedding_size or hidden_size)
        self.rnn = Recurrent(
            cell, self.embedding.embedding_dim, hidden_size, num_layers,
            dropout=dropout, executor=executor, **cell_options,
        )
        self.dropout = nn.Dropout(dropout)
        self.decoder = nn.Linear(self.rnn.output_size, vocab_size)

    @classmethod
    def from_config(cls, config: LanguageModelConfig, vocab_size: int) -> LanguageModel:
        return cls(
            vocab_size, config.cell, config.hidden_size, config.num_layers, config.embedding_size,
            config.dropout, config.input_noise, config.executor, **config.cell_options,
        )

    def forward(self, tokens: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        embedded = self.embedding(tokens)  # (T, B, E)
        if self.training and self.input_noise:
            embedded = embedded + self.input_noise * torch.randn_like(embedded)
        output, state = self.rnn(self.dropout(embedded), state)  # (T, B, H)
        return self.decoder(self.dropout(output)), state
