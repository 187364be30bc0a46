"""Exercise solutions that stay hidden until asked for: Run All defines them, a button runs them.

A solution cell (source collapsed) defines `def solution_1(): ...` and ends with `viz.solution(solution_1)`,
which shows a "Show solution 1" button above an empty `Output`. A click runs the function and shows what it
printed and what it returned (a figure as a PNG) in one update of the output, as `figure_widget` does, so it
also works headless. With BINSR_SOLUTIONS=1 (CI) the function runs at once, in the cell itself: nbval then sees
its output and any error.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure

from binsr.viz.common import env_flag
from binsr.viz.interact import error_output, figure_output

SOLUTIONS_ENV = "BINSR_SOLUTIONS"
SHOW_SECONDS = 1.0  # a solution that ran longer says how long


def solutions_at_once() -> bool:
    """True when BINSR_SOLUTIONS is set (CI): solutions run in their cells."""
    return env_flag(SOLUTIONS_ENV)


def _stream(name: str, text: str) -> dict:
    return {"output_type": "stream", "name": name, "text": text}


def _result_output(result: object) -> dict:
    if isinstance(result, Figure):
        return figure_output(result)
    return {"output_type": "display_data", "data": {"text/plain": repr(result)}, "metadata": {}}


class Solution(widgets.VBox):
    """A button that runs `fn()` and shows its printed output and its return value below it."""

    def __init__(self, fn: Callable[[], object], label: str):
        self.fn, self.label, self.runs = fn, label, 0
        self.button = widgets.Button(description=f"Show {label}", tooltip="runs the solution's code")
        self.button.on_click(self.run)
        self.out = widgets.Output()
        super().__init__([self.button, self.out])
        self.add_class("binsr-solution")  # tests/browser leaves it alone: it is not a figure widget

    def run(self, _button: widgets.Button | None = None) -> None:
        """Run the solution and replace the output with what it printed, returned or raised."""
        self.button.disabled, self.button.description = True, f"Running {self.label}..."
        stdout, stderr = io.StringIO(), io.StringIO()
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                result = self.fn()
            shown = [] if result is None else [_result_output(result)]
        except Exception as e:  # shown, not raised: a click has no cell to fail
            shown = [error_output(e)]
        seconds = time.perf_counter() - start
        if seconds >= SHOW_SECONDS:
            print(f"({self.label} ran in {seconds:.1f} s of wall-clock time on this machine)", file=stdout)
        streams = [_stream(name, buf.getvalue()) for name, buf in (("stdout", stdout), ("stderr", stderr))]
        self.out.outputs = tuple([s for s in streams if s["text"]] + shown)
        self.runs += 1
        self.button.disabled, self.button.description = False, f"Run {self.label} again"


def solution(fn: Callable[[], object], label: str | None = None) -> Solution | object:
    """A `Solution` button for `fn` (its label from the name: `solution_2` -> "solution 2"); with
    BINSR_SOLUTIONS set, `fn()`'s result instead, run at once so that the cell shows (and tests) its output."""
    if solutions_at_once():
        return fn()
    return Solution(fn, label or fn.__name__.replace("_", " "))
