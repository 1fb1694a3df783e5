"""The step interface that every decoder drives, and the one loop that drives it.

A decoder (argmax, sampling, beam search) needs three things from a model, whatever the model is
(a language model, a sequence-to-sequence decoder, a captioner):

- ``start(context) -> (scores (B, V), state)``: read the model's context (a prime, a source
  sentence, an image) and give the scores of the first token to produce, for each of the B rows;
- ``step(tokens (B,), state) -> (scores (B, V), state)``: feed one chosen token per row and give
  the scores of the next one;
- ``reorder(state, rows (N,)) -> state``: the state of the N rows ``rows`` of ``state``, in that
  order (rows may repeat): beam search continues some hypotheses several times and drops others.

Scores are logits or log-probabilities over the V tokens of the vocabulary: decoders only use
them through ``softmax``, ``log_softmax`` or ``argmax``, which treat both the same. States are
opaque to decoders, which touch them only through ``reorder``; :func:`select_rows` reorders any
nested tuple of tensors whose batch lies in one known dimension, which is all most models need.

:func:`decode` is the stepping loop, shared by every decoder: a decoder is a ``choose`` function
from the current scores to the tokens to feed back (and the rows they continue).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import torch
from torch import Tensor, nn

# What a decoder chooses at one step: the tokens to feed (N,) and, for each, the row of the current
# state it continues (N,); ``None`` rows mean "row i continues row i" (no reordering).
Choice = tuple[Tensor, Tensor | None]
# A decoder's choice of the next tokens from the scores (B, V); ``None`` ends decoding early.
Choose = Callable[[Tensor], Choice | None]


class StepModel(Protocol):
    """A model that produces a sequence one token at a time (see the module docstring)."""

    def start(self, context: Any) -> tuple[Tensor, Any]:
        """Read ``context``; return the scores of the first token (B, V) and the state after it."""
        ...

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        """Feed ``tokens`` (B,); return the scores of the next token (B, V) and the new state."""
        ...

    def reorder(self, state: Any, rows: Tensor) -> Any:
        """The state of the rows ``rows`` (N,) of ``state``, in that order."""
        ...


def select_rows(state: Any, rows: Tensor, dim: int) -> Any:
    """Select the batch rows ``rows`` (N,) of every tensor in ``state``, along dimension ``dim``.

    ``state`` is a tensor, ``None``, or a tuple or list of such (nested to any depth); the
    structure is kept, and each tensor ``(..., B, ...)`` becomes ``(..., N, ...)``. A
    ``Recurrent`` state, a tuple of ``(num_layers * num_directions, B, H)`` tensors, has its
    batch in ``dim=1``.

    Example:
        >>> h, c = torch.zeros(2, 3, 8), torch.ones(2, 3, 8)
        >>> h2, c2 = select_rows((h, c), torch.tensor([2, 2, 0, 1]), dim=1)
        >>> h2.shape
        torch.Size([2, 4, 8])
    """
    if isinstance(state, Tensor):
        return state.index_select(dim, rows)
    if state is None:
        return None
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(part, rows, dim) for part in state)
    raise TypeError(f"a state must be a tensor, None, or a tuple or list of them; got {type(state).__name__}")


class LanguageModelStepper:
    """The :class:`StepModel` of a :class:`~rnnkit.models.LanguageModel` (or any module with its
    call signature, ``model(tokens (T, B), state) -> (logits (T, B, V), state)``).

    ``start(prime)`` reads a prime ``(P, B)`` of token ids (P >= 1, one column per sequence) in
    one pass and returns the logits of the token that follows it; each ``step`` then runs the
    model over one time step. The state is the ``Recurrent`` state, batch in dimension 1.
    Decoding runs the model in evaluation mode (no dropout, no input noise): the constructor
    switches it.

    Example:
        >>> from rnnkit.models import LanguageModel
        >>> model = LanguageModel(12, "gru", hidden_size=8, num_layers=1)
        >>> stepper = LanguageModelStepper(model)
        >>> logits, state = stepper.start(torch.tensor([[3, 1], [4, 1]]))  # two primes of length 2
        >>> logits, state = stepper.step(logits.argmax(-1), state)
        >>> logits.shape
        torch.Size([2, 12])
    """

    batch_dim = 1  # Recurrent states are (L * D, B, H)

    def __init__(self, model: nn.Module) -> None:
        self.model = model.eval()

    def start(self, prime: Tensor) -> tuple[Tensor, Any]:
        if prime.dim() != 2 or prime.size(0) == 0 or prime.size(1) == 0:
            raise ValueError(
                f"the prime must be a (P, B) tensor of token ids with P, B >= 1, got shape {tuple(prime.shape)}"
            )
        logits, state = self.model(prime)  # (P, B, V)
        return logits[-1], state

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        logits, state = self.model(tokens.view(1, -1), state)  # (1, B, V)
        return logits[0], state

    def reorder(self, state: Any, rows: Tensor) -> Any:
        return select_rows(state, rows, self.batch_dim)


class DecoderStepper:
    """The :class:`StepModel` of a conditioned decoder: a model with ``start(*context) -> state``
    and ``step(tokens (B,), state) -> (logits (B, V), state)``, such as
    :class:`~rnnkit.models.Seq2Seq` (context: the source and its lengths) or
    :class:`~rnnkit.models.ConditionedGenerator` (context: the condition vectors).

    ``start(context)`` reads the context and feeds ``start_token`` (the begin-of-sequence token)
    to every row, so that the first scores are those of the first produced token. The context is
    a tuple of the model's ``start`` arguments. Every tensor of these models' states has its
    batch in dimension 1. Decoding runs the model in evaluation mode: the constructor switches it.

    Example:
        >>> from rnnkit.models import Seq2Seq
        >>> model = Seq2Seq(8, 8, "gru", hidden_size=16)
        >>> stepper = DecoderStepper(model, start_token=1)
        >>> logits, state = stepper.start((torch.randint(3, 8, (5, 2)),))  # a source (S=5, B=2)
        >>> logits.shape
        torch.Size([2, 8])
    """

    batch_dim = 1

    def __init__(self, model: nn.Module, start_token: int) -> None:
        self.model = model.eval()
        self.start_token = start_token

    def start(self, context: tuple) -> tuple[Tensor, Any]:
        state = self.model.start(*context)
        batch = _batch_size(state, self.batch_dim)
        device = next(self.model.parameters()).device
        return self.model.step(torch.full((batch,), self.start_token, dtype=torch.long, device=device), state)

    def step(self, tokens: Tensor, state: Any) -> tuple[Tensor, Any]:
        return self.model.step(tokens, state)

    def reorder(self, state: Any, rows: Tensor) -> Any:
        return select_rows(state, rows, self.batch_dim)


def _batch_size(state: Any, dim: int) -> int:
    """The size of dimension ``dim`` of the first tensor in a nested ``state``."""
    if isinstance(state, Tensor):
        return state.size(dim)
    for part in state if isinstance(state, (tuple, list)) else ():
        if part is not None:
            return _batch_size(part, dim)
    raise ValueError("the model's start state holds no tensor to read the batch size from")


@torch.no_grad()
def decode(stepper: StepModel, context: Any, max_length: int, choose: Choose) -> Iterator[Tensor]:
    """Yield the tokens that ``choose`` picks at each step, at most ``max_length`` times.

    The loop every decoder shares: start the stepper on ``context``; then, until ``choose``
    returns ``None`` or ``max_length`` tokens have been chosen, let ``choose`` pick the next
    tokens from the current scores, yield them (N,), reorder the state to the rows they continue
    and feed them back. The last chosen tokens are not fed (their scores would go unused).
    """
    if max_length < 1:
        raise ValueError(f"max_length must be a positive integer, got {max_length}")
    scores, state = stepper.start(context)  # (B, V)
    for produced in range(1, max_length + 1):
        choice = choose(scores)
        if choice is None:
            return
        tokens, rows = choice  # (N,), (N,) or None
        yield tokens
        if produced == max_length:
            return
        if rows is not None:
            state = stepper.reorder(state, rows)
        scores, state = stepper.step(tokens, state)
