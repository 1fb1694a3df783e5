"""Integer addition written as text: "123+4567" -> "4690", one character per token."""

from __future__ import annotations

import dataclasses
import random

from .base import TextPairTask, TokenVocabulary, require_range

DIGITS = "0123456789"


@dataclasses.dataclass(frozen=True)
class AdditionTask(TextPairTask):
    r"""Add two non-negative integers given as a string (the "learning to execute" addition of
    Zaremba & Sutskever 2014; the seq2seq addition of the Keras examples).

    The source is ``"a+b"`` and the target the decimal digits of :math:`a + b`, with no leading
    zeros. Each operand's number of digits is drawn uniformly from
    ``min_digits..max_digits``, then its value uniformly among the integers with that many digits
    (``0..9`` for one digit, :math:`10^{d-1} \dots 10^d - 1` for :math:`d > 1`), so short and long
    operands are equally common. A model must align digits of the same place across the ``+``
    and carry, writing the sum's most significant digit first.

    Kind ``seq2seq``, vocabulary ``0-9`` and ``+`` with PAD, BOS and EOS (14 tokens); see
    :class:`TextPairTask` for the tensors. Sources have at most ``2 * max_digits + 1`` tokens,
    targets ``max_digits + 1`` characters.

    Baseline: :math:`\ln 11` ≈ 2.398, the cross-entropy per target token of the uniform choice
    among the ten digits and EOS (:class:`TextPairTask`).

    Example:
        >>> task = AdditionTask(max_digits=4)
        >>> source, target = task.example(random.Random(0))
        >>> int(source.split("+")[0]) + int(source.split("+")[1]) == int(target)
        True
    """

    name = "addition"
    vocabulary = TokenVocabulary("+" + DIGITS)
    target_alphabet = DIGITS

    min_digits: int = 1  # fewest digits of an operand
    max_digits: int = 5  # most digits of an operand

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "min_digits", 1)
        require_range(self, "max_digits", self.min_digits)

    def example(self, rng: random.Random) -> tuple[str, str]:
        a, b = self._operand(rng), self._operand(rng)
        return f"{a}+{b}", str(a + b)

    def _operand(self, rng: random.Random) -> int:
        digits = rng.randint(self.min_digits, self.max_digits)
        return rng.randint(0 if digits == 1 else 10 ** (digits - 1), 10**digits - 1)
