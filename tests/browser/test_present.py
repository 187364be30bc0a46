"""The presenter view of `make present` (Voila): notebooks 03 and 06 run in a fresh kernel with their code
hidden, without an error, and moving a slider redraws the figure below it.

Voila's page template links Font Awesome from a CDN; offline that stylesheet fails to load (it only draws icons,
which the course's widgets do not use), so failed requests to other hosts are not counted as errors here."""

from __future__ import annotations

import time

import pytest

from .test_lab import FIGURE_SRC, NEW_FIGURE, Failure, _change

RENDER_TIMEOUT_S = 300  # the notebook runs in quick mode before the page is complete
# Marks the first figure widget with a slider (data-binsr-widget) and that slider (data-binsr-control). It runs
# more than once while widgets are still drawing, so earlier marks are cleared: an earlier run may have marked a
# later widget whose figure was drawn first.
FIND_SLIDER = """() => {
  for (const el of document.querySelectorAll('[data-binsr-widget], [data-binsr-control]')) {
    delete el.dataset.binsrWidget;
    delete el.dataset.binsrControl;
  }
  for (const slider of document.querySelectorAll('.widget-slider')) {
    let root = slider.parentElement;
    while (root && !root.querySelector('.widget-output img')) root = root.parentElement;
    if (!root) continue;
    root.dataset.binsrWidget = '0';
    slider.dataset.binsrControl = '0';
    return slider.querySelector('.widget-label')?.textContent || 'slider';
  }
  return null;
}"""


class Presenter:
    def __init__(self, page, notebook: str, shots):
        self.page, self.notebook, self.shots = page, notebook, shots
        self.errors: list[str] = []
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def fail(self, what: str, message: str):
        path = self.shots / f"voila-{self.notebook}-{what}.png"
        self.page.screenshot(path=path)
        raise Failure(f"{self.notebook} in Voila: {message}; screenshot {path}")


@pytest.mark.parametrize("notebook", ["03_rsign_rprelu.ipynb", "06_attention.ipynb"])
def test_the_presenter_view_runs_and_a_slider_redraws(voila, browser, notebook, tmp_path):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    s = Presenter(page, notebook, tmp_path)
    try:
        page.goto(f"{voila}/voila/render/{notebook}", timeout=RENDER_TIMEOUT_S * 1000)
        try:  # Voila shows a spinner until every cell has run, then removes it
            page.wait_for_function("() => !document.querySelector('#loading')", timeout=RENDER_TIMEOUT_S * 1000)
        except PlaywrightTimeout:
            s.fail("render", f"still running after {RENDER_TIMEOUT_S} s")
        text = page.inner_text("body")
        for sign in ("Traceback", "There was an error when executing cell"):
            if sign in text:
                s.fail("error", f"an error output: {text[text.index(sign) :][:500]}")
        if "torch.set_num_threads" in text:  # every notebook's set-up cell
            s.fail("code", "the code cells are shown: the presenter view hides them")
        try:  # the widgets are drawn once the page is complete
            page.wait_for_function(FIND_SLIDER, timeout=60_000)
        except PlaywrightTimeout:
            s.fail("no-widget", "no figure widget with a slider within 60 s")
        label = page.evaluate(FIND_SLIDER)
        root = page.locator("[data-binsr-widget='0']")
        control = root.locator("[data-binsr-control='0']")
        before = root.evaluate(FIGURE_SRC)
        start = _change(s, control, {"kind": "slider", "label": label})
        try:
            page.wait_for_function(NEW_FIGURE, arg=[root.element_handle(), before], timeout=60_000)
        except PlaywrightTimeout:
            s.fail("redraw", f"no new figure within 60 s of moving the slider {label!r}")
        print(f"{notebook}: slider {label!r} -> new figure in {time.perf_counter() - start:.2f} s")
        assert not s.errors, f"{notebook} in Voila: {s.errors}"
    finally:
        page.close()
