"""Additive attention (Bahdanau, Cho & Bengio 2015): where in the source to look at each step."""

from __future__ import annotations

import torch
from torch import Tensor, nn


def source_mask(lengths: Tensor | None, steps: int, batch: int, device: torch.device) -> Tensor:
    """``mask[j, b]`` is True where source position ``j`` lies inside sequence ``b``: ``(S, B)``.

    Without lengths every position is real.
    """
    if lengths is None:
        return torch.ones(steps, batch, dtype=torch.bool, device=device)
    lengths = torch.as_tensor(lengths, device=device)
    return torch.arange(steps, device=device).unsqueeze(1) < lengths.unsqueeze(0)


class AdditiveAttention(nn.Module):
    r"""Bahdanau et al. (2015, "Neural machine translation by jointly learning to align and
    translate"), section 3.1 and appendix A.1.2:

    .. math::
        e_{tj} = v^\top \tanh(W s_{t-1} + U h_j + b), \qquad
        \alpha_{tj} = \frac{\exp e_{tj}}{\sum_{k \le L} \exp e_{tk}}, \qquad
        c_t = \sum_{j \le L} \alpha_{tj} h_j

    :math:`s_{t-1}` (Q, the query) is the decoder's state before step t, :math:`h_j` (K, the
    keys) the encoder's output at source position j, :math:`L` the source's length (positions
    past it get weight exactly 0), :math:`W` (A × Q, ``query``), :math:`U` (A × K, ``key``, with
    the bias :math:`b`) and :math:`v` (A, ``energy``) the parameters, :math:`\alpha_{t\cdot}` the
    attention weights (they sum to 1 over the source) and :math:`c_t` (K) the context vector.

    :math:`U h_j` does not depend on t: compute it once per source with :meth:`project_keys` and
    pass it to every step.

    Example:
        >>> import torch
        >>> attention = AdditiveAttention(query_size=8, key_size=6, attention_size=5)
        >>> keys = torch.randn(4, 2, 6)                          # (S, B, K)
        >>> mask = source_mask(torch.tensor([4, 2]), 4, 2, keys.device)
        >>> context, weights = attention(torch.randn(2, 8), keys, attention.project_keys(keys), mask)
        >>> context.shape, weights.shape
        (torch.Size([2, 6]), torch.Size([4, 2]))
    """

    def __init__(self, query_size: int, key_size: int, attention_size: int) -> None:
        super().__init__()
        for name, size in (("query_size", query_size), ("key_size", key_size), ("attention_size", attention_size)):
            if size <= 0:
                raise ValueError(f"{name} must be positive, got {size}")
        self.query = nn.Linear(query_size, attention_size, bias=False)  # W
        self.key = nn.Linear(key_size, attention_size)  # U and b: one bias inside the tanh suffices
        self.energy = nn.Linear(attention_size, 1, bias=False)  # v

    def project_keys(self, keys: Tensor) -> Tensor:
        """``U h_j + b`` for every source position at once: ``(S, B, K) -> (S, B, A)``."""
        return self.key(keys)

    def forward(self, query: Tensor, keys: Tensor, projected_keys: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """The context ``(B, K)`` and the weights ``(S, B)`` for one decoder step.

        Args:
            query: the decoder state :math:`s_{t-1}`, ``(B, Q)``.
            keys: the encoder outputs :math:`h_j`, ``(S, B, K)``.
            projected_keys: ``project_keys(keys)``, ``(S, B, A)``.
            mask: ``(S, B)`` bool, True at real source positions (see :func:`source_mask`).
        """
        energies = self.energy(torch.tanh(self.query(query) + projected_keys)).squeeze(-1)  # (S, B)
        # -inf before the softmax: padded positions get weight exactly 0.
        weights = torch.softmax(energies.masked_fill(~mask, float("-inf")), dim=0)  # (S, B)
        context = (weights.unsqueeze(-1) * keys).sum(0)  # (B, K)
        return context, weights
