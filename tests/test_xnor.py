"""The XNOR engine against torch, bit for bit: packing, integer accumulators, and the fused unit."""

import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from binsr import xnor
from binsr.binary import BinaryConv2d, RSign
from binsr.export import pack_binary_conv

CHANNELS = (1, 3, 31, 32, 33, 64, 65, 128)


def nhwc(t: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().permute(0, 2, 3, 1).numpy())


def bits_of(packed: np.ndarray) -> np.ndarray:
    """(N, H+2, W+2, words) uint64 -> (N, H+2, W+2, 64 * words) bools, channel order."""
    return np.unpackbits(packed.view(np.uint8), axis=-1, bitorder="little").astype(bool)


def torch_accumulators(x: torch.Tensor, threshold: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    x_b = torch.where(x > threshold.view(1, -1, 1, 1), 1.0, -1.0)
    return F.conv2d(x_b, torch.where(weight > 0, 1.0, -1.0), padding=weight.shape[-1] // 2)


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    previous = numba.get_num_threads()
    numba.set_num_threads(request.param)
    yield request.param
    numba.set_num_threads(previous)


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
def test_accumulators_equal_conv2d(channels, k, threads):
    # channels + 3 outputs: never a whole number of 4-channel register blocks
    assert_accumulators_equal(*random_case(channels, channels + 3, k, 6, 5, seed=channels * 10 + k))


@pytest.mark.parametrize("height,width", [(1, 7), (6, 1), (1, 1), (2, 2)])
@pytest.mark.parametrize("channels", [33, 64])
def test_accumulators_on_thin_maps(channels, height, width, threads):
    assert_accumulators_equal(*random_case(channels, 6, 3, height, width, seed=height * 7 + width))


@pytest.mark.parametrize("channels", CHANNELS)
def test_packing_is_rsign_with_a_plus_one_border(channels):
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, 4, 3, generator=gen)
    rsign = RSign(channels).requires_grad_(False)
    rsign.threshold.copy_(torch.randn(channels, generator=gen))
    x[0, :, 0, 0] = rsign.threshold
    x[0, :, 1, 1] = torch.nextafter(rsign.threshold, torch.tensor(float("inf")))  # one ulp above: +1
    x[0, :, 2, 2] = float("nan")
    x[0, :, 3, 0] = float("inf")
    bits = bits_of(xnor.pack_activations(nhwc(x), rsign.threshold.numpy()))
    np.testing.assert_array_equal(bits[:, 1:-1, 1:-1, :channels], nhwc(rsign(x)) > 0)
    border = np.ones_like(bits[..., :channels])
    border[:, 1:-1, 1:-1] = bits[:, 1:-1, 1:-1, :channels]
    np.testing.assert_array_equal(bits[..., :channels], border)
    assert not bits[..., channels:].any()  # padding bits are 0, as in the weights


def perturbed_conv(channels: int, out_channels: int, alpha_mode: str, rprelu: bool, seed: int) -> BinaryConv2d:
    """A BinaryConv2d with thresholds, alpha and RPReLU moved off their initial values."""
    torch.manual_seed(seed)
    conv = BinaryConv2d(channels, out_channels, 3, alpha_mode=alpha_mode, rprelu=rprelu)
    with torch.no_grad():
        for name, p in conv.named_parameters():
            if name != "weight":
                p.add_(0.3 * torch.randn_like(p))
    return conv.eval()


def bitwise(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, np.float32).view(np.uint32)


@pytest.mark.parametrize("alpha_mode,rprelu", [("mean", True), ("learnable", True), ("learnable", False)])
@pytest.mark.parametrize("channels", [32, 64, 65])
def test_fused_unit_equals_torch_bitwise(channels, alpha_mode, rprelu, threads):
    conv = perturbed_conv(channels, channels, alpha_mode, rprelu, seed=channels)
    following = perturbed_conv(channels, channels, alpha_mode, rprelu, seed=channels + 1)
    x = 3 * torch.randn(2, channels, 7, 6, generator=torch.Generator().manual_seed(channels))
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


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_importing_binsr_first_makes_idle_torch_threads_sleep_unless_told_otherwise(given, expected):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if given is not None:
        env["OMP_WAIT_POLICY"] = given
    code = "import os, binsr; print(os.environ['OMP_WAIT_POLICY'])"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == expected
