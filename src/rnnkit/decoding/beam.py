r"""Batched beam search with n-best lists and the GNMT length penalty.

Beam search keeps, for each of B independent problems, the K most probable partial sequences
(hypotheses) and extends each by every token of the vocabulary at each step; all B·K hypotheses
run through the model as one batch of B·K rows. A hypothesis that produces the end token, or
reaches ``max_length`` tokens, is finished: it is set aside and competes with the other finished
ones on its length-penalised score (Wu et al. 2016, "Google's neural machine translation
system"):

.. math::
    s(Y) = \frac{\log P(Y \mid x)}{lp(Y)}, \qquad lp(Y) = \left(\frac{5 + |Y|}{6}\right)^{\alpha}

where :math:`x` is the context (a prime), :math:`|Y|` counts the produced tokens, the end token
included, and :math:`\alpha \ge 0` is ``length_penalty`` (0: plain log-probability; larger
values favour longer sequences).

The search stops when every problem has ``n_best`` finished hypotheses that no live one can
still beat: since :math:`\log P` only falls as a hypothesis grows and
:math:`lp \le lp(\text{max\_length})`, a live hypothesis of log-probability :math:`s` never
scores above :math:`s / lp(\text{max\_length})`.

Ties are broken deterministically, by a stable sort: among equal scores, the hypothesis finished
first wins, then the one from the better-ranked beam, then the lower token id; so beam size 1 is
exactly greedy (argmax) decoding.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .stepper import Choice, StepModel, decode

PAD = -1  # fills the unused positions of the finished token tensor (B, n_best, max_length)


class Hypothesis(NamedTuple):
    """A finished sequence: its tokens (the end token last, if it was produced) and its score,
    the log-probability divided by the GNMT length penalty."""

    tokens: tuple[int, ...]
    score: float


def gnmt_length_penalty(length: int, alpha: float) -> float:
    """``((5 + length) / 6) ** alpha`` (Wu et al. 2016): 1 for ``alpha = 0``."""
    return ((5 + length) / 6) ** alpha


def beam_search(
    stepper: StepModel,
    context: Any,
    beam_size: int,
    max_length: int,
    end_token: int | None = None,
    length_penalty: float = 0.0,
    n_best: int = 1,
) -> list[list[Hypothesis]]:
    """The ``n_best`` best sequences for each of the B problems that ``stepper.start(context)``
    opens, best first.

    ``beam_size`` (K) hypotheses are kept per problem; the B·K of them are stepped as one batch.
    A sequence ends at ``end_token`` (never, if ``None``) or after ``max_length`` tokens.
    ``length_penalty`` is GNMT's alpha (see the module docstring); ``n_best`` (at most K) is the
    length of each returned list, shorter only if fewer sequences have non-zero probability.

    Example:
        >>> model = LanguageModel(12, "lstm", hidden_size=16, num_layers=1)
        >>> primes = torch.tensor([[3, 1], [4, 5]])  # (P=2, B=2): two primes, one per column
        >>> best = beam_search(LanguageModelStepper(model), primes, beam_size=4, max_length=10)
        >>> tokens, score = best[1][0]  # the best continuation of the second prime
    """
    if beam_size < 1:
        raise ValueError(f"beam_size must be a positive integer, got {beam_size}")
    if max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length}")
    if not 1 <= n_best <= beam_size:
        raise ValueError(f"n_best must be between 1 and beam_size={beam_size}, got {n_best}")
    if not 0 <= length_penalty < math.inf:
        raise ValueError(f"length_penalty must be a non-negative number, got {length_penalty}")
    if end_token is not None and end_token < 0:
        raise ValueError(f"end_token must be a token id (non-negative), got {end_token}")
    beams = _Beams(beam_size, max_length, end_token, length_penalty, n_best)
    for _ in decode(stepper, context, max_length, beams.choose):
        pass  # beams.choose does the bookkeeping; the loop only feeds its tokens back
    return beams.results()


class _Beams:
    """The live and finished hypotheses of B problems; ``choose`` is the decoder's chooser.

    Live hypotheses: ``logp`` (B, k) log-probabilities and ``history`` (B, k, t) tokens, k <= K
    per problem (fewer while the vocabulary has not yet offered K sequences), in row order
    ``problem * k + rank`` of the stepper's batch. Finished ones: ``done_score`` (B, N) penalised
    scores (``-inf`` where there is none yet), ``done_tokens`` (B, N, max_length) padded with
    :data:`PAD`, ``done_length`` (B, N); N = n_best, best first.
    """

    def __init__(
        self, beam_size: int, max_length: int, end_token: int | None, alpha: float, n_best: int
    ) -> None:
        self.beam_size = beam_size
        self.max_length = max_length
        self.end_token = end_token
        self.alpha = alpha
        self.n_best = n_best
        self.length = 0  # tokens in each live hypothesis
        empty = torch.empty(0)  # _open shapes them at the first step, when B and the device are known
        self.logp = self.history = empty
        self.done_score = self.done_tokens = self.done_length = empty

    def choose(self, scores: Tensor) -> Choice | None:
        """Extend every live hypothesis by every token; set the finished ones aside; keep the K
        best others. Returns their last tokens and parent rows, or ``None`` when done."""
        if self.length == 0:
            self._open(scores)
        batch, vocab = self.logp.size(0), scores.size(-1)
        # (B, k, V): log P of every one-token extension; double, since long sums get compared.
        logp = torch.log_softmax(scores.double(), dim=-1).view(batch, -1, vocab)
        candidates = self.logp.unsqueeze(-1) + logp
        self.length += 1
        penalty = gnmt_length_penalty(self.length, self.alpha)
        if self.length == self.max_length:  # every extension ends here
            self._finish(candidates.view(batch, -1) / penalty, vocab)
            return None
        live_tokens = vocab
        if self.end_token is not None:
            self._finish(candidates[:, :, self.end_token] / penalty, 1)
            candidates = candidates.clone()
            candidates[:, :, self.end_token] = -math.inf  # an ended hypothesis does not go on
            live_tokens -= 1
        # Never keep more hypotheses than there are extensions (early steps, small vocabularies).
        keep = min(self.beam_size, candidates.size(1) * live_tokens)
        if keep == 0:  # the end token is the whole vocabulary
            return None
        flat = candidates.view(batch, -1)  # (B, k * V), index = parent rank * V + token
        order = flat.sort(dim=-1, descending=True, stable=True).indices[:, :keep]  # (B, K)
        parents, tokens = order // vocab, order % vocab
        self.logp = flat.gather(1, order)
        self.history = torch.cat([_take(self.history, parents), tokens.unsqueeze(-1)], dim=-1)
        rows = parents + candidates.size(1) * torch.arange(batch, device=order.device).unsqueeze(-1)
        if self._settled():
            return None
        return tokens.reshape(-1), rows.reshape(-1)  # (B * K,) each: row problem * K + rank

    def results(self) -> list[list[Hypothesis]]:
        """For each problem, its finished hypotheses, best first."""
        return [
            [
                Hypothesis(tuple(tokens[:length].tolist()), score)
                for score, tokens, length in zip(scores.tolist(), all_tokens, lengths.tolist())
                if score > -math.inf
            ]
            for scores, all_tokens, lengths in zip(self.done_score, self.done_tokens, self.done_length)
        ]

    def _open(self, scores: Tensor) -> None:
        """Start B problems from the first scores (B, V): one empty hypothesis each."""
        (batch, vocab), device = scores.shape, scores.device
        if self.end_token is not None and self.end_token >= vocab:
            raise ValueError(f"end_token must be below the vocabulary size {vocab}, got {self.end_token}")
        n, length = self.n_best, self.max_length
        self.logp = torch.zeros(batch, 1, dtype=torch.float64, device=device)  # (B, 1)
        self.history = torch.zeros(batch, 1, 0, dtype=torch.long, device=device)  # (B, 1, 0)
        self.done_score = torch.full((batch, n), -math.inf, dtype=torch.float64, device=device)
        self.done_tokens = torch.full((batch, n, length), PAD, dtype=torch.long, device=device)
        self.done_length = torch.zeros(batch, n, dtype=torch.long, device=device)

    def _finish(self, penalised: Tensor, width: int) -> None:
        """Merge finished candidates (B, k * width) into the n-best lists.

        Candidate ``i`` extends live hypothesis ``i // width`` by token ``i % width`` (by the end
        token when ``width`` is 1). Only each problem's n best candidates can enter its list.
        """
        order = penalised.sort(dim=-1, descending=True, stable=True).indices[:, : self.n_best]
        parents = order // width
        last = order % width if width > 1 else torch.full_like(order, self.end_token)
        tokens = torch.cat([_take(self.history, parents), last.unsqueeze(-1)], dim=-1)  # (B, M, t)
        tokens = torch.nn.functional.pad(tokens, (0, self.max_length - self.length), value=PAD)
        # Old entries first: the stable sort lets them win ties against the new ones.
        score = torch.cat([self.done_score, penalised.gather(1, order)], dim=1)
        tokens = torch.cat([self.done_tokens, tokens], dim=1)
        length = torch.cat([self.done_length, torch.full_like(order, self.length)], dim=1)
        best = score.sort(dim=-1, descending=True, stable=True).indices[:, : self.n_best]
        self.done_score = score.gather(1, best)
        self.done_tokens = _take(tokens, best)
        self.done_length = length.gather(1, best)

    def _settled(self) -> bool:
        """Whether no live hypothesis can still enter any problem's n-best list."""
        best_live = self.logp.max(dim=1).values  # (B,)
        bound = best_live / gnmt_length_penalty(self.max_length, self.alpha)
        worst_kept = self.done_score[:, -1]  # -inf until the list is full
        return bool(((best_live == -math.inf) | (bound <= worst_kept)).all())


def _take(tensor: Tensor, index: Tensor) -> Tensor:
    """``tensor[b, index[b, j]]`` for a (B, k, ...) tensor and a (B, M) index: (B, M, ...)."""
    return tensor[torch.arange(tensor.size(0), device=index.device).unsqueeze(-1), index]
