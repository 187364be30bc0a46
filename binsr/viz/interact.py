"""Sliders that redraw: the one way the notebooks wire a figure function to ipywidgets controls.

`ipywidgets.interactive` shows nothing for our figure functions: it does not display return values, and a
pyplot-free `Figure` never reaches the inline backend by itself. Here the figure is rendered to PNG and set as
the `outputs` of an `Output` widget in one state update, which JupyterLab redraws in place (no flicker, no
`with out:` message routing, so it also works headless in tests) and nbconvert saves with the widget state.
"""

from __future__ import annotations

import base64
import inspect
import io
import time
import traceback
from collections.abc import Callable

import ipywidgets as widgets
from matplotlib.figure import Figure


def figure_output(fig: Figure) -> dict:
    """`fig` as one Jupyter display_data output: a PNG at the figure's dpi."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")  # no bbox_inches="tight": it draws twice, and constrained layout already fits
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    return {"output_type": "display_data", "data": {"image/png": png, "text/plain": repr(fig)}, "metadata": {}}


def show_figure(out: widgets.Output, fig: Figure) -> None:
    """Show `fig` in `out`, replacing what it showed before, in a single update."""
    out.outputs = (figure_output(fig),)


def error_output(exc: BaseException) -> dict:
    """`exc` and its traceback as one Jupyter stderr stream output."""
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"output_type": "stream", "name": "stderr", "text": "".join(lines)}


class FigureWidget(widgets.VBox):
    """Controls above an `Output` that shows `figure_fn(**values)`: drawn once when built, redrawn in place
    whenever a control's value changes.

    Keyword arguments that are ipywidgets controls (sliders, dropdowns, checkboxes, ...) become controls;
    every other value, or `widgets.fixed(value)`, is passed to `figure_fn` unchanged. Sliders are set to
    `continuous_update=False`, so dragging one redraws once, on release, instead of queueing a redraw per pixel.
    """

    def __init__(self, figure_fn: Callable[..., Figure], /, **kwargs):
        try:
            inspect.signature(figure_fn).bind(**kwargs)
        except TypeError as e:
            raise TypeError(f"{getattr(figure_fn, '__name__', figure_fn)}: {e} (arguments {sorted(kwargs)})") from e
        self.figure_fn = figure_fn
        self.controls = {name: v for name, v in kwargs.items() if isinstance(v, widgets.ValueWidget)}
        if not self.controls:
            raise ValueError(f"no control among the arguments {sorted(kwargs)}: pass at least one ipywidgets control")
        self.fixed = {
            name: v.value if isinstance(v, widgets.fixed) else v
            for name, v in kwargs.items()
            if name not in self.controls
        }
        for name, control in self.controls.items():
            if hasattr(control, "continuous_update"):
                control.continuous_update = False
            if not control.description:
                control.description = name
            control.observe(self._on_change, names="value")
        self.out = widgets.Output()
        self.draws, self.draw_seconds = 0, 0.0  # how often and how long the last draw took (figure + PNG)
        super().__init__([*self.controls.values(), self.out])
        self.add_class("binsr-figure-widget")
        self.redraw(raise_errors=True)  # a broken figure fails its notebook cell, where nbval sees it

    def values(self) -> dict:
        """The arguments of the next draw: fixed values and the controls' current values."""
        return {**self.fixed, **{name: control.value for name, control in self.controls.items()}}

    def redraw(self, raise_errors: bool = False) -> None:
        """Draw `figure_fn(**values())` into the output; an error is shown there (and raised if asked)."""
        start = time.perf_counter()
        try:
            show_figure(self.out, self.figure_fn(**self.values()))
        except Exception as e:
            self.out.outputs = (error_output(e),)
            if raise_errors:
                raise
        self.draws += 1
        self.draw_seconds = time.perf_counter() - start

    def _on_change(self, change) -> None:
        self.redraw()


def figure_widget(figure_fn: Callable[..., Figure], /, **kwargs) -> FigureWidget:
    """Controls that redraw `figure_fn`'s figure in place; see `FigureWidget`. Use it instead of
    `ipywidgets.interactive`, e.g. `display(figure_widget(rsign_figure, features=f, threshold=FloatSlider()))`.
    """
    return FigureWidget(figure_fn, **kwargs)
