"""The native library's interface: binsr_conv's struct as C lays it out, and the refusal of a library whose
interface differs from binsr.engine.native's."""

import ctypes
import ctypes.util
import re

import pytest

from binsr.engine import native, xnor


@pytest.fixture
def isa() -> str:
    """The first native kernel that runs here (its library's load already passed the version check)."""
    isa = next((isa for isa in native.ISAS if xnor.kernel_problem(isa) is None), None)
    if isa is None:
        pytest.skip(f"no native kernel runs here: {xnor.kernel_problem('avx2')}")
    return isa


@pytest.fixture
def library(isa) -> ctypes.CDLL:
    return native.build(isa)


def test_conv_call_lies_as_the_c_struct(library):
    offsets = (ctypes.c_int64 * 32)()
    count = library.binsr_conv_call_offsets(offsets)
    fields = [name for name, _ in native.ConvCall._fields_]
    assert count == len(fields) == 17
    assert list(offsets[:count]) == [getattr(native.ConvCall, name).offset for name in fields]
    assert library.binsr_conv_call_size() == ctypes.sizeof(native.ConvCall) == 9 * 8 + 7 * 8 + 8  # 4 bytes padding
    assert library.binsr_abi() == native.ABI


def test_a_library_of_another_interface_version_is_refused_in_one_line(isa, monkeypatch):
    size = ctypes.sizeof(native.ConvCall)
    monkeypatch.setattr(native, "ABI", native.ABI + 1)  # as if the C source were older than binsr.engine.native
    with pytest.raises(native.NativeUnavailable) as refused:
        native.build.__wrapped__(isa)  # the cached library, loaded afresh
    library = re.escape(str(native.cache_dir() / f"xnor-{isa}-"))
    assert re.fullmatch(
        f"{library}[0-9a-f]{{16}}\\.so has interface version {native.ABI - 1} and a {size}-byte ConvCall; "
        f"binsr\\.engine\\.native expects version {native.ABI} and {size} bytes",
        str(refused.value),
    )


def test_a_library_whose_struct_differs_is_refused_in_one_line(library, monkeypatch):
    class Longer(ctypes.Structure):
        _fields_ = [*native.ConvCall._fields_, ("extra", ctypes.c_int64)]

    monkeypatch.setattr(native, "ConvCall", Longer)
    path = native.cache_dir() / "xnor-avx2-stale.so"
    with pytest.raises(native.NativeUnavailable) as refused:
        native._checked(library, path)
    expected = f"{path} has interface version {native.ABI} and a 136-byte ConvCall; "
    expected += "binsr.engine.native expects version "
    assert str(refused.value) == expected + f"{native.ABI} and 144 bytes"


def test_a_library_without_the_interface_functions_is_refused_in_one_line(tmp_path):
    libm = ctypes.CDLL(ctypes.util.find_library("m"))  # a library without binsr's functions
    with pytest.raises(native.NativeUnavailable) as refused:
        native._checked(libm, tmp_path / "old.so")
    assert str(refused.value) == f"{tmp_path / 'old.so'} has no function binsr_abi: not a library of this binsr version"
