"""Multivariate time-series classification data in the UEA/UCR ``.ts`` format, and Japanese Vowels.

A ``.ts`` file (the format of the UEA & UCR time-series classification archives, read by sktime
and aeon) has comment lines starting with ``#``, header lines starting with ``@`` up to
``@data``, then one case per line::

    @classLabel true a b
    @data
    0.1,0.2,0.3:1.0,1.1,1.2:a        <- channel 1 : channel 2 : class label
    0.5,0.4:2.0,2.1:b                <- cases may differ in length

Channels are separated by ``:``, a channel's values by ``,``, and the class label comes last.
:func:`read_ts` reads the classification files of the archive (no ``@timeStamps true``); ``?``
is a missing value (NaN). A case's channels must have the same length, as every
variable-length problem of the multivariate archive has.

:func:`japanese_vowels` returns the UCI Japanese Vowels problem (Kudo, Toyama & Shimbo 1999, in the
UEA archive as ``JapaneseVowels``): nine male speakers saying the vowels /ae/, each utterance a
sequence of 7 to 29 frames of 12 LPC cepstrum coefficients, the class the speaker; 270 training
and 370 test utterances. rnnkit ships no copy: the files come from the PyPI package ``aeon``
(or ``sktime``), which bundles them. Only the data files are used — the package is never
imported, so ``pip install --no-deps aeon==1.6.0`` is enough.

Example:
    >>> sequences, labels = japanese_vowels("train")   # doctest: +SKIP
    >>> len(sequences), sequences[0].shape, labels[:3]  # doctest: +SKIP
    (270, torch.Size([20, 12]), tensor([0, 0, 0]))
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.errors import DataError

#: The PyPI distributions that bundle the UEA Japanese Vowels files, tried in this order.
UEA_DATA_PACKAGES: tuple[str, ...] = ("aeon", "sktime")
JAPANESE_VOWELS_SPLITS: tuple[str, ...] = ("train", "test")
_INSTALL_HINT = "pip install --no-deps aeon==1.6.0"


@dataclass(frozen=True)
class TsDataset:
    """The cases of one ``.ts`` file.

    ``sequences``: one float64 tensor ``(T_i, C)`` per case (time, channel); ``labels``: each
    case's class label as written in the file; ``class_names``: the labels declared by
    ``@classLabel true ...``, in the header's order, or the distinct labels sorted as strings when
    the header declares none.
    """

    sequences: list[Tensor]
    labels: list[str]
    class_names: tuple[str, ...]

    def label_indices(self) -> Tensor:
        """``(S,)`` int64: each case's position in ``class_names``."""
        index = {name: i for i, name in enumerate(self.class_names)}
        return torch.tensor([index[label] for label in self.labels], dtype=torch.int64)


def read_ts(path: str | Path) -> TsDataset:
    """Parse the ``.ts`` classification file ``path`` (module docstring for the format).

    Raises:
        DataError: the file is missing or unreadable, has no ``@data`` section or a timestamped
            one, or a data line is malformed (a value that is not a number, channels of different
            lengths or a different number of channels than the others, a label the header does not
            declare). The message names the file and the line number.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read the .ts file {path}: {error}") from error
    class_names: tuple[str, ...] = ()
    sequences: list[Tensor] = []
    labels: list[str] = []
    in_data = False
    for number, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{path}, line {number}"
        if not in_data:
            if not line.startswith("@"):
                raise DataError(f"{where}: expected a header line starting with '@' before @data, got {line[:40]!r}")
            keyword, _, rest = line.partition(" ")
            keyword = keyword.lower()
            if keyword == "@data":
                in_data = True
            elif keyword == "@timestamps" and rest.strip().lower() == "true":
                raise DataError(f"{where}: timestamped .ts data is not supported")
            elif keyword == "@classlabel":
                flag, *names = rest.split() or ["false"]
                class_names = tuple(names) if flag.lower() == "true" else ()
            continue
        sequence, label = _parse_case(line, where)
        if sequences and sequence.size(1) != sequences[0].size(1):
            raise DataError(f"{where}: {sequence.size(1)} channels, but the first case has {sequences[0].size(1)}")
        if class_names and label not in class_names:
            raise DataError(f"{where}: class label {label!r} is not declared in @classLabel {' '.join(class_names)}")
        sequences.append(sequence)
        labels.append(label)
    if not in_data:
        raise DataError(f"{path}: no @data line; is this a .ts file?")
    if not sequences:
        raise DataError(f"{path}: no cases after @data")
    return TsDataset(sequences, labels, class_names or tuple(sorted(set(labels))))


def _parse_case(line: str, where: str) -> tuple[Tensor, str]:
    """One data line -> (``(T, C)`` float64 tensor, label)."""
    *channels, label = line.split(":")
    label = label.strip()
    if not channels or not label:
        raise DataError(f"{where}: expected channels separated by ':' and a class label last, got {line[:40]!r}")
    values = []
    for channel, text in enumerate(channels, start=1):
        try:
            values.append([math.nan if v.strip() == "?" else float(v) for v in text.split(",")])
        except ValueError as error:
            raise DataError(f"{where}, channel {channel}: {error}") from error
    lengths = {len(v) for v in values}
    if len(lengths) != 1:
        raise DataError(f"{where}: the channels differ in length ({sorted(lengths)}); they must be equal")
    return torch.tensor(values, dtype=torch.float64).T, label  # (C, T) -> (T, C)


def uea_file(problem: str, split: str) -> Path:
    """The path of ``{problem}_{SPLIT}.ts`` inside an installed :data:`UEA_DATA_PACKAGES` package.

    The packages are found through their installed metadata; none is imported.
    """
    relative = f"datasets/data/{problem}/{problem}_{split.upper()}.ts"
    for package in UEA_DATA_PACKAGES:
        try:
            distribution = metadata.distribution(package)
        except metadata.PackageNotFoundError:
            continue
        path = Path(str(distribution.locate_file(f"{package}/{relative}")))
        if path.is_file():
            return path
    raise DataError(
        f"the UEA data file {problem}_{split.upper()}.ts was not found in any of the packages "
        f"{', '.join(UEA_DATA_PACKAGES)}; install it with `{_INSTALL_HINT}` (its data files are all "
        f"rnnkit reads)"
    )


def japanese_vowels(split: str, dtype: torch.dtype | None = None) -> tuple[list[Tensor], Tensor]:
    """The Japanese Vowels ``split`` (``"train"``: 270 cases, ``"test"``: 370).

    Returns the sequences, one ``(T_i, 12)`` tensor each (7 <= T_i <= 29) in ``dtype`` (default:
    torch's default dtype), and the speakers as ``(S,)`` int64 labels in 0..8 (the file's 1..9).
    The training file lists the speakers in order, 30 utterances each.

    Raises:
        DataError: neither ``aeon`` nor ``sktime`` is installed (the message says how to install
            the data), or ``split`` is not ``"train"`` or ``"test"``.
    """
    if split not in JAPANESE_VOWELS_SPLITS:
        raise DataError(f"split must be one of {', '.join(JAPANESE_VOWELS_SPLITS)}, got {split!r}")
    dataset = read_ts(uea_file("JapaneseVowels", split))
    dtype = dtype or torch.get_default_dtype()
    return [sequence.to(dtype) for sequence in dataset.sequences], dataset.label_indices()
