"""Every atomic write in binsr goes through `binsr.base.files.atomic_write`: whatever fails, the old file stays whole
and no temporary file is left behind (one kept a full disk full)."""

import errno
import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.base.files import atomic_write
from binsr.engine import native, runtime
from binsr.engine.export import export_model
from binsr.evaluation import photos
from binsr.nn import checkpoint
from binsr.nn.models import create_model

TINY = {"n_feats": 4, "n_blocks": 1}


def _disk_full(*args, **kwargs):
    """A write that gets half way, some bytes into the file (or path) among its arguments, then fails as a full
    disk does."""
    target = next(arg for arg in args if isinstance(arg, (str, os.PathLike)) or hasattr(arg, "write"))
    if hasattr(target, "write"):
        target.write(b"half a file")
    else:
        Path(target).write_bytes(b"half a file")
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_leaves_the_old_file_and_nothing_else(tmp_path):
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    for error in (OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(error)), atomic_write(path) as tmp:
            tmp.write_bytes(b"half")
            raise error
        assert path.read_bytes() == b"old"
        assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    with atomic_write(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new" and stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def _save_checkpoint(path):
    checkpoint.save(path, create_model("edsr-fp", **TINY))


def _export(path):
    export_model(create_model("edsr-bbcu", **TINY), path)


def _save_png(path):
    photos._save_png(np.zeros((4, 4, 3), np.uint8), path)


WRITERS = [  # (what writes, where its bytes go: the call a full disk fails)
    (_save_checkpoint, (torch, "save")),
    (_export, (runtime.np, "savez")),
    (_save_png, (Image.Image, "save")),
]


@pytest.mark.parametrize("write,low_level", WRITERS, ids=["checkpoint", "export", "png"])
def test_a_full_disk_in_any_writer_keeps_the_old_file_and_leaves_no_temporary_file(write, low_level, tmp_path,
                                                                                     monkeypatch):  # fmt: skip
    path = tmp_path / "out"
    path.write_bytes(b"the previous file")

    monkeypatch.setattr(*low_level, _disk_full)
    with pytest.raises(OSError, match="No space left on device"):
        write(path)
    assert path.read_bytes() == b"the previous file"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_failed_kernel_build_keeps_the_cached_library_and_leaves_no_temporary_file(tmp_path):
    fake = tmp_path / "cc"  # writes half a library, then fails as a full disk would
    fake.write_text('#!/bin/sh\nfor a; do out=$a; done\necho half > "$out"\necho "No space left on device" >&2\n'
                    "exit 1\n")  # fmt: skip
    fake.chmod(0o755)
    cache = tmp_path / "kernels"
    cache.mkdir()
    library = cache / "xnor-avx2-0123.so"
    library.write_bytes(b"the previous library")
    with pytest.raises(native.NativeUnavailable, match="^cc failed: No space left on device$"):
        native._compile([str(fake)], library)
    assert library.read_bytes() == b"the previous library"
    assert [p.name for p in cache.iterdir()] == [library.name]
