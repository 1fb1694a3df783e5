"""Character-level vocabulary: the map between characters and the integer ids a model sees.

A vocabulary is an ordered list of distinct characters; a character's id is its position. Built from
a training text it is the text's distinct characters sorted by code point (as in char-rnn), so the
same text always gives the same ids. It is saved beside a model as JSON (a list of characters) and
must be loaded back unchanged for the model's embedding and output rows to mean the same thing.

Example::

    >>> vocab = Vocabulary.from_text("hello")
    >>> vocab.chars
    ('e', 'h', 'l', 'o')
    >>> vocab.encode("hole").tolist()
    [1, 3, 2, 0]
    >>> vocab.decode([1, 0, 2, 2, 3])
    'hello'
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence

import numpy as np
import torch

from rnnkit.errors import DataError

#: How many offending characters an "outside the vocabulary" error lists before summarising.
MAX_REPORTED_CHARS = 5

#: Code points run from 0 to 0x10FFFF.
CODE_POINTS = 0x110000


class Vocabulary:
    """An ordered set of characters; ``encode`` maps text to ids and ``decode`` maps them back.

    Args:
        chars: the characters, each a one-character string, without duplicates; the i-th gets id i.

    Raises:
        ValueError: if an entry is not a one-character string, or a character repeats.
    """

    def __init__(self, chars: Iterable[str]) -> None:
        chars = tuple(chars)
        index: dict[str, int] = {}
        for position, char in enumerate(chars):
            if not isinstance(char, str) or len(char) != 1:
                raise ValueError(
                    f"vocabulary entry {position} must be a single character, got {char!r}"
                )
            if char in index:
                raise ValueError(
                    f"vocabulary has {char!r} twice (entries {index[char]} and {position})"
                )
            index[char] = position
        self._chars = chars
        self._index = index  # char -> id
        # The id of every code point up to the largest in the vocabulary, -1 for the others; the
        # entry after the largest stands for every code point above it. Encoding is then one
        # numpy gather, not a dictionary look-up per character.
        points = _code_points("".join(chars))
        table = np.full(int(points.max(initial=0)) + 2, -1, dtype=np.int32)
        table[points] = np.arange(len(chars), dtype=np.int32)
        self._id_of_code_point = table

    @classmethod
    def from_text(cls, text: str) -> Vocabulary:
        """The distinct characters of ``text``, sorted by code point.

        Raises:
            DataError: if ``text`` is empty.
        """
        return cls.from_blocks([text])

    @classmethod
    def from_blocks(cls, blocks: Iterable[str]) -> Vocabulary:
        """The distinct characters of the text the ``blocks`` make together, sorted by code
        point: :meth:`from_text` of their concatenation, in constant memory (a flag per code point).

        Raises:
            DataError: if the text is empty.
        """
        seen = np.zeros(CODE_POINTS, dtype=bool)
        for block in blocks:
            seen[_code_points(block)] = True
        if not seen.any():
            raise DataError("cannot build a vocabulary from an empty text")
        return cls(map(chr, np.flatnonzero(seen).tolist()))  # flatnonzero: code-point order

    @property
    def chars(self) -> tuple[str, ...]:
        """The characters in id order."""
        return self._chars

    def __len__(self) -> int:
        return len(self._chars)

    def __contains__(self, char: object) -> bool:
        return char in self._index

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Vocabulary):
            return NotImplemented
        return self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} characters: {''.join(self._chars)!r})"

    def index(self, char: str) -> int:
        """The id of ``char``; ``KeyError`` if it is not in the vocabulary."""
        return self._index[char]

    def encode(self, text: str, what: str = "the text") -> torch.Tensor:
        """The ids of the characters of ``text``: a ``torch.long`` tensor of shape ``(len(text),)``.

        Args:
            text: the text to encode.
            what: how error messages name the text, e.g. ``"the prime text"``.

        Raises:
            DataError: if ``text`` has characters outside the vocabulary; the message gives how
                many distinct ones and lists the first few (in code-point order).
        """
        return torch.from_numpy(self.encode_array(text, np.int64, what))  # (N,)

    def encode_array(self, text: str, dtype: np.dtype | type, what: str = "the text") -> np.ndarray:
        """The ids of the characters of ``text`` as a numpy array of ``dtype``, shape ``(len(text),)``.

        ``dtype`` must hold ``len(self) - 1``; :meth:`encode`, as torch longs, is this.

        Raises:
            DataError: as :meth:`encode`.
        """
        # mode="clip" sends every code point above the table's end to its last entry, -1.
        ids = np.take(self._id_of_code_point, _code_points(text), mode="clip")  # (N,) int32, -1: unknown
        if ids.size and ids.min() < 0:
            unknown = set(text).difference(self._index)
            raise DataError(self._unknown_message(sorted(unknown), what))
        return ids.astype(dtype)

    @staticmethod
    def _unknown_message(unknown: list[str], what: str) -> str:
        listed = ", ".join(repr(char) for char in unknown[:MAX_REPORTED_CHARS])
        if len(unknown) > MAX_REPORTED_CHARS:
            listed += f", ... ({len(unknown) - MAX_REPORTED_CHARS} more)"
        noun = "character" if len(unknown) == 1 else "characters"
        return f"{what} has {len(unknown)} {noun} outside the model's vocabulary: {listed}"

    def decode(self, ids: Sequence[int] | torch.Tensor) -> str:
        """The text whose characters have the given ids.

        Args:
            ids: a sequence of ints, or a 1-D integer tensor (on any device).

        Raises:
            ValueError: if ``ids`` is not 1-D integers, or an id is outside ``[0, len(self))``.
        """
        size = len(self._chars)
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1:
                raise ValueError(
                    f"decode expects a 1-D tensor of ids, got shape {tuple(ids.shape)}"
                )
            if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
                raise ValueError(f"decode expects integer ids, got dtype {ids.dtype}")
            outside = ((ids < 0) | (ids >= size)).nonzero()
            if len(outside):
                position = int(outside[0])
                raise self._outside_error(int(ids[position]), position)
            ids = ids.tolist()
        else:
            checked: list[int] = []
            for position, token in enumerate(ids):
                # operator.index accepts Python and numpy integers; bool is an int but never an id
                try:
                    value = operator.index(token)
                except TypeError:
                    value = None
                if value is None or isinstance(token, bool):
                    raise ValueError(f"id at position {position} is not an integer: {token!r}")
                if not 0 <= value < size:  # a negative id must not index from the end
                    raise self._outside_error(value, position)
                checked.append(value)
            ids = checked
        return "".join(map(self._chars.__getitem__, ids))

    def _outside_error(self, token: int, position: int) -> ValueError:
        return ValueError(
            f"id {token} at position {position} is outside the vocabulary "
            f"(expected 0 to {len(self._chars) - 1})"
        )

    def to_json(self) -> list[str]:
        """A JSON-serialisable form: the list of characters in id order."""
        return list(self._chars)

    @classmethod
    def from_json(cls, obj: object) -> Vocabulary:
        """Rebuild a vocabulary from :meth:`to_json`'s output, checking it.

        Raises:
            ValueError: if ``obj`` is not a non-empty list of distinct one-character strings.
        """
        if not isinstance(obj, list):
            # ValueError, not TypeError: callers catch one exception for every malformed file
            raise ValueError(  # noqa: TRY004
                f"a vocabulary must be a JSON list of characters, got {type(obj).__name__}"
            )
        if not obj:
            raise ValueError("a vocabulary must have at least one character, got an empty list")
        return cls(obj)


def _code_points(text: str) -> np.ndarray:
    """The code point of every character of ``text``: uint32, shape ``(len(text),)``."""
    # UTF-32 spends exactly 4 bytes on each character; "surrogatepass" keeps the lone
    # surrogates a str may hold (a vocabulary may be given one).
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
