"""Many-to-one: a whole sequence in, one prediction out (sentiment, speaker, a regression target)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..layers import Recurrent
from .tagger import input_layer

POOLINGS = ("last", "mean", "max")


class SequenceClassifier(nn.Module):
    r"""Read a sequence with a ``Recurrent`` stack, summarise it in one vector, predict from it.

    .. math::
        o_{1..T} = \mathrm{Recurrent}(e(x_1), \dots, e(x_T)), \qquad
        s = \mathrm{pool}(o_{1..T}), \qquad \mathrm{logits} = W_{out} s + b_{out}

    :math:`x_t` is a token (embedded by :math:`e`) or a feature vector (:math:`e` the identity),
    :math:`o_t` the top layer's output and :math:`s` the summary, chosen by ``pooling``:

    - ``"last"``: the state after each sequence's own last step :math:`o_{L_b}` (:math:`L_b` its
      length). Bidirectional: the forward half at :math:`L_b` and the backward half at step 1,
      where the backward direction ends — both directions' final states.
    - ``"mean"``: :math:`\frac{1}{L_b} \sum_{t \le L_b} o_t`; ``"max"``: the elementwise maximum
      over :math:`t \le L_b`. Padding never enters either.

    Args:
        num_classes: outputs of the final layer: the classes of a softmax classifier, or 1 for a
            single logit (binary) or a regression value.
        input_size: features per step, for feature inputs; or
        vocab_size: token ids in ``[0, vocab_size)``, for token inputs (exactly one of the two).
        embedding_size: features of the token embedding (0: ``hidden_size``).
        pooling: ``"last"``, ``"mean"`` or ``"max"``.
        cell, hidden_size, num_layers, bidirectional, dropout, executor, **cell_options: the
            :class:`rnnkit.Recurrent` stack's; ``dropout`` also acts on the embeddings and on
            the summary.

    ``forward(inputs (T, B) or (T, B, I), lengths=None) -> logits (B, num_classes)``.

    Example:
        >>> import torch
        >>> model = SequenceClassifier(3, vocab_size=20, hidden_size=16, bidirectional=True)
        >>> model(torch.randint(20, (9, 4)), lengths=torch.tensor([9, 5, 3, 1])).shape
        torch.Size([4, 3])
    """

    def __init__(
        self,
        num_classes: int,
        input_size: int = 0,
        vocab_size: int = 0,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        pooling: str = "last",
        dropout: float = 0.0,
        embedding_size: int = 0,
        executor: str = "auto",
        **cell_options: Any,
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {pooling!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be at least 1, got {num_classes}")
        self.pooling = pooling
        self.embedding, features = input_layer(input_size, vocab_size, embedding_size or hidden_size)
        self.rnn = Recurrent(
            cell, features, hidden_size, num_layers, bidirectional=bidirectional, dropout=dropout,
            executor=executor, **cell_options,
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.rnn.output_size, num_classes)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        embedded = self.dropout(self.embedding(inputs))  # (T, B, E)
        output, _ = self.rnn(embedded, lengths=lengths)  # (T, B, D*H), zero past each length
        steps, batch = output.shape[:2]
        if lengths is None:
            lengths = torch.full((batch,), steps)
        # (B,) int64, as gather needs; the rnn has checked the values
        lengths = torch.as_tensor(lengths, dtype=torch.int64, device=output.device)
        return self.output(self.dropout(self.pool(output, lengths)))  # (B, num_classes)

    def pool(self, output: Tensor, lengths: Tensor) -> Tensor:
        """The summary of each sequence: ``(T, B, F)`` outputs and ``(B,)`` lengths -> ``(B, F)``."""
        if self.pooling == "last":
            last = (lengths - 1).view(1, -1, 1).expand(1, *output.shape[1:])  # (1, B, F)
            final = output.gather(0, last).squeeze(0)  # (B, F): every direction at step L_b
            if not self.rnn.bidirectional:
                return final
            forward_size = output.size(-1) // 2
            # The backward direction reads each sequence from its end and finishes at step 1.
            return torch.cat([final[:, :forward_size], output[0, :, forward_size:]], dim=-1)
        padding = torch.arange(output.size(0), device=output.device).unsqueeze(1) >= lengths
        padding = padding.unsqueeze(-1)  # (T, B, 1)
        if self.pooling == "mean":
            return output.masked_fill(padding, 0.0).sum(0) / lengths.unsqueeze(-1).to(output.dtype)
        return output.masked_fill(padding, float("-inf")).amax(0)
