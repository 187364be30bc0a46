"""The native XNOR kernels (`binsr/engine/xnor_native.c`): what this CPU can run, and the compiled library for each ISA.

The C source is compiled on first use with the system's C compiler (`$CC`, else gcc or cc), once per instruction
set and source version, into `$XDG_CACHE_HOME/binsr/kernels` (default `~/.cache/binsr/kernels`); later processes
load the cached library in milliseconds, once it matches the size and SHA-256 recorded beside it at build time
(loading a damaged library can kill the process with SIGBUS; one that does not match is compiled again, with a
warning). Without a compiler, or where the build fails, `build` raises `NativeUnavailable` with the reason and
`binsr.engine.xnor` runs its portable numba kernels instead.

The library's interface is declared here in full: `binsr_conv` takes one `ConvCall` struct, mirrored field for
field by the ctypes `ConvCall` below, and `build` refuses a library whose interface version (`binsr_abi`) or struct
size differs from this module's, so that a mismatch is one line of error instead of arguments read from the wrong
places.

OpenMP comes from gcc's libgomp, the runtime torch's Linux wheels bundle under the same name (libgomp.so.1): the
loader keeps one copy per process, so the kernel's parallel rows run on torch's own worker threads. Those spin
for a while after every torch op, and a second thread pool would compete with them for the cores.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from functools import cache
from pathlib import Path

from binsr.base.files import atomic_write

SOURCE = Path(__file__).with_name("xnor_native.c")
# Per ISA: the CPU features it needs (as LLVM names them) and the compiler flags. No -mfma: with
# -ffp-contract=off nothing would use it, and the output stage must round like torch's separate mul and add.
ISAS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "avx512": (
        ("avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512vpopcntdq", "avx2", "popcnt"),
        ("-DBINSR_AVX512", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vpopcntdq", "-mavx2"),
    ),
    "avx2": (("avx2", "popcnt"), ("-DBINSR_AVX2", "-mavx2", "-mpopcnt")),
}
FLAGS = ("-O3", "-shared", "-fPIC", "-fopenmp", "-ffp-contract=off", "-std=gnu11")
ABI = 1  # BINSR_ABI of xnor_native.c: raise both with any change to ConvCall or to a function's parameters


class ConvCall(ctypes.Structure):
    """The one argument of `binsr_conv`: `ConvCall` of xnor_native.c, the same fields in the same order (the
    shapes are `binsr.engine.packing`'s)."""

    _fields_ = [
        ("act", ctypes.c_void_p),  # the packed input map
        ("weights", ctypes.c_void_p),  # PackedConv.bits
        ("base", ctypes.c_void_p),
        ("alpha", ctypes.c_void_p),
        ("rprelu", ctypes.c_void_p),  # or NULL
        ("residual", ctypes.c_void_p),  # or NULL; may be `out` itself
        ("out", ctypes.c_void_p),
        ("next_threshold", ctypes.c_void_p),  # or NULL: no packed output
        ("next", ctypes.c_void_p),  # the next layer's packed map, or NULL
        ("n_img", ctypes.c_int64),
        ("height", ctypes.c_int64),
        ("width", ctypes.c_int64),
        ("channels", ctypes.c_int64),
        ("out_channels", ctypes.c_int64),
        ("opad", ctypes.c_int64),  # output channels padded to whole vectors: PackedConv.bits.shape[3]
        ("k", ctypes.c_int64),
        ("threads", ctypes.c_int32),
    ]


_P, _I = ctypes.c_void_p, ctypes.c_int64
# Each exported function: its result and its parameters, as xnor_native.c declares them.
SIGNATURES: dict[str, tuple[type | None, tuple[type, ...]]] = {
    "binsr_abi": (_I, ()),
    "binsr_conv_call_size": (_I, ()),
    "binsr_conv_call_offsets": (_I, (ctypes.POINTER(_I),)),  # room for 32 offsets
    "binsr_pack": (None, (_P, _P, _P, _I, _I, _I, _I, ctypes.c_int)),  # x, threshold, packed, N, H, W, C, threads
    "binsr_pack_nchw": (None, (_P, _P, _P, _I, _I, _I, _I, ctypes.c_int)),  # x, threshold, packed, N, C, H, W, thr.
    "binsr_to_nchw": (None, (_P, _P, _I, _I, _I, _I, ctypes.c_int)),  # x, y, N, H, W, C, threads
    "binsr_conv": (None, (ctypes.POINTER(ConvCall),)),
}


class NativeUnavailable(RuntimeError):
    """The native kernel for an ISA cannot run here; the message says why."""


def _cpuinfo(field: str) -> str | None:
    """The first `field` of Linux's /proc/cpuinfo ("flags", "model name", ...), or None without one."""
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field), None)


@cache
def cpu_features() -> frozenset[str]:
    """The host CPU's features that the kernels care about, as LLVM names them, and usable by the OS too: the
    flags Linux lists in /proc/cpuinfo (it drops those whose registers it does not save), else LLVM's detection.
    Importing llvmlite for it would add 45 MB to a process that runs a native kernel."""
    wanted = {feature for required, _ in ISAS.values() for feature in required}
    flags = _cpuinfo("flags")
    if flags is not None:
        return frozenset(wanted & {flag.replace("_", "") for flag in flags.split()})  # Linux: avx512_vpopcntdq
    import llvmlite.binding as llvm  # llvmlite comes with numba

    return frozenset(name for name, present in llvm.get_host_cpu_features().items() if present and name in wanted)


@cache
def cpu_model() -> str:
    """The CPU's model name with its family and model numbers, which name the microarchitecture (from
    /proc/cpuinfo), else the processor platform reports."""
    name = _cpuinfo("model name") or platform.processor() or platform.machine()
    family, model = _cpuinfo("cpu family"), _cpuinfo("model")
    return f"{name} (family {family}, model {model})" if family and model else name


def missing_features(isa: str) -> list[str]:
    """The CPU features `isa` needs that this machine lacks (all of them off x86-64)."""
    if isa not in ISAS:
        raise ValueError(f"unknown ISA {isa!r}; expected one of {', '.join(ISAS)}")
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return list(ISAS[isa][0])
    return [feature for feature in ISAS[isa][0] if feature not in cpu_features()]


def cache_dir() -> Path:
    """Where compiled kernels are kept: $XDG_CACHE_HOME/binsr/kernels, default ~/.cache/binsr/kernels."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "binsr" / "kernels"


def compiler() -> str | None:
    """The C compiler to use: $CC, else gcc, else cc; None if there is none."""
    return os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")


@cache
def build(isa: str) -> ctypes.CDLL:
    """The native library for `isa`, compiled on first use (about 6 s with gcc) and cached; NativeUnavailable if not."""
    missing = missing_features(isa)
    if missing:
        raise NativeUnavailable(f"the CPU lacks {', '.join(missing)}")
    cc = compiler()
    if cc is None:
        raise NativeUnavailable("no C compiler ($CC, gcc or cc)")
    command = [cc, *FLAGS, *ISAS[isa][1]]
    try:
        version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except OSError as error:
        raise NativeUnavailable(f"cannot run the C compiler {cc}: {error}") from None
    key = hashlib.sha256("\0".join([SOURCE.read_text(), *command, version]).encode()).hexdigest()[:16]
    path = cache_dir() / f"xnor-{isa}-{key}.so"
    if not _matches_record(path):
        if path.is_file():
            found = f"cached XNOR kernel {path} ({path.stat().st_size:,} bytes)"
            warnings.warn(f"{found} does not match the size and SHA-256 recorded when it was built; compiling it again",
                          RuntimeWarning, stacklevel=2)  # fmt: skip
        _compile(command, path)
    return _checked(ctypes.CDLL(str(path)), path)


def _checked(library: ctypes.CDLL, path: Path) -> ctypes.CDLL:
    """`library` with its functions declared, once its interface version and ConvCall's size are this module's."""
    for name, (result, parameters) in SIGNATURES.items():
        function = getattr(library, name, None)
        if function is None:
            raise NativeUnavailable(f"{path} has no function {name}: not a library of this binsr version")
        function.restype, function.argtypes = result, parameters
    found, expected = (library.binsr_abi(), library.binsr_conv_call_size()), (ABI, ctypes.sizeof(ConvCall))
    if found != expected:
        raise NativeUnavailable(
            f"{path} has interface version {found[0]} and a {found[1]}-byte ConvCall; "
            f"binsr.engine.native expects version {expected[0]} and {expected[1]} bytes"
        )
    return library


def _fingerprint(path: Path) -> str:
    """The size and SHA-256 of the file at `path`, as its build record holds them."""
    data = path.read_bytes()
    return f"{len(data)} {hashlib.sha256(data).hexdigest()}\n"


def _record(library: Path) -> Path:
    return library.with_suffix(".sha256")


def _matches_record(library: Path) -> bool:
    """Whether `library` exists and is byte for byte the file that `_compile` recorded."""
    try:
        return _record(library).read_text() == _fingerprint(library)
    except (OSError, UnicodeDecodeError):
        return False


def _compile(command: list[str], path: Path) -> None:
    """Compile SOURCE into `path` through a temporary file, so that no process ever loads half a library, and record
    its size and SHA-256 beside it."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path, 0o755) as tmp:
            _run_compiler([*command, str(SOURCE), "-o", str(tmp)])
            fingerprint = _fingerprint(tmp)
        with atomic_write(_record(path)) as tmp:
            tmp.write_text(fingerprint)
    except OSError as error:
        raise NativeUnavailable(f"cannot write to the kernel cache {path.parent}: {error}") from None


def _run_compiler(command: list[str]) -> None:
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise NativeUnavailable(f"cannot run {command[0]}: {error}") from None
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no message"])[-1]
        raise NativeUnavailable(f"{Path(command[0]).name} failed: {last}")
