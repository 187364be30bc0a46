import functools
import hashlib
import io
import re
import socket
import tarfile
import threading
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from binsr.data import download as dl


class _CountingHandler(SimpleHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):
        self.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """An HTTP server on 127.0.0.1 (ephemeral port) serving tmp_path/srv; yields (base URL, folder, requests)."""
    served = tmp_path / "srv"
    served.mkdir()
    _CountingHandler.requests = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_CountingHandler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", served, _CountingHandler.requests
    httpd.shutdown()
    httpd.server_close()


def _zip(path, files: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_verified_zip_is_extracted_into_the_layout(server, tmp_path, monkeypatch):
    url, served, requests = server
    sha = _zip(served / "Toy_HR.zip", {"Toy_HR/a.png": b"aaa", "Toy_HR/sub/b.png": b"bb", "README": b"skip me"})
    monkeypatch.setitem(dl.SOURCES, "Toy", dl.Source(f"{url}/Toy_HR.zip", sha, {"Toy_HR/": "Toy/HR/"}))
    root = tmp_path / "data"
    assert dl.download("Toy", root, progress=False) == root
    assert (root / "Toy" / "HR" / "a.png").read_bytes() == b"aaa"
    assert (root / "Toy" / "HR" / "sub" / "b.png").read_bytes() == b"bb"
    assert sorted(p.name for p in root.iterdir()) == ["Toy", "Toy_HR.zip"]  # no README, no .part file
    dl.download("Toy", root, progress=False)
    assert requests == ["/Toy_HR.zip"]  # the verified archive already there is reused


def test_wrong_hash_leaves_nothing_behind(server, tmp_path, monkeypatch):
    url, served, requests = server
    sha = _zip(served / "Toy_HR.zip", {"Toy_HR/a.png": b"aaa"})
    wrong = "0" * 64
    monkeypatch.setitem(dl.SOURCES, "Toy", dl.Source(f"{url}/Toy_HR.zip", wrong, {"Toy_HR/": "Toy/HR/"}))
    root = tmp_path / "data"
    with pytest.raises(ValueError, match=f"has sha256 {sha}; expected {wrong}"):
        dl.download("Toy", root, progress=False)
    assert not root.exists()  # the folder this download created is gone with its partial file
    assert requests == ["/Toy_HR.zip"]


def test_unpinned_archive_needs_verify_false(server, tmp_path, monkeypatch, capsys):
    url, served, requests = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        info = tarfile.TarInfo("benchmark/Set5/HR/baby.png")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"baby"))
    (served / "benchmark.tar").write_bytes(buf.getvalue())
    monkeypatch.setitem(dl.SOURCES, "Toy", dl.Source(f"{url}/benchmark.tar", None, {"benchmark/": ""}))
    root = tmp_path / "data"
    with pytest.raises(ValueError, match=r"Toy has no pinned sha256 .*; pass verify=False \(binsr download --insecure"):
        dl.download("Toy", root, progress=False)
    assert requests == []
    dl.download("Toy", root, progress=False, verify=False)
    assert (root / "Set5" / "HR" / "baby.png").read_bytes() == b"baby"
    assert hashlib.sha256(buf.getvalue()).hexdigest() in capsys.readouterr().out


def test_members_escaping_the_root_are_refused(server, tmp_path, monkeypatch):
    url, served, _ = server
    sha = _zip(served / "evil.zip", {"Toy/../../evil.txt": b"x"})
    monkeypatch.setitem(dl.SOURCES, "Toy", dl.Source(f"{url}/evil.zip", sha, {"Toy/": "Toy/"}))
    with pytest.raises(ValueError, match="outside"):
        dl.download("Toy", tmp_path / "data", progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_unknown_name_and_table_format():
    with pytest.raises(ValueError, match="'Set5'"):
        dl.download("Set5", "unused")
    for source in dl.SOURCES.values():
        assert source.url.startswith("https://")
        assert source.sha256 is None or re.fullmatch("[0-9a-f]{64}", source.sha256)


def test_no_network_is_one_line_and_leaves_no_folder(tmp_path, monkeypatch):
    with socket.socket() as s:  # a port nothing listens on: the connection is refused, as offline
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/Toy.zip"
    monkeypatch.setitem(dl.SOURCES, "Toy", dl.Source(url, "0" * 64, {"Toy/": "Toy/"}))
    root = tmp_path / "data"
    expected = f"cannot download {url} ([Errno 111] Connection refused); expected network access to its host"
    with pytest.raises(ConnectionError, match=f"^{re.escape(expected)}$"):
        dl.download("Toy", root, progress=False)
    assert not root.exists()
    (root / "Set5").mkdir(parents=True)  # a folder that was there before stays, with what it held
    with pytest.raises(ConnectionError):
        dl.download("Toy", root, progress=False)
    assert [p.name for p in root.iterdir()] == ["Set5"]
