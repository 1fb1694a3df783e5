"""Tests for rnnkit.data.prepare and rnnkit.data.token_file: a prepared corpus holds exactly the ids
of the text as read into memory, whatever the blocks it was streamed in, and its chunks are the
in-memory chunks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rnnkit.data.corpus import read_text_blocks, read_text_file, split_point, split_train_validation
from rnnkit.data.prepare import STAGES, prepare_corpus
from rnnkit.data.stream import StreamBatches
from rnnkit.data.token_file import METADATA_FILE, TOKENS_FILE, PreparedCorpus, token_dtype
from rnnkit.data.vocabulary import Vocabulary
from rnnkit.errors import DataError

# Every kind of boundary a block can cut: characters of 2, 3 and 4 UTF-8 bytes, \r\n, a lone \r
# (kept), \r\r\n (one \r kept), a byte-order mark (dropped) and a second one (kept: not leading).
TRICKY = "\ufeffé\r\nab€\r\r\nc\U0001f600\rd\ufeff\r\n\r\nend\r"
TRICKY_NORMALISED = "é\nab€\r\nc\U0001f600\rd\ufeff\n\nend\r"
BLOCK_SIZES = [1, 2, 3, 4, 5, 7, 1 << 20]


@pytest.fixture
def tricky_file(tmp_path):
    path = tmp_path / "tricky.txt"
    path.write_bytes(TRICKY.encode("utf-8"))
    return path


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_blocks_join_into_the_text_read_whole(tricky_file, block_size):
    """Characters and \\r\\n split across blocks are decoded and normalised as in one read."""
    assert read_text_file(tricky_file) == TRICKY_NORMALISED
    blocks = list(read_text_blocks(tricky_file, block_size))
    assert "".join(blocks) == TRICKY_NORMALISED
    assert all(blocks)  # never an empty block


@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_prepared_ids_are_the_in_memory_ids(tricky_file, tmp_path, block_size):
    corpus = prepare_corpus(tricky_file, tmp_path / "prepared", 0.25, block_size=block_size)
    text = read_text_file(tricky_file)
    vocabulary = Vocabulary.from_text(text)
    assert corpus.vocabulary == vocabulary
    assert np.array_equal(corpus.tokens, vocabulary.encode(text).numpy())
    assert corpus.split == split_point(len(text), 0.25) == len(split_train_validation(text, 0.25)[0])
    assert (corpus.tokens.dtype, corpus.validation_fraction) == (np.dtype("uint8"), 0.25)
    metadata = json.loads((tmp_path / "prepared" / METADATA_FILE).read_text(encoding="utf-8"))
    assert metadata["source"] == {"path": str(tricky_file.resolve()), "bytes": tricky_file.stat().st_size}
    assert metadata["tokens"] == len(text) and metadata["vocabulary"] == "vocab.json"


@pytest.mark.parametrize(
    ("size", "expected"),
    [(1, "uint8"), (256, "uint8"), (257, "uint16"), (65_536, "uint16"), (65_537, "uint32")],
)
def test_token_dtype_is_the_narrowest(size, expected):
    assert token_dtype(size) == expected


@pytest.mark.parametrize(("distinct", "dtype"), [(300, "uint16"), (70_000, "uint32")], ids=["uint16", "uint32"])
def test_wide_vocabularies_are_stored_wide(tmp_path, distinct, dtype):
    """Beyond 256 characters the ids take two bytes, beyond 65,536 four, and read back exactly."""
    characters = [chr(c) for c in range(0x20, 0x20 + distinct + 2048) if not 0xD800 <= c < 0xE000][:distinct]
    text = "".join(reversed(characters)) * 2
    path = tmp_path / "wide.txt"
    path.write_text(text, encoding="utf-8")
    corpus = prepare_corpus(path, tmp_path / "prepared", block_size=4096)
    assert corpus.tokens.dtype == np.dtype(dtype)
    assert (tmp_path / "prepared" / TOKENS_FILE).stat().st_size == len(text) * np.dtype(dtype).itemsize
    assert np.array_equal(corpus.tokens, Vocabulary.from_text(text).encode(text).numpy())


@pytest.mark.parametrize("drop_last", [True, False], ids=["train", "evaluate"])
def test_chunks_of_the_prepared_file_equal_the_in_memory_chunks(tmp_path, drop_last):
    """What training and evaluation read: every chunk of the memory-mapped training and
    validation parts equals the chunk of the same text encoded in memory."""
    text = read_text_file(_sample_text(tmp_path))
    corpus = prepare_corpus(tmp_path / "sample.txt", tmp_path / "prepared", 0.1, block_size=1000)
    train_text, validation_text = split_train_validation(text, 0.1)
    vocabulary = Vocabulary.from_text(text)
    for part, ids, (batch, steps) in [
        (train_text, corpus.train_ids, (8, 25)),
        (validation_text, corpus.validation_ids, (4, 30)),
    ]:
        mapped = StreamBatches(ids, batch, steps, drop_last=drop_last)
        in_memory = StreamBatches(vocabulary.encode(part), batch, steps, drop_last=drop_last)
        assert len(mapped) == len(in_memory) > 1
        for (inputs, targets), (expected_inputs, expected_targets) in zip(mapped, in_memory, strict=True):
            assert inputs.equal(expected_inputs) and targets.equal(expected_targets)


def _sample_text(tmp_path):
    """A few thousand characters of varied text, with \\r\\n line endings, in tmp_path/sample.txt."""
    lines = [f"LINE {i}: {'To be, or not to be — that is the question.'[i % 7 :]} ¿{i * i}?" for i in range(150)]
    path = tmp_path / "sample.txt"
    path.write_bytes("\r\n".join(lines).encode("utf-8"))
    return path


def test_progress_counts_every_byte_of_both_passes(tricky_file, tmp_path):
    seen: list[tuple[str, int]] = []
    prepare_corpus(tricky_file, tmp_path / "prepared", block_size=3, on_progress=lambda *report: seen.append(report))
    size = tricky_file.stat().st_size
    for stage in STAGES:
        counts = [n for name, n in seen if name == stage]
        assert sum(counts) == size and max(counts) == 3
    assert [name for name, _ in seen] == sorted((name for name, _ in seen), key=STAGES.index)  # pass 1, then 2


# ------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty"),
        (b"\xef\xbb\xbf", "is empty"),
        (b"abcdefgh\x00", "contains NUL bytes"),
        (b"good text\n\xff bad", "is not valid UTF-8 (first bad byte at offset 10)"),
        ("abcdeé".encode()[:-1], "is not valid UTF-8 (first bad byte at offset 5)"),  # cut short at the end
        ("abé€".encode()[:3] + b"x", "is not valid UTF-8 (first bad byte at offset 2)"),  # straddles blocks
    ],
    ids=["empty", "bom-only", "nul-late", "invalid-late", "truncated-at-end", "bad-across-blocks"],
)
def test_bad_files_are_refused_naming_the_offset_in_the_file(tmp_path, data, problem):
    """The byte offsets count from the start of the file, whichever block holds the fault."""
    path = tmp_path / "bad.txt"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        prepare_corpus(path, tmp_path / "prepared", block_size=3)
    assert str(path) in str(info.value) and problem in str(info.value)
    assert not (tmp_path / "prepared").exists()  # nothing is written for a file that cannot be used


def test_missing_file_and_directory_are_refused(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        prepare_corpus(tmp_path / "missing.txt", tmp_path / "prepared")
    with pytest.raises(DataError, match="is a directory, not a text file"):
        prepare_corpus(tmp_path, tmp_path / "prepared")


def test_output_must_be_new_empty_or_the_same_source(tmp_path):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("abc" * 10, encoding="utf-8")
    second.write_text("xyz" * 10, encoding="utf-8")
    (tmp_path / "empty").mkdir()
    prepare_corpus(first, tmp_path / "empty")  # an empty directory is fine
    with pytest.raises(DataError, match=f"holds a corpus prepared from {first}, not a corpus of {second}"):
        prepare_corpus(second, tmp_path / "empty")
    first.write_text("abcd" * 10, encoding="utf-8")  # the same source, changed: prepared again
    corpus = prepare_corpus(first, tmp_path / "empty", 0.5)
    assert (len(corpus), corpus.vocabulary.chars, corpus.split) == (40, ("a", "b", "c", "d"), 20)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.md").write_text("mine", encoding="utf-8")
    with pytest.raises(DataError, match="is not empty: it holds other files"):
        prepare_corpus(first, tmp_path / "other")
    with pytest.raises(DataError, match="exists and is not a directory"):
        prepare_corpus(first, second)
    assert (tmp_path / "other" / "notes.md").read_text(encoding="utf-8") == "mine"


def test_damaged_corpora_are_refused(tmp_path):
    source = tmp_path / "text.txt"
    source.write_text("hello world\n" * 5, encoding="utf-8")
    directory = tmp_path / "prepared"
    prepare_corpus(source, directory)
    with open(directory / TOKENS_FILE, "r+b") as tokens:  # a half-written token file
        tokens.truncate(7)
    with pytest.raises(DataError, match="should hold 60 tokens of uint8 .60 bytes., got 7 bytes; the corpus is damaged"):
        PreparedCorpus.open(directory)
    metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    (directory / METADATA_FILE).write_text(json.dumps({**metadata, "version": 99}), encoding="utf-8")
    with pytest.raises(DataError, match="expected .'rnnkit prepared corpus', 1., got .'rnnkit prepared corpus', 99."):
        PreparedCorpus.open(directory)
    (directory / METADATA_FILE).unlink()
    with pytest.raises(DataError, match="is not a corpus prepared by rnnkit prepare: it has no corpus.json"):
        PreparedCorpus.open(directory)
