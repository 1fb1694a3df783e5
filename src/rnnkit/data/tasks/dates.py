"""Date normalisation: a date written in one of many human formats -> ISO 8601 ("2021-03-03")."""

from __future__ import annotations

import dataclasses
import datetime
import random
import string

from .base import TextPairTask, TokenVocabulary, require_range

# English names, fixed here rather than taken from the locale (calendar.month_name follows
# LC_TIME), so that the data and the vocabulary are the same on every machine.
MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

#: The written formats, as ``str.format`` templates over the fields of :func:`date_fields`; each
#: comment shows 3 March 2021 (a Wednesday). Numeric day/month orders are always day first.
FORMATS = (
    "{day} {month_name} {year}",  # 3 March 2021
    "{month_name} {day}, {year}",  # March 3, 2021
    "{weekday}, {day} {month_name} {year}",  # Wednesday, 3 March 2021
    "{weekday_abbr} {day} {month_abbr} {yy}",  # Wed 3 Mar 21
    "the {ordinal} of {month_name} {year}",  # the 3rd of March 2021
    "{day}-{month_abbr}-{year}",  # 3-Mar-2021
    "{day2}/{month2}/{year}",  # 03/03/2021
    "{day2}.{month2}.{year}",  # 03.03.2021
    "{year}-{month}-{day}",  # 2021-3-3
    "{year}{month2}{day2}",  # 20210303
)


def ordinal(n: int) -> str:
    """``n`` as an English ordinal: 1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ..."""
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def date_fields(date: datetime.date) -> dict[str, str]:
    """The pieces the templates of :data:`FORMATS` are made of, for ``date``."""
    month, weekday = MONTHS[date.month - 1], WEEKDAYS[date.weekday()]
    return {
        "day": str(date.day),
        "day2": f"{date.day:02d}",
        "ordinal": ordinal(date.day),
        "month": str(date.month),
        "month2": f"{date.month:02d}",
        "month_name": month,
        "month_abbr": month[:3],
        "weekday": weekday,
        "weekday_abbr": weekday[:3],
        "year": str(date.year),
        "yy": f"{date.year % 100:02d}",
    }


def _source_characters() -> str:
    # digits for the numbers, the letters of the names, and the templates' own text
    literals = "".join(part for f in FORMATS for part, *_ in string.Formatter().parse(f))
    return "".join(sorted(set(string.digits + "".join(MONTHS + WEEKDAYS) + literals)))


@dataclasses.dataclass(frozen=True)
class DatesTask(TextPairTask):
    r"""Normalise a written date to ISO 8601 ``YYYY-MM-DD`` (the "human-readable to
    machine-readable dates" translation of many attention tutorials, with real calendar dates).

    A date is drawn uniformly from the real calendar days of ``first_year`` to ``last_year``
    (``datetime.date``, so leap days appear and the 31st of April never does) and written in one
    of the :data:`FORMATS`, chosen uniformly; the target is ``date.isoformat()``. Two-digit years
    mean the one year of the range that ends with them, which is why the range may span at most
    100 years. Numeric day/month orders are day first (``03/04/2021`` is 3 April, as in most of the
    world); the US month-first order is not generated, because ``03/04/2021`` would then be
    ambiguous. Weekday names are those of the date.

    Kind ``seq2seq``: the vocabulary holds the source characters (digits, the letters of the
    English month and weekday names, the templates' words and punctuation) and PAD, BOS and EOS;
    see :class:`TextPairTask` for the tensors. Targets have 10 characters.

    Baseline: :math:`\ln 12` ≈ 2.485, the cross-entropy per target token of the uniform choice
    among the ten digits, ``-`` and EOS (:class:`TextPairTask`).

    Example:
        >>> DatesTask().example(random.Random(4))
        ('the 9th of May 1992', '1992-05-09')
    """

    name = "dates"
    vocabulary = TokenVocabulary(_source_characters())
    target_alphabet = string.digits + "-"

    first_year: int = 1950  # the earliest year a date may fall in
    last_year: int = 2049  # the latest year a date may fall in

    def __post_init__(self) -> None:
        super().__post_init__()
        # ISO years have four digits; a two-digit year must name exactly one year of the range
        require_range(self, "first_year", 1000, 9999)
        require_range(self, "last_year", self.first_year, min(self.first_year + 99, 9999))

    def example(self, rng: random.Random) -> tuple[str, str]:
        first = datetime.date(self.first_year, 1, 1).toordinal()
        last = datetime.date(self.last_year, 12, 31).toordinal()
        date = datetime.date.fromordinal(rng.randint(first, last))
        return rng.choice(FORMATS).format(**date_fields(date)), date.isoformat()
