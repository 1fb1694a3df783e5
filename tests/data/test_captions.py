"""Captioned scenes: the references describe the pixels, the splits hold out what they promise,
batches are reproducible, and images survive a PNG round trip while bad files are refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rnnkit.data.captions import COLOURS, HELD_OUT, SIZES, CaptionVocabulary, Shape, load_image, render, save_image
from rnnkit.data.tasks import CaptionsTask, make_task
from rnnkit.errors import RnnkitError

TASK = CaptionsTask(image_size=48, max_shapes=3)


def parse(caption: str) -> tuple[list[tuple[str | None, str, str]], list[str]]:
    """The (size or None, colour, kind) of each phrase of a caption, and the relations between."""
    words, shapes, relations, i = caption.split(), [], [], 0
    while True:
        assert words[i] == "a"
        size = words[i + 1] if words[i + 1] in SIZES else None
        i += 2 if size else 1
        shapes.append((size, words[i], words[i + 1]))
        i += 2
        if i == len(words):
            return shapes, relations
        relation = words[i] if words[i] in ("above", "below") else f"{words[i]} {words[i + 1]}"
        relations.append(relation)
        i += len(relation.split())


def test_references_describe_the_rendered_pixels():
    """Each shape's colour is at its centre pixel; every reference names the shapes in reading
    order or its reverse, each with its colour and kind (and size, if named), and every relation
    agrees with the shapes' centres (above: smaller y, left of: smaller x)."""
    scenes = TASK.scenes(60, torch.Generator().manual_seed(0))
    assert {len(scene.shapes) for scene in scenes} == {1, 2, 3}
    for scene in scenes:
        image = render(scene, TASK.image_size, TASK.grid)
        for shape in scene.shapes:
            y, x = (int(c) for c in shape.centre)
            torch.testing.assert_close(image[:, y, x], torch.tensor(COLOURS[shape.colour]))
        references = scene.references()
        assert len(set(references)) == len(references) == (2 if len(scene.shapes) == 1 else 4)
        for caption in references:
            assert any(describes(caption, order) for order in (scene.shapes, scene.shapes[::-1])), caption


def describes(caption: str, order: tuple[Shape, ...]) -> bool:
    """Whether ``caption`` names the shapes ``order`` in that order, with true relations."""
    named, relations = parse(caption)
    if len(named) != len(order):
        return False
    for (size, colour, kind), shape in zip(named, order):
        if (colour, kind) != (shape.colour, shape.kind) or size not in (None, shape.size):
            return False
    for relation, a, b in zip(relations, order[:-1], order[1:], strict=True):
        (ay, ax), (by, bx) = a.centre, b.centre
        if not {"above": ay < by, "below": ay > by, "left of": ax < bx, "right of": ax > bx}[relation]:
            return False
    return True


@pytest.mark.parametrize("split", ["train", "test"])
def test_splits_hold_out_the_combinations(split):
    scenes = TASK.scenes(300, torch.Generator().manual_seed(1), split)
    held_out = [any((s.colour, s.kind) in HELD_OUT for s in scene.shapes) for scene in scenes]
    assert all(held_out) if split == "test" else not any(held_out)


def test_batches_are_reproducible_and_their_targets_are_references():
    task = make_task("captions", image_size=32, max_shapes=2, grid=2)
    batch = task.batch(16, torch.Generator().manual_seed(3))
    again = task.batch(16, torch.Generator().manual_seed(3))
    torch.testing.assert_close(batch.inputs, again.inputs)
    assert torch.equal(batch.references, again.references)
    assert batch.inputs.shape == (16, 3, 32, 32)
    vocab = task.vocabulary
    longest = batch.references.size(1)  # U' >= U
    assert longest >= batch.targets.size(0)
    for b in range(16):
        target = batch.targets[:, b]
        padded = torch.nn.functional.pad(target, (0, longest - len(target)), value=vocab.PAD)
        assert any(torch.equal(padded, reference[:, b]) for reference in batch.references)
        assert target[0] == vocab.BOS and target[batch.target_lengths[b] - 1] == vocab.EOS
        assert batch.mask[:, b].sum() == batch.target_lengths[b]
    test = task.test(16, seed=3)
    assert not torch.equal(test.inputs, batch.inputs)


def test_vocabulary_round_trip_and_unknown_words():
    vocab = CaptionVocabulary()
    caption = "a large blue square left of a small yellow triangle"
    assert vocab.decode(torch.cat([torch.tensor([vocab.BOS]), vocab.encode(caption)])) == caption
    with pytest.raises(ValueError, match="expected caption words, got 'purple' in 'a purple circle'"):
        vocab.encode("a purple circle")


def test_png_round_trip(tmp_path: Path):
    image = TASK.batch(1, torch.Generator().manual_seed(0)).inputs[0]
    save_image(image, tmp_path / "scene.png")
    torch.testing.assert_close(load_image(tmp_path / "scene.png", 48), image, atol=1 / 255, rtol=0)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        pytest.param(None, r"expected an image file, got .*missing\.png, which does not exist", id="missing"),
        pytest.param(lambda p: p.write_text("not an image"), r"expected a PNG image, got .*bad\.png, which cannot be read", id="text"),
        pytest.param(lambda p: save_image(torch.rand(3, 20, 48), p), r"expected a 48x48 image, got .*bad\.png of 48x20", id="size"),
        pytest.param(lambda p: _grey_png(p), r"expected an RGB image, got .*bad\.png with 1 channel$", id="grey"),
    ],
)  # fmt: skip
def test_bad_image_files(tmp_path: Path, write, message):
    path = tmp_path / ("missing.png" if write is None else "bad.png")
    if write is not None:
        write(path)
    with pytest.raises(RnnkitError, match=message):
        load_image(path, 48)


def _grey_png(path: Path) -> None:
    from PIL import Image

    Image.new("L", (48, 48)).save(path)
