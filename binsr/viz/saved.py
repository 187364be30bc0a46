"""What a saved notebook keeps: its outputs, light enough for the repository, the site and a reviewer's diff.

A notebook is executed and saved (`make notebook NB=06`), then passed through `slim`:
- a figure over `LARGE` bytes is stored as a 256-colour PNG, dithered (Floyd-Steinberg). Plots are flat colours
  and text, which stay exact; photos and colour maps keep their look at a third of the size or less;
- a cell tagged "static-copy-below" keeps no saved figure in its Output widgets: the next cell draws the same
  figure statically (notebook 06's map browsers), and the saved widget would store it twice. In JupyterLab the
  widget redraws when it runs; the site and the presenter view show the static copy.

    python -m binsr.viz.saved notebooks/06_attention.ipynb
"""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path

from PIL import Image

LARGE = 60_000  # bytes of PNG: a plot with text stays under it; photos and maps go over
STATIC_COPY_TAG = "static-copy-below"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"


def palette_png(png: bytes) -> bytes:
    """`png` as a 256-colour dithered PNG, or `png` itself when that is not smaller."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    paletted = image.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    out = io.BytesIO()
    paletted.save(out, format="PNG", optimize=True)
    return out.getvalue() if out.tell() < len(png) else png


def _slim_outputs(outputs: list[dict]) -> None:
    for output in outputs:
        data = output.get("data", {})
        if "image/png" in data:
            png = base64.b64decode("".join(data["image/png"]))
            if len(png) > LARGE:
                data["image/png"] = base64.b64encode(palette_png(png)).decode()


def _widget_ids(cell: dict) -> set[str]:
    return {
        output["data"]["application/vnd.jupyter.widget-view+json"]["model_id"]
        for output in cell.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in output.get("data", {})
    }


def _descendants(roots: set[str], state: dict) -> set[str]:
    """The widgets `roots` show, with every child of every container among them."""
    seen, todo = set(), list(roots)
    while todo:
        model_id = todo.pop()
        if model_id in seen or model_id not in state:
            continue
        seen.add(model_id)
        todo += [child.removeprefix("IPY_MODEL_") for child in state[model_id]["state"].get("children", [])]
    return seen


def slim(notebook: dict) -> dict:
    """`notebook` (nbformat JSON), in place: large figures re-encoded, tagged cells' widget figures dropped."""
    state = notebook["metadata"].get("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    tagged = set().union(
        *(_widget_ids(c) for c in notebook["cells"] if STATIC_COPY_TAG in c.get("metadata", {}).get("tags", []))
    )
    dropped = _descendants(tagged, state)
    for cell in notebook["cells"]:
        _slim_outputs(cell.get("outputs", []))
    for model_id, widget in state.items():
        if widget["model_name"] == "OutputModel":
            if model_id in dropped:
                widget["state"]["outputs"] = []
            else:
                _slim_outputs(widget["state"].get("outputs", []))
    return notebook


def slim_file(path: str | Path) -> tuple[int, int]:
    """Slim the notebook at `path` in place, written as Jupyter writes it; (bytes before, bytes after)."""
    path = Path(path)
    before = path.read_text(encoding="utf-8")
    after = json.dumps(slim(json.loads(before)), indent=1, ensure_ascii=False) + "\n"
    path.write_text(after, encoding="utf-8")
    return len(before.encode()), len(after.encode())


if __name__ == "__main__":
    for name in sys.argv[1:]:
        size_before, size_after = slim_file(name)
        print(f"{name}: {size_before // 1024} KB -> {size_after // 1024} KB")
