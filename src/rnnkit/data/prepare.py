"""Preparing a corpus: a UTF-8 text file of any size encoded once into a token file, in constant memory.

Two passes stream over the file, :data:`~rnnkit.data.corpus.BLOCK_SIZE` bytes at a time
(:func:`~rnnkit.data.corpus.read_text_blocks`, which normalises the text exactly as
:func:`~rnnkit.data.corpus.read_text_file` does: byte-order mark dropped, ``\\r\\n`` made ``\\n``):

1. the character set, a flag per code point: the vocabulary, sorted by code point as
   :meth:`Vocabulary.from_text <rnnkit.data.vocabulary.Vocabulary.from_text>` would build it from
   the whole text;
2. every block's ids, narrowed to the smallest unsigned dtype that holds the vocabulary, appended
   to the token file.

The result (:mod:`rnnkit.data.token_file`) is the text's ids exactly as
``Vocabulary.from_text(text).encode(text)`` of the whole text, so training from it is training
from the text. Memory stays at a few times the block size whatever the file's size.

The train/validation split is fixed here, by ``validation_fraction``: the last part of the
tokens validates, as :func:`~rnnkit.data.corpus.split_train_validation` cuts a text, and every
reader of the corpus (training, resuming, evaluation) uses that one recorded split point.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from pathlib import Path

from ..errors import DataError
from ..files import atomic_write_text
from .corpus import BLOCK_SIZE, read_text_blocks, split_point
from .token_file import (
    FORMAT,
    METADATA_FILE,
    TOKEN_DTYPES,
    TOKENS_FILE,
    VERSION,
    VOCABULARY_FILE,
    PreparedCorpus,
    read_metadata,
    token_dtype,
)
from .vocabulary import Vocabulary

log = logging.getLogger(__name__)

#: ``on_progress(stage, n_bytes)`` is told, per block read, which pass read it and how many bytes.
OnProgress = Callable[[str, int], None]

#: The two passes' names, as ``on_progress`` receives them.
STAGES = ("characters", "tokens")

_PARTIAL = ".partial"  # suffix of a file being written; renamed into place once complete


def prepare_corpus(
    source: str | os.PathLike[str],
    directory: str | os.PathLike[str],
    validation_fraction: float = 0.1,
    *,
    block_size: int = BLOCK_SIZE,
    on_progress: OnProgress | None = None,
) -> PreparedCorpus:
    """Encode the text file ``source`` into the prepared corpus ``directory``; return it opened.

    ``directory`` is created; if it exists it must be empty or hold a corpus prepared from the
    same ``source`` path, which is replaced (the source may have changed since). Each file is
    written under a temporary name and renamed into place, ``corpus.json`` last.

    Raises:
        DataError: if ``source`` is missing, a directory, empty, binary or not UTF-8 (one line
            naming it), if ``directory`` is in use otherwise, or if ``source`` changes between
            the two passes.
        ValueError: if ``validation_fraction`` is not in [0, 1) or ``block_size`` not positive.
    """
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    split_point(0, validation_fraction)  # checks the fraction before any reading
    source, directory = Path(source).resolve(), Path(directory)
    _check_directory(directory, source)
    size = source.stat().st_size if source.is_file() else 0

    def reader(stage: str) -> Callable[[int], None] | None:
        return None if on_progress is None else lambda n_bytes: on_progress(stage, n_bytes)

    vocabulary = Vocabulary.from_blocks(read_text_blocks(source, block_size, reader(STAGES[0])))
    dtype = token_dtype(len(vocabulary))
    log.info("%s: %d distinct characters, ids as %s", source, len(vocabulary), dtype)

    directory.mkdir(parents=True, exist_ok=True)
    tokens_path = directory / TOKENS_FILE
    partial = tokens_path.with_name(tokens_path.name + _PARTIAL)
    count = 0
    try:
        with partial.open("wb") as out:
            for block in read_text_blocks(source, block_size, reader(STAGES[1])):
                try:
                    ids = vocabulary.encode_array(block, TOKEN_DTYPES[dtype][0])
                except DataError:
                    raise DataError(f"data file {source} changed while it was being prepared; prepare it again") from None
                out.write(ids.tobytes())
                count += len(ids)
        os.replace(partial, tokens_path)
    finally:
        partial.unlink(missing_ok=True)

    atomic_write_text(directory / VOCABULARY_FILE, json.dumps(vocabulary.to_json()) + "\n")
    metadata = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": dtype,
        "tokens": count,
        "vocabulary": VOCABULARY_FILE,
        "tokens_file": TOKENS_FILE,
        "validation_fraction": float(validation_fraction),
        "split": split_point(count, validation_fraction),
        "source": {"path": str(source), "bytes": size},
    }
    atomic_write_text(directory / METADATA_FILE, json.dumps(metadata, indent=2) + "\n")
    return PreparedCorpus.open(directory)


def _check_directory(directory: Path, source: Path) -> None:
    """Refuse an output that is a file, or a non-empty directory other than ``source``'s corpus."""
    if directory.exists() and not directory.is_dir():
        raise DataError(f"{directory} exists and is not a directory")
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    try:
        prepared_from = read_metadata(directory)["source"].get("path")
    except DataError:
        prepared_from = None
    if prepared_from != str(source):
        held = "a corpus prepared from " + prepared_from if prepared_from else "other files"
        raise DataError(
            f"{directory} is not empty: it holds {held}, not a corpus of {source}; choose a new or empty directory"
        )
