"""Every notebook in a real JupyterLab, driven by Chromium: run all cells (quick mode), no error anywhere, and
every control of every widget redraws its figure on screen; notebook 08's Train button trains live; the self-check
quiz answers and a solution button shows its solution.

Widgets are found in the page, not in the notebook source: every top-level widget in a cell's output with a
control is checked, however it was built. On failure a screenshot is saved in the test's tmp dir and the message
names the notebook, the widget and the control. Redraw times are printed at the end of the session.
"""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import REPO, TIMINGS

NOTEBOOKS = sorted(p.name for p in (REPO / "notebooks").glob("*.ipynb"))
# Bounds, not targets (the times are reported); raise them on a machine busy with other work.
RUN_ALL_TIMEOUT_S = float(os.environ.get("BINSR_RUN_ALL_TIMEOUT", 300))  # one notebook's cells, quick mode
REDRAW_TIMEOUT_S = float(os.environ.get("BINSR_REDRAW_TIMEOUT", 30))
TRAIN_TIMEOUT_S = 180
SCREENSHOT_WIDGET = ("03_rsign_rprelu.ipynb", 0)  # the README's picture of a slider and its figure

NOTEBOOK = "window.jupyterapp?.shell?.currentWidget"
KERNEL_IDLE = f"() => {NOTEBOOK}?.sessionContext?.session?.kernel?.status === 'idle'"
# Error outputs of all cells: [cell index, "ename: evalue"].
ERRORS = f"""() => {NOTEBOOK}.content.widgets.flatMap((cell, i) => (cell.model.toJSON().outputs || [])
    .filter(o => o.output_type === 'error').map(o => [i, o.ename + ': ' + o.evalue]))"""
# Marks every top-level widget in the cell outputs (data-binsr-widget) and its controls (data-binsr-control).
# The course's quizzes and solution buttons (viz.quiz, viz.solution: classes binsr-quiz, binsr-solution) draw no
# figure and are left out.
NOT_FIGURES = ".binsr-quiz, .binsr-solution"
FIND_WIDGETS = """() => {
  const kinds = {'widget-slider': 'slider', 'widget-dropdown': 'dropdown', 'widget-checkbox': 'checkbox',
                 'widget-toggle-button': 'toggle'};
  const cells = [...document.querySelectorAll('.jp-Notebook .jp-Cell')];
  const found = [];
  cells.forEach((cell, c) => {
    for (const root of cell.querySelectorAll('.jp-OutputArea-output > .jupyter-widgets')) {
      if (root.parentElement.closest('.jupyter-widgets')) continue;
      if (root.matches('NOT_FIGURES') || root.querySelector('NOT_FIGURES')) continue;
      root.dataset.binsrWidget = String(found.length);
      const controls = [...root.querySelectorAll(Object.keys(kinds).map(k => '.' + k).join(', '))];
      found.push({
        cell: c,
        button: root.querySelector('button')?.textContent ?? null,
        controls: controls.map((el, j) => {
          el.dataset.binsrControl = String(j);
          const kind = Object.entries(kinds).find(([k]) => el.classList.contains(k))[1];
          return {kind, label: el.querySelector('.widget-label')?.textContent || kind + ' ' + j};
        }),
      });
    }
  });
  return found;
}""".replace("NOT_FIGURES", NOT_FIGURES)
# Waits for the kernel, then runs all cells, without blocking the caller; window.__binsrRun says how far it got.
RUN_ALL = """() => {
  window.__binsrRun = 'kernel';
  (async () => {
    while (window.jupyterapp?.shell?.currentWidget?.sessionContext?.session?.kernel?.status !== 'idle')
      await new Promise(resolve => setTimeout(resolve, 100));
    window.__binsrRun = 'running';
    try { await window.jupyterapp.commands.execute('notebook:run-all-cells'); window.__binsrRun = 'done'; }
    catch (e) { window.__binsrRun = 'failed: ' + e; }
  })();
}"""
FIGURE_SRC = "root => root.querySelector('.widget-output img')?.src ?? null"
NEW_FIGURE = """([root, old]) => {
  const img = root.querySelector('.widget-output img');
  return img !== null && img.src !== old && img.complete && img.naturalWidth > 0;
}"""


class Failure(AssertionError):
    pass


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


class Session:
    """One notebook open in JupyterLab: its page, what went wrong in it, screenshots on failure."""

    def __init__(self, page, notebook: str, shots: Path):
        self.page, self.notebook, self.shots = page, notebook, shots
        self.console_errors: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.console_errors.append(m.text))
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))

    def fail(self, what: str, message: str):
        path = self.shots / f"{Path(self.notebook).stem}-{what}.png".replace(" ", "_").replace("/", "_")
        try:
            self.page.screenshot(path=path)
        except Exception as e:  # the message matters more than the picture
            path = f"(no screenshot: {e})"
        raise Failure(f"{self.notebook}: {message}; screenshot {path}")

    def wait(self, what: str, js: str, arg=None, timeout_s: float = REDRAW_TIMEOUT_S, polling: int = 100):
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(js, arg=arg, timeout=timeout_s * 1000, polling=polling)
        except PlaywrightTimeout:
            self.fail(what, f"{what}: not within {timeout_s:.0f} s")

    def idle(self, what: str, timeout_s: float = REDRAW_TIMEOUT_S):
        self.wait(what, KERNEL_IDLE, timeout_s=timeout_s)

    def start(self, lab) -> Session:
        """Open the notebook in a workspace of its own (reset: nothing of an earlier test is restored) and, in
        the page, run all cells once its kernel is idle; returns at once (`finish_run` waits)."""
        workspace = Path(self.notebook).stem
        url = f"{lab.url}/lab/workspaces/{workspace}/tree/notebooks/{self.notebook}?reset&token={lab.token}"
        self.page.goto(url, wait_until="domcontentloaded", timeout=120_000)
        self.page.evaluate(RUN_ALL)
        return self

    def finish_run(self):
        self.wait("kernel start", "() => window.__binsrRun !== 'kernel'", timeout_s=120, polling=250)
        self.wait("run all cells", "() => window.__binsrRun !== 'running'", timeout_s=RUN_ALL_TIMEOUT_S, polling=250)
        if self.page.evaluate("() => window.__binsrRun") != "done":
            self.fail("run-all", f"run all cells: {self.page.evaluate('() => window.__binsrRun')}")
        self.idle("kernel idle after run all", timeout_s=RUN_ALL_TIMEOUT_S)

    def close(self):
        try:  # free the kernel's memory and cores; a failure here must not hide the test's own
            self.page.evaluate(f"() => {NOTEBOOK}?.sessionContext?.shutdown()")
        except Exception as e:
            print(f"could not shut the kernel of {self.notebook} down: {e}")
        self.page.close()

    def check_clean(self, when: str):
        errors = self.page.evaluate(ERRORS)
        if errors:
            self.fail("error-output", f"error output {when}: " + "; ".join(f"cell {i}: {e}" for i, e in errors))
        if self.page.get_by_text("Error displaying widget").count():
            self.fail("widget-error", f"'Error displaying widget' {when}")
        if self.console_errors:
            self.fail("console-error", f"browser console errors {when}: {self.console_errors}")


def _change(s: Session, control, info: dict) -> float:
    """Move `control` as a user would: drag a slider's handle to the other side, pick the next option, click.
    Returns the time of the event that sends the change (the slider's release)."""
    control.scroll_into_view_if_needed()
    if info["kind"] == "slider":
        handle = control.locator(".noUi-handle").bounding_box()
        track = control.locator(".noUi-base").bounding_box()
        x, y = handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2
        target = track["x"] + track["width"] * (0.15 if (x - track["x"]) / track["width"] > 0.5 else 0.85)
        s.page.mouse.move(x, y)
        s.page.mouse.down()
        s.page.mouse.move(target, y, steps=5)
        start = time.perf_counter()
        s.page.mouse.up()  # continuous_update=False: the change is sent here, once
        return start
    if info["kind"] == "dropdown":
        select = control.locator("select")
        n = select.locator("option").count()
        if n < 2:
            s.fail(f"dropdown-{info['label']}", f"dropdown {info['label']!r} has {n} option: nothing to change")
        index = (select.evaluate("el => el.selectedIndex") + 1) % n
        start = time.perf_counter()
        select.select_option(index=index)
        return start
    start = time.perf_counter()
    control.locator("input, button").first.click()
    return start


def check_figure_widget(s: Session, root, index: int, widget: dict) -> None:
    name = f"widget {index} (cell {widget['cell']})"
    root.scroll_into_view_if_needed()
    if root.evaluate(FIGURE_SRC) is None:
        s.fail(f"widget{index}", f"{name} shows no figure before any control is touched")
    if (s.notebook, index) == SCREENSHOT_WIDGET:  # as a student first sees it
        shot = s.shots / "jupyterlab-widget.png"
        root.screenshot(path=shot)
        if os.environ.get("BINSR_README_SCREENSHOT"):  # e.g. docs/jupyterlab-slider.png, to refresh the README's
            Image.open(shot).convert("RGB").quantize(64).save(os.environ["BINSR_README_SCREENSHOT"], optimize=True)
    output = root.locator(".widget-output")
    before = output.screenshot()
    for j, info in enumerate(widget["controls"]):
        control = root.locator(f"[data-binsr-control='{j}']")
        what = f"{name}, control {info['label']!r}"
        before_src = root.evaluate(FIGURE_SRC)
        start = _change(s, control, info)
        s.wait(f"{what}: a new figure", NEW_FIGURE, arg=[root.element_handle(), before_src])
        seconds = time.perf_counter() - start
        s.idle(f"{what}: kernel idle")
        after = output.screenshot()
        if _pixels(before).shape == _pixels(after).shape and np.array_equal(_pixels(before), _pixels(after)):
            s.fail(f"widget{index}-{info['label']}", f"{what}: the figure's pixels did not change")
        TIMINGS.append({"notebook": s.notebook, "widget": name, "control": info["label"], "seconds": seconds})
        before = after


def check_train_widget(s: Session, root, index: int, widget: dict) -> None:
    """08: the smallest step count, Train: a plot while training (button disabled), then the button back."""
    name = f"widget {index} (cell {widget['cell']}, {widget['button']!r})"
    steps = next((j for j, c in enumerate(widget["controls"]) if c["label"] == "steps"), None)
    if steps is None:
        s.fail(f"widget{index}", f"{name} has no 'steps' slider")
    slider = root.locator(f"[data-binsr-control='{steps}']")
    slider.scroll_into_view_if_needed()
    slider.locator(".noUi-handle").focus()
    s.page.keyboard.press("Home")  # the slider's minimum, as a keyboard user sets it
    smallest = float(slider.locator(".noUi-handle").get_attribute("aria-valuemin"))
    at_min = f"el => parseFloat(el.querySelector('.widget-readout').textContent) === {smallest}"
    s.wait(f"{name}: steps at its minimum {smallest:g} after Home", at_min, arg=slider.element_handle())
    readout = f"{smallest:g}"
    s.idle(f"{name}: kernel idle after setting steps")
    button = root.locator("button")
    start = time.perf_counter()
    button.click()
    live = "root => root.querySelector('button').disabled && root.querySelector('.widget-output img') !== null"
    what = f"{name}: a live plot while training ({readout} steps)"
    s.wait(what, live, arg=root.element_handle(), timeout_s=TRAIN_TIMEOUT_S)
    first_plot = time.perf_counter() - start
    enabled = "root => !root.querySelector('button').disabled"
    s.wait(f"{name}: the button enabled again", enabled, arg=root.element_handle(), timeout_s=TRAIN_TIMEOUT_S)
    done = time.perf_counter() - start
    TIMINGS.append(
        {"notebook": s.notebook, "widget": name, "control": f"Train, {readout} steps", "seconds": first_plot}
    )
    TIMINGS.append({"notebook": s.notebook, "widget": name, "control": "(run done)", "seconds": done})


def check_quiz_and_solution(s: Session) -> None:
    """The first quiz question answers a click on Check; the first solution button shows its solution."""
    question = s.page.locator(".binsr-quiz > .widget-vbox").first
    if not question.count():
        s.fail("no-quiz", "no self-check quiz in the page")
    question.scroll_into_view_if_needed()
    question.locator("input[type=radio]").first.check()
    question.locator("button").click()
    verdict = "root => /[✓✗]/.test(root.querySelector('.widget-hbox .widget-htmlmath')?.textContent ?? '')"
    s.wait("quiz: a verdict after Check", verdict, arg=question.element_handle())
    solution = s.page.locator(".binsr-solution").first
    if not solution.count():
        s.fail("no-solution", "no solution button in the page")
    solution.scroll_into_view_if_needed()
    solution.locator("button").click()
    shown = "root => root.querySelector('.widget-output .jp-OutputArea-child') !== null"
    s.wait("solution: its output after a click", shown, arg=solution.element_handle(), timeout_s=TRAIN_TIMEOUT_S)
    s.idle("kernel idle after the solution")


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_notebook_in_jupyterlab(lab, context, notebook, tmp_path):
    # One notebook at a time: two kernels with two torch threads each on two cores stall each other (a run in
    # the background made the suite twice as slow, not faster).
    s = Session(context.new_page(), notebook, tmp_path).start(lab)
    try:
        s.finish_run()
        s.check_clean("after running all cells")
        widgets = s.page.evaluate(FIND_WIDGETS)
        with_controls = [(i, w) for i, w in enumerate(widgets) if w["controls"] or w["button"]]
        if not with_controls:
            s.fail("no-widget", "no widget with a control in the page")
        for i, widget in with_controls:
            root = s.page.locator(f"[data-binsr-widget='{i}']")
            if widget["button"] is not None:
                check_train_widget(s, root, i, widget)
            else:
                check_figure_widget(s, root, i, widget)
        check_quiz_and_solution(s)
        s.check_clean("after moving every control, answering the quiz and showing a solution")
    finally:
        s.close()


def test_the_kernel_is_this_interpreter(lab):
    specs = lab.api("/api/kernelspecs")
    assert specs["default"] == "python3"
    assert specs["kernelspecs"]["python3"]["spec"]["argv"][0] == sys.executable
