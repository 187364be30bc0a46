import base64
import io
import json

import numpy as np
from PIL import Image

from binsr.viz import saved


def _png(array: np.ndarray) -> str:
    out = io.BytesIO()
    Image.fromarray(array).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode()


def _pixels(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB")).astype(int)


rng = np.random.default_rng(0)
# a photo-like figure: smooth colour ramps plus noise (PNG cannot compress it below LARGE)
ramp = np.linspace(0, 200, 256)
PHOTO = (ramp[None, :, None] * np.array([1.0, 0.6, 0.3]) + rng.integers(0, 40, (256, 256, 3))).astype(np.uint8)
PLOT = np.full((100, 100, 3), 255, np.uint8)
PLOT[40:60] = (31, 119, 180)


def _notebook() -> dict:
    def widget_cell(model_id: str, tags: list[str]) -> dict:
        view = {"application/vnd.jupyter.widget-view+json": {"model_id": model_id, "version_major": 2}}
        return {"cell_type": "code", "metadata": {"tags": tags}, "outputs": [{"data": view}], "source": []}

    def output_widget(image: str) -> dict:
        return {"model_name": "OutputModel", "state": {"outputs": [{"data": {"image/png": image}}]}}

    state = {
        "box": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_out1"]}},
        "out1": output_widget(_png(PHOTO)),
        "out2": output_widget(_png(PHOTO)),
    }
    figures = [{"data": {"image/png": _png(PHOTO)}}, {"data": {"image/png": _png(PLOT)}}]
    return {
        "cells": [
            widget_cell("box", [saved.STATIC_COPY_TAG]),
            {"cell_type": "code", "metadata": {}, "outputs": figures, "source": []},
            widget_cell("out2", []),
        ],
        "metadata": {"widgets": {saved.WIDGET_STATE: {"state": state}}},
    }


def test_large_figures_become_palette_pngs_that_look_the_same_and_plots_stay_exact():
    notebook = _notebook()
    photo_before = notebook["cells"][1]["outputs"][0]["data"]["image/png"]
    assert len(base64.b64decode(photo_before)) > saved.LARGE
    saved.slim(notebook)
    photo, plot = (o["data"]["image/png"] for o in notebook["cells"][1]["outputs"])
    assert Image.open(io.BytesIO(base64.b64decode(photo))).mode == "P"
    assert len(photo) < 0.6 * len(photo_before)
    assert np.abs(_pixels(photo) - PHOTO.astype(int)).mean() < 6  # dithered: off by a few levels on average
    assert np.array_equal(_pixels(plot), PLOT)  # flat colours survive exactly; small figures are left as they are
    assert plot == _png(PLOT)


def test_a_tagged_cell_saves_no_widget_figure_and_other_widgets_are_slimmed():
    notebook = saved.slim(_notebook())
    state = notebook["metadata"]["widgets"][saved.WIDGET_STATE]["state"]
    assert state["out1"]["state"]["outputs"] == []  # inside the tagged cell's VBox
    kept = state["out2"]["state"]["outputs"][0]["data"]["image/png"]
    assert Image.open(io.BytesIO(base64.b64decode(kept))).mode == "P"
    assert saved.slim(json.loads(json.dumps(notebook))) == notebook  # a second pass changes nothing


def test_a_notebook_with_nothing_to_slim_is_written_back_byte_for_byte(tmp_path):
    notebook = _notebook()
    notebook["cells"] = notebook["cells"][1:2]
    notebook["cells"][0]["outputs"] = notebook["cells"][0]["outputs"][1:]  # the small plot only
    notebook["metadata"] = {}
    path = tmp_path / "n.ipynb"
    text = json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
    path.write_text(text)
    assert saved.slim_file(path) == (len(text), len(text))
    assert path.read_text() == text
