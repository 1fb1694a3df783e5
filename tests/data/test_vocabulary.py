"""Tests for rnnkit.data.vocabulary: ids, round trips, JSON, and the errors users see."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data.vocabulary import Vocabulary
from rnnkit.errors import DataError

TEXT = "To be, or not to be: that is the question.\nWhether 'tis nobler—\n"


def test_from_text_is_sorted_distinct_characters():
    vocab = Vocabulary.from_text("hello, world")
    assert vocab.chars == (" ", ",", "d", "e", "h", "l", "o", "r", "w")
    assert len(vocab) == 9
    assert vocab.index("h") == 4
    assert "h" in vocab and "z" not in vocab


def test_from_text_rejects_empty_text():
    with pytest.raises(DataError, match="empty"):
        Vocabulary.from_text("")


def test_encode_decode_round_trip():
    vocab = Vocabulary.from_text(TEXT)
    ids = vocab.encode(TEXT)
    assert ids.dtype == torch.long and ids.shape == (len(TEXT),)
    assert ids.tolist() == [vocab.chars.index(char) for char in TEXT]
    assert vocab.decode(ids) == TEXT  # 1-D tensor
    assert vocab.decode(ids.tolist()) == TEXT  # list of ints
    assert vocab.decode(np.asarray(ids.tolist())) == TEXT  # numpy integers
    assert vocab.decode([]) == "" and vocab.encode("").shape == (0,)


@given(st.text(min_size=1, max_size=200))
def test_round_trip_any_text(text):
    vocab = Vocabulary.from_text(text)
    assert vocab.decode(vocab.encode(text)) == text
    assert Vocabulary.from_json(json.loads(json.dumps(vocab.to_json()))) == vocab


def test_json_round_trip_and_equality():
    vocab = Vocabulary.from_text(TEXT)
    obj = vocab.to_json()
    assert obj == list(vocab.chars)
    restored = Vocabulary.from_json(json.loads(json.dumps(obj)))
    assert restored == vocab and hash(restored) == hash(vocab)
    assert restored.encode(TEXT).equal(vocab.encode(TEXT))
    assert Vocabulary(["b", "a"]) != Vocabulary(["a", "b"])  # order is part of the meaning
    assert vocab != vocab.to_json()


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"chars": ["a"]}, "must be a JSON list of characters, got dict"),
        ("abc", "must be a JSON list of characters, got str"),
        ([], "at least one character"),
        (["a", "bc"], "entry 1 must be a single character, got 'bc'"),
        (["a", ""], "entry 1 must be a single character, got ''"),
        (["a", 7], "entry 1 must be a single character, got 7"),
        (["a", "b", "a"], "'a' twice (entries 0 and 2)"),
    ],
    ids=["dict", "string", "empty", "two-chars", "empty-string", "not-a-string", "duplicate"],
)
def test_from_json_rejects_malformed(obj, problem):
    with pytest.raises(ValueError) as info:
        Vocabulary.from_json(obj)
    assert problem in str(info.value)


def test_unknown_characters_are_named():
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(DataError) as info:
        vocab.encode("a€bé€", what="the prime text")
    assert str(info.value) == (
        "the prime text has 2 characters outside the model's vocabulary: 'é', '€'"
    )


def test_unknown_characters_message_is_bounded():
    vocab = Vocabulary.from_text("a")
    with pytest.raises(DataError) as info:
        vocab.encode("bcdefgh\t")
    assert str(info.value) == (
        "the text has 8 characters outside the model's vocabulary: "
        "'\\t', 'b', 'c', 'd', 'e', ... (3 more)"
    )
    with pytest.raises(DataError, match="has 1 character outside"):
        vocab.encode("ab")


@pytest.mark.parametrize(
    ("ids", "problem"),
    [
        ([0, 3], "id 3 at position 1 is outside the vocabulary (expected 0 to 2)"),
        ([-1], "id -1 at position 0 is outside the vocabulary"),
        (torch.tensor([2, 1, 5]), "id 5 at position 2 is outside the vocabulary"),
        (torch.tensor([[0, 1]]), "1-D tensor"),
        (torch.tensor([0.0]), "integer ids"),
        ([0, 1.0], "id at position 1 is not an integer"),
        ([True], "id at position 0 is not an integer"),
    ],
    ids=["too-large", "negative", "tensor-too-large", "2-d", "float-tensor", "float", "bool"],
)
def test_decode_rejects_bad_ids(ids, problem):
    vocab = Vocabulary.from_text("abc")
    with pytest.raises(ValueError) as info:
        vocab.decode(ids)
    assert problem in str(info.value)


@given(st.text(min_size=1, max_size=200), st.lists(st.integers(min_value=0, max_value=200), max_size=5))
def test_from_blocks_is_from_text_of_the_joined_blocks(text, cuts):
    """A text streamed in pieces (cut anywhere) gives the vocabulary and ids of the whole."""
    cuts = sorted({0, len(text), *(min(cut, len(text)) for cut in cuts)})
    blocks = [text[start:stop] for start, stop in itertools.pairwise(cuts)]
    vocab = Vocabulary.from_blocks(blocks)
    assert vocab == Vocabulary.from_text(text) and vocab.chars == tuple(sorted(set(text)))
    joined = np.concatenate([vocab.encode_array(block, np.uint16) for block in blocks])
    assert joined.dtype == np.uint16 and joined.tolist() == [vocab.index(char) for char in text]


def test_encode_array_names_unknown_characters_below_and_above_the_vocabulary():
    vocab = Vocabulary.from_text("bdf\U0001f600")
    assert vocab.encode_array("fdb\U0001f600", np.uint8).tolist() == [2, 1, 0, 3]
    for text, unknown in [("bad", "'a'"), ("cafe", "'a', 'c', 'e'"), ("b\U0001f601", "'\U0001f601'")]:
        with pytest.raises(DataError, match=f"outside the model's vocabulary: {unknown}$"):
            vocab.encode_array(text, np.uint8)
