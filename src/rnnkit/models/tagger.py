"""Many-to-many, same length: one label per input step (part-of-speech tags, frame labels)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from ..layers import Recurrent


def input_layer(input_size: int, vocab_size: int, embedding_size: int) -> tuple[nn.Module, int]:
    """The front of a sequence reader and the features it hands to the recurrent stack.

    Exactly one of ``input_size`` (feature vectors ``(T, B, input_size)``, passed on unchanged)
    and ``vocab_size`` (token ids ``(T, B)``, embedded into ``embedding_size`` features) is
    positive.
    """
    if (input_size > 0) == (vocab_size > 0):
        raise ValueError(
            "give exactly one of input_size (feature inputs) and vocab_size (token inputs), "
            f"got input_size={input_size} and vocab_size={vocab_size}"
        )
    if input_size > 0:
        return nn.Identity(), input_size
    if embedding_size <= 0:
        raise ValueError(f"token inputs need a positive embedding_size, got {embedding_size}")
    return nn.Embedding(vocab_size, embedding_size), embedding_size


def deep_output(features: int, hidden: Sequence[int], out_features: int) -> nn.Sequential:
    """``Linear -> tanh`` for each width in ``hidden``, then a ``Linear`` to ``out_features``.

    With ``hidden`` empty this is the usual shallow output layer; otherwise it is the deep output
    of Pascanu et al. (2014), an MLP between the recurrent state and the prediction.
    """
    layers: list[nn.Module] = []
    for width in hidden:
        if width <= 0:
            raise ValueError(f"output_layers must hold positive widths, got {list(hidden)}")
        layers += [nn.Linear(features, width), nn.Tanh()]
        features = width
    return nn.Sequential(*layers, nn.Linear(features, out_features))


class SequenceTagger(nn.Module):
    r"""One prediction per step: ``logits_t = MLP(o_t)`` where ``o_t`` is the recurrent output.

    .. math::
        o_{1..T} = \mathrm{Recurrent}(e(x_1), \dots, e(x_T)), \qquad
        z_t = g_K(\dots g_1(o_t)), \qquad \mathrm{logits}_t = W_{out} z_t + b_{out}

    :math:`x_t` is a token (embedded by :math:`e`) or a feature vector (:math:`e` the identity),
    :math:`o_t` the top layer's output (both directions concatenated when bidirectional, so the
    label of step t may depend on the whole sequence), :math:`g_k(z) = \tanh(W_k z + b_k)` the
    layers of the optional deep output (``output_layers``, their widths; Pascanu et al. 2014,
    "How to construct deep recurrent neural networks") and :math:`W_{out}` maps to ``num_tags``
    logits. ``residual`` and ``input_skip`` add the deep-RNN connections between the stacked
    layers (see :class:`rnnkit.Recurrent`).

    Args:
        num_tags: labels per step (the logits' last size).
        input_size: features per step, for feature inputs; or
        vocab_size: token ids in ``[0, vocab_size)``, for token inputs (exactly one of the two).
        embedding_size: features of the token embedding (0: ``hidden_size``).
        cell, hidden_size, num_layers, bidirectional, dropout, executor, residual, input_skip,
            **cell_options: the :class:`rnnkit.Recurrent` stack's; ``dropout`` also acts on the
            embeddings and before the output layers.
        output_layers: widths of the deep output's hidden layers (empty: a single Linear).

    ``forward(inputs (T, B) or (T, B, I), lengths=None) -> logits (T, B, num_tags)``. Logits at
    padded steps are meaningless: mask them out of the loss (e.g. ``ignore_index``).

    Example:
        >>> import torch
        >>> tagger = SequenceTagger(5, vocab_size=20, hidden_size=16, output_layers=(32,))
        >>> tagger(torch.randint(20, (7, 3)), lengths=torch.tensor([7, 4, 2])).shape
        torch.Size([7, 3, 5])
    """

    def __init__(
        self,
        num_tags: int,
        input_size: int = 0,
        vocab_size: int = 0,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        embedding_size: int = 0,
        output_layers: Sequence[int] = (),
        executor: str = "auto",
        residual: bool = False,
        input_skip: bool = False,
        **cell_options: Any,
    ) -> None:
        super().__init__()
        self.embedding, features = input_layer(input_size, vocab_size, embedding_size or hidden_size)
        self.rnn = Recurrent(
            cell, features, hidden_size, num_layers, bidirectional=bidirectional, dropout=dropout,
            executor=executor, residual=residual, input_skip=input_skip, **cell_options,
        )
        self.dropout = nn.Dropout(dropout)
        self.output = deep_output(self.rnn.output_size, output_layers, num_tags)

    def forward(self, inputs: Tensor, lengths: Tensor | None = None) -> Tensor:
        embedded = self.dropout(self.embedding(inputs))  # (T, B, E)
        output, _ = self.rnn(embedded, lengths=lengths)  # (T, B, D*H)
        return self.output(self.dropout(output))  # (T, B, num_tags)
