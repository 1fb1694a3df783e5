"""Tests for rnnkit.data.tasks: batch layout per kind, seeding, targets recomputed from the inputs
by independent means, the baselines measured, and the registry's errors."""

from __future__ import annotations

import dataclasses
import datetime
import math
import random
import re

import pytest
import torch
import torch.nn.functional as F

from rnnkit.data.tasks import (
    IGNORE_INDEX,
    TASKS,
    AddingTask,
    AdditionTask,
    CopyMemoryTask,
    DatesTask,
    ParityTask,
    ReversalTask,
    Task,
    TaskBatch,
    TokenVocabulary,
    make_task,
    register_task,
    task_options,
)
from rnnkit.data.tasks.dates import ordinal

# options that keep every batch small, so the whole module runs in a few seconds
SMALL = {
    "adding": {"length": 20},
    "copy_memory": {"delay": 15},
    "reversal": {"symbols": 5, "min_length": 1, "max_length": 6},
    "addition": {"min_digits": 1, "max_digits": 4},
    "dates": {},
    "parity": {"min_length": 1, "max_length": 9},
    "expr-tree": {"max_depth": 3},
    "expr-tree-value": {"max_depth": 3},
    "captions": {"image_size": 16, "max_shapes": 2, "grid": 2},
}
NAMES = [pytest.param(name, id=name) for name in TASKS]


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _small(name: str) -> Task:
    return make_task(name, **SMALL[name])


def _tensors(batch: TaskBatch) -> dict[str, torch.Tensor | None]:
    return {f.name: getattr(batch, f.name) for f in dataclasses.fields(batch)}


def _same(a: TaskBatch, b: TaskBatch) -> bool:
    pairs = zip(_tensors(a).values(), _tensors(b).values())
    return all(x is y is None or (x is not None and y is not None and x.equal(y)) for x, y in pairs)


def test_every_task_is_registered_with_its_small_options():
    assert sorted(TASKS) == sorted(SMALL)


# --- layout of a batch, per kind ---------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_batch_layout_matches_the_kind(name):
    task, B = _small(name), 7
    batch = task.batch(B, _gen(0))
    x, y = batch.inputs, batch.targets
    T = x.shape[0]
    if task.token_inputs:
        assert x.dtype == torch.long and x.shape == (T, B)
        assert 0 <= x.min() and x.max() < task.input_size
    elif task.kind == "captioning":  # images (B, C, H, W) in [0, 1]
        assert x.dtype == torch.float32 and x.shape[:2] == (B, task.input_size) and x.dim() == 4
        assert 0 <= x.min() and x.max() <= 1
    else:
        assert x.dtype == torch.float32 and x.shape == (T, B, task.input_size)
    if batch.lengths is not None:  # variable lengths: the longest fills the batch, the rest is 0
        assert batch.lengths.shape == (B,) and int(batch.lengths.max()) == T
        padding = torch.arange(T).unsqueeze(1) >= batch.lengths  # (T, B)
        assert (x[padding] == 0).all()
    if task.kind == "regression":
        assert y.dtype == torch.float32 and y.shape == (B, task.output_size)
    elif task.kind == "classification":
        assert y.dtype == torch.long and y.shape == (B,)
        assert 0 <= y.min() and y.max() < task.output_size
    elif task.kind == "tagging":
        assert y.dtype == torch.long and y.shape == (T, B)
        scored = torch.ones_like(y, dtype=torch.bool) if batch.mask is None else batch.mask
        assert scored.shape == (T, B) and scored.any()
        assert 0 <= y[scored].min() and y[scored].max() < task.output_size
        assert (y[~scored] == IGNORE_INDEX).all()
    else:
        vocab = task.vocabulary
        assert task.output_size == len(vocab)
        assert task.kind == "captioning" or task.input_size == len(vocab)
        U = y.shape[0]
        assert y.dtype == torch.long and y.shape == (U, B) and batch.mask.shape == (U, B)
        assert int(batch.target_lengths.max()) == U
        assert batch.mask.equal(torch.arange(U).unsqueeze(1) < batch.target_lengths)
        assert (y[0] == vocab.BOS).all()
        assert (y.gather(0, batch.target_lengths.unsqueeze(0) - 1) == vocab.EOS).all()
        assert (y[~batch.mask] == vocab.PAD).all()
        assert (y[1:][batch.mask[1:]] != vocab.BOS).all()  # BOS only opens a target


# --- seeding -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_batches_different_seed_different(name):
    task = _small(name)
    first, second = _gen(5), _gen(5)
    a1, a2 = task.batch(16, first), task.batch(16, first)
    assert _same(a1, task.batch(16, second)) and _same(a2, task.batch(16, second))
    assert not _same(a1, a2)  # the generator moves on
    assert not _same(a1, task.batch(16, _gen(6)))


@pytest.mark.parametrize("name", NAMES)
def test_no_global_random_state_is_touched(name):
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    _small(name).batch(8, _gen(0))
    assert torch.get_rng_state().equal(torch_state) and random.getstate() == python_state


@pytest.mark.parametrize("name", NAMES)
def test_validation_set_is_fixed_by_its_seed(name):
    task = _small(name)
    assert _same(task.validation(20, seed=3), task.validation(20, seed=3))
    assert _same(task.validation(20, seed=3), task.batch(20, _gen(3)))
    assert not _same(task.validation(20, seed=3), task.validation(20, seed=4))


def test_batch_moves_every_tensor_and_keeps_none():
    batch = make_task("reversal").batch(3, _gen(0)).to("meta")
    assert all(
        value is None if name in ("target_lengths", "trees", "references") else value.device.type == "meta"
        for name, value in _tensors(batch).items()
    )


# --- targets, recomputed from the inputs -------------------------------------------------------


def test_adding_target_is_the_sum_of_the_two_marked_values():
    T, B = 21, 300
    batch = AddingTask(length=T).batch(B, _gen(1))
    values, markers = batch.inputs.unbind(-1)  # (T, B) each
    assert ((0 <= values) & (values < 1)).all()
    assert set(markers.unique().tolist()) == {0.0, 1.0}
    half = T // 2
    assert (markers[:half].sum(0) == 1).all() and (markers[half:].sum(0) == 1).all()
    torch.testing.assert_close(batch.targets.squeeze(1), (values * markers).sum(0))


def test_copy_memory_target_is_the_first_symbols_after_the_delay():
    task = CopyMemoryTask(delay=12, copy_length=4, symbols=6)
    T, L, K = 12, 4, 6
    batch = task.batch(50, _gen(2))
    x, y = batch.inputs, batch.targets
    assert x.shape[0] == T + 2 * L and batch.mask is None and batch.lengths is None
    assert ((1 <= x[:L]) & (x[:L] <= K)).all()
    assert (x[L : T + L - 1] == 0).all() and (x[T + L :] == 0).all()  # blanks
    assert (x[T + L - 1] == K + 1).all()  # the delimiter
    assert (y[: T + L] == 0).all() and y[T + L :].equal(x[:L])


def test_reversal_target_is_the_input_reversed():
    task = ReversalTask(symbols=5, min_length=1, max_length=7)
    batch = task.batch(200, _gen(3))
    for b, length in enumerate(batch.lengths.tolist()):
        n = (length - 1) // 2
        x, y, scored = (t[:, b].tolist() for t in (batch.inputs, batch.targets, batch.mask))
        assert length == 2 * n + 1 and all(1 <= s <= 5 for s in x[:n])
        assert x[n] == 6 and x[n + 1 :] == [0] * (len(x) - n - 1)
        assert y[n + 1 : 2 * n + 1] == x[:n][::-1]
        assert scored == [n < t <= 2 * n for t in range(len(x))]
    assert set((batch.lengths - 1).div(2).tolist()) == set(range(1, 8))  # every length occurs


def test_parity_target_is_the_parity_of_the_ones():
    batch = ParityTask(min_length=1, max_length=9).batch(300, _gen(4))
    for b, length in enumerate(batch.lengths.tolist()):
        bits = batch.inputs[:length, b].tolist()
        assert set(bits) <= {0, 1} and batch.targets[b] == bits.count(1) % 2
    assert set(batch.lengths.tolist()) == set(range(1, 10))


def _decoded(task: Task, batch: TaskBatch) -> list[tuple[str, str]]:
    vocab = task.vocabulary
    return [
        (vocab.decode(batch.inputs[: batch.lengths[b], b]), vocab.decode(batch.targets[:, b]))
        for b in range(batch.inputs.shape[1])
    ]


def test_addition_target_is_the_sum():
    task = AdditionTask(min_digits=1, max_digits=4)
    digit_counts = set()
    for source, target in _decoded(task, task.batch(500, _gen(5))):
        a, b = source.split("+")
        assert int(a) + int(b) == int(target) and str(int(target)) == target  # no leading 0s
        assert str(int(a)) == a and str(int(b)) == b
        digit_counts |= {len(a), len(b)}
    assert digit_counts == {1, 2, 3, 4}


# strptime formats, one per written format of the dates task; %y gets its century below
DATE_PATTERNS = [
    "%d %B %Y", "%B %d, %Y", "%A, %d %B %Y", "%a %d %b %y", "the %d of %B %Y",
    "%d-%b-%Y", "%d/%m/%Y", "%d.%m.%Y", "%Y-%m-%d", "%Y%m%d",
]  # fmt: skip


def _parse_date(source: str, pattern: str, first_year: int) -> datetime.date | None:
    if pattern.startswith("the "):  # strip and check the ordinal suffix, which strptime lacks
        match = re.fullmatch(r"the (\d+)(st|nd|rd|th) (of .*)", source)
        if match is None:
            return None
        day, suffix = int(match[1]), match[2]
        units = "th" if day // 10 == 1 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")
        assert suffix == units, source
        source = f"the {day} {match[3]}"
    try:
        parsed = datetime.datetime.strptime(source, pattern).date()
    except ValueError:
        return None
    if "%y" in pattern:  # the one year of the 100-year range that ends in these two digits
        year = first_year + (parsed.year - first_year) % 100
        parsed = datetime.date(year, parsed.month, parsed.day)
    if "%a" in pattern or "%A" in pattern:  # strptime does not check the weekday
        assert source.split()[0].rstrip(",") == parsed.strftime(pattern[:2]), source
    return parsed


@pytest.mark.parametrize(("first_year", "last_year"), [(1950, 2049), (1999, 2001)])
def test_dates_target_is_the_iso_form_of_the_source(first_year, last_year):
    task = DatesTask(first_year=first_year, last_year=last_year)
    used = set()
    for source, target in _decoded(task, task.batch(800, _gen(6))):
        parses = {p: _parse_date(source, p, first_year) for p in DATE_PATTERNS}
        dates = {p: d for p, d in parses.items() if d is not None}
        assert dates, f"{source!r} matches no known format"
        assert {d.isoformat() for d in dates.values()} == {target}, source
        assert first_year <= datetime.date.fromisoformat(target).year <= last_year
        used |= set(dates)
    assert used == set(DATE_PATTERNS)  # every format is generated


def test_dates_are_real_calendar_days_including_leap_days():
    task = DatesTask(first_year=2000, last_year=2000)
    targets = {target for _, target in _decoded(task, task.batch(5000, _gen(7)))}
    assert "2000-02-29" in targets and len(targets) == 366  # all days of a leap year


def test_ordinal_suffixes():
    assert [ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 23, 31)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "23rd", "31st",
    ]  # fmt: skip


# --- baselines, measured -----------------------------------------------------------------------


def test_adding_baseline_is_the_mse_of_predicting_one():
    task = AddingTask(length=10)
    targets = task.batch(40_000, _gen(8)).targets
    assert task.baseline == pytest.approx(1 / 6) and round(task.baseline, 3) == 0.167
    assert targets.mean().item() == pytest.approx(1.0, abs=0.01)  # 1 is the best constant
    assert F.mse_loss(torch.ones_like(targets), targets).item() == pytest.approx(1 / 6, abs=0.01)


@pytest.mark.parametrize("delay", [pytest.param(100, id="T100"), pytest.param(7, id="T7")])
def test_copy_memory_baseline_is_blank_then_uniform(delay):
    task = CopyMemoryTask(delay=delay)
    assert task.baseline == pytest.approx(10 * math.log(8) / (delay + 20))
    batch = task.batch(64, _gen(9))
    # the memoryless predictor: blank for the first T + 10 steps, uniform over the 8 symbols after
    log_probs = torch.full((delay + 20, 64, task.output_size), -math.inf)  # (T + 20, B, 9)
    log_probs[: delay + 10, :, 0] = 0.0
    log_probs[delay + 10 :, :, 1:] = -math.log(8)
    measured = F.nll_loss(log_probs.flatten(0, 1), batch.targets.flatten())
    assert measured.item() == pytest.approx(task.baseline, rel=1e-6)


@pytest.mark.parametrize(
    "task", [pytest.param(ReversalTask(), id="reversal"), pytest.param(ParityTask(), id="parity")]
)
def test_chance_baseline_is_the_entropy_of_the_scored_targets(task):
    # the targets are independent of everything an input-blind predictor sees, so its best loss
    # is the entropy of their distribution, which the generator makes uniform
    batch = task.batch(4000, _gen(10))
    scored = batch.targets if batch.mask is None else batch.targets[batch.mask]
    frequencies = torch.bincount(scored, minlength=task.output_size).double() / scored.numel()
    entropy = -(frequencies[frequencies > 0] * frequencies[frequencies > 0].log()).sum()
    assert entropy.item() == pytest.approx(task.baseline, abs=0.01)


@pytest.mark.parametrize("name", ["addition", "dates"])
def test_seq2seq_baseline_is_the_uniform_decoder_over_target_tokens(name):
    task = make_task(name)
    vocab = task.vocabulary
    batch = task.batch(300, _gen(11))
    allowed = [*vocab.encode(task.target_alphabet).tolist(), vocab.EOS]
    logits = torch.full((len(vocab),), -math.inf)
    logits[allowed] = 0.0  # the same distribution for every step of every target
    predicted = batch.targets[1:][batch.mask[1:]]  # the tokens a teacher-forced decoder emits
    measured = F.cross_entropy(logits.expand(len(predicted), -1), predicted)
    assert measured.item() == pytest.approx(task.baseline, rel=1e-6)  # finite: all are allowed


# --- vocabulary --------------------------------------------------------------------------------


def test_token_vocabulary_round_trip_and_specials():
    vocab = TokenVocabulary("+0123456789")
    assert len(vocab) == 14 and {vocab.PAD, vocab.BOS, vocab.EOS} == {0, 1, 2}
    ids = vocab.encode("12+345")
    assert ids.min() >= 3 and vocab.decode(ids) == "12+345"
    assert vocab.decode([vocab.BOS, *ids.tolist(), vocab.EOS, vocab.PAD]) == "12+345"
    with pytest.raises(ValueError, match="token 1 at position 2 is not a character"):
        vocab.decode([vocab.BOS, 4, vocab.BOS, 5])


# --- registry and options ----------------------------------------------------------------------


def test_registry_refuses_a_duplicate_name_and_an_unknown_kind():
    with pytest.raises(ValueError, match="a task named 'adding' is already registered"):
        register_task(AddingTask)

    @dataclasses.dataclass(frozen=True)
    class Odd(AddingTask):
        name = "odd"
        kind = "ranking"

    with pytest.raises(ValueError, match="task 'odd' has kind 'ranking'; expected one of"):
        register_task(Odd)
    assert "odd" not in TASKS


def test_unknown_task_lists_the_valid_names():
    with pytest.raises(ValueError, match="unknown task 'add'; choose one of adding, addition, "):
        make_task("add")


def test_unknown_option_lists_the_valid_options():
    with pytest.raises(
        ValueError,
        match=r"task 'copy_memory' has no option 'lenght'; its options are "
        r"delay=100, copy_length=10, symbols=8",
    ):
        make_task("copy_memory", lenght=5)
    assert task_options("dates") == {"first_year": 1950, "last_year": 2049}


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("adding", {"length": "10"}, "option length must be int, got '10'"),
        ("adding", {"length": True}, "option length must be int, got True"),
        ("adding", {"length": 2.0}, "option length must be int, got 2.0"),
        ("adding", {"length": 1}, r"option length must be >= 2, got 1"),
        ("copy_memory", {"symbols": 1}, r"option symbols must be >= 2, got 1"),
        ("reversal", {"min_length": 5, "max_length": 4}, r"max_length must be >= 5, got 4"),
        ("parity", {"min_length": 0}, r"min_length must be >= 1, got 0"),
        ("addition", {"max_digits": 0}, r"max_digits must be >= 1, got 0"),
        ("dates", {"first_year": 999}, r"first_year must be in \[1000, 9999\], got 999"),
        ("dates", {"last_year": 2050}, r"last_year must be in \[1950, 2049\], got 2050"),
    ],
    ids=lambda value: value if isinstance(value, str) and " " not in value else None,
)
def test_bad_option_values_say_expected_and_got(name, options, message):
    with pytest.raises(ValueError, match=message):
        make_task(name, **options)


@pytest.mark.parametrize(
    ("batch_size", "generator", "message"),
    [
        (0, torch.Generator(), "batch_size must be a positive int, got 0"),
        (2.0, torch.Generator(), "batch_size must be a positive int, got 2.0"),
        (2, 7, "generator must be a CPU torch.Generator, got 7"),
    ],
)
def test_batch_arguments_are_checked(batch_size, generator, message):
    with pytest.raises(ValueError, match=message):
        make_task("parity").batch(batch_size, generator)
