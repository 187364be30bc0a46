"""The XNOR engine against torch, bit for bit, on every kernel this machine runs: packing, integer accumulators,
the fused unit; and how the kernel is chosen."""

import hashlib
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from binsr.engine import native, xnor
from binsr.engine.export import pack_binary_conv
from binsr.nn.binary import BinaryConv2d, RSign
from binsr.nn.config import BBCU_BINARIZATION

CHANNELS = (1, 3, 31, 32, 33, 64, 65, 128, 130)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().permute(0, 2, 3, 1).numpy())


def bits_of(packed: np.ndarray) -> np.ndarray:
    """(N, H+2, W+2, words) uint32/uint64 -> (N, H+2, W+2, bits * words) bools, channel order."""
    return np.unpackbits(packed.view(np.uint8), axis=-1, bitorder="little").astype(bool)


def torch_accumulators(x: torch.Tensor, threshold: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    x_b = torch.where(x > threshold.view(1, -1, 1, 1), 1.0, -1.0)
    return F.conv2d(x_b, torch.where(weight > 0, 1.0, -1.0), padding=weight.shape[-1] // 2)


def random_case(channels: int, out_channels: int, k: int, height: int, width: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, channels, height, width, generator=gen)
    threshold = 0.5 * torch.randn(channels, generator=gen)
    x[0, :, height // 2, width // 2] = threshold  # exactly on the threshold: -1
    x[1, :, 0, width - 1] = float("nan")  # NaN: -1
    weight = torch.randn(out_channels, channels, k, k, generator=gen)
    weight[0, :, 0, 0] = 0.0  # sign(0) = -1
    return x, threshold, weight


def assert_accumulators_equal(x, threshold, weight):
    packed = xnor.pack_activations(nhwc(x), threshold.numpy())
    accumulators = xnor.xnor_accumulators(packed, xnor.pack_conv(weight.numpy()))
    np.testing.assert_array_equal(accumulators, nhwc(torch_accumulators(x, threshold, weight)))


@pytest.mark.parametrize("k", [3, 1])
@pytest.mark.parametrize("channels", CHANNELS)
def test_accumulators_equal_conv2d(channels, k, kernel, threads):
    # channels + 3 outputs: never a whole number of output vectors
    assert_accumulators_equal(*random_case(channels, channels + 3, k, 6, 5, seed=channels * 10 + k))


@pytest.mark.parametrize("height,width", [(1, 7), (6, 1), (1, 1), (2, 2), (3, 19)])
@pytest.mark.parametrize("channels", [32, 33, 64])
def test_accumulators_on_thin_maps(channels, height, width, kernel):
    # width 19: two full 8-pixel tiles and a remainder
    assert_accumulators_equal(*random_case(channels, 6, 3, height, width, seed=height * 7 + width))


@pytest.mark.parametrize("channels,width", [(16, 160), (64, 64)])
@pytest.mark.parametrize("offset", [0, 1])
def test_a_large_output_streamed_or_not_is_the_same(offset, channels, width, kernel):
    # 2 MiB and more of output, nothing fused: the native kernels write it with non-temporal stores when it starts
    # on a vector boundary (offset 0: xnor_conv's own allocation or an aligned out=) and their tiles fill whole
    # cache lines (not avx2's tiles of uint64 words), with plain stores otherwise
    x, threshold, weight = random_case(channels, channels, 3, 128, width, seed=5)
    packed = xnor.pack_activations(nhwc(x), threshold.numpy())
    expected = nhwc(torch_accumulators(x, threshold, weight)).astype(np.float32)
    buffer = np.full(expected.size + 32, np.nan, np.float32)
    start = (-buffer.ctypes.data % xnor.VECTOR_BYTES) // 4 + offset
    out = buffer[start : start + expected.size].reshape(expected.shape)
    assert expected.nbytes >= 2 << 20
    np.testing.assert_array_equal(xnor.xnor_conv(packed, xnor.pack_conv(weight.numpy()), out=out)[0], expected)
    np.testing.assert_array_equal(xnor.xnor_conv(packed, xnor.pack_conv(weight.numpy()))[0], expected)
    assert np.isnan(buffer[:start]).all() and np.isnan(buffer[start + expected.size :]).all()


@pytest.mark.parametrize("channels", CHANNELS)
def test_packing_is_rsign_with_a_plus_one_border(channels, kernel):
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, 4, 3, generator=gen)
    rsign = RSign(channels).requires_grad_(False)
    rsign.threshold.copy_(torch.randn(channels, generator=gen))
    x[0, :, 0, 0] = rsign.threshold
    x[0, :, 1, 1] = torch.nextafter(rsign.threshold, torch.tensor(float("inf")))  # one ulp above: +1
    x[0, :, 2, 2] = float("nan")
    x[0, :, 3, 0] = float("inf")
    x[0, :, 3, 1] = float("-inf")
    packed = xnor.pack_activations(nhwc(x), rsign.threshold.numpy())
    assert packed.dtype == (np.uint32 if channels <= 32 else np.uint64)
    bits = bits_of(packed)
    np.testing.assert_array_equal(bits[:, 1:-1, 1:-1, :channels], nhwc(rsign(x)) > 0)
    border = np.ones_like(bits[..., :channels])
    border[:, 1:-1, 1:-1] = bits[:, 1:-1, 1:-1, :channels]
    np.testing.assert_array_equal(bits[..., :channels], border)
    assert not bits[..., channels:].any()  # padding bits are 0, as in the weights


@pytest.mark.parametrize("channels", CHANNELS)
def test_packing_an_nchw_map_and_copying_to_nchw_match_the_nhwc_path(channels, kernel, threads):
    gen = torch.Generator().manual_seed(channels)
    for height, width in ((1, 1), (3, 70), (45, 90)):  # the last on both threads from 33 channels
        x = torch.randn(2, channels, height, width, generator=gen)
        x.view(-1)[::5] = float("nan")
        threshold = torch.randn(channels, generator=gen)
        x[0, :, 0, 0] = threshold  # on the threshold: -1
        packed = xnor.pack_activations_nchw(x.numpy(), threshold.numpy())
        np.testing.assert_array_equal(packed, xnor.pack_activations(nhwc(x), threshold.numpy()))
        back = xnor.to_nchw(nhwc(x))
        assert back.strides == x.numpy().strides and np.array_equal(back.view(np.int32), x.numpy().view(np.int32))


def perturbed_conv(channels: int, out_channels: int, alpha_mode: str, rprelu: bool, seed: int) -> BinaryConv2d:
    """A BinaryConv2d with thresholds, alpha and RPReLU moved off their initial values."""
    torch.manual_seed(seed)
    conv = BinaryConv2d(channels, out_channels, 3, replace(BBCU_BINARIZATION, alpha_mode=alpha_mode), rprelu=rprelu)
    with torch.no_grad():
        for name, p in conv.named_parameters():
            if name != "weight":
                p.add_(0.3 * torch.randn_like(p))
    return conv.eval()


def bitwise(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize("alpha_mode,rprelu", [("mean", True), ("learnable", True), ("learnable", False)])
@pytest.mark.parametrize("channels", [17, 32, 64, 65])
def test_fused_unit_equals_torch_bitwise(channels, alpha_mode, rprelu, kernel, threads):
    conv = perturbed_conv(channels, channels, alpha_mode, rprelu, seed=channels)
    following = perturbed_conv(channels, channels, alpha_mode, rprelu, seed=channels + 1)
    x = 3 * torch.randn(2, channels, 7, 19, generator=torch.Generator().manual_seed(channels))
    x[1, 0, 2, 3], x[1, 1, 4, 5], x[0, 2, 6, 18] = float("nan"), float("inf"), float("-inf")  # through the residual
    with torch.no_grad():
        branch, unit = conv(x), conv(x) + x
        twice = following(unit) + unit
    packed = xnor.pack_activations(nhwc(x), conv.rsign.threshold.detach().numpy())
    packed_conv, next_threshold = pack_binary_conv(conv), following.rsign.threshold.detach().numpy()

    y, no_next = xnor.xnor_conv(packed, packed_conv)
    np.testing.assert_array_equal(bitwise(y), bitwise(nhwc(branch)))
    assert no_next is None
    residual = nhwc(x)
    y, packed_next = xnor.xnor_conv(packed, packed_conv, residual, next_threshold, out=residual)  # in place
    np.testing.assert_array_equal(bitwise(residual), bitwise(nhwc(unit)))
    np.testing.assert_array_equal(packed_next, xnor.pack_activations(nhwc(unit), next_threshold))
    y, _ = xnor.xnor_conv(packed_next, pack_binary_conv(following), residual=y)
    np.testing.assert_array_equal(bitwise(y), bitwise(nhwc(twice)))


def test_weights_are_packed_tap_by_tap_with_outputs_side_by_side():
    weight = -np.ones((3, 40, 3, 3), np.float32)
    weight[2, 39, 1, 0] = 1.0  # output 2, channel 39 (word 0, bit 39), tap (1, 0)
    conv = xnor.pack_conv(weight)
    assert conv.bits.shape == (3, 3, 1, 8) and conv.bits.dtype == np.uint64  # 3 outputs padded to 8 = 64 bytes
    assert conv.bits[1, 0, 0, 2] == 1 << 39 and np.count_nonzero(conv.bits) == 1
    assert xnor.pack_conv(weight[:, :32]).bits.shape == (3, 3, 1, 16)  # uint32 words: 16 outputs a vector


def test_packed_maps_are_checked():
    conv = xnor.pack_conv(np.ones((4, 40, 3, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected a C-contiguous \(N, H\+2, W\+2, 1\) uint64 packed map"):
        xnor.xnor_conv(xnor.empty_packed(1, 2, 2, 32), conv)  # a uint32 map of 32 channels
    with pytest.raises(ValueError, match=r"expected an \(N, H, W, 3\) float32 array"):
        xnor.pack_activations(np.zeros((1, 2, 2, 4), np.float32), np.zeros(3, np.float32))


def test_setup_names_the_cpu_its_features_and_the_kernel():
    previous = xnor.current_kernel()
    try:
        line = xnor.setup("portable")
        assert line.startswith(f"CPU {native.cpu_model()} | ISA ")
        assert "| XNOR kernel: portable (numba)" in line
        assert xnor.current_kernel() == "portable"
        auto = xnor.setup()
        assert xnor.current_kernel() == next(k for k in xnor.KERNELS if xnor.kernel_problem(k) is None)
        assert f"XNOR kernel: {xnor.current_kernel()}" in auto
        with pytest.raises(ValueError, match="unknown XNOR kernel 'avx1024'; expected one of avx512, avx2, portable"):
            xnor.setup("avx1024")
    finally:
        xnor.setup(previous)


def run_python(code: str, **env: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, **env}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_without_a_compiler_the_portable_kernel_runs_and_says_why(tmp_path):
    code = """if True:
        import numpy as np
        from binsr.engine import xnor
        packed = xnor.pack_activations(np.ones((1, 1, 1, 3), np.float32), np.zeros(3))  # the first packed op
        print(packed[0, 1, 1, 0])
        print(xnor.describe())"""
    env = {**os.environ, "CC": str(tmp_path / "no-cc"), "XDG_CACHE_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-W", "always", "-c", code], env=env, capture_output=True, text=True)
    word, line = result.stdout.splitlines()
    assert word == "7"  # three +1 bits, packed by the portable kernel
    assert "XNOR kernel: portable (numba)" in line
    if not native.missing_features("avx2"):
        assert f"avx2: cannot run the C compiler {tmp_path / 'no-cc'}" in line
        assert f"RuntimeWarning: {line}" in result.stderr  # said once, at the first packed op


def test_native_kernels_compile_once_into_the_cache_and_again_when_damaged(tmp_path):
    best = next(k for k in xnor.KERNELS if xnor.kernel_problem(k) is None)
    if best == "portable":
        pytest.skip("no native kernel runs here")
    code = f"from binsr.engine import xnor; xnor.setup({best!r}); print('ok')"
    assert run_python(code, XDG_CACHE_HOME=str(tmp_path)) == "ok"
    cache = tmp_path / "binsr" / "kernels"
    library = next(cache.glob(f"xnor-{best}-*.so"))
    record = library.with_suffix(".sha256")  # size and SHA-256, written at build time
    assert sorted(cache.iterdir()) == sorted([library, record])
    built = library.read_bytes()
    assert record.read_text() == f"{len(built)} {hashlib.sha256(built).hexdigest()}\n"
    assert run_python(code, XDG_CACHE_HOME=str(tmp_path)) == "ok"  # loaded, not built again
    assert sorted(cache.iterdir()) == sorted([library, record]) and library.read_bytes() == built

    library.write_bytes(built[:1000])  # truncated in place: loading it died of SIGBUS, rc 135, no message
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)},
                            capture_output=True, text=True)  # fmt: skip
    assert (result.returncode, result.stdout) == (0, "ok\n")
    expected = (f"RuntimeWarning: cached XNOR kernel {library} (1,000 bytes) does not match the size and SHA-256 "
                "recorded when it was built; compiling it again")  # fmt: skip
    assert expected in result.stderr and result.stderr.count("Warning") == 1
    assert native._matches_record(library) and sorted(cache.iterdir()) == sorted([library, record])


def test_importing_binsr_changes_nothing_in_the_process():
    code = ("import os; before = dict(os.environ); "
            "import binsr, binsr.engine.xnor, binsr.engine.runtime, binsr.engine.export, binsr.evaluation.bench; "
            "print(before == dict(os.environ))")  # fmt: skip
    assert run_python(code) == "True"


def test_bench_command_refuses_an_unknown_kernel_in_one_line(capsys):
    from binsr.cli import main

    assert main(["bench", "--kernel", "avx1024"]) == 2
    assert capsys.readouterr().err == (
        "binsr bench: error: unknown XNOR kernel 'avx1024'; expected one of avx512, avx2, portable\n"
    )


def test_bench_times_each_candidate_after_an_untimed_call_of_its_own_in_rotating_order():
    from binsr.evaluation import bench

    calls, now = [], [0.0]

    def candidate(name: str, cost: float):
        def run():
            # slower right after another candidate: tenfold here, 1.6x for the XNOR conv right after torch's
            now[0] += cost if calls and calls[-1] == name else 10 * cost
            calls.append(name)

        return run

    times = bench.median_times(
        {"a": candidate("a", 1), "b": candidate("b", 2), "c": candidate("c", 3)}, 3, lambda: now[0]
    )
    assert times == {"a": 1, "b": 2, "c": 3}
    assert "".join(calls) == "aabbcc" + "bbccaa" + "ccaabb"


def test_bench_conv_rows_share_torch_times_and_the_goal_column_is_optional():
    from binsr.evaluation import bench

    conv, with_pack = bench.conv_rows(1, channels=8, size=8, repeats=1)
    assert (conv["case"], with_pack["case"]) == ("conv", "pack + conv")
    rows = bench.conv_rows(1, channels=8, size=8, repeats=1, into_out=True)
    assert [r["case"] for r in rows] == ["conv", "conv, out=", "pack + conv"]
    # timed in one interleaved round: torch's NCHW / channels_last ratio is the same in every row
    torch_ratio = rows[0]["vs NCHW"] / rows[0]["vs channels_last"]
    assert [r["vs NCHW"] / r["vs channels_last"] for r in rows] == pytest.approx([torch_ratio] * 3)
    row = {**conv, "shape": "32->32 @128x128", "vs NCHW": 7.9, "vs channels_last": 4.2, "speedup": 4.2, "goal": 10.0}
    assert bench.format_bench([row]).splitlines()[1].endswith("4.2x 10.0x  -58%")
    assert bench.format_bench([row], goals=False).splitlines() == [
        "thr  kernel   case          shape                 vs NCHW   vs CL  speedup",
        f"  1  {row['kernel']:<8} conv          32->32 @128x128          7.9x    4.2x     4.2x",
    ]
