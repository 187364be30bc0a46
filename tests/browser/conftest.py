"""A JupyterLab server and a Chromium for the browser tests.

The server runs this interpreter's JupyterLab on 127.0.0.1 with a free port and a random token, its kernel is
this interpreter (so the project's venv), and every Jupyter folder (config, data, runtime, settings, workspaces)
is a temporary one, so nothing of the user's set-up and nothing of the checkout changes. Chromium is Debian's
`chromium` package driven by Playwright (whose own browser download is not reachable from CI).

Without a Chromium the tests skip, unless BINSR_REQUIRE_BROWSER=1 (CI), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic",
]  # fmt: skip
# JupyterLab settings of the test server: no news or update pop-ups over the notebook
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False}
}
TIMINGS: list[dict] = []  # redraw times the tests measured, printed at the end of the session


def require_browser() -> bool:
    return os.environ.get("BINSR_REQUIRE_BROWSER", "").strip().lower() not in ("", "0", "false", "no")


def find_chromium() -> str | None:
    """$BINSR_CHROMIUM, else the first of chromium, chromium-browser on PATH."""
    if os.environ.get("BINSR_CHROMIUM"):
        return os.environ["BINSR_CHROMIUM"]
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def _unavailable(reason: str):
    if require_browser():
        pytest.fail(f"{reason} (BINSR_REQUIRE_BROWSER is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    url: str
    token: str
    root: Path  # the server's root folder: a copy of notebooks/ lies in root / "notebooks"

    def api(self, path: str, method: str = "GET"):
        """Call the server's REST API; the decoded JSON answer (None when empty)."""
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = find_chromium()
    if path is None:
        _unavailable(
            "no Chromium found: install Debian's `chromium` package (or set BINSR_CHROMIUM) to run the browser tests"
        )
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[dev]')")
    return path


def jupyter_env(root: Path) -> dict[str, str]:
    """The environment of a Jupyter server under `root`: every Jupyter folder a temporary one, the kernel this
    interpreter (by absolute path, so the project venv whatever the PATH says), quick mode."""
    jupyter = root / "jupyter"
    for name, settings in LAB_SETTINGS.items():
        path = jupyter / "settings" / name
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(settings))
    # JUPYTER_PATH is searched before the venv's and the user's kernel specs
    spec = jupyter / "path" / "kernels" / "python3" / "kernel.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (ipykernel)", "language": "python",
    }))  # fmt: skip
    return {
        **os.environ,
        "JUPYTER_PATH": os.pathsep.join([str(jupyter / "path"), *filter(None, [os.environ.get("JUPYTER_PATH")])]),
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
        "JUPYTER_DATA_DIR": str(jupyter / "data"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(jupyter / "workspaces"),
        "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
        "BINSR_QUICK": "1",
        "NUMBA_THREADING_LAYER": "workqueue",
    }


@contextmanager
def serving(cmd: list[str], env: dict, log_path: Path, ready: Callable[[], object], what: str):
    """Run a server until the `with` block ends: `ready()` is polled until it stops raising OSError; the server
    is stopped by its process id (SIGTERM, then SIGKILL)."""
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                ready()
                break
            except OSError as e:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not start ({e}); its log:\n{log_path.read_text()[-3000:]}") from e
                time.sleep(0.5)
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGTERM)  # a Jupyter server shuts its kernels down on SIGTERM
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="session")
def lab(chromium_path, tmp_path_factory):
    """A JupyterLab server over a copy of the notebooks, stopped by its process id at the end of the session."""
    root = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", root / "notebooks")  # autosave and checkpoints stay out of the checkout
    env = jupyter_env(root)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [
        sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
        "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    server = Lab(f"http://127.0.0.1:{port}", token, root)
    with serving(cmd, env, root / "jupyterlab.log", lambda: server.api("/api/status"), "JupyterLab"):
        yield server


@pytest.fixture(scope="session")
def voila(chromium_path, tmp_path_factory) -> str:
    """A Voila server (the presenter view of `make present`) over a copy of the notebooks; its base URL."""
    root = tmp_path_factory.mktemp("voila")
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    port = _free_port()
    cmd = [
        sys.executable, "-m", "voila", str(root / "notebooks"), "--no-browser", f"--port={port}",
        "--Voila.ip=127.0.0.1", "--show_tracebacks=True",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with serving(cmd, jupyter_env(root), root / "voila.log", lambda: urllib.request.urlopen(url, timeout=10), "Voila"):
        yield url


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    args = [*CHROMIUM_ARGS, *(["--no-sandbox"] if os.geteuid() == 0 else [])]  # Chromium's sandbox refuses root
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path, args=args)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def context(browser):
    """One browser context for all notebooks: JupyterLab's scripts load from its cache after the first page."""
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    yield ctx
    ctx.close()


def pytest_terminal_summary(terminalreporter):
    if not TIMINGS:
        return
    terminalreporter.section("redraw times in JupyterLab: control change -> new figure on screen")
    for t in TIMINGS:
        terminalreporter.write_line(f"{t['notebook']:<36} {t['widget']:<28} {t['control']:<14} {t['seconds']:6.2f} s")
