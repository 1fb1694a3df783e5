"""TaskTrainer: every task is learned, a stopped run resumes exactly, the metrics mean what they say.

Learning: for each task a tiny model trains for a few hundred updates (a second or two) and its
validation loss must end below a stated fraction of the task's baseline (the trivial predictor's
loss), a bound the same model untrained does not reach, with the task's own metric far above
chance. Sizes are those the issue suggests (adding of length 10, copy memory with delay 5,
reversal up to length 4, one-digit addition with attention, short parity strings); dates, whose
exact match needs far longer training, only has to bring its loss well below the baseline.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from run_files import assert_same_tensors, latest_files

from rnnkit.data.tasks import IGNORE_INDEX, TaskBatch
from rnnkit.errors import RnnkitError
from rnnkit.training.checkpoint import load_checkpoint
from rnnkit.training.config import TrainConfig, config_from_dict, config_to_dict
from rnnkit.training.metrics import read_metrics
from rnnkit.training.task_trainer import (
    TaskTrainer,
    build_task_model,
    greedy_exact_match,
    task_metrics,
    teacher_forced,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models run fastest on one thread


@dataclass(frozen=True)
class Setup:
    options: dict[str, Any]
    steps: int
    bound: float  # the final validation loss must be below bound x baseline
    metric: str  # the task's natural metric and the value it must exceed
    least: float
    cell: str = "lstm"
    hidden: int = 32
    lr: float = 0.01
    extra: dict[str, Any] = field(default_factory=dict)  # TaskConfig fields


SETUPS = {
    # Observed over seeds 0-2: adding MSE 0.005-0.011 (baseline 0.167), copy memory 0.10-0.14
    # (0.46), reversal 0.15-0.17 (1.39), addition 0.10-0.11 (2.40), dates 1.26-1.34 (2.49),
    # parity 0.001 (0.69); untrained models are at or above the baselines.
    "adding": Setup({"length": 10}, 300, 0.25, "val_mse", -math.inf),
    "copy_memory": Setup(
        {"delay": 5, "copy_length": 5, "symbols": 4}, 300, 0.5, "val_token_accuracy", 0.85, hidden=48
    ),
    "reversal": Setup({"symbols": 4, "max_length": 4}, 150, 0.25, "val_sequence_accuracy", 0.7),
    "addition": Setup(
        {"max_digits": 1}, 200, 0.25, "val_exact_match", 0.8, cell="gru", extra={"attention": True}
    ),
    "dates": Setup({}, 40, 0.75, "val_exact_match", -math.inf, cell="gru"),
    "parity": Setup({"max_length": 8}, 150, 0.1, "val_accuracy", 0.95, cell="gru", hidden=16, lr=0.02),
}


def task_config(name: str, steps: int, **task: Any) -> TrainConfig:
    """A one-layer model of ``SETUPS[name]``'s size on ``name``, validating on 200 examples."""
    setup = SETUPS[name]
    config = TrainConfig()
    config.task.name, config.task.options = name, dict(setup.options)
    config.task.validation_size = 200
    for key, value in {**setup.extra, **task}.items():
        setattr(config.task, key, value)
    config.model.cell, config.model.hidden_size, config.model.num_layers = setup.cell, setup.hidden, 1
    config.optim.lr, config.budget.steps = setup.lr, steps
    config.eval_every = config.checkpoint_every = steps
    return config


@pytest.mark.parametrize("name", list(SETUPS))
def test_task_is_learned(name: str, tmp_path: Path) -> None:
    setup = SETUPS[name]
    trainer = TaskTrainer.start(task_config(name, setup.steps), tmp_path / "run")
    untrained = trainer.evaluate()
    baseline = trainer.task.baseline
    result = trainer.run()

    final = result.validation
    assert result.validation_loss == final["val_loss"]
    assert final["baseline"] == untrained["baseline"] == baseline
    assert untrained["val_loss"] > setup.bound * baseline, "the bound must be out of an untrained model's reach"
    assert final["val_loss"] < setup.bound * baseline, f"{final} after {setup.steps} steps"
    assert final["val_loss"] < untrained["val_loss"]
    assert final[setup.metric] > setup.least
    # the run directory records the same validation, baseline included
    (last,) = [r for r in read_metrics(tmp_path / "run" / "metrics.jsonl") if "val_loss" in r]
    assert {key: last[key] for key in final} == final


# The issue-4 time-structure cells and the deep-transition wrapper (loop executor) learn too; the
# Elman-based ones need more updates than gated cells (observed at 1000: skip 0.017, clockwork 0.007).
STRUCTURED_STEPS = 1000
STRUCTURED_CELLS = {
    "skip-delay3": ("skip", {"delay": 3}),
    "clockwork-4-modules": ("clockwork", {"modules": 4}),
    "gru-deep_transition": ("gru", {"transition_depth": 1}),
}


@pytest.mark.parametrize("variant", list(STRUCTURED_CELLS))
def test_time_structure_cells_learn_the_adding_problem(variant: str, tmp_path: Path) -> None:
    cell, options = STRUCTURED_CELLS[variant]
    setup = SETUPS["adding"]
    config = task_config("adding", STRUCTURED_STEPS)
    config.model.cell, config.model.cell_options = cell, options
    trainer = TaskTrainer.start(config, tmp_path / "run")
    untrained = trainer.evaluate()["val_loss"]
    final = trainer.run().validation["val_loss"]
    bound = setup.bound * trainer.task.baseline
    assert untrained > bound, "the bound must be out of an untrained model's reach"
    assert final < bound, f"{variant}: validation MSE {final:.4f} after {STRUCTURED_STEPS} steps"


def test_a_constant_predictor_of_the_mean_scores_the_adding_baseline() -> None:
    """The loss is on the baseline's scale: output 1 always (the mean of u_i + u_j) -> MSE 1/6."""
    config = task_config("adding", 1)
    task = config.task.build()
    model = build_task_model(task, config.model, config.task)
    with torch.no_grad():
        model.output.weight.zero_()
        model.output.bias.fill_(1.0)
    values = task_metrics(model, task.kind, task.validation(20_000, seed=3))
    # Var(u_i + u_j) = 1/6; the MSE of 20,000 examples has a standard error of about 0.0013.
    assert values["val_loss"] == pytest.approx(task.baseline, abs=0.006)
    assert values["val_mse"] == values["val_loss"]


class FixedTagger(torch.nn.Module):
    """A stand-in tagging model that returns the same logits whatever it reads."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, inputs: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
        return self.logits


def test_tagging_metrics_ignore_unscored_steps() -> None:
    # (T=3, B=2) targets; column 0 scores steps 1 and 2, column 1 all three.
    targets = torch.tensor([[IGNORE_INDEX, 0], [1, 1], [2, 0]])
    predicted = torch.tensor([[2, 0], [1, 1], [2, 2]])  # wrong only at (2, 1) and at an ignored step
    logits = torch.nn.functional.one_hot(predicted, 3).float() * 10  # (T, B, 3)
    batch = TaskBatch(inputs=torch.zeros(3, 2, dtype=torch.long), targets=targets)
    values = task_metrics(FixedTagger(logits), "tagging", batch)
    assert values["val_token_accuracy"] == pytest.approx(4 / 5)  # 5 scored steps, 4 right
    assert values["val_sequence_accuracy"] == pytest.approx(1 / 2)  # column 0 only
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert values["val_loss"] == pytest.approx(expected.item())


def test_greedy_exact_match_equals_teacher_forced_argmax_everywhere(tmp_path: Path) -> None:
    """A greedy decoding is right exactly when, fed the true prefix, the model's argmax is right
    at every target step: then both feed the same tokens. The model is partly trained, so that
    some sequences are right and some are not."""
    trainer = TaskTrainer.start(task_config("addition", 60), tmp_path / "run")
    trainer.run()
    batch = trainer.validation_set
    logits, targets = teacher_forced(trainer.model.eval(), "seq2seq", batch)  # (U - 1, B, V)
    scored = targets != IGNORE_INDEX
    right = ((logits.argmax(-1) == targets) | ~scored).all(0)  # (B,)
    exact = greedy_exact_match(trainer.model, batch)
    assert 0 < exact < 1
    assert exact == pytest.approx(right.double().mean().item(), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Resuming


@pytest.mark.parametrize("name", ["adding", "parity", "reversal", "addition"])  # one of each kind
def test_8_plus_4_steps_equal_12_steps(name: str, tmp_path: Path) -> None:
    """Dropout needs torch's RNG restored, fresh batches the task generator's state."""

    def config(steps: int) -> TrainConfig:
        config = task_config(name, steps)
        config.task.batch_size, config.task.validation_size = 8, 16
        config.model.hidden_size, config.model.num_layers, config.model.dropout = 8, 2, 0.2
        config.eval_every = config.checkpoint_every = 4
        return config

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    TaskTrainer.start(config(12), whole).run()
    TaskTrainer.start(config(8), parts).run()
    checkpoint = load_checkpoint(parts)
    assert checkpoint.step == 8
    saved = config_from_dict(TrainConfig, checkpoint.metadata["config"])
    saved.budget.steps = 12
    TaskTrainer.resume(saved, parts, checkpoint).run()

    expected = read_metrics(whole / "metrics.jsonl")
    resumed = read_metrics(parts / "metrics.jsonl")
    for key in ("loss", "grad_norm", "val_loss"):
        assert [(r["step"], r[key]) for r in resumed if key in r] == [
            (r["step"], r[key]) for r in expected if key in r
        ]
    assert [r["step"] for r in resumed if "loss" in r] == list(range(1, 13))
    (whole_model, whole_state), (parts_model, parts_state) = latest_files(whole), latest_files(parts)
    assert "task_generator" in parts_state
    assert_same_tensors(parts_model, whole_model)
    assert_same_tensors(parts_state, whole_state)  # optimiser moments, torch RNG, task generator


# ------------------------------------------------------------------------------------------------
# Configuration

# The config.json of a language-model run written before runs had a task section.
LANGUAGE_MODEL_CONFIG_BEFORE_TASKS = """{
  "model": {"cell": "gru", "hidden_size": 64, "num_layers": 1, "embedding_size": 0, "dropout": 0.0,
            "input_noise": 0.0, "executor": "auto", "cell_options": {}},
  "data": {"corpus": "shakespeare", "path": "", "validation_fraction": 0.1, "batch_size": 32,
           "seq_len": 100, "validation_streams": 128},
  "optim": {"optimizer": "adam", "lr": 0.002, "momentum": 0.0, "lr_schedule": "constant",
            "lr_min_ratio": 0.1, "lr_decay": 0.5, "lr_decay_every": 1000, "warmup_steps": 0,
            "clip": 5.0, "clip_mode": "norm", "l1": 0.0, "l2": 0.0, "weight_decay": 0.0},
  "budget": {"steps": 0, "epochs": 1.0, "minutes": 0.0},
  "eval_every": 250, "checkpoint_every": 500, "seed": 0
}"""


def test_language_model_config_from_before_tasks_still_loads() -> None:
    config = config_from_dict(TrainConfig, json.loads(LANGUAGE_MODEL_CONFIG_BEFORE_TASKS))
    assert config.model.cell == "gru" and config.budget.epochs == 1.0
    assert config.task == TrainConfig().task and config.task.name == ""
    config.validate()
    saved = config_to_dict(config)
    assert saved["task"]["name"] == ""  # the new section is written out with its defaults
    assert config_from_dict(TrainConfig, saved) == config


def test_task_section_round_trips_and_is_strict() -> None:
    config = task_config("addition", 10)
    assert config_from_dict(TrainConfig, json.loads(json.dumps(config_to_dict(config)))) == config
    saved = config_to_dict(config)
    saved["task"]["atention"] = True
    with pytest.raises(RnnkitError, match=r"unknown config key config\.task\.atention"):
        config_from_dict(TrainConfig, saved)
    saved = config_to_dict(config)
    saved["task"]["attention"] = "yes"
    with pytest.raises(RnnkitError, match=r"config\.task\.attention must be bool, got 'yes'"):
        config_from_dict(TrainConfig, saved)


BAD_TASK_CONFIGS = {
    # name -> (changes to a task config, what the error must say)
    "unknown-task": ({"task.name": "sorting"}, "unknown task 'sorting'"),
    "unknown-option": ({"task.options": {"lenght": 5}}, "length=100"),
    "option-out-of-range": ({"task.options": {"length": 1}}, "length must be >= 2, got 1"),
    "attention-on-regression": ({"task.attention": True}, "attention needs a seq2seq task"),
    "epochs": ({"budget.epochs": 1.0}, "has no epochs"),
    "input-noise": ({"model.input_noise": 0.1}, "input noise applies to language models"),
    "zero-validation-size": ({"task.validation_size": 0}, "validation size must be positive, got 0"),
}


@pytest.mark.parametrize("name", list(BAD_TASK_CONFIGS))
def test_unusable_task_config_is_refused(name: str, tmp_path: Path) -> None:
    changes, message = BAD_TASK_CONFIGS[name]
    config = task_config("adding", 5)
    for path, value in changes.items():
        section, key = path.split(".")
        setattr(getattr(config, section), key, value)
    with pytest.raises(RnnkitError, match=message):
        TaskTrainer.start(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
