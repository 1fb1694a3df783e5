"""Synthetic sequence tasks, generated and seeded, and the registry that names them.

``TASKS`` maps a task's name to its class; ``make_task`` builds one by name and checks its
options, so that a typo is an error rather than silently ignored:

===================  ==============  ==============================================================
name                 kind            problem
===================  ==============  ==============================================================
``adding``           regression      add the two marked values (Hochreiter & Schmidhuber 1997)
``copy_memory``      tagging         copy 10 symbols after a long delay (Arjovsky et al. 2016)
``reversal``         tagging         write a variable-length sequence back reversed
``addition``         seq2seq         ``"123+4567"`` -> ``"4690"``
``dates``            seq2seq         ``"the 3rd of March 2021"`` -> ``"2021-03-03"``
``parity``           classification  parity of a variable-length bit string
``expr-tree``        classification  an arithmetic expression's value mod 10, as a tree and as text
``expr-tree-value``  regression      the same expressions' values
``captions``         captioning      describe an image of coloured shapes in words
===================  ==============  ==============================================================

Every task draws its batches from a ``torch.Generator`` only; see :mod:`.base` for the tensors
of a :class:`TaskBatch` of each kind, and each task's docstring for its ``baseline``.

Example:
    >>> import torch
    >>> task = make_task("copy_memory", delay=50)
    >>> task.kind, task.input_size, task.output_size
    ('tagging', 10, 9)
    >>> batch = task.batch(32, torch.Generator().manual_seed(0))     # inputs (70, 32) token ids
    >>> validation = task.validation(1000, seed=1)                   # the same set every time
"""

from __future__ import annotations

import dataclasses
from types import MappingProxyType
from typing import Any

from .adding import AddingTask as AddingTask
from .addition import AdditionTask as AdditionTask
from .base import IGNORE_INDEX as IGNORE_INDEX
from .base import KINDS as KINDS
from .base import Task as Task
from .base import TaskBatch as TaskBatch
from .base import TokenVocabulary as TokenVocabulary
from .captions import CaptionsTask as CaptionsTask
from .classification import ParityTask as ParityTask
from .copy_memory import CopyMemoryTask as CopyMemoryTask
from .dates import DatesTask as DatesTask
from .expr_tree import ExprTreeTask as ExprTreeTask
from .expr_tree import ExprTreeValueTask as ExprTreeValueTask
from .reversal import ReversalTask as ReversalTask

_registry: dict[str, type[Task]] = {}


def register_task(cls: type[Task]) -> None:
    """Add ``cls`` under ``cls.name``; refuses a name that is taken and an unknown kind."""
    if cls.name in _registry:
        raise ValueError(
            f"a task named {cls.name!r} is already registered ({_registry[cls.name].__name__})"
        )
    if cls.kind not in KINDS:
        raise ValueError(f"task {cls.name!r} has kind {cls.kind!r}; expected one of {KINDS}")
    _registry[cls.name] = cls


register_task(AddingTask)
register_task(CopyMemoryTask)
register_task(ReversalTask)
register_task(AdditionTask)
register_task(DatesTask)
register_task(ParityTask)
register_task(ExprTreeTask)
register_task(ExprTreeValueTask)
register_task(CaptionsTask)

TASKS: MappingProxyType[str, type[Task]] = MappingProxyType(_registry)


def task_options(name: str) -> dict[str, Any]:
    """The options of task ``name`` and their defaults, e.g. ``{"length": 100}`` for adding."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of {', '.join(sorted(TASKS))}")
    return {f.name: f.default for f in dataclasses.fields(TASKS[name])}


def make_task(name: str, **options: Any) -> Task:
    """Build the task called ``name`` with ``options`` (the rest keep their defaults).

    Raises:
        ValueError: for an unknown name (the message lists the tasks), an unknown option (it
            lists the task's options with their defaults), or a value of the wrong type or range.
    """
    allowed = task_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        listed = ", ".join(f"{key}={default!r}" for key, default in allowed.items())
        raise ValueError(
            f"task {name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are {listed or 'none'}"
        )
    return TASKS[name](**options)


__all__ = [
    "IGNORE_INDEX",
    "KINDS",
    "TASKS",
    "AddingTask",
    "AdditionTask",
    "CaptionsTask",
    "CopyMemoryTask",
    "DatesTask",
    "ExprTreeTask",
    "ExprTreeValueTask",
    "ParityTask",
    "ReversalTask",
    "Task",
    "TaskBatch",
    "TokenVocabulary",
    "make_task",
    "register_task",
    "task_options",
]
