"""Encoder-decoder (sequence to sequence), with optional additive attention."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from ..cells.base import State
from ..layers import Recurrent
from .attention import AdditiveAttention, source_mask


class Seq2Seq(nn.Module):
    r"""An encoder reads the source, a decoder writes the target (Sutskever, Vinyals & Le 2014;
    Cho et al. 2014), optionally attending to the source (Bahdanau, Cho & Bengio 2015).

    .. math::
        (h_1, \dots, h_S), \bar h &= \mathrm{Encoder}(e_s(x_1), \dots, e_s(x_S)) \\
        s_0 &= \tanh(W_b \bar h + b_b) \\
        c_t &= \mathrm{Attention}(s_{t-1}, h_{1..S}) \quad \text{(with attention only)} \\
        s_t &= \mathrm{Decoder}([e_t(y_{t-1}); c_t], s_{t-1}) \\
        \mathrm{logits}_t &= W_{out} [o_t; c_t] + b_{out}

    :math:`x` are the source tokens, :math:`e_s, e_t` the source and target embeddings,
    :math:`h_j` the encoder's outputs (both directions concatenated when the encoder is
    bidirectional), :math:`\bar h` its final state: for each layer, every state tensor (an LSTM's
    h and c) of every direction, concatenated. The *bridge* :math:`W_b` (one Linear, shared by the
    layers, whose encoder and decoder counterparts correspond) maps it to the decoder's initial
    state :math:`s_0`, the tanh as in Bahdanau et al.'s :math:`s_0 = \tanh(W_s \overleftarrow{h}_1)`.
    :math:`y_{t-1}` is the previous target token (teacher forcing) or the model's own previous
    prediction, :math:`o_t` the decoder's top-layer output, :math:`c_t` the context of
    :class:`AdditiveAttention` computed from the top layer's :math:`h` before the step (without
    attention :math:`c_t` is absent). Encoder and decoder are :class:`rnnkit.Recurrent` stacks of
    the same cell, size and depth.

    Args:
        source_vocab, target_vocab: vocabulary sizes.
        cell, hidden_size, num_layers, dropout, executor, **cell_options: both stacks'.
            ``dropout`` also acts on the embeddings and before the output layer.
        embedding_size: features of both embeddings (0: ``hidden_size``).
        bidirectional_encoder: read the source in both directions.
        attention: attend to the source at every decoder step.
        attention_size: the attention's hidden size (0: ``hidden_size``).

    The decoding state (from :meth:`start`, carried by :meth:`step`) is a tuple of tensors, each
    with the batch in dim 1, so that beam search can reorder it with ``index_select(1, ...)``:
    the decoder's state (one ``(num_layers, B, size)`` tensor per state tensor of the cell), then,
    with attention, the encoder outputs ``(S, B, K)``, their attention projections ``(S, B, A)``
    and the source mask ``(S, B)`` (bool).

    Example:
        >>> import torch
        >>> model = Seq2Seq(10, 12, cell="gru", hidden_size=16, attention=True)
        >>> source, target_in = torch.randint(10, (5, 3)), torch.randint(12, (4, 3))
        >>> model(source, torch.tensor([5, 3, 2]), target_in).shape
        torch.Size([4, 3, 12])
        >>> state = model.start(source, torch.tensor([5, 3, 2]))
        >>> logits, state = model.step(target_in[0], state)
        >>> logits.shape
        torch.Size([3, 12])
    """

    def __init__(
        self,
        source_vocab: int,
        target_vocab: int,
        cell: str = "lstm",
        hidden_size: int = 64,
        num_layers: int = 1,
        embedding_size: int = 0,
        bidirectional_encoder: bool = False,
        attention: bool = False,
        attention_size: int = 0,
        dropout: float = 0.0,
        executor: str = "auto",
        **cell_options: Any,
    ) -> None:
        super().__init__()
        embedding_size = embedding_size or hidden_size
        self.source_embedding = nn.Embedding(source_vocab, embedding_size)
        self.target_embedding = nn.Embedding(target_vocab, embedding_size)
        self.encoder = Recurrent(
            cell, embedding_size, hidden_size, num_layers, bidirectional=bidirectional_encoder,
            dropout=dropout, executor=executor, **cell_options,
        )
        context_size = self.encoder.output_size if attention else 0
        self.decoder = Recurrent(
            cell, embedding_size + context_size, hidden_size, num_layers, dropout=dropout,
            executor=executor, **cell_options,
        )
        self.state_sizes = self.decoder.cells[0].state_sizes  # the encoder's are the same
        self.bridge = nn.Linear(self.encoder.num_directions * sum(self.state_sizes), sum(self.state_sizes))
        self.attention = (
            AdditiveAttention(self.state_sizes[0], context_size, attention_size or hidden_size)
            if attention else None
        )
        self.dropout = nn.Dropout(dropout)
        self.output = nn.Linear(self.decoder.output_size + context_size, target_vocab)

    def forward(
        self,
        source: Tensor,
        source_lengths: Tensor | None,
        target_in: Tensor,
        teacher_forcing_ratio: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Logits ``(T, B, target_vocab)`` for every target step.

        Args:
            source: ``(S, B)`` token ids; ``source_lengths`` ``(B,)`` or None (all S long).
            target_in: ``(T, B)`` the decoder's inputs: the start token, then the target shifted.
            teacher_forcing_ratio: the probability of feeding the true previous token at each
                step and sequence; otherwise the model's own most likely token is fed
                (scheduled sampling, Bengio et al. 2015, with the ratio decayed by the caller).
                Step 1 always reads ``target_in[0]``.
            generator: the random source of those coin flips.
        """
        if not 0.0 <= teacher_forcing_ratio <= 1.0:
            raise ValueError(f"teacher_forcing_ratio must be in [0, 1], got {teacher_forcing_ratio}")
        state = self.start(source, source_lengths)  # checks the source
        if target_in.dim() != 2 or target_in.size(1) != source.size(1):
            raise ValueError(
                f"target_in must be (T, B) with the source's batch of {source.size(1)}, "
                f"got shape {tuple(target_in.shape)}"
            )
        if self.attention is None and teacher_forcing_ratio == 1.0:
            return self._decode(target_in, state)[0]  # one Recurrent call over all T steps
        # Step by step (one Recurrent call per output token, as decoding is): the context at step
        # t depends on the decoder's state after step t - 1, and a fed-back prediction on the
        # logits of step t - 1, so neither can be computed for all steps at once.
        logits: list[Tensor] = []
        for t, teacher in enumerate(target_in.unbind(0)):  # (B,) each
            tokens = teacher
            if t and teacher_forcing_ratio < 1.0:
                use_teacher = torch.rand(teacher.shape, generator=generator, device=teacher.device)
                tokens = torch.where(use_teacher < teacher_forcing_ratio, teacher, logits[-1].argmax(-1))
            step_logits, state = self.step(tokens, state)
            logits.append(step_logits)
        return torch.stack(logits)  # (T, B, V)

    def start(self, source: Tensor, source_lengths: Tensor | None = None) -> State:
        """Encode ``source`` ``(S, B)`` and return the initial decoding state (see the class)."""
        if source.dim() != 2:
            raise ValueError(f"source must be (S, B) token ids, got shape {tuple(source.shape)}")
        keys, final = self.encoder(self.dropout(self.source_embedding(source)), lengths=source_lengths)
        state = self._bridge(final)
        if self.attention is None:
            return state
        mask = source_mask(source_lengths, source.size(0), source.size(1), source.device)
        return (*state, keys, self.attention.project_keys(keys), mask)

    def step(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """One decoder step: the previous tokens ``(B,)`` -> logits ``(B, target_vocab)``, state."""
        logits, state = self._decode(tokens.unsqueeze(0), state)
        return logits.squeeze(0), state

    def _bridge(self, final: State) -> State:
        """The encoder's final state (tensors ``(L*D, B, size)``) -> the decoder's (``(L, B, size)``)."""
        layers, directions = self.encoder.num_layers, self.encoder.num_directions
        # (L*D, B, size) -> (L, B, D*size): a layer's directions side by side, then all tensors.
        per_layer = [
            s.view(layers, directions, *s.shape[1:]).permute(0, 2, 1, 3).flatten(2) for s in final
        ]
        mapped = torch.tanh(self.bridge(torch.cat(per_layer, dim=-1)))  # (L, B, sum(sizes))
        return tuple(s.contiguous() for s in mapped.split(self.state_sizes, dim=-1))

    def _decode(self, tokens: Tensor, state: State) -> tuple[Tensor, State]:
        """Teacher-forced decoding of ``tokens`` ``(T, B)`` in one Recurrent call.

        With attention T must be 1: the context needs the state before each step.
        """
        decoder_state, memory = state[: len(self.state_sizes)], state[len(self.state_sizes) :]
        embedded = self.target_embedding(tokens)  # (T, B, E)
        if self.attention is None:
            output, decoder_state = self.decoder(self.dropout(embedded), decoder_state)  # (T, B, H)
            return self.output(self.dropout(output)), decoder_state
        keys, projected_keys, mask = memory
        query = decoder_state[0][-1]  # (B, Q): the top layer's h, s_{t-1}
        context = self.attention(query, keys, projected_keys, mask)[0].unsqueeze(0)  # (1, B, K)
        inputs = torch.cat([embedded, context], dim=-1)  # (1, B, E + K)
        output, decoder_state = self.decoder(self.dropout(inputs), decoder_state)  # (1, B, H)
        logits = self.output(self.dropout(torch.cat([output, context], dim=-1)))  # (1, B, V)
        return logits, (*decoder_state, *memory)
