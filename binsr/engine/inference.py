"""Which engine runs a model where users run one (`binsr upscale`, `binsr eval`, notebook 09): torch or XNOR.

"torch" runs the model as it trains, every binary conv a float conv of ±1 values. "xnor" runs it through
`binsr.engine.runtime` on the XNOR kernels: a binary model is packed in memory (`binsr.engine.export.pack_model`), a
`.binsr` file is loaded as it is. Its outputs equal torch's bit for bit, tiles included (tests/test_engine.py), so
"auto", the default, takes xnor for a binary model on the CPU wherever a native kernel (avx512, avx2) runs, and torch
otherwise: for a full-precision model, on a GPU, for a model the export cannot represent, or where only the portable
kernel would run. Both engines run on torch's threads (`torch.set_num_threads`).
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from binsr.engine.runtime import PackedModel

ENGINES: tuple[str, ...] = ("auto", "xnor", "torch")


def _threads() -> str:
    n = torch.get_num_threads()
    return f"{n} thread{'s' if n > 1 else ''}"


def _xnor_line() -> str:
    from binsr.engine import xnor

    return f"engine: xnor, {_threads()} | {xnor.describe()}"


def prepare(model: nn.Module, engine: str = "auto", kernel: str = "auto") -> tuple[nn.Module | PackedModel, str]:
    """`model` ready to run on `engine`, and one line naming the engine that will run it: for xnor the XNOR
    kernel, the CPU and its ISA (`binsr.engine.xnor.describe`), for auto's torch the reason. `kernel` "auto" keeps the
    process's XNOR kernel (`binsr.engine.xnor.setup`), a name from `binsr.engine.xnor.KERNELS` chooses it."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; expected one of {', '.join(ENGINES)}")
    device = next(model.parameters(), torch.empty(0)).device
    if engine == "torch":
        return model, f"engine: torch on {device}, {_threads()}"
    from binsr.engine import xnor
    from binsr.engine.export import pack_model
    from binsr.nn.binary import BinaryConv2d

    if kernel != "auto":
        xnor.setup(kernel)
    name = model.config["name"] if hasattr(model, "config") else type(model).__name__
    if engine == "xnor":
        if device.type != "cpu":
            raise ValueError(f"the xnor engine runs on the CPU; the model is on {device} (expected --device cpu)")
        try:
            return pack_model(model), _xnor_line()
        except ValueError as error:
            raise ValueError(f"the xnor engine cannot run {name}: {error}") from None
    if device.type != "cpu":
        why = f"the model is on {device}"
    elif not any(isinstance(m, BinaryConv2d) for m in model.modules()):
        why = f"{name} has no binary layers"
    elif xnor.current_kernel() == "portable":
        reasons = (f"{k}: {xnor.kernel_problem(k) or 'not chosen'}" for k in xnor.KERNELS[:-1])
        why = f"only the portable XNOR kernel would run ({'; '.join(reasons)})"
    else:
        try:
            return pack_model(model), _xnor_line()
        except ValueError as error:
            why = str(error)
    return model, f"engine: torch on {device}, {_threads()} (auto: {why})"


def load(
    spec: str, engine: str = "auto", device: str = "auto", kernel: str = "auto", expect_scale: int | None = None
) -> tuple[nn.Module | PackedModel, str]:
    """The model `spec` names (a shipped model, a checkpoint .pt or a packed .binsr file) ready for `engine`, and
    `prepare`'s line. A .binsr file has no float model for torch to run, so it runs on xnor under "auto" too."""
    if Path(spec).suffix != ".binsr":
        from binsr.base.device import resolve_device
        from binsr.nn.checkpoint import load_any

        return prepare(load_any(spec, expect_scale=expect_scale).to(resolve_device(device)), engine, kernel)
    if engine == "torch":
        raise ValueError(f"{spec} is a packed model, which only the xnor engine runs; expected --engine xnor or auto")
    from binsr.engine import xnor
    from binsr.engine.runtime import load_packed

    if kernel != "auto":
        xnor.setup(kernel)
    packed = load_packed(spec)
    if expect_scale is not None and packed.scale != expect_scale:
        raise ValueError(f"packed model {spec} is for scale x{packed.scale}; expected x{expect_scale}")
    return packed, _xnor_line()


def reuse_freed_memory() -> bool:
    """Have the C library's malloc keep freed memory for reuse rather than give it back to the OS (glibc's mallopt:
    no mmap, trimming from 1 GiB). A command that runs a model tile after tile then reuses each tile's buffers,
    where torch and oneDNN would map them afresh and fault them in 4 KiB page by page: a 296x296 tile of EDSR 32x8
    x2 spent 0.1 s of system time in page faults on the xnor engine (a third of its time) and 0.5 s on torch. The
    process keeps its peak memory until it ends, so this is for the commands, not the library. True where it took
    effect (glibc); elsewhere nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_max, m_arena_max = -1, -4, -8
    # One arena: the threads that run tiles side by side reuse each other's freed memory too.
    return all(mallopt(option, value) for option, value in ((m_mmap_max, 0), (m_trim_threshold, 1 << 30),
                                                            (m_arena_max, 1)))  # fmt: skip
