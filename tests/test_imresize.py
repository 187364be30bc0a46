from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from binsr.data.imresize import contributions, cubic, imresize, modcrop

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_cubic_is_keys_kernel_with_a_minus_half():
    x = np.array([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5])
    expected = [1.0, 0.8671875, 0.5625, 0.2265625, 0.0, -0.0703125, -0.0625, -0.0234375, 0.0, 0.0]
    assert cubic(x).tolist() == expected
    assert cubic(-x).tolist() == expected


def test_contributions_upscale_matches_matlab_index_mapping_and_symmetric_border():
    # x2 on 4 pixels: output 1 samples u = 1/2 + 0.5 * (1 - 1/2) = 0.75 (1-based), taps at -2..3,
    # which mirror to the 1-based pixels 3, 2, 1, 1, 2, 3.
    weights, index = contributions(4, 8, 2.0)
    assert weights.shape == (8, 6)
    assert weights[0].tolist() == [0.0, -0.0234375, 0.2265625, 0.8671875, -0.0703125, 0.0]
    assert index[0].tolist() == [2, 1, 0, 0, 1, 2]
    assert index[-1].tolist() == [1, 2, 3, 3, 2, 1]


def test_contributions_downscale_widens_the_kernel():
    weights, index = contributions(16, 8, 0.5)
    assert weights.shape == (8, 10)  # support 4 / 0.5 = 8 input pixels, plus 2 as in MATLAB
    # Output 4 samples u = 4 / 0.5 + 0.5 * (1 - 2) = 7.5 (1-based); its taps are the pixels 3..12.
    distance = 7.5 - np.arange(3, 13)
    assert index[3].tolist() == list(range(2, 12))
    np.testing.assert_allclose(weights[3], 0.5 * cubic(0.5 * distance), rtol=0, atol=1e-15)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale", [1 / 4, 1 / 3, 0.37, 1 / 2, 2, 3, 4])
def test_constant_image_stays_constant(scale):
    img = np.full((24, 18, 3), 137, dtype=np.uint8)
    out = imresize(img, scale)
    assert out.dtype == np.uint8
    assert (out == 137).all()
    np.testing.assert_allclose(imresize(img / 255, scale), 137 / 255, rtol=0, atol=1e-12)


def test_output_size_is_ceil_of_scale_times_size():
    img = np.zeros((10, 7), dtype=np.uint8)
    assert imresize(img, 0.5).shape == (5, 4)
    assert imresize(img, 3).shape == (30, 21)
    assert imresize(img, 1 / 3).shape == (4, 3)


def test_scale_one_is_identity_and_channels_are_independent():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(13, 11, 3), dtype=np.uint8)
    assert np.array_equal(imresize(img, 1), img)
    down = imresize(img, 1 / 3)
    assert np.array_equal(down[:, :, 1], imresize(img[:, :, 1], 1 / 3))


def test_dtypes_uint8_rounds_float_does_not():
    img = np.array([[0, 255, 0, 255], [255, 0, 255, 0]] * 2, dtype=np.uint8)
    as_float = imresize(img.astype(np.float32), 2)
    assert as_float.dtype == np.float32
    assert as_float.min() < 0 and as_float.max() > 255  # cubic overshoot is kept for floats
    as_uint8 = imresize(img, 2)
    assert as_uint8.dtype == np.uint8 and as_uint8.min() == 0 and as_uint8.max() == 255


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="scale=0"):
        imresize(np.zeros((4, 4)), 0)
    with pytest.raises(ValueError, match="int64"):
        imresize(np.zeros((4, 4), dtype=np.int64), 2)
    with pytest.raises(ValueError, match="shape"):
        imresize(np.zeros((4, 4, 3, 1)), 2)


def test_modcrop():
    img = np.arange(7 * 10).reshape(7, 10)
    assert np.array_equal(modcrop(img, 3), img[:6, :9])
    assert modcrop(np.zeros((344, 228, 3)), 8).shape == (344, 224, 3)
    with pytest.raises(ValueError, match="scale=2.5"):
        modcrop(img, 2.5)


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_downscale_matches_matlab_lr_files(dataset):
    if not (DATA / dataset / "LR_bicubic").is_dir():
        pytest.skip(f"{DATA / dataset} not present")
    for scale in (2, 3, 4):
        equal = total = 0
        for hr_path in sorted((DATA / dataset / "HR").glob("*.png")):
            hr = Image.open(hr_path)
            ref = np.array(Image.open(DATA / dataset / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"))
            ours = imresize(modcrop(np.array(hr), scale), 1 / scale)
            assert ours.shape == ref.shape, hr_path.name
            diff = np.abs(ours.astype(int) - ref)
            assert diff.max() <= 1, f"{hr_path.name} x{scale}"
            equal += int((diff == 0).sum())
            total += diff.size
        # Measured: every pixel equal, for both sets at x2, x3 and x4.
        assert equal / total >= 0.999, f"x{scale}: {equal}/{total} pixels equal"
