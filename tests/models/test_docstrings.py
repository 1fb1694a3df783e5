"""Every model module's docstring examples run and print what they say."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["attention", "classifier", "conditioned", "jordan", "seq2seq", "tagger"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(f"rnnkit.models.{name}")
    failures, attempted = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert attempted > 0 and failures == 0
