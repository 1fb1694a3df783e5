"""Image captioning: the three conditionings of a captioner, greedy against beam search.

Trains one :class:`~rnnkit.models.Captioner` per conditioning (the image vector enters the
decoder as an extra input at every step, as its initial state, or both) on the ``captions`` task
through rnnkit's TaskTrainer (``rnnkit train --task captions --conditioning MODE``), with the
same cell, size, batch, learning rate and number of updates. Each is then scored on the fixed
held-out test split (every scene holds a colour-and-kind combination never trained on) and on
the validation set (the training distribution), decoding greedily and by beam search of width
5: corpus BLEU-1 to -4 against every reference of each image, and the exact-match rate (the
caption is one of the references). Prints a Markdown table and writes a grid of test images
with the beam-5 captions of the "both" model.

    python benchmarks/captioning.py                                   # 3 x 3000 updates
    python benchmarks/captioning.py --steps 200 --grid /tmp/grid.png  # a quick look
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from cells import machine

from rnnkit.data.captions import CaptionVocabulary
from rnnkit.data.tasks import TaskBatch
from rnnkit.decoding import SamplingOptions
from rnnkit.models.captioner import beam_captions, sample_captions
from rnnkit.models.conditioned import CONDITIONINGS
from rnnkit.training.bleu import corpus_bleu
from rnnkit.training.config import TrainConfig
from rnnkit.training.task_trainer import TaskTrainer

TEST_SEED = 12345  # the test split's seed, apart from the training (0) and validation seeds
GRID_IMAGES = 12


def train(conditioning: str, run_dir: Path, args: argparse.Namespace) -> tuple[TaskTrainer, float]:
    config = TrainConfig()
    config.task.name, config.task.conditioning = "captions", conditioning
    config.task.batch_size, config.task.validation_size = args.batch_size, args.test_size
    config.model.cell, config.model.hidden_size, config.model.num_layers = args.cell, args.hidden, args.layers
    config.optim.lr, config.budget.steps = args.lr, args.steps
    config.eval_every = config.checkpoint_every = args.steps
    start = time.perf_counter()
    trainer = TaskTrainer.start(config, run_dir)
    trainer.run()
    return trainer, time.perf_counter() - start


def references(batch: TaskBatch) -> list[list[str]]:
    """Each image's reference captions (the all-PAD padding rows dropped)."""
    vocab = CaptionVocabulary()
    rows = batch.references.permute(2, 0, 1)  # (B, R, U)
    return [[vocab.decode(row) for row in image if row.any()] for image in rows]


def score(model: torch.nn.Module, batch: TaskBatch, beam: int) -> tuple[list[float], float, list[str]]:
    """BLEU-1..4, the exact-match rate and the captions of ``batch``'s images: greedy if
    ``beam`` is 1, else the best of a beam search of width ``beam``."""
    if beam == 1:
        captions = sample_captions(model, batch.inputs, SamplingOptions(greedy=True))
    else:
        captions = [best[0][0] for best in beam_captions(model, batch.inputs, beam)]
    refs = references(batch)
    exact = sum(caption in r for caption, r in zip(captions, refs)) / len(captions)
    return corpus_bleu(captions, refs), exact, captions


def save_grid(batch: TaskBatch, captions: list[str], path: Path) -> None:
    """The first :data:`GRID_IMAGES` images of ``batch`` with their captions, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    columns = 4
    figure, axes = plt.subplots(GRID_IMAGES // columns, columns, figsize=(3.2 * columns, 3.0 * GRID_IMAGES // columns))
    for ax, image, caption in zip(axes.flat, batch.inputs, captions):
        ax.imshow(image.permute(1, 2, 0).numpy())
        words = caption.split()
        lines = [" ".join(words[i : i + 5]) for i in range(0, len(words), 5)]  # wrap long captions
        ax.set_title("\n".join(lines), fontsize=8)
        ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conditionings", nargs="+", choices=CONDITIONINGS, default=list(CONDITIONINGS))
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--cell", default="gru")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--test-size", type=int, default=500)
    parser.add_argument("--grid", type=Path, default=Path("docs/images/captions-grid.png"))
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# {machine(torch.device('cpu'))}")
    print(f"# {args.cell}, hidden {args.hidden} x {args.layers}, batch {args.batch_size}, lr {args.lr}, {args.steps} updates")
    print("| conditioning | split | decoding | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | exact match | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as root:
        for conditioning in args.conditionings:
            trainer, seconds = train(conditioning, Path(root) / conditioning, args)
            model = trainer.model.eval()
            sets = {"test": trainer.task.test(args.test_size, TEST_SEED), "validation": trainer.validation_set}
            for split, batch in sets.items():
                for beam in (1, 5):
                    bleu, exact, captions = score(model, batch, beam)
                    decoding = "greedy" if beam == 1 else f"beam {beam}"
                    cells = " | ".join(f"{b:.3f}" for b in bleu)
                    print(f"| {conditioning} | {split} | {decoding} | {cells} | {exact:.3f} | {seconds:.0f} |", flush=True)
                    if conditioning == "both" and split == "test" and beam == 5:
                        save_grid(batch, captions, args.grid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
