"""Tests for rnnkit.data.corpus: bundled corpora, reading user files, the train/validation split."""

from __future__ import annotations

import math
import socket
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rnnkit.data import corpus
from rnnkit.data.corpus import (
    BUNDLED_CORPORA,
    load_corpus,
    read_text_file,
    split_train_validation,
)
from rnnkit.errors import DataError


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return load_corpus("shakespeare")


def test_bundled_corpora_names():
    assert BUNDLED_CORPORA == ("shakespeare", "python")


def test_shakespeare_loads_without_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("load_corpus tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    assert len(load_corpus("shakespeare")) >= 1_000_000


def test_shakespeare_is_the_works(shakespeare):
    assert len(shakespeare) >= 1_000_000
    assert shakespeare.count("\nby William Shakespeare\n") == 42  # one title block per work
    for line in (
        "To be, or not to be,--that is the question:--",  # Hamlet
        "Shall I compare thee to a summer's day?",  # Sonnet XVIII
        "Now is the winter of our discontent",  # Richard III
    ):
        assert line in shakespeare


def test_shakespeare_has_no_gutenberg_boilerplate(shakespeare):
    lowered = shakespeare.lower()
    for phrase in ("gutenberg", "*** start of", "*** end of", "this etext", "ebook", "http"):
        assert phrase not in lowered


def test_shakespeare_is_normalised(shakespeare):
    assert "\r" not in shakespeare
    assert " \n" not in shakespeare  # trailing whitespace stripped
    assert shakespeare.endswith("\n") and not shakespeare.endswith("\n\n")
    # works follow one another in file-name order, one blank line apart
    assert "[Exeunt.]\n\nTHE TEMPEST\n\nby William Shakespeare\n" in shakespeare


def test_python_corpus_is_deterministic_code_within_cap():
    first = load_corpus("python")
    assert first == load_corpus("python")
    assert 0 < len(first) <= corpus.PYTHON_CORPUS_MAX_CHARS
    assert "def " in first and "import " in first
    assert "\r\n" not in first


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def test_python_corpus_order_skips_and_cap(tmp_path, monkeypatch):
    stdlib = tmp_path / "lib"
    _write(stdlib / "b.py", b"B = 2\r\n\n\n")  # CRLF normalised, trailing blank lines trimmed
    _write(stdlib / "a.py", b"A = 1\n")
    _write(stdlib / "pkg" / "c.py", b"C = 3")  # gets a final newline
    _write(stdlib / "pkg" / "latin1.py", "X = 'é'\n".encode("latin-1"))  # not UTF-8: skipped
    _write(stdlib / "site-packages" / "third_party.py", b"THIRD = 0\n")  # not the stdlib
    _write(stdlib / "notes.txt", b"not python\n")
    monkeypatch.setattr(corpus.sysconfig, "get_paths", lambda: {"stdlib": str(stdlib)})

    assert load_corpus("python") == "A = 1\n\nB = 2\n\nC = 3\n"
    monkeypatch.setattr(corpus, "PYTHON_CORPUS_MAX_CHARS", len("A = 1\n\nB = 2\n"))
    assert load_corpus("python") == "A = 1\n\nB = 2\n"  # whole files only, never past the cap


def test_python_corpus_without_sources(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    with pytest.raises(DataError, match="no Python standard-library sources"):
        load_corpus("python")


def test_unknown_corpus_lists_known_names():
    with pytest.raises(DataError) as info:
        load_corpus("tolstoy")
    message = str(info.value)
    assert "'tolstoy'" in message and "'shakespeare'" in message and "'python'" in message


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "is empty"),
        (b"\xef\xbb\xbf", "is empty"),  # only a byte-order mark
        (b"abc\x00def", "contains NUL bytes"),
        (b"good text\n\xff bad", "is not valid UTF-8 (first bad byte at offset 10)"),
        ("caf\u00e9".encode("latin-1"), "is not valid UTF-8 (first bad byte at offset 3)"),
    ],
    ids=["empty", "bom-only", "nul-bytes", "invalid-utf8", "latin-1"],
)
def test_read_text_file_rejects_bad_content(tmp_path, data, problem):
    path = tmp_path / "notes.txt"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read_text_file(path)
    message = str(info.value)
    assert str(path) in message and problem in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("kind", "problem"),
    [("missing", "does not exist"), ("directory", "is a directory")],
    ids=["missing", "directory"],
)
def test_read_text_file_rejects_non_files(tmp_path, kind, problem):
    path = tmp_path / "corpus.txt"
    if kind == "directory":
        path.mkdir()
    with pytest.raises(DataError) as info:
        read_text_file(str(path))
    assert str(path) in str(info.value) and problem in str(info.value)


def test_read_text_file_normalises(tmp_path):
    path = tmp_path / "ok.txt"
    path.write_bytes("\ufeffline one\r\nligne deux — é\r\n".encode())
    assert read_text_file(path) == "line one\nligne deux — é\n"


def test_split_reproduces_tiny_shakespeare():
    text = "x" * 1_115_394
    train, validation = split_train_validation(text, 0.1)
    assert (len(train), len(validation)) == (1_003_854, 111_540)


def test_split_keeps_order():
    text = "".join(chr(ord("a") + i) for i in range(10))
    assert split_train_validation(text, 0.3) == ("abcdefg", "hij")
    assert split_train_validation(text, 0.0) == (text, "")


@pytest.mark.parametrize("fraction", [1.0, 1.5, -0.1, math.nan], ids=["one", "1.5", "neg", "nan"])
def test_split_rejects_bad_fraction(fraction):
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        split_train_validation("abc", fraction)


@given(
    n=st.integers(min_value=0, max_value=10_000),
    percent=st.integers(min_value=0, max_value=99),
)
def test_split_sizes_follow_the_decimal_fraction(n, percent):
    text = "a" * n
    train, validation = split_train_validation(text, percent / 100)
    assert train + validation == text
    assert len(train) == math.floor(n * (1 - Fraction(percent, 100)))
