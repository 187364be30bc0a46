"""How long a notebook runs: the classroom switch that sizes its loops, and the timings its heavy cells report.

Every notebook starts with `CLASSROOM = False` and `RUN = viz.run_mode(CLASSROOM)`; each loop that can be sized
asks `RUN.pick(full=..., classroom=..., quick=...)`. BINSR_QUICK=1 (CI) overrides the switch with the smallest
sizes. A heavy cell wraps its work in `with viz.timed():` and prints its own wall time, so a run time is always
a measurement on the machine that ran the cell, never a sentence in the prose. `cell_seconds` reads the times
Jupyter recorded in a saved notebook (notebooks/README, "Run time").
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from binsr.viz.common import quick_mode

MODES = ("full", "classroom", "quick")
T = TypeVar("T")

_DESCRIPTIONS = {
    "full": "full run (set CLASSROOM = True for a live lesson: loops sized to finish in seconds)",
    "classroom": "classroom run: loops sized for a live lesson",
    "quick": "quick run (BINSR_QUICK is set, as in CI): the smallest loops",
}


@dataclass(frozen=True)
class RunMode:
    """One of MODES: how large a notebook's loops are."""

    name: str

    def __post_init__(self):
        if self.name not in MODES:
            raise ValueError(f"run mode {self.name!r} is not one of {', '.join(MODES)}")

    @property
    def quick(self) -> bool:
        return self.name == "quick"

    def pick(self, full: T, classroom: T | None = None, quick: T | None = None) -> T:
        """The size for this mode. `classroom` defaults to `full` and `quick` to the classroom size."""
        classroom_size = full if classroom is None else classroom
        if self.name == "full":
            return full
        if self.name == "classroom":
            return classroom_size
        return classroom_size if quick is None else quick

    def __str__(self) -> str:
        return _DESCRIPTIONS[self.name]


def run_mode(classroom: bool = False) -> RunMode:
    """The mode "quick" when BINSR_QUICK is set (CI), else "classroom" if `classroom`, else "full"."""
    if quick_mode():
        return RunMode("quick")
    return RunMode("classroom" if classroom else "full")


@contextmanager
def timed(what: str = "this cell") -> Iterator[None]:
    """Print how long the `with` block took, in wall-clock seconds on this machine (also when it fails)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        print(f"({what} ran in {time.perf_counter() - start:.1f} s of wall-clock time on this machine)")


def _stamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def cell_seconds(notebook: str | Path) -> dict[int, float]:
    """{code cell index: seconds} from the execution times Jupyter saved in `notebook`'s cell metadata
    (`jupyter nbconvert --execute` records them); cells without them are left out."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    seconds = {}
    for i, cell in enumerate(cells):
        stamps = cell.get("metadata", {}).get("execution", {})
        if "iopub.execute_input" in stamps and "shell.execute_reply" in stamps:
            span = _stamp(stamps["shell.execute_reply"]) - _stamp(stamps["iopub.execute_input"])
            seconds[i] = span.total_seconds()
    return seconds


def run_seconds(notebook: str | Path) -> float:
    """Seconds that *Run All* took when `notebook` was saved: the sum of `cell_seconds` without the solution cells
    (tagged "solution"), which only run when their button is pressed (notebooks/README, "Run time")."""
    cells = json.loads(Path(notebook).read_text())["cells"]
    return sum(s for i, s in cell_seconds(notebook).items() if "solution" not in cells[i]["metadata"].get("tags", []))
