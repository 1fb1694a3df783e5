"""``metrics.jsonl``: one JSON object per training update and per validation, and its plot."""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

from ..diagnostics.plots import plot_loss_curves


class MetricsLog:
    """Appends records to a JSON-lines file; every record has a ``step``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def write(self, **record: Any) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8", buffering=1)  # line-buffered: tail -f works
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def truncate_after(self, step: int) -> None:
        """Drop the records of steps after ``step``: a resumed run writes them again."""
        kept = [r for r in read_metrics(self.path) if r["step"] <= step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept), encoding="utf-8")

    def plot(self, png: Path) -> None:
        plot_loss_curves(read_metrics(self.path), png)


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All records of a metrics file (none if it does not exist yet)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
