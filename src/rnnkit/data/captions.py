r"""Captioned scenes: small RGB images of coloured shapes, each with the captions a grammar gives it.

A scene holds one to ``max_shapes`` shapes, each of a kind (circle, square, triangle), a colour,
a size (small, large) and a cell of a ``grid`` × ``grid`` layout (one shape per cell, its centre
jittered inside the cell). It is rendered to a ``(3, S, S)`` float image in [0, 1] on a black
background and described by a grammar:

.. code-block:: text

    caption  := phrase (relation phrase)*
    phrase   := "a" [size] colour kind
    relation := "above" | "below" | "left of" | "right of"

The shapes are listed in reading order (by row, then column) or in the reverse order; the
relation of consecutive shapes A, B is "above"/"below" when their rows differ, else "left
of"/"right of". With or without the sizes, that makes up to four **references** per scene
("a small red circle above a blue square", "a red circle above a blue square", "a blue square
below a small red circle", ...), all correct; a captioner is scored against all of them.

**Splits.** Some (colour, kind) combinations (:data:`HELD_OUT`: red triangle, green circle, blue
square) never occur in the ``train`` split, of which the validation set is a second draw; every
``test`` scene holds at least one of them, so the test split measures how a model composes a
colour and a kind it has only seen apart (the compositional generalisation of Lake & Baroni 2018).

Images travel as PNG files: :func:`save_image` and :func:`load_image` (matplotlib's, Pillow
underneath); a file that is missing, not an image, or of the wrong size or channels is a one-line
:class:`~rnnkit.errors.RnnkitError`.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from ..errors import RnnkitError

#: Colour names and their RGB values in [0, 1]; a scene set uses the first ``colours`` of them.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.9, 0.1, 0.1),
    "green": (0.1, 0.8, 0.1),
    "blue": (0.2, 0.3, 1.0),
    "yellow": (0.95, 0.9, 0.1),
    "magenta": (0.9, 0.15, 0.9),
}
#: Shape kinds; a scene set uses the first ``kinds`` of them.
KINDS = ("circle", "triangle", "square")
SIZES = ("small", "large")
#: Shape radius as a fraction of a grid cell's side, per size.
RADIUS = {"small": 0.22, "large": 0.4}
#: (colour, kind) combinations absent from the train split and present in every test scene.
HELD_OUT = frozenset({("red", "triangle"), ("green", "circle"), ("blue", "square")})
SPLITS = ("train", "test")
#: Every word a caption can hold, in token order after the special tokens.
WORDS = ("a", *SIZES, *COLOURS, *KINDS, "above", "below", "left", "right", "of")


@dataclasses.dataclass(frozen=True)
class Shape:
    """One shape of a scene: its kind, colour, size, grid cell and centre in pixels."""

    kind: str
    colour: str
    size: str
    row: int
    column: int
    centre: tuple[float, float]  # (y, x) in pixels

    def phrase(self, with_size: bool) -> str:
        return f"a {self.size} {self.colour} {self.kind}" if with_size else f"a {self.colour} {self.kind}"


def relation(a: Shape, b: Shape) -> str:
    """Where ``a`` lies from ``b``: vertical when their rows differ, else horizontal."""
    if a.row != b.row:
        return "above" if a.row < b.row else "below"
    return "left of" if a.column < b.column else "right of"


@dataclasses.dataclass(frozen=True)
class Scene:
    """A set of shapes in distinct cells, listed in reading order (row, then column)."""

    shapes: tuple[Shape, ...]

    def references(self) -> tuple[str, ...]:
        """Every caption the grammar (module docstring) gives the scene, without repeats."""
        captions: list[str] = []
        for order in (self.shapes, self.shapes[::-1]):
            for with_size in (True, False):
                words = [order[0].phrase(with_size)]
                for a, b in zip(order, order[1:]):
                    words += [relation(a, b), b.phrase(with_size)]
                caption = " ".join(words)
                if caption not in captions:
                    captions.append(caption)
        return tuple(captions)


def draw_scene(
    rng: random.Random, split: str, max_shapes: int, colours: int, kinds: int, grid: int, image_size: int
) -> Scene:
    """One scene of ``split`` (see the module docstring), drawn with ``rng``.

    The number of shapes is uniform in ``1..max_shapes``; cells, kinds (the first ``kinds`` of
    :data:`KINDS`), colours (the first ``colours`` of :data:`COLOURS`) and sizes are uniform; a
    draw that does not belong to the split is redrawn.
    """
    palette, shapes_drawn = list(COLOURS)[:colours], KINDS[:kinds]
    cell = image_size / grid
    while True:
        cells = sorted(rng.sample(range(grid * grid), rng.randint(1, max_shapes)))
        shapes = []
        for index in cells:
            row, column = divmod(index, grid)
            size = rng.choice(SIZES)
            # Jitter the centre as far as the shape still fits its cell.
            room = cell * (0.5 - RADIUS[size]) * 0.9
            centre = tuple(cell * (k + 0.5) + rng.uniform(-room, room) for k in (row, column))
            shapes.append(Shape(rng.choice(shapes_drawn), rng.choice(palette), size, row, column, centre))
        held_out = any((s.colour, s.kind) in HELD_OUT for s in shapes)
        if held_out == (split == "test"):
            return Scene(tuple(shapes))


def render(scene: Scene, image_size: int, grid: int) -> Tensor:
    """The scene as a ``(3, S, S)`` float image in [0, 1], S = ``image_size``, black background.

    A shape of radius r (:data:`RADIUS` times the cell side) centred at (y_c, x_c) covers the
    pixel centres (y, x) with: circle (y - y_c)² + (x - x_c)² <= r²; square |y - y_c|, |x - x_c|
    <= 0.85 r (the same area as the circle, near enough); triangle, pointing up,
    -r <= y - y_c <= r and |x - x_c| <= (y - y_c + r) / 2.
    """
    image = torch.zeros(3, image_size, image_size)
    pixels = torch.arange(image_size, dtype=torch.float32) + 0.5
    y, x = pixels.view(-1, 1), pixels.view(1, -1)  # (S, 1), (1, S)
    cell = image_size / grid
    for shape in scene.shapes:
        r = RADIUS[shape.size] * cell
        dy, dx = y - shape.centre[0], x - shape.centre[1]
        if shape.kind == "circle":
            inside = dy**2 + dx**2 <= r**2
        elif shape.kind == "square":
            inside = (dy.abs() <= 0.85 * r) & (dx.abs() <= 0.85 * r)
        else:
            inside = (dy.abs() <= r) & (dx.abs() <= (dy + r) / 2)
        image[:, inside] = torch.tensor(COLOURS[shape.colour]).unsqueeze(1)  # (3, pixels inside)
    return image


class CaptionVocabulary:
    """The caption words plus the special tokens ``PAD`` = 0, ``BOS`` = 1, ``EOS`` = 2 (the ids of
    :class:`~rnnkit.data.tasks.TokenVocabulary`); word i of :data:`WORDS` is token i + 3.

    Example:
        >>> vocab = CaptionVocabulary()
        >>> ids = vocab.encode("a red circle")
        >>> vocab.decode([vocab.BOS, *ids.tolist(), vocab.EOS, vocab.PAD])
        'a red circle'
    """

    PAD, BOS, EOS = 0, 1, 2
    SPECIALS = ("<pad>", "<bos>", "<eos>")

    def __init__(self) -> None:
        self.words = (*self.SPECIALS, *WORDS)
        self._index = {word: token for token, word in enumerate(self.words)}

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, caption: str) -> Tensor:
        """The token ids of the caption's words, ``(words,)`` long, without BOS or EOS."""
        unknown = [word for word in caption.split() if word not in self._index or word in self.SPECIALS]
        if unknown:
            raise ValueError(f"expected caption words, got {unknown[0]!r} in {caption!r}")
        return torch.tensor([self._index[word] for word in caption.split()], dtype=torch.long)

    def decode(self, ids: Sequence[int] | Tensor) -> str:
        """The caption of a token sequence: after a leading BOS, up to the first EOS or PAD;
        a misplaced BOS shows as ``<bos>`` (a model's mistake, shown rather than hidden)."""
        ids = ids.tolist() if isinstance(ids, Tensor) else list(ids)
        start = 1 if ids[:1] == [self.BOS] else 0
        words = []
        for token in ids[start:]:
            if token in (self.EOS, self.PAD):
                break
            words.append(self.words[token])
        return " ".join(words)


def save_image(image: Tensor, path: Path) -> None:
    """Write a ``(3, S, S)`` image in [0, 1] to ``path`` as an RGB PNG."""
    from matplotlib import image as mpimg  # matplotlib is slow to import: only when used

    mpimg.imsave(path, image.permute(1, 2, 0).clamp(0, 1).numpy(), format="png")


def load_image(path: Path, image_size: int) -> Tensor:
    """The ``(3, S, S)`` float image in [0, 1] of a PNG written by :func:`save_image` (an alpha
    channel is dropped); RnnkitError (one line) if the file is missing, not an image, or not an
    RGB image of ``image_size`` × ``image_size`` pixels."""
    from matplotlib import image as mpimg

    if not Path(path).is_file():
        raise RnnkitError(f"expected an image file, got {path}, which does not exist")
    try:
        array = mpimg.imread(path)  # (H, W, C) float in [0, 1] for a PNG
    except (OSError, ValueError, SyntaxError) as error:  # Pillow's UnidentifiedImageError is an OSError
        raise RnnkitError(f"expected a PNG image, got {path}, which cannot be read ({error})") from None
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        channels = 1 if array.ndim == 2 else array.shape[2]
        raise RnnkitError(f"expected an RGB image, got {path} with {channels} channel{'s' * (channels != 1)}")
    if array.shape[:2] != (image_size, image_size):
        raise RnnkitError(
            f"expected a {image_size}x{image_size} image, got {path} of {array.shape[1]}x{array.shape[0]}"
        )
    image = torch.from_numpy(array[:, :, :3].copy()).permute(2, 0, 1)  # (3, S, S)
    if not image.is_floating_point():  # 8-bit data from a non-PNG format
        image = image / 255.0
    return image.float()
