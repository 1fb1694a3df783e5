"""A language model's data: the run's text as token ids, its vocabulary, and the split.

The data section of a run's configuration names a bundled corpus, a UTF-8 text file, or a
directory prepared by ``rnnkit prepare`` (:mod:`rnnkit.data.token_file`):

- a text is read into memory, its vocabulary built from all of it and both parts encoded into
  torch tensors;
- a prepared directory is opened, not read: its vocabulary is the one saved there and the ids are
  views of the memory-mapped token file, which :class:`~rnnkit.data.stream.StreamBatches` and
  :func:`~rnnkit.training.evaluation.evaluate_loss` read chunk by chunk.

Both give the same ids for the same text, so a run trains identically from either. A prepared
corpus fixed its split when it was prepared; a run's ``validation_fraction`` must be that one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.corpus import load_corpus, read_text_file, split_train_validation
from ..data.token_file import PreparedCorpus
from ..data.vocabulary import Vocabulary
from ..errors import DataError, RnnkitError
from .config import DataConfig

#: Token ids as language-model training reads them: a 1-D torch tensor, or a 1-D numpy array
#: (a prepared corpus's memory map) that is read lazily.
TokenIds = Tensor | np.ndarray


@dataclass(frozen=True)
class LanguageData:
    """The vocabulary and the training and validation ids of one text."""

    vocabulary: Vocabulary
    train_ids: TokenIds  # (N_train,)
    validation_ids: TokenIds  # (N_validation,), possibly empty

    @classmethod
    def from_text(cls, text: str, validation_fraction: float) -> LanguageData:
        """The text's own vocabulary (its distinct characters) and its two parts, encoded."""
        vocabulary = Vocabulary.from_text(text)
        train_text, validation_text = split_train_validation(text, validation_fraction)
        return cls(
            vocabulary,
            vocabulary.encode(train_text, "the training text"),
            vocabulary.encode(validation_text, "the validation text"),
        )

    @classmethod
    def from_prepared(cls, corpus: PreparedCorpus) -> LanguageData:
        """The prepared corpus's vocabulary and memory-mapped parts; nothing is read."""
        return cls(corpus.vocabulary, corpus.train_ids, corpus.validation_ids)


def is_prepared(config: DataConfig) -> bool:
    """Whether the data is a directory, which only ``rnnkit prepare`` makes (a text is a file)."""
    return bool(config.path) and Path(config.path).is_dir()


def load_language_data(config: DataConfig) -> LanguageData:
    """The run's data: a prepared corpus opened, or a text read and encoded.

    Raises:
        DataError: if the text or the prepared corpus cannot be used, or the corpus was
            prepared with another validation fraction than ``config``'s.
    """
    if is_prepared(config):
        return LanguageData.from_prepared(open_prepared(config))
    return LanguageData.from_text(read_text(config), config.validation_fraction)


def validation_ids(config: DataConfig, vocabulary: Vocabulary) -> TokenIds:
    """The run's validation ids under a trained model's ``vocabulary``: of a text, its final part
    encoded (only that part is encoded); of a prepared corpus, the memory-mapped part.

    Raises:
        DataError: if the validation text has characters outside ``vocabulary``.
        RnnkitError: if a prepared corpus's vocabulary is not ``vocabulary`` (re-prepared from
            another text since the run was trained).
    """
    if not is_prepared(config):
        validation_text = split_train_validation(read_text(config), config.validation_fraction)[1]
        return vocabulary.encode(validation_text, "the validation text")
    corpus = open_prepared(config)
    if corpus.vocabulary != vocabulary:
        raise RnnkitError(f"the prepared corpus {corpus.directory} has changed since the model was trained: its characters differ")
    return corpus.validation_ids


def token_tensor(ids: TokenIds) -> Tensor:
    """``ids`` (a few: a window, a slice) as a ``torch.long`` tensor; a numpy array is copied."""
    return ids.long() if isinstance(ids, Tensor) else torch.from_numpy(np.array(ids, dtype=np.int64))


def read_text(config: DataConfig) -> str:
    """The text of a bundled corpus or a text file, read into memory."""
    return read_text_file(config.path) if config.path else load_corpus(config.corpus)


def open_prepared(config: DataConfig) -> PreparedCorpus:
    """The prepared corpus ``config.path``, checked against ``config.validation_fraction``."""
    corpus = PreparedCorpus.open(config.path)
    if corpus.validation_fraction != config.validation_fraction:
        raise DataError(
            f"the prepared corpus {config.path} holds out a validation fraction of {corpus.validation_fraction}, "
            f"expected {config.validation_fraction}; the split is fixed by rnnkit prepare --validation-fraction"
        )
    return corpus
