r"""Image captioning: describe a scene of coloured shapes (:mod:`rnnkit.data.captions`) in words."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch
from torch import Tensor
from torch.nn.utils.rnn import pad_sequence

from ..captions import COLOURS, KINDS, SPLITS, WORDS, CaptionVocabulary, Scene, draw_scene, render
from .base import Task, TaskBatch, python_random, require_range


@dataclasses.dataclass(frozen=True)
class CaptionsTask(Task):
    r"""Caption a ``image_size`` × ``image_size`` RGB scene of one to ``max_shapes`` shapes.

    Scenes, their rendering and their references are :mod:`rnnkit.data.captions`' (``colours``
    and ``kinds``: how many of its colours and shape kinds are used; ``grid``: the side of the
    layout, one shape per cell).
    Training batches and the validation set come from the ``train`` split, :meth:`test` from the
    ``test`` split, whose every scene holds a (colour, kind) combination never trained on.

    Kind ``captioning``: ``inputs`` (B, 3, S, S) float images; ``targets`` (U, B) one reference
    per scene, drawn uniformly, as ``BOS w_1 ... w_m EOS`` padded with ``PAD``, with
    ``target_lengths`` and ``mask`` as a seq2seq task's; ``references`` (R, U', B) every
    reference of each scene (U' >= U: the longest reference), a scene with fewer than R of them
    padded with all-``PAD`` rows (which no decoding matches). Token ids are :attr:`vocabulary`'s; ``input_size`` = 3
    channels, ``output_size`` = the vocabulary's size.

    Baseline: :math:`\ln(K + 1)`, K the number of caption words: the cross-entropy per predicted
    token of a model that ignores the image and spreads its probability evenly over the words
    and EOS (a loose bound, as a seq2seq task's).

    Example:
        >>> task = CaptionsTask(image_size=32, max_shapes=2)
        >>> batch = task.batch(4, torch.Generator().manual_seed(0))
        >>> batch.inputs.shape, batch.references.shape[2]
        (torch.Size([4, 3, 32, 32]), 4)
    """

    name = "captions"
    kind = "captioning"
    token_inputs = False
    vocabulary: ClassVar[CaptionVocabulary] = CaptionVocabulary()

    image_size: int = 64  # pixels per side
    max_shapes: int = 3  # shapes per scene: 1..max_shapes, uniform
    colours: int = len(COLOURS)  # the first ``colours`` colours of the palette
    kinds: int = len(KINDS)  # the first ``kinds`` shape kinds (circle, triangle, square)
    grid: int = 3  # cells per side of the layout

    def __post_init__(self) -> None:
        super().__post_init__()
        require_range(self, "image_size", 8)
        require_range(self, "colours", 2, len(COLOURS))
        require_range(self, "kinds", 1, len(KINDS))
        require_range(self, "grid", 1, self.image_size // 8)
        require_range(self, "max_shapes", 1, self.grid * self.grid)

    @property
    def input_size(self) -> int:
        return 3

    @property
    def output_size(self) -> int:
        return len(self.vocabulary)

    @property
    def baseline(self) -> float:
        return math.log(len(WORDS) + 1)

    def scenes(self, n: int, generator: torch.Generator, split: str = "train") -> list[Scene]:
        """``n`` scenes of ``split`` (``"train"`` or ``"test"``) drawn with ``generator``."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        rng = python_random(generator)
        return [draw_scene(rng, split, self.max_shapes, self.colours, self.kinds, self.grid, self.image_size) for _ in range(n)]

    def collate(self, scenes: list[Scene], generator: torch.Generator) -> TaskBatch:
        """The batch of ``scenes`` (class docstring), the target references drawn with ``generator``."""
        references = [scene.references() for scene in scenes]
        chosen = [refs[int(torch.randint(len(refs), (), generator=generator))] for refs in references]
        vocab = self.vocabulary
        bos, eos = torch.tensor([vocab.BOS]), torch.tensor([vocab.EOS])

        def tokens(caption: str) -> Tensor:
            return torch.cat([bos, vocab.encode(caption), eos])

        most = max(len(refs) for refs in references)
        # Every reference of every scene, padded together: R * B sequences, reference r of scene b
        # at r * B + b; a scene with fewer than R references gets empty ones (all PAD once padded).
        flat = [tokens(refs[r]) if r < len(refs) else bos[:0] for r in range(most) for refs in references]
        padded = pad_sequence(flat, padding_value=vocab.PAD)  # (U', R * B), U' >= U
        targets = pad_sequence([tokens(caption) for caption in chosen], padding_value=vocab.PAD)  # (U, B)
        target_lengths = torch.tensor([len(caption.split()) + 2 for caption in chosen])
        steps = torch.arange(targets.size(0)).unsqueeze(1)  # (U, 1)
        return TaskBatch(
            inputs=torch.stack([render(scene, self.image_size, self.grid) for scene in scenes]),
            targets=targets,
            target_lengths=target_lengths,
            mask=steps < target_lengths,  # (U, B)
            references=padded.view(padded.size(0), most, len(scenes)).transpose(0, 1).contiguous(),
        )

    def _generate(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        return self.collate(self.scenes(batch_size, generator), generator)

    def test(self, n: int, seed: int) -> TaskBatch:
        """A fixed set of ``n`` test scenes: the same ``(n, seed)`` always gives the same set."""
        generator = torch.Generator().manual_seed(seed)
        return self.collate(self.scenes(n, generator, "test"), generator)
