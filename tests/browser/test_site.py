"""The course site of `make book`, built as the Makefile builds it and loaded page by page in Chromium: no console
error, every image loaded, every internal link (and its #fragment) resolves, the maths of notebook 01 typeset."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from .conftest import REPO

# the landing page, the ten notebooks, the guide, glossary and references, the docs pages and the API
PAGES = [
    "docs/index.html",
    *(f"notebooks/{p.stem}.html" for p in sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))),
    "notebooks/README.html", "notebooks/glossary.html", "notebooks/references.html",
    "docs/method.html", "docs/results.html", "docs/ablation.html", "docs/training.html", "docs/engine.html",
    "docs/api.html",
]  # fmt: skip
IDS = re.compile(r"""\bid=["']([^"']+)["']""")


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site(chromium_path, tmp_path_factory) -> Path:
    """The site, built with the Makefile's command (-E -W -n: a warning, a broken reference or a missing image
    fails the build) into a temporary folder."""
    out = tmp_path_factory.mktemp("book")
    cmd = [sys.executable, "-m", "sphinx", "-b", "html", "-E", "-W", "--keep-going", "-n", "-q", "-c", "docs", ".",
           str(out)]  # fmt: skip
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"make book's build failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def served(site):
    """The site over HTTP on 127.0.0.1 (a thread of this process, stopped at the end of the module)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_site_has_every_page(site):
    missing = [page for page in PAGES if not (site / page).is_file()]
    assert not missing, f"pages missing from the site: {missing}"
    assert len(PAGES) >= 14
    assert "docs/index.html" in (site / "index.html").read_text()  # the root opens the landing page


def test_markdown_tables_printed_by_cells_are_tables(site):
    left_as_text = [page for page in PAGES if re.search(r"<p>\|[^<]*\|\s*(-|\u2014)", (site / page).read_text())]
    assert not left_as_text, f"a cell's Markdown table shown as text with pipes on {left_as_text}"
    results = (site / "notebooks" / "09_side_by_side.html").read_text()
    assert re.search(r"<th[^>]*>\s*(<p>)?Urban100 PSNR / SSIM", results), "09's headline table is not a table"


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    return frozenset(IDS.findall(path.read_text(errors="replace")))


def _broken_links(site: Path, base: str, hrefs: list[str]) -> list[str]:
    broken = []
    for href in hrefs:
        parts = urlsplit(href)
        if not href.startswith(base) or parts.path.endswith("/_static/"):
            continue  # another site (the papers, the code hosts) or a folder
        target = site / unquote(parts.path).lstrip("/")
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            broken.append(f"{href} (no file)")
        elif parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
            broken.append(f"{href} (no id {parts.fragment!r} in {target.name})")
    return broken


def test_every_page_loads_with_its_images_and_links(site, served, browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    problems = []
    for name in PAGES:
        page = context.new_page()
        errors: list[str] = []
        page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
        page.on("pageerror", lambda e, errors=errors: errors.append(f"uncaught: {e}"))
        page.on("requestfailed", lambda r, errors=errors: errors.append(f"failed: {r.url}"))
        page.goto(f"{served}/{name}", wait_until="load")
        page.wait_for_load_state("networkidle")
        images = page.evaluate("() => [...document.images].map(i => [i.currentSrc || i.src, i.naturalWidth])")
        unloaded = [src for src, width in images if width == 0]
        hrefs = page.evaluate("() => [...document.querySelectorAll('a[href]')].map(a => a.href)")
        broken = _broken_links(site, served, hrefs)
        for what, found in (("console errors", errors), ("images not loaded", unloaded), ("broken links", broken)):
            if found:
                problems.append(f"{name}: {what}: {found}")
        page.close()
    context.close()
    assert not problems, "\n".join(problems)


def test_the_maths_of_notebook_01_is_typeset(served, browser):
    page = browser.new_page()
    page.goto(f"{served}/notebooks/01_why_binarize.html", wait_until="load")
    maths = page.locator("main .math").count()
    assert maths >= 10, f"only {maths} formulas in notebook 01's page: is dollarmath on?"
    # MathJax 3 replaces each formula's TeX by an mjx-container; none of the TeX may stay as text
    page.wait_for_function(f"() => document.querySelectorAll('main mjx-container').length >= {maths}", timeout=30_000)
    raw = page.evaluate("() => [...document.querySelectorAll('main .math')].filter(m => !m.querySelector("
                        "'mjx-container')).map(m => m.textContent)")  # fmt: skip
    assert not raw, f"formulas left as TeX: {raw[:5]}"
    equation = page.locator("main mjx-container[display='true']").first
    assert equation.bounding_box()["height"] > 10  # drawn, not an empty box
    page.close()
