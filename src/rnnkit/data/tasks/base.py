r"""The interface of the synthetic sequence tasks: a task config, its batches, its vocabulary.

A task is a small frozen dataclass whose fields are its options (``AddingTask(length=200)``). It
says what kind of problem it is, how large its inputs and outputs are, the loss of the trivial
predictor (``baseline``: a trained model must go below it to have learned anything), and it draws
batches from a ``torch.Generator`` only, so that the same seed always gives the same batches and no
global random state is touched.

Kinds and the tensors of their :class:`TaskBatch` (time-major, like every rnnkit layer; ``T`` time
steps, ``B`` sequences, ``I`` input features, ``O`` outputs):

==============  =================================  =========================================
kind            inputs                             targets
==============  =================================  =========================================
regression      ``(T, B, I)`` float                ``(B, O)`` float, read after the last step
classification  ``(T, B)`` token ids               ``(B,)`` class ids in ``[0, O)``
tagging         ``(T, B)`` token ids               ``(T, B)`` class ids, one per step
seq2seq         ``(S, B)`` source token ids        ``(U, B)`` target token ids (below)
captioning      ``(B, 3, H, W)`` float images      ``(U, B)`` target token ids, as seq2seq
==============  =================================  =========================================

- ``lengths`` ``(B,)``: the valid input steps of each sequence when they vary (the rest is padding
  and a many-to-one model reads its answer at step ``lengths - 1``); ``None`` when all are ``T``.
- ``mask`` (the targets' time steps × B, bool): True where a step carries loss; ``None`` when every
  step does. Tagging targets at masked-out steps hold :data:`IGNORE_INDEX` (torch's default
  ``ignore_index``), so ``F.cross_entropy(logits.flatten(0, 1), targets.flatten())`` already skips
  them.
- ``trees``: a task whose examples are trees (``tree_inputs``) gives them as a
  :class:`~rnnkit.data.trees.TreeBatch` too, example b's root at ``trees.roots[b]``, beside
  ``inputs``, their flattened form, so that a recursive and a sequence model read the same data.
- seq2seq: a target is ``BOS y_1 ... y_m EOS`` padded with ``PAD`` and ``target_lengths = m + 2``;
  ``mask`` is True at its non-padding tokens. With teacher forcing the decoder reads
  ``targets[:-1]`` and predicts ``targets[1:]``, scored where ``mask[1:]``.
- captioning: targets as seq2seq's, one reference caption per image; ``references``
  ``(R, U', B)`` holds every acceptable caption of each image, padded as the targets to the
  longest of them (a decoding is right if it equals any of them).
"""

from __future__ import annotations

import dataclasses
import math
import random
import typing
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from rnnkit.data.trees import TreeBatch
from rnnkit.data.vocabulary import Vocabulary

#: The kinds of task, see the module docstring.
KINDS = ("regression", "classification", "tagging", "seq2seq", "captioning")

#: Target value of a tagging step that carries no loss (torch's default ``ignore_index``).
IGNORE_INDEX = -100


@dataclasses.dataclass(frozen=True)
class TaskBatch:
    """One batch of a task; shapes and meanings per kind are in the module docstring."""

    inputs: Tensor  # (T, B, I) float, or (T, B) long token ids
    targets: Tensor  # (B, O) float, (B,) long, (T, B) long, or (U, B) long
    lengths: Tensor | None = None  # (B,) long: valid input steps; None when all are T
    target_lengths: Tensor | None = None  # (B,) long: seq2seq target tokens incl. BOS and EOS
    mask: Tensor | None = None  # bool over the targets' steps: True where loss counts; None: all
    trees: TreeBatch | None = None  # a tree task's inputs as trees too (``tree_inputs``)
    references: Tensor | None = None  # (R, U', B) long: every reference target (captioning)

    def to(self, device: torch.device | str) -> TaskBatch:
        """The same batch with every tensor on ``device``."""
        tensors = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return TaskBatch(**{k: None if v is None else v.to(device) for k, v in tensors.items()})


class TokenVocabulary:
    """Characters plus the special tokens of seq2seq: ``PAD`` = 0, ``BOS`` = 1, ``EOS`` = 2.

    The characters are a :class:`rnnkit.data.vocabulary.Vocabulary`; character id ``i`` there is
    token id ``i + 3`` here, so the three special tokens never collide with text.

    Example:
        >>> vocab = TokenVocabulary("+0123456789")
        >>> vocab.encode("12+3").tolist()
        [5, 6, 3, 7]
        >>> vocab.decode([vocab.BOS, 6, 7, vocab.EOS, vocab.PAD])
        '23'
    """

    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self, chars: Sequence[str]) -> None:
        self.characters = Vocabulary(chars)

    def __len__(self) -> int:
        return len(self.SPECIALS) + len(self.characters)

    def __repr__(self) -> str:
        chars = "".join(self.characters.chars)
        return f"TokenVocabulary({len(self)} tokens: PAD, BOS, EOS and {chars!r})"

    def encode(self, text: str, what: str = "the text") -> Tensor:
        """The token ids of ``text``'s characters, ``(len(text),)`` long, without BOS or EOS."""
        return self.characters.encode(text, what) + len(self.SPECIALS)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The text of a token sequence: after a leading BOS, up to the first EOS or PAD.

        Raises:
            ValueError: if a special token or an unknown id comes before the end.
        """
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        start = 1 if ids[:1] == [self.BOS] else 0
        text = []
        for position, token in enumerate(ids[start:], start):
            if token in (self.EOS, self.PAD):
                break
            if not len(self.SPECIALS) <= token < len(self):
                raise ValueError(
                    f"token {token} at position {position} is not a character "
                    f"(expected {len(self.SPECIALS)} to {len(self) - 1} before EOS)"
                )
            text.append(token - len(self.SPECIALS))
        return self.characters.decode(text)


def python_random(generator: torch.Generator) -> random.Random:
    """A Python RNG seeded by one draw from ``generator``: string tasks stay reproducible from the
    torch generator alone and never touch the global ``random`` state."""
    return random.Random(int(torch.randint(0, 2**62, (), generator=generator)))


@dataclasses.dataclass(frozen=True)
class Task(ABC):
    """A synthetic sequence task; subclasses are frozen dataclasses whose fields are its options.

    Class attributes: ``name`` (the registry key), ``kind`` (one of :data:`KINDS`),
    ``token_inputs`` (inputs are ``(T, B)`` token ids rather than ``(T, B, I)`` features) and
    ``tree_inputs`` (batches carry ``trees`` as well).
    Subclasses implement :meth:`_generate` and the properties below, and check their options'
    ranges in ``__post_init__`` after calling this class's, which checks their types.
    """

    name: ClassVar[str]
    kind: ClassVar[str]
    token_inputs: ClassVar[bool]
    tree_inputs: ClassVar[bool] = False

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value, expected = getattr(self, f.name), hints[f.name]
            # bool is an int to Python but never a size; a float option accepts an int
            accepted = (int, float) if expected is float else expected
            if isinstance(value, bool) or not isinstance(value, accepted):
                # ValueError, not TypeError: callers catch one exception for every bad option
                raise ValueError(  # noqa: TRY004
                    f"task {self.name!r} option {f.name} must be {expected.__name__}, got {value!r}"
                )

    @property
    @abstractmethod
    def input_size(self) -> int:
        """Features per step ``I``, or the number of input token ids when ``token_inputs``."""

    @property
    @abstractmethod
    def output_size(self) -> int:
        """Real outputs (regression), classes (classification, tagging) or target tokens."""

    @property
    @abstractmethod
    def baseline(self) -> float:
        """The loss of the trivial predictor (MSE or mean cross-entropy, see the task)."""

    @abstractmethod
    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """Draw ``batch_size`` examples using ``generator`` only (arguments already checked)."""

    def batch(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """``batch_size`` fresh examples drawn from ``generator`` (a CPU ``torch.Generator``).

        The same generator state gives the same batch; the tensors are on the CPU.

        Raises:
            ValueError: if ``batch_size`` is not a positive int or ``generator`` is not a CPU
                ``torch.Generator``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(generator, torch.Generator) or generator.device.type != "cpu":
            got = generator.device if isinstance(generator, torch.Generator) else generator
            raise ValueError(f"generator must be a CPU torch.Generator, got {got!r}")
        return self._generate(batch_size, generator)

    def validation(self, n: int, seed: int) -> TaskBatch:
        """A fixed set of ``n`` examples: the same ``(n, seed)`` always gives the same set.

        Use a seed that the training generator does not use, so the set is held out.
        """
        return self.batch(n, torch.Generator().manual_seed(seed))


def require_range(task: Task, option: str, low: int, high: int | None = None) -> None:
    """Raise a ValueError unless ``low <= task.<option> <= high`` (no upper bound if None)."""
    value = getattr(task, option)
    if value < low or (high is not None and value > high):
        expected = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise ValueError(f"task {task.name!r} option {option} must be {expected}, got {value}")


@dataclasses.dataclass(frozen=True)
class TextPairTask(Task):
    r"""A seq2seq task over strings: ``example`` draws one (source, target) pair of texts.

    Source and target share one :class:`TokenVocabulary`, so ``input_size == output_size``.

    ``baseline`` is :math:`\ln(K + 1)`, where :math:`K` = ``len(target_alphabet)``: the mean
    cross-entropy per predicted target token (the characters and EOS) of a decoder that ignores the
    source and spreads its probability evenly over the K characters a target can contain and EOS.
    It is the loss of a model that has learned nothing, a loose bound: a decoder that learns only
    the targets' layout (lengths, fixed separators) already does better, one that learns the task
    reaches 0.
    """

    kind = "seq2seq"
    token_inputs = True
    vocabulary: ClassVar[TokenVocabulary]
    target_alphabet: ClassVar[str]  # every character a target can contain

    @abstractmethod
    def example(self, rng: random.Random) -> tuple[str, str]:
        """One (source, target) pair drawn with ``rng``."""

    @property
    def input_size(self) -> int:
        return len(self.vocabulary)

    @property
    def output_size(self) -> int:
        return len(self.vocabulary)

    @property
    def baseline(self) -> float:
        return math.log(len(self.target_alphabet) + 1)

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        rng = python_random(generator)
        pairs = [self.example(rng) for _ in range(batch_size)]
        vocab = self.vocabulary
        sources = [vocab.encode(source, f"a {self.name} source") for source, _ in pairs]
        bos, eos = torch.tensor([vocab.BOS]), torch.tensor([vocab.EOS])
        targets = [torch.cat([bos, vocab.encode(target), eos]) for _, target in pairs]
        padded_targets = pad_sequence(targets, padding_value=vocab.PAD)  # (U, B)
        target_lengths = torch.tensor([len(target) for target in targets])  # (B,)
        steps = torch.arange(padded_targets.shape[0]).unsqueeze(1)  # (U, 1)
        return TaskBatch(
            inputs=pad_sequence(sources, padding_value=vocab.PAD),  # (S, B)
            targets=padded_targets,
            lengths=torch.tensor([len(source) for source in sources]),
            target_lengths=target_lengths,
            mask=steps < target_lengths,  # (U, B)
        )
