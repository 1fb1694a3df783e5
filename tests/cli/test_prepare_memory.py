"""A corpus larger than the process's memory budget is prepared and trained from without loading it.

One child process (a fresh interpreter, so that its peak resident memory, ``ru_maxrss``, is its
own) runs the ``rnnkit`` command four times and reports its peak after each:

1. prepare and train on a small corpus (2 MiB: every per-block buffer of the streaming passes and
   every buffer of training are then at their full size): the baseline peak P0;
2. prepare the big corpus of S = 48 MiB: peak P1;
3. train a few steps from its prepared directory: peak P2;
4. the control: train the same steps from the big text file, read into memory: peak P3.

The memory limit is P0 + S/4: a quarter of the corpus above what a small corpus needs. Preparing
and training from the directory must stay under it (P1, P2). The control must not: loading the
text costs at least its S bytes (P3 - P2 > S), so the check fails whenever the corpus is loaded,
and the test proves that on every run. The validation part is kept tiny (0.1%) because
validating reads all of it, and the pages a memory map reads count in ``ru_maxrss`` too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
MIB = 1 << 20
SMALL, BIG = 2 * MIB, 48 * MIB

# The child: argv = small text, big text, work directory. Prints the peaks as JSON.
CHILD = """
import json, resource, sys
import torch
from rnnkit.cli import main
torch.set_num_threads(1)
small, big, work = sys.argv[1:]
flags = ["--cell", "lstm", "--hidden", "32", "--batch-size", "8", "--seq-len", "32", "--steps", "5",
         "--validation-streams", "8", "--no-progress"]
peaks = {}
def run(name, *argv):
    assert main([*argv]) == 0, name
    peaks[name] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
prepare = ["--validation-fraction", "0.001", "--no-progress"]
run("small", "prepare", "--data", small, "--out", work + "/small", *prepare)
run("small", "train", "--data", work + "/small", "--out", work + "/small-run", *flags)
run("prepare", "prepare", "--data", big, "--out", work + "/big", *prepare)
run("train", "train", "--data", work + "/big", "--out", work + "/big-run", *flags)
run("in_memory", "train", "--data", big, "--out", work + "/in-memory-run", "--validation-fraction", "0.001", *flags)
print(json.dumps(peaks))
"""


def write_corpus(path: Path, size: int) -> None:
    """``size`` bytes of word-like text (some characters of two bytes), 1 MiB block repeated."""
    rng = np.random.default_rng(0)
    alphabet = np.array(list("abcdefghijklmnopqrstuvwxyz  \né"))
    block = "".join(rng.choice(alphabet, size=MIB)).encode("utf-8")[:MIB]
    block = block.decode("utf-8", errors="ignore").encode("utf-8")  # no character cut in two
    with path.open("wb") as out:
        for _ in range(size // len(block)):
            out.write(block)


@pytest.mark.slow  # about 8 s: a fresh interpreter importing torch, and the control loading 48 MiB
def test_a_corpus_larger_than_the_memory_limit_trains_from_disk(tmp_path: Path) -> None:
    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    write_corpus(small, SMALL)
    write_corpus(big, BIG)
    corpus_bytes = big.stat().st_size
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(small), str(big), str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    peaks = json.loads(done.stdout.splitlines()[-1])
    limit = peaks["small"] + corpus_bytes // 4
    growth = {name: (peak - peaks["small"]) / MIB for name, peak in peaks.items()}  # MiB, for the messages
    assert peaks["prepare"] < limit, f"preparing {corpus_bytes / MIB:.0f} MiB grew the peak by {growth}"
    assert peaks["train"] < limit, f"training from the prepared directory grew the peak by {growth}"
    assert peaks["in_memory"] - peaks["train"] > corpus_bytes, (
        f"the control, training from the text in memory, should pass the limit by far: {growth}"
    )
    assert (tmp_path / "big-run" / "checkpoints").is_dir()
