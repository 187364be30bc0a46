"""Sphinx configuration of the course site (`make book`): the notebooks with their saved outputs, the guide, the
docs pages and the API, built offline.

The source folder is the repository root (`sphinx-build -c docs . build/book`), so the notebooks' own relative
links (README.md, references.md, 0X_*.ipynb) and the docs pages' links into notebooks/ resolve as they do on a
code host. Nothing is executed and nothing is fetched: MathJax is served from the copy that the
django-static-mathjax package ships.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import mathjax

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # autodoc imports this checkout's binsr

project = "binsr"
copyright = "binsr maintainers, MIT License"
author = "binsr maintainers"
root_doc = "docs/index"
include_patterns = ["docs/*.md", "notebooks/*.md", "notebooks/*.ipynb"]
exclude_patterns = ["docs/_extra"]

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.mathjax"]
myst_enable_extensions = ["dollarmath", "amsmath", "substitution"]
myst_heading_anchors = 3
nb_execution_mode = "off"  # the notebooks are shown with the outputs they were saved with
nb_render_markdown_format = "myst"  # cells' Markdown outputs (the result tables) are tables, not text with pipes
nb_ipywidgets_js = {}  # no widget manager from a CDN: each widget is followed by its figure drawn statically

# Broken cross-references and missing images fail the build (`-W`); types from other packages have no page here.
nitpicky = True
nitpick_ignore_regex = [(r"py:(class|obj|data|exc)", r"(torch|np|numpy|nn|pathlib|typing|collections|matplotlib|"
                         r"PIL|numba|argparse|io|os|ctypes|dataclasses|Path|Figure|Tensor|Callable|Iterable|"
                         r"Iterator|Sequence|Mapping)(\..*)?")]



def course_path() -> str:
    """The landing page's table of the ten notebooks: each one's title (its first heading), what it teaches (the
    teacher's guide's table) and how long *Run All* took when it was saved (`viz.run_seconds`), so that the
    table cannot disagree with the notebooks or the guide."""
    from binsr.viz.lesson import run_seconds

    teaches = {}
    for line in (REPO / "notebooks" / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].isdigit():
            teaches[cells[0]] = cells[2]
    rows = ["| # | notebook | what it teaches | Run All |", "|---|---|---|---|"]
    for path in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        title = "".join(cells[0]["source"]).splitlines()[0].lstrip("# ").split("·", 1)[-1].strip()
        number = path.name[:2]
        link = f"[{title}](../notebooks/{path.name})"
        rows.append(f"| {number} | {link} | {teaches[number]} | {run_seconds(path):.0f} s |")
    return "\n".join(rows)


myst_substitutions = {"course_path": course_path()}

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True}

html_theme = "sphinx_book_theme"
html_title = "binsr: binary neural networks for image super-resolution"
html_theme_options = {
    "show_toc_level": 2,
    "home_page_in_toc": True,
    "use_download_button": False,
}
html_context = {"default_mode": "light"}
html_static_path = ["_static"]
html_css_files = ["binsr.css"]
html_extra_path = ["_extra"]  # index.html at the site's root, which opens the landing page
html_show_sourcelink = False
# MathJax 3 from the django-static-mathjax package (MathJax's own es5 build, no dependencies): TeX in, CommonHTML
# out, its fonts beside it. Only the parts a page loads are copied (`copy_mathjax`).
mathjax_path = "mathjax/tex-chtml.js"
mathjax3_config = {"options": {"enableMenu": False}}
html_favicon = "_static/favicon.svg"


def docstring_as_text(app, what, name, obj, options, lines: list[str]) -> None:
    """binsr's docstrings are plain text (equations written with |x|, *, _ and their own layout), not reST:
    show them as written, in a literal block."""
    if lines:
        lines[:] = ["::", "", *(f"    {line}" for line in lines), ""]


HEADING_ANCHOR = re.compile(r'^(#+ .*?)\s*<a id="([^"]+)"></a>\s*$', re.MULTILINE)


def notebook_for_the_site(app, docname: str, source: list[str]) -> None:
    """The saved notebook as a reader without a kernel needs it: widget views dropped (the static figure after
    each widget shows it), the hidden solution and quiz cells collapsed behind a toggle, and each heading's HTML
    anchor (`## 1. Title <a id="nb01-1"></a>`, which JupyterLab needs for the contents links) made a MyST target,
    so that the contents links are checked cross-references here."""
    if not docname.startswith("notebooks/") or not source[0].lstrip().startswith("{"):
        return
    nb = json.loads(source[0])
    nb["metadata"].pop("widgets", None)
    for cell in nb["cells"]:
        cell["outputs"] = [
            o for o in cell.get("outputs", []) if "application/vnd.jupyter.widget-view+json" not in o.get("data", {})
        ]
        if cell["cell_type"] == "markdown":
            cell["source"] = HEADING_ANCHOR.sub(r"(\2)=\n\1", "".join(cell["source"]))
        if cell["metadata"].get("jupyter", {}).get("source_hidden"):
            cell["metadata"].setdefault("tags", []).append("hide-input")
    source[0] = json.dumps(nb)


def copy_mathjax(app, exception) -> None:
    if exception is None and app.builder.format == "html":
        es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
        target = Path(app.outdir) / "_static" / "mathjax"
        target.mkdir(exist_ok=True)
        shutil.copy2(es5 / "tex-chtml.js", target / "tex-chtml.js")
        for part in ("output/chtml/fonts/woff-v2", "input/tex/extensions"):
            shutil.copytree(es5 / part, target / part, dirs_exist_ok=True)


def setup(app) -> None:
    app.connect("autodoc-process-docstring", docstring_as_text)
    app.connect("source-read", notebook_for_the_site)
    app.connect("build-finished", copy_mathjax)
