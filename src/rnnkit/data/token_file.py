"""A prepared corpus: a text encoded once into a flat file of token ids, read through a memory map.

``rnnkit prepare`` (:func:`rnnkit.data.prepare.prepare_corpus`) writes a directory holding

- ``tokens.bin``: the ids of the text's characters, one after another, as little-endian
  unsigned integers of the smallest width that holds every id (:func:`token_dtype`): ``uint8``
  for up to 256 characters, ``uint16`` up to 65,536, ``uint32`` beyond;
- ``vocab.json``: the vocabulary, in the format of a run directory's (a JSON list of characters);
- ``corpus.json``: what the other two are: format and version, the dtype, the token count N,
  the source file's path and size, and the split: tokens ``0 ... split - 1`` train, tokens
  ``split ... N - 1`` validate, ``split = floor(N * (1 - validation_fraction))`` as for a text.

:meth:`PreparedCorpus.open` maps ``tokens.bin`` without reading it: the training and validation
ids are views of the map (``numpy.memmap``), and the operating system reads only the pages a
chunk touches (:class:`~rnnkit.data.stream.StreamBatches` gathers each chunk on demand). A
corpus of any size therefore trains in the memory of a small one.

Example::

    >>> corpus = PreparedCorpus.open("prepared/")   # doctest: +SKIP
    >>> batches = StreamBatches(corpus.train_ids, batch_size=32, seq_len=100)   # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DataError
from .vocabulary import Vocabulary

#: The files of a prepared corpus directory.
METADATA_FILE = "corpus.json"
TOKENS_FILE = "tokens.bin"
VOCABULARY_FILE = "vocab.json"

#: What ``corpus.json`` says it is; another version is refused rather than misread.
FORMAT = "rnnkit prepared corpus"
VERSION = 1

#: The token dtypes by name, narrowest first, each with the most ids it holds; always
#: little-endian on disk, whatever the machine.
TOKEN_DTYPES: dict[str, tuple[np.dtype, int]] = {
    "uint8": (np.dtype("<u1"), 1 << 8),
    "uint16": (np.dtype("<u2"), 1 << 16),
    "uint32": (np.dtype("<u4"), 1 << 32),
}


def token_dtype(vocabulary_size: int) -> str:
    """The name of the narrowest dtype of :data:`TOKEN_DTYPES` that holds ids ``0 ... size - 1``."""
    for name, (_, capacity) in TOKEN_DTYPES.items():
        if vocabulary_size <= capacity:
            return name
    raise ValueError(f"expected at most {1 << 32} characters in a vocabulary, got {vocabulary_size}")


def read_metadata(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """``corpus.json`` of a prepared corpus directory, checked field by field.

    Raises:
        DataError: if ``directory`` has no ``corpus.json`` or it is not this format and version.
    """
    file = Path(directory) / METADATA_FILE
    if not file.is_file():
        raise DataError(
            f"{directory} is not a corpus prepared by rnnkit prepare: it has no {METADATA_FILE}"
        )
    try:
        metadata = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{file} cannot be read as JSON: {error}") from None
    if not isinstance(metadata, dict) or (metadata.get("format"), metadata.get("version")) != (FORMAT, VERSION):
        found = (metadata.get("format"), metadata.get("version")) if isinstance(metadata, dict) else metadata
        raise DataError(f"{file} is not a prepared corpus of this rnnkit: expected {(FORMAT, VERSION)}, got {found}")
    expected = {"dtype": str, "tokens": int, "split": int, "validation_fraction": float, "source": dict}
    for key, kind in expected.items():
        value = metadata.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise DataError(f"{file}: expected {key!r} to be a {kind.__name__}, got {value!r}")
    if metadata["dtype"] not in TOKEN_DTYPES:
        raise DataError(f"{file}: expected a dtype in {sorted(TOKEN_DTYPES)}, got {metadata['dtype']!r}")
    if not 0 <= metadata["split"] <= metadata["tokens"]:
        raise DataError(f"{file}: expected a split in [0, {metadata['tokens']}], got {metadata['split']}")
    return metadata


@dataclass(frozen=True)
class PreparedCorpus:
    """A prepared corpus directory, opened: its vocabulary and its memory-mapped token ids.

    Build with :meth:`open`. ``tokens`` is read-only and read lazily: slicing it reads nothing,
    and indexing reads only the pages the indexed tokens lie on.
    """

    directory: Path
    vocabulary: Vocabulary
    tokens: np.ndarray  # (N,) numpy.memmap of TOKEN_DTYPES[dtype], mode "r"
    split: int  # tokens[:split] train, tokens[split:] validate
    validation_fraction: float

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> PreparedCorpus:
        """Open ``directory`` as written by ``rnnkit prepare``, checking its files agree.

        Raises:
            DataError: naming the file, if a file is missing, unreadable, or does not agree with
                ``corpus.json`` (a damaged or half-written corpus: prepare it again).
        """
        directory = Path(directory)
        metadata = read_metadata(directory)
        vocabulary_file = directory / VOCABULARY_FILE
        try:
            vocabulary = Vocabulary.from_json(json.loads(vocabulary_file.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, ValueError) as error:  # JSONDecodeError is a ValueError
            raise DataError(f"{vocabulary_file} is not a usable vocabulary: {error}") from None
        dtype, capacity = TOKEN_DTYPES[metadata["dtype"]]
        if len(vocabulary) > capacity:
            raise DataError(
                f"{vocabulary_file} has {len(vocabulary)} characters, more than {metadata['dtype']} ids can "
                "name; the corpus is damaged: prepare it again"
            )
        tokens_file = directory / TOKENS_FILE
        expected_bytes = metadata["tokens"] * dtype.itemsize
        size = tokens_file.stat().st_size if tokens_file.is_file() else None
        if size != expected_bytes or not expected_bytes:
            raise DataError(
                f"{tokens_file} should hold {metadata['tokens']:,} tokens of {metadata['dtype']} "
                f"({expected_bytes:,} bytes), got {'no file' if size is None else f'{size:,} bytes'}; "
                "the corpus is damaged: prepare it again"
            )
        tokens = np.memmap(tokens_file, dtype=dtype, mode="r", shape=(metadata["tokens"],))
        return cls(directory, vocabulary, tokens, metadata["split"], metadata["validation_fraction"])

    @property
    def train_ids(self) -> np.ndarray:
        """The training part, a view of the map: ``(split,)``."""
        return self.tokens[: self.split]

    @property
    def validation_ids(self) -> np.ndarray:
        """The validation part, a view of the map: ``(N - split,)``."""
        return self.tokens[self.split :]

    def __len__(self) -> int:
        """Tokens N, as many as the text's characters."""
        return len(self.tokens)
