"""Output folders: made, or refused in one line, before any work starts; a run folder held by one trainer; files
written whole or not at all (`atomic_write`).

A folder holds a run when it has `last.pt`. Training into it is refused unless the run is resumed or the caller
asks to overwrite it, so a finished run is never replaced by accident. While training, the process holds an
exclusive `flock` on `<folder>/.lock`, whose text names the holder. The kernel drops the lock when its process
ends, however it ends, so a killed run never leaves a stale lock behind. (No flock on Windows: runs there are
not locked.)
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = ".lock"


def ensure_dir(path: str | os.PathLike) -> Path:
    """Create folder `path` and its parents; a one-line ValueError when a file stands where a folder must go."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in (path, *path.parents) if p.exists() and not p.is_dir()), path)
        raise ValueError(f"cannot create folder {path}: {blocker} is a file; expected a folder") from None
    return path


@contextmanager
def atomic_write(path: str | os.PathLike, mode: int = 0o644) -> Iterator[Path]:
    """A temporary file beside `path` for the block to write; renamed over `path` when the block ends, removed when
    it raises (a full disk, Ctrl-C, anything). So `path` is always the old file or the whole new one, and nothing
    is left behind. `mode`: the new file's permissions (mkstemp makes it private)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextmanager
def claim_run(folder: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Iterator[Path]:
    """Hold run folder `folder` (created if needed) for one training run; yields its checkpoint path, last.pt.

    Refused when another process holds it, or when it holds a run and neither `resume` nor `overwrite` is set.
    """
    if resume and overwrite:
        raise ValueError("resume and overwrite are both set; expected at most one")
    folder = ensure_dir(folder)
    last = folder / "last.pt"
    with open(folder / LOCK_NAME, "a+") as lock:  # "a+": opening must not erase the holder's name
        if fcntl is not None:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock.seek(0)
                holder = lock.read().strip() or "another process"
                message = f"run folder {folder} is in use by {holder}; expected one trainer at a time"
                raise ValueError(message) from None
        if last.is_file() and not (resume or overwrite):
            raise ValueError(f"{folder} already holds a run ({last}); expected --resume to continue it "
                             "or --overwrite to replace it")  # fmt: skip
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        lock.flush()
        yield last
