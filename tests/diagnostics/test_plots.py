"""The loss plot of a language-model run and of a task run (with its baseline)."""

from __future__ import annotations

import matplotlib.image

from rnnkit.diagnostics.plots import plot_loss_curves

TRAINING = [{"step": s, "loss": 2.0 / s} for s in range(1, 201)]


def test_language_model_and_task_runs_are_drawn(tmp_path):
    language_model = [*TRAINING, {"step": 100, "val_loss": 0.05}, {"step": 200, "val_loss": 0.04}]
    task = [*language_model, {"step": 200, "val_mse": 0.01, "baseline": 0.167}]
    for name, records in (("lm.png", language_model), ("task.png", task)):
        plot_loss_curves(records, tmp_path / name)
        height, width, _ = matplotlib.image.imread(tmp_path / name).shape
        assert (width, height) == (800, 450)  # figsize (8, 4.5) at 100 dpi
    # the task plot differs: a baseline line and no bits-per-character axis
    assert (tmp_path / "lm.png").read_bytes() != (tmp_path / "task.png").read_bytes()
