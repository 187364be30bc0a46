"""Download the public SR benchmark sets into the folder layout `binsr.data.images` reads. Never runs implicitly.

Each entry of `SOURCES` names a URL, the archive's SHA-256, and where its folders go under the data root.
The download goes to a hidden temporary file, is hashed while streaming, and gets its final name only
when the hash matches, so an interrupted or tampered download never looks complete.

Hashes are pinned only where one is on record; no hash here was computed from our own download (this
project was written without network access). An entry with `sha256=None` is refused unless the caller
passes `verify=False`, which prints the archive's hash so that it can be pinned here.
Manga109 is not listed: its authors hand it out on request only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from tqdm.auto import tqdm

from binsr.base.files import atomic_write, ensure_dir


@dataclass(frozen=True)
class Source:
    """One archive: `layout` maps a folder prefix inside the archive to a folder under the data root."""

    url: str
    sha256: str | None
    layout: dict[str, str]


SOURCES: dict[str, Source] = {
    # EDSR's Set5, Set14, B100 and Urban100, HR plus MATLAB-bicubic LR x2/x3/x4 (250,112,000 bytes).
    # Hash as recorded by github.com/YeapJieShen/single-image-super-resolution, which checks its copy.
    "benchmark": Source(
        "https://cv.snu.ac.kr/research/EDSR/benchmark.tar",
        "80c21c333bbf6ceb5308b7243761f8284478274413a97b96f1d63e9045fd93e8",
        {"benchmark/": ""},
    ),
    # DIV2K (Agustsson & Timofte, NTIRE 2017): 800 training and 100 validation 2K images; no hash on record.
    "DIV2K": Source(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_train_HR.zip", None, {"DIV2K_train_HR/": "DIV2K/HR/"}
    ),
    "DIV2K-valid": Source(
        "https://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip", None, {"DIV2K_valid_HR/": "DIV2K-valid/HR/"}
    ),
}

_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch(url: str, dest: Path, progress: bool) -> str:
    """Stream `url` into `dest` and return its SHA-256."""
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            name = url.rsplit("/", 1)[-1]
            with tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:  # no network, DNS, HTTP 404, ...
        reason = getattr(error, "reason", None) or error
        raise ConnectionError(f"cannot download {url} ({reason}); expected network access to its host") from None
    return digest.hexdigest()


def _archive_files(archive: Path) -> Iterator[tuple[str, IO[bytes]]]:
    """(name, file object) for every regular file; links and devices in a tar are skipped on purpose."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                if not info.is_dir():
                    with zf.open(info) as f:
                        yield info.filename, f
        return
    with tarfile.open(archive) as tf:
        for member in tf:
            if member.isfile():
                yield member.name, tf.extractfile(member)


def _extract(archive: Path, layout: dict[str, str], root: Path) -> int:
    count = 0
    for name, f in _archive_files(archive):
        name = name.removeprefix("./")
        prefix = next((p for p in layout if name.startswith(p)), None)
        if prefix is None:
            continue
        target = (root / (layout[prefix] + name[len(prefix) :])).resolve()
        if not target.is_relative_to(root.resolve()):
            raise ValueError(f"archive member {name!r} would be written outside {root}; refusing to extract")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target, "wb") as out:
            shutil.copyfileobj(f, out)
        count += 1
    if count == 0:
        raise ValueError(f"{archive} has no files under {', '.join(layout)}; expected that archive layout")
    return count


def download(name: str, root: str | os.PathLike, progress: bool = True, verify: bool = True) -> Path:
    """Download `SOURCES[name]` into `root`, check its SHA-256, extract it, and return `root`.

    The archive stays in `root` (delete it to save space); one already there is reused if it has the pinned hash.
    """
    if name not in SOURCES:
        raise ValueError(f"unknown download {name!r}; expected one of {', '.join(SOURCES)}")
    source = SOURCES[name]
    if verify and source.sha256 is None:
        raise ValueError(f"{name} has no pinned sha256 in binsr.data.download.SOURCES; pass verify=False "
                         "(binsr download --insecure) to accept it")  # fmt: skip
    root = Path(root)
    created = not root.exists()
    ensure_dir(root)
    archive = root / source.url.rsplit("/", 1)[-1]
    if not (archive.is_file() and source.sha256 is not None and _sha256(archive) == source.sha256):
        try:
            with atomic_write(archive) as part:
                actual = _fetch(source.url, part, progress)
                if verify and actual != source.sha256:
                    raise ValueError(f"{source.url} has sha256 {actual}; expected {source.sha256}")
                if not verify:
                    print(f"{archive.name}: sha256 {actual} (not verified)")
        finally:
            if created and not any(root.iterdir()):
                root.rmdir()  # a failed first download leaves no empty data folder behind
    count = _extract(archive, source.layout, root)
    if progress:
        print(f"{name}: extracted {count} files into {root}")
    return root
