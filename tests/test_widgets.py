"""Widgets that redraw, headless: `viz.figure_widget`, and every widget cell of every notebook run as written
on small stand-in inputs, each control changed in turn. No browser and no kernel: the cheap net under
tests/browser, which proves the same in JupyterLab."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path
from types import SimpleNamespace

import ipywidgets as widgets
import matplotlib.figure
import numpy as np
import pytest
import torch
from PIL import Image

import binsr
from binsr import viz
from binsr.data.images import load_images
from binsr.engine.export import pack_binary_conv
from binsr.nn import checkpoint
from binsr.nn.binary import SIGN_BACKWARDS
from binsr.viz import solutions

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
# a cell that builds a control is a widget cell
CONTROL = re.compile(r"widgets\.(\w*Slider|Dropdown|Checkbox|ToggleButtons?|RadioButtons|Select\w*)\(")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _png(out: widgets.Output) -> bytes | None:
    """The PNG that `out` shows, or None when it shows no image."""
    pngs = [o["data"]["image/png"] for o in out.outputs if "image/png" in o.get("data", {})]
    return base64.b64decode(pngs[-1]) if pngs else None


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def _parts(widget: widgets.Widget) -> tuple[list[widgets.ValueWidget], list[widgets.Output]]:
    """All controls and Output areas inside `widget` (however it is built: figure_widget, interact, boxes)."""
    controls, outputs = [], []
    for child in getattr(widget, "children", ()):
        if isinstance(child, widgets.Output):
            outputs.append(child)
        elif isinstance(child, widgets.ValueWidget):
            controls.append(child)
        else:
            c, o = _parts(child)
            controls += c
            outputs += o
    return controls, outputs


def _change(control: widgets.ValueWidget) -> None:
    """Move `control` to another value, as a user would: the other end of a slider, the next option."""
    if hasattr(control, "options"):
        control.index = (control.index + 1) % len(control.options)
    elif isinstance(control.value, bool):
        control.value = not control.value
    elif isinstance(control, widgets.FloatLogSlider):
        top = control.base**control.max
        control.value = top if not np.isclose(control.value, top) else control.base**control.min
    else:
        control.value = control.max if control.value != control.max else control.min


# ---- the helper ------------------------------------------------------------------------------------------


def _line_figure(slope: float = 1.0, color: str = "tab:blue", offset: float = 0.0):
    fig = viz.new_figure(3.0, 2.0)
    ax = fig.subplots()
    ax.plot([0, 1], [offset, offset + slope], color=color)
    ax.set_ylim(-2, 2)
    return fig


def test_figure_widget_draws_when_built_and_redraws_on_every_change():
    slope = widgets.FloatSlider(value=1.0, min=-1.0, max=1.0, continuous_update=True)
    color = widgets.Dropdown(options=["tab:blue", "tab:red"])
    w = viz.figure_widget(_line_figure, slope=slope, color=color, offset=widgets.fixed(0.5))
    first = _png(w.out)
    assert first is not None and w.draws == 1
    assert w.values() == {"slope": 1.0, "color": "tab:blue", "offset": 0.5}
    assert slope.continuous_update is False  # a drag redraws once, on release
    assert (slope.description, color.description) == ("slope", "color")  # named like interactive() names them
    assert w.children == (slope, color, w.out)
    slope.value = -1.0
    second = _png(w.out)
    assert w.draws == 2 and len(w.out.outputs) == 1  # replaced, not appended
    assert not np.array_equal(_pixels(first), _pixels(second))
    color.value = "tab:red"
    assert w.draws == 3 and not np.array_equal(_pixels(second), _pixels(_png(w.out)))


def test_figure_widget_keeps_a_given_description_and_passes_plain_values():
    slope = widgets.FloatSlider(value=0.5, description="k")
    w = viz.figure_widget(_line_figure, slope=slope, color="tab:green")
    assert slope.description == "k" and w.fixed == {"color": "tab:green"}


def test_figure_widget_names_bad_arguments():
    with pytest.raises(TypeError, match="_line_figure.*slop"):
        viz.figure_widget(_line_figure, slop=widgets.FloatSlider())
    with pytest.raises(ValueError, match="no control"):
        viz.figure_widget(_line_figure, slope=1.0)


def test_figure_widget_fails_its_cell_on_the_first_draw_and_shows_later_errors():
    def figure(x: float = 0.0):
        if x > 0.5:
            raise RuntimeError(f"x={x} is too large")
        return _line_figure(x)

    with pytest.raises(RuntimeError, match="too large"):
        viz.figure_widget(figure, x=widgets.FloatSlider(value=1.0))
    x = widgets.FloatSlider(value=0.0)
    w = viz.figure_widget(figure, x=x)
    x.value = 1.0  # an error in a callback must not vanish into the kernel log
    assert _png(w.out) is None and "x=1.0 is too large" in w.out.outputs[0]["text"]
    x.value = 0.2
    assert _png(w.out) is not None


def test_show_figure_replaces_the_output():
    out = widgets.Output()
    viz.show_figure(out, _line_figure(1.0))
    viz.show_figure(out, _line_figure(-1.0))
    assert len(out.outputs) == 1
    assert _pixels(_png(out)).shape == (2 * viz.FIG_DPI, 3 * viz.FIG_DPI, 3)  # 3 x 2 inches at the series' dpi


# ---- every notebook's widget cells -----------------------------------------------------------------------


def widget_cells(notebook: str) -> list[str]:
    """The source of every code cell of `notebook` that builds a control."""
    cells = json.loads((NOTEBOOKS / notebook).read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    return [s for s in sources if CONTROL.search(s)]


def _tiny(name: str, n_feats: int = 8, **kwargs):
    return binsr.create_model(name, scale=2, n_feats=n_feats, n_blocks=2, **kwargs).eval()


def _lr(h: int = 24, w: int = 32) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _stand_ins_03():
    model = _tiny("edsr-bbcu", n_feats=16)  # the notebook shows channel 9
    return {"model": model, "features": viz.capture(model, _lr(), "body.0.0", which="input")}


def _stand_ins_04():
    w = torch.randn(144) * 0.05
    return {"w": w, "best": float(w.abs().mean())}


def _stand_ins_05():
    model = _tiny("edsr-bbcu", k=1.0)
    return {"u": model.body[0][0], "features_1": torch.randn(8, 124, 161), "k16": binsr.nn.models.bbcu_k(16)}


def _stand_ins_06():
    lr = _lr()
    kinds = ("se", "pixel", "spatial")  # the shipped model's, and the two others of the notebook's section 4
    signals = {kind: viz.attention_signals(_tiny("edsr-proposed", att_bin=kind, att_res=kind), lr) for kind in kinds}
    return {
        "lr": lr,
        "signals": signals.pop("se"),
        "other_signals": signals,
        "n_blocks": 2,
        "features": torch.zeros(8, 24, 32),
    }


def _stand_ins_07():
    lr = _lr()
    models = {
        "FP": _tiny("edsr-fp"),
        "BBCU": _tiny("edsr-bbcu"),
        "proposed": _tiny("edsr-proposed", att_bin="se", att_res="se"),
    }
    return {"stats": {label: viz.body_activations(m, lr) for label, m in models.items()}}


def _stand_ins_09():
    methods = {"bicubic": None, "FP": _tiny("edsr-fp"), "BBCU": _tiny("edsr-bbcu")}
    hrs = {"a": _lr(160, 192), "b": 255 - _lr(160, 192)}  # larger than the largest crop, so every slider moves it
    return {"images": {name: (hr, viz.super_resolve(methods, hr[::2, ::2], 2)) for name, hr in hrs.items()}}


def _stand_ins_10():
    conv = _tiny("edsr-bbcu").body[0][0].conv
    return {"conv": conv, "packed_conv": pack_binary_conv(conv)}


# What each notebook's widget cells read from the cells above them: small stand-ins, built in a second or two.
STAND_INS = {
    "01_why_binarize.ipynb": lambda: {"load_images": load_images},
    "02_sign_and_gradient.ipynb": lambda: {"SIGN_BACKWARDS": SIGN_BACKWARDS},
    "03_rsign_rprelu.ipynb": _stand_ins_03,
    "04_weight_binarization.ipynb": _stand_ins_04,
    "05_bbcu_block.ipynb": _stand_ins_05,
    "06_attention.ipynb": _stand_ins_06,
    "07_activation_distributions.ipynb": _stand_ins_07,
    "09_side_by_side.ipynb": _stand_ins_09,
    "10_xnor_inference.ipynb": _stand_ins_10,
}


def test_every_notebook_with_controls_is_covered():
    with_controls = {p.name for p in NOTEBOOKS.glob("*.ipynb") if widget_cells(p.name)}
    assert with_controls == set(STAND_INS) | {"08_train_yourself.ipynb"}


def _run_cells(notebook: str, names: dict) -> list:
    """Run the widget cells of `notebook` with `names` as the notebook's namespace; what they displayed."""
    shown: list = []
    namespace = {
        "np": np,
        "torch": torch,
        "widgets": widgets,
        "viz": viz,
        "display": lambda *a: shown.extend(a),
        **names,
    }
    for source in widget_cells(notebook):
        exec(compile(source, f"{notebook} widget cell", "exec"), namespace)
    return shown


@pytest.mark.parametrize("notebook", sorted(STAND_INS))
def test_every_control_of_every_notebook_widget_redraws_its_figure(notebook):
    shown = _run_cells(notebook, STAND_INS[notebook]())
    assert shown, f"{notebook}: its widget cells displayed nothing"
    for i, widget in enumerate(shown):
        controls, outputs = _parts(widget)
        assert controls and len(outputs) == 1, (
            f"{notebook} widget {i}: {len(controls)} controls, {len(outputs)} outputs"
        )
        before = _png(outputs[0])
        assert before is not None, f"{notebook} widget {i}: no figure before any control is touched"
        for control in controls:
            _change(control)
            after = _png(outputs[0])
            assert after is not None, f"{notebook} widget {i}: no figure after changing {control.description!r}"
            changed = _pixels(before).shape != _pixels(after).shape or (_pixels(before) != _pixels(after)).any()
            assert changed, f"{notebook} widget {i}: changing {control.description!r} left the figure as it was"
            before = after


def test_the_train_widget_of_notebook_08_draws_live_and_enables_its_button_again(monkeypatch):
    calls = []

    def train_small(block, att_bin, att_res, scale, steps, lr, batch_size, val_interval, callback, gate_input, teacher):
        calls.append((block, scale, steps, batch_size, gate_input, teacher))
        val_interval = val_interval or steps  # 0: validate after the last step only
        assert button.disabled  # no second run while one trains
        for step in range(1, steps + 1):
            val = 30.0 + step / steps if step % val_interval == 0 else None
            callback(SimpleNamespace(step=step, loss=1.0 / step, lr=lr, val_psnr=val))

    manifest = checkpoint.read_manifest(checkpoint.ASSETS)
    monkeypatch.setattr(viz, "train_small", train_small)
    names = {
        "manifest": manifest,
        "shipped_args": manifest["models"]["edsr-proposed-x2"]["arguments"],
        "evaluate": lambda model, sets, scale: [{"psnr": 28.0 if model is None else 29.0}],
        "checkpoint": SimpleNamespace(pretrained=lambda name, assets: name),
        "ASSETS": checkpoint.ASSETS,
        "BATCH": 2,
        "RUN": viz.RunMode("quick"),
    }
    (panel,) = _run_cells("08_train_yourself.ipynb", names)
    controls, (out,) = _parts(panel)
    button = next(w for w in panel.children[1].children if isinstance(w, widgets.Button))
    steps = next(c for c in controls if c.description == "steps")
    assert _png(out) is None  # nothing to show before the first run
    steps.value = steps.min
    button.click()
    gate_input = manifest["models"]["edsr-proposed-x2"]["arguments"]["gate_input"]
    assert calls == [("proposed", 2, 10, 2, gate_input, None)]
    assert _png(out) is not None and not button.disabled
    next(c for c in controls if c.description == "learn from the FP model").value = True
    button.click()  # the shipped FP model of the scale teaches
    assert calls[-1] == ("proposed", 2, 10, 2, gate_input, "edsr-fp-x2")


def test_the_train_widget_of_notebook_08_greys_out_attention_unless_the_block_is_proposed():
    manifest = checkpoint.read_manifest(checkpoint.ASSETS)
    entry = manifest["models"]["edsr-proposed-x2"]
    names = {"manifest": manifest, "shipped_args": entry["arguments"], "BATCH": 2, "RUN": viz.RunMode("full")}
    (panel,) = _run_cells("08_train_yourself.ipynb", names)
    controls = {c.description: c for c in _parts(panel)[0]}
    attention = (controls["att_bin"], controls["att_res"], controls["gate_input"])
    assert controls["block"].value == "proposed" and not any(a.disabled for a in attention)
    for block, disabled in (("FP", True), ("BBCU", True), ("proposed", False)):
        controls["block"].value = block
        assert [a.disabled for a in attention] == [disabled] * 3, block
    # learning from the FP model: for the binary blocks, at the scales an FP model is shipped for (not x3)
    distill = controls["learn from the FP model"]
    for block, scale, disabled in (("FP", 2, True), ("BBCU", 2, False), ("BBCU", 3, True), ("proposed", 4, False)):
        controls["block"].value, controls["scale"].value = block, scale
        assert distill.disabled == disabled, (block, scale)
    controls["scale"].value = 2
    # the default run: about a minute at the shipped run's measured seconds per step
    step_seconds = entry["train_seconds"] / entry["steps"]
    assert 45 <= controls["steps"].value * step_seconds <= 75


# ---- hidden solutions and the self-check quiz ------------------------------------------------------------


def _solution_3():
    print("alpha* =", 0.5)
    return _line_figure(0.5)


def test_a_solution_runs_only_when_its_button_is_clicked(monkeypatch):
    monkeypatch.delenv("BINSR_SOLUTIONS", raising=False)
    calls = []

    def solution_2():
        calls.append(1)
        print("the answer is", 42)

    s = viz.solution(solution_2)
    assert isinstance(s, viz.Solution) and calls == [] and s.out.outputs == ()  # Run All shows a button only
    assert s.button.description == "Show solution 2"
    s.button.click()
    assert calls == [1] and s.runs == 1
    assert s.out.outputs == ({"output_type": "stream", "name": "stdout", "text": "the answer is 42\n"},)
    assert s.button.description == "Run solution 2 again" and not s.button.disabled
    s.button.click()
    assert calls == [1, 1] and len(s.out.outputs) == 1  # replaced, not appended


def test_a_solution_shows_its_figure_and_its_error(monkeypatch):
    monkeypatch.setattr(solutions, "SHOW_SECONDS", float("inf"))  # a loaded machine can take a second
    s = viz.solution(_solution_3)
    s.button.click()
    text, figure = s.out.outputs
    assert text["text"] == "alpha* = 0.5\n"
    assert _pixels(base64.b64decode(figure["data"]["image/png"])).shape == (2 * viz.FIG_DPI, 3 * viz.FIG_DPI, 3)

    def solution_4():
        raise KeyError("no such image")

    broken = viz.solution(solution_4)
    broken.button.click()  # a click has no cell to fail: the traceback is shown
    (error,) = broken.out.outputs
    assert error["name"] == "stderr" and "KeyError: 'no such image'" in error["text"]


def test_binsr_solutions_runs_the_solution_at_once_in_its_cell(monkeypatch, capsys):
    monkeypatch.setenv("BINSR_SOLUTIONS", "1")
    result = viz.solution(_solution_3)
    assert capsys.readouterr().out == "alpha* = 0.5\n"
    assert isinstance(result, matplotlib.figure.Figure)  # the cell's result: nbval sees it
    monkeypatch.setenv("BINSR_SOLUTIONS", "0")
    assert isinstance(viz.solution(_solution_3), viz.Solution)


def test_the_quiz_says_right_and_not_quite():
    questions = [
        viz.Question("sign(0) is", ["+1", "-1", "0"], answer=1, why="ties go to -1, eq. (1).", hint="Section 1."),
        viz.Question("One bit per weight is how much smaller than float32?", ["8x", "32x"], answer=1, why="32 bits."),
    ]
    box = viz.quiz(questions)
    assert "binsr-quiz" in box._dom_classes  # tests/browser leaves it alone
    first, second = box.children
    first.check.click()
    assert first.feedback.value == "Pick an answer first."
    first.choices.value = "+1"
    first.check.click()
    assert first.feedback.value == "✗ Not quite. Section 1."
    first.choices.value = "-1"
    first.check.click()
    assert first.feedback.value == "✓ Right. ties go to -1, eq. (1)."
    second.choices.index = 0
    second.check.click()
    assert second.feedback.value == "✗ Not quite. Try another answer."
    # no control that tests/browser would take for a figure widget's (it moves sliders, dropdowns, checkboxes, toggles)
    controls = [w for q in box.children for w in _parts(q)[0]]
    figure_controls = (widgets.Dropdown, widgets.Checkbox, widgets.ToggleButton, widgets.ToggleButtons)
    assert not [w for w in controls if isinstance(w, figure_controls) or "Slider" in type(w).__name__]
    assert sum(isinstance(w, widgets.RadioButtons) for w in controls) == 2


def test_a_question_refuses_a_wrong_key():
    with pytest.raises(ValueError, match="answer=2"):
        viz.Question("?", ["a", "b"], answer=2, why="")
    with pytest.raises(ValueError, match="all different"):
        viz.Question("?", ["a", "a"], answer=0, why="")
