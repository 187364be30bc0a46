import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.metrics import structural_similarity

from binsr.data import metrics
from binsr.data.imresize import imresize, modcrop
from binsr.data.metrics import psnr_y, rgb_to_y, ssim_y

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def test_y_of_white_black_and_primaries():
    pixels = np.array([[[255, 255, 255], [0, 0, 0], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], dtype=np.uint8)
    np.testing.assert_allclose(rgb_to_y(pixels)[0], [235.0, 16.0, 81.481, 144.553, 40.966], rtol=0, atol=1e-12)
    np.testing.assert_allclose(rgb_to_y(pixels / 255.0), rgb_to_y(pixels), rtol=0, atol=1e-12)


def test_y_rejects_non_rgb():
    with pytest.raises(ValueError, match=r"\(4, 4\)"):
        rgb_to_y(np.zeros((4, 4)))


def test_psnr_of_one_grey_level_error():
    # +1 on R, G and B moves Y by (65.481 + 128.553 + 24.966) / 255 = 219 / 255 everywhere.
    hr = np.full((16, 16, 3), 100, dtype=np.uint8)
    expected = 10 * math.log10(255**2 / (219 / 255) ** 2)
    assert psnr_y(hr + 1, hr, shave=2) == pytest.approx(expected, abs=1e-9)
    assert expected == pytest.approx(49.4527, abs=1e-4)


def test_shave_ignores_exactly_that_many_border_pixels():
    hr = np.full((20, 20, 3), 50, dtype=np.uint8)  # 20 - 2 * 3 >= 11, the SSIM window
    sr = hr.copy()
    sr[:3] = 60  # three wrong rows at the top
    assert psnr_y(sr, hr, shave=3) == math.inf
    assert ssim_y(sr, hr, shave=3) == 1.0
    assert psnr_y(sr, hr, shave=2) < 60


def test_ssim_of_identical_images_is_one():
    img = np.random.default_rng(0).integers(0, 256, size=(40, 30, 3), dtype=np.uint8)
    assert ssim_y(img, img, shave=2) == 1.0


def test_ssim_of_two_flat_images_is_the_luminance_term():
    # With no variance SSIM = (2 mu_x mu_y + C1) / (mu_x^2 + mu_y^2 + C1), C1 = (0.01 * 255)^2.
    black, white = np.zeros((32, 32, 3), np.uint8), np.full((32, 32, 3), 255, np.uint8)
    c1 = (0.01 * 255) ** 2
    assert ssim_y(black, white, shave=0) == pytest.approx((2 * 16 * 235 + c1) / (16**2 + 235**2 + c1), abs=1e-12)


def test_shape_mismatch_and_bad_shave_are_rejected():
    a = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ValueError, match=r"\(8, 6, 3\)"):
        psnr_y(a, a[:, :6], shave=1)
    with pytest.raises(ValueError, match="shave=4"):
        ssim_y(a, a, shave=4)
    with pytest.raises(ValueError, match="6x6 after shaving"):
        ssim_y(a, a, shave=1)


# Bicubic upsampling of MATLAB's LR files, compared with the mod-cropped HR: (PSNR, SSIM) as published
# and as measured here. Set5 must agree within 0.03 dB and 0.001. The Set14 values come from older
# pipelines and sit 0.08-0.09 dB and 0.001-0.002 below ours; rounding Y to uint8 as they did explains only
# 0.004-0.012 dB of that (measured), so for Set14 we accept ours - published in [0, 0.1] dB and [0, 0.003].
BICUBIC = {
    ("Set5", 2): ((33.66, 0.9299), (33.6734, 0.93029)),
    ("Set5", 3): ((30.39, 0.8682), (30.4033, 0.86891)),
    ("Set5", 4): ((28.42, 0.8104), (28.4290, 0.81114)),
    ("Set14", 2): ((30.24, 0.8688), (30.3246, 0.86985)),
    ("Set14", 3): ((27.55, 0.7742), (27.6311, 0.77588)),
    ("Set14", 4): ((26.00, 0.7027), (26.0884, 0.70480)),
}


@pytest.mark.parametrize("dataset", ["Set5", "Set14"])
def test_bicubic_baseline_matches_published_values(dataset):
    if not (DATA / dataset / "LR_bicubic").is_dir():
        pytest.skip(f"{DATA / dataset} not present")
    for scale in (2, 3, 4):
        psnrs, ssims = [], []
        for hr_path in sorted((DATA / dataset / "HR").glob("*.png")):
            hr = modcrop(np.array(Image.open(hr_path).convert("RGB")), scale)
            lr_path = DATA / dataset / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
            sr = imresize(np.array(Image.open(lr_path).convert("RGB")), scale)
            psnrs.append(psnr_y(sr, hr, scale))
            ssims.append(ssim_y(sr, hr, scale))
        psnr, ssim = float(np.mean(psnrs)), float(np.mean(ssims))
        (paper_psnr, paper_ssim), (our_psnr, our_ssim) = BICUBIC[dataset, scale]
        assert psnr == pytest.approx(our_psnr, abs=1e-4) and ssim == pytest.approx(our_ssim, abs=1e-5)
        if dataset == "Set5":
            assert abs(psnr - paper_psnr) <= 0.03 and abs(ssim - paper_ssim) <= 0.001
        else:
            assert 0 <= psnr - paper_psnr <= 0.1 and 0 <= ssim - paper_ssim <= 0.003


def test_strips_give_the_whole_image_metrics(monkeypatch):
    rng = np.random.default_rng(0)
    hr = rng.integers(0, 256, (61, 47, 3), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-9, 10, hr.shape), 0, 255).astype(np.uint8)
    y_sr, y_hr = rgb_to_y(sr)[3:-3, 3:-3], rgb_to_y(hr)[3:-3, 3:-3]
    whole_ssim = structural_similarity(y_sr, y_hr, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255.0)  # fmt: skip
    whole_psnr = 10 * np.log10(255.0**2 / np.mean((y_sr - y_hr) ** 2))
    assert ssim_y(sr, hr, 3) == whole_ssim and psnr_y(sr, hr, 3) == whole_psnr  # one strip: the same calls
    monkeypatch.setattr(metrics, "STRIP", 7)  # 55 rows in 8 strips
    assert ssim_y(sr, hr, 3) == pytest.approx(whole_ssim, rel=1e-14)
    assert psnr_y(sr, hr, 3) == pytest.approx(whole_psnr, rel=1e-14)
