"""Files written whole or not at all: ``atomic_write_text`` and the fsyncs it rests on, for every
layer that writes small files readers may open at any moment (run directories, prepared corpora)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TEMPORARY_SUFFIX = ".tmp"  # of a hidden sibling being written; a leftover one was interrupted


def temporary_sibling(path: Path) -> Path:
    """A fresh hidden name beside ``path``: ``.NAME.RANDOM.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` so that readers see the old file or the new, never half.

    The text goes to a temporary file in the same directory (a rename across file systems would
    not be atomic), is fsync'ed, and replaces ``path`` with ``os.replace``; the directory is then
    fsync'ed so the rename itself survives a power cut. Raises ``OSError`` on failure, leaving
    ``path`` as it was.
    """
    path = Path(path)
    tmp = temporary_sibling(path)
    # os.open with mode 0o666 lets the umask decide permissions, as for an ordinary file
    # (tempfile.mkstemp would make every config.json private to its owner).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Persist renames and new entries in the directory ``path`` (Windows cannot open a directory)."""
    if os.name != "nt":
        fsync_file(path)
