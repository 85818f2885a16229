"""A benchmark's result: printed as a table, saved as JSON, optionally plotted."""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch


def progress(message: str) -> None:
    """A line on stderr per finished step, so a long run shows where it is without cluttering the table."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)  # noqa: T201


def figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """``plt.subplots(*args, **kwargs)`` for a figure written to a file: benchmark machines have no display."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(*args, **kwargs)


def save_figure(fig: Any, path: Path) -> None:
    """Lays the figure out, writes it as a PNG (making its folder) and frees it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclass
class Table:
    name: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *row: Any) -> None:
        self.rows.append(list(row))

    def markdown(self) -> str:
        def cell(value: Any) -> str:
            return f"{value:.3g}" if isinstance(value, float) else str(value)

        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in self.rows]
        return "\n".join(lines + [f"\n{note}" for note in self.notes])

    def save(self, out: Path) -> Path:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{self.name}.json"
        machine = {"python": platform.python_version(), "torch": torch.__version__, "cpus": torch.get_num_threads()}
        body = {"name": self.name, "columns": self.columns, "rows": self.rows, "notes": self.notes, "machine": machine}
        path.write_text(json.dumps(body, indent=2))
        return path

    def show(self, out: Path) -> None:
        print(f"\n## {self.name}\n\n{self.markdown()}\n")  # noqa: T201
        progress(f"wrote {self.save(out)}")
