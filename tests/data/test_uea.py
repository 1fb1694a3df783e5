"""The UEA .ts reader on hand-written files, and the real Japanese Vowels files when installed."""

from __future__ import annotations

import math
from importlib import metadata

import pytest
import torch

from rnnkit.data import uea
from rnnkit.data.uea import japanese_vowels, read_ts
from rnnkit.errors import DataError

HEADER = """# a comment before the header
@problemName Toy
@univariate false
@dimensions 2
@equalLength false
@classLabel true up down
@data
"""


def write(tmp_path, body: str, header: str = HEADER):
    path = tmp_path / "toy.ts"
    path.write_text(header + body)
    return path


def test_variable_length_cases_are_time_major_with_labels_in_header_order(tmp_path):
    path = write(tmp_path, "1,2,3:4,5,6:down\n\n# a comment between cases\n7,?:8,9:up\n")
    dataset = read_ts(path)
    assert dataset.class_names == ("up", "down")
    assert dataset.labels == ["down", "up"]
    assert dataset.label_indices().tolist() == [1, 0]
    first, second = dataset.sequences
    assert first.dtype == torch.float64
    torch.testing.assert_close(first, torch.tensor([[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]], dtype=torch.float64))
    assert second.shape == (2, 2)
    assert math.isnan(second[1, 0].item()) and second[1, 1].item() == 9.0  # '?' is missing


def test_without_class_label_header_the_classes_are_the_sorted_labels(tmp_path):
    path = write(tmp_path, "1:b\n2:a\n", header="@problemName Toy\n@data\n")
    assert read_ts(path).class_names == ("a", "b")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("1,2:3,x:up\n", "line 8, channel 2: could not convert string to float: 'x'"),
        ("1,2,3:4,5:up\n", r"line 8: the channels differ in length \(\[2, 3\]\)"),
        ("1,2:3,4:up\n1,2:down\n", "line 9: 1 channels, but the first case has 2"),
        ("1,2:3,4:sideways\n", "line 8: class label 'sideways' is not declared"),
        ("1,2:3,4:\n", "line 8: expected channels separated by ':' and a class label last"),
    ],
    ids=["not-a-number", "ragged-channels", "channel-count", "unknown-label", "no-label"],
)
def test_a_malformed_line_is_named_by_file_and_line(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(DataError, match=message) as error:
        read_ts(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("@problemName Toy\n", "no @data line"),
        ("@problemName Toy\n@data\n# nothing\n", "no cases after @data"),
        ("1,2:up\n", "line 1: expected a header line"),
        ("@timeStamps true\n@data\n(0,1):up\n", "line 1: timestamped .ts data is not supported"),
    ],
    ids=["no-data", "empty-data", "data-before-header", "timestamps"],
)
def test_a_file_without_usable_data_is_refused(tmp_path, text, message):
    with pytest.raises(DataError, match=message):
        read_ts(write(tmp_path, text, header=""))


def test_a_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="cannot read the .ts file"):
        read_ts(tmp_path / "absent.ts")


def test_without_a_data_package_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setattr(uea, "UEA_DATA_PACKAGES", ("rnnkit-no-such-package",))
    with pytest.raises(DataError, match=r"pip install --no-deps aeon==1\.6\.0"):
        japanese_vowels("train")


def test_an_unknown_split_is_refused():
    with pytest.raises(DataError, match="split must be one of train, test, got 'validation'"):
        japanese_vowels("validation")


def _installed(package: str) -> bool:
    try:
        metadata.distribution(package)
    except metadata.PackageNotFoundError:
        return False
    return True


needs_data = pytest.mark.skipif(
    not any(_installed(p) for p in uea.UEA_DATA_PACKAGES),
    reason="the Japanese Vowels files come from aeon or sktime: pip install --no-deps aeon==1.6.0",
)


@needs_data
@pytest.mark.parametrize(("split", "cases"), [("train", 270), ("test", 370)], ids=["train", "test"])
def test_japanese_vowels_has_the_published_shape(split, cases):
    sequences, labels = japanese_vowels(split)
    assert len(sequences) == cases and labels.shape == (cases,) and labels.dtype == torch.int64
    assert all(s.dim() == 2 and s.size(1) == 12 and s.dtype == torch.get_default_dtype() for s in sequences)
    assert all(torch.isfinite(s).all() for s in sequences)
    assert sorted(labels.unique().tolist()) == list(range(9))
    lengths = [s.size(0) for s in sequences]
    assert 7 <= min(lengths) and max(lengths) <= 29
    if split == "train":  # 30 utterances per speaker, in speaker order (the file's labels 1..9)
        assert labels.tolist() == [speaker for speaker in range(9) for _ in range(30)]


@needs_data
def test_japanese_vowels_lengths_span_7_to_29_and_the_test_classes_are_unbalanced():
    train, _ = japanese_vowels("train")
    test, test_labels = japanese_vowels("test")
    lengths = [s.size(0) for s in train + test]
    assert (min(lengths), max(lengths)) == (7, 29)
    # Kudo et al.'s test set: 24 to 88 utterances per speaker
    assert test_labels.bincount().tolist() == [31, 35, 88, 44, 29, 24, 40, 50, 29]


@needs_data
def test_japanese_vowels_dtype_is_applied():
    sequences, _ = japanese_vowels("test", dtype=torch.float64)
    assert sequences[0].dtype == torch.float64
    assert sequences[0].shape == (19, 12)
