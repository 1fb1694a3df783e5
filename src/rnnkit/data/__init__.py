"""Data for rnnkit's models: corpora, character vocabularies and stream batching.

- :mod:`rnnkit.data.corpus`: the bundled corpora (``"shakespeare"``, ``"python"``), reading a
  user's text file with clear errors, and the train/validation split.
- :mod:`rnnkit.data.vocabulary`: :class:`Vocabulary`, characters <-> ids, saved as JSON.
- :mod:`rnnkit.data.stream`: :class:`StreamBatches`, time-major ``(T, B)`` chunks for TBPTT.
- :mod:`rnnkit.data.prepare` and :mod:`rnnkit.data.token_file`: a text of any size encoded once
  (:func:`prepare_corpus`) into a memory-mapped token file (:class:`PreparedCorpus`).
- :mod:`rnnkit.data.tasks`: generated, seeded sequence tasks (adding, copy memory, reversal,
  addition, dates, parity) for ``rnnkit train --task``.
- :mod:`rnnkit.data.mackey_glass`: the Mackey-Glass chaotic series for echo state networks.
- :mod:`rnnkit.data.uea`: the UEA ``.ts`` time-series classification format and the Japanese
  Vowels speakers (read from the files bundled in the ``aeon`` package, never imported).
"""

from rnnkit.data.corpus import BUNDLED_CORPORA as BUNDLED_CORPORA
from rnnkit.data.corpus import PYTHON_CORPUS_MAX_CHARS as PYTHON_CORPUS_MAX_CHARS
from rnnkit.data.corpus import load_corpus as load_corpus
from rnnkit.data.corpus import read_text_file as read_text_file
from rnnkit.data.corpus import split_train_validation as split_train_validation
from rnnkit.data.mackey_glass import mackey_glass as mackey_glass
from rnnkit.data.mackey_glass import squash as squash
from rnnkit.data.prepare import prepare_corpus as prepare_corpus
from rnnkit.data.stream import StreamBatches as StreamBatches
from rnnkit.data.token_file import PreparedCorpus as PreparedCorpus
from rnnkit.data.uea import japanese_vowels as japanese_vowels
from rnnkit.data.uea import read_ts as read_ts
from rnnkit.data.vocabulary import Vocabulary as Vocabulary

__all__ = [
    "BUNDLED_CORPORA",
    "PYTHON_CORPUS_MAX_CHARS",
    "PreparedCorpus",
    "StreamBatches",
    "Vocabulary",
    "japanese_vowels",
    "load_corpus",
    "mackey_glass",
    "prepare_corpus",
    "read_text_file",
    "read_ts",
    "split_train_validation",
    "squash",
]
