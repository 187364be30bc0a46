from functools import partial

import numpy as np
import pytest
import torch

from binsr.data.images import to_tensor
from binsr.data.imresize import imresize
from binsr.engine.tiling import AUTO_ABOVE, TILE, auto_tile, context, tiled
from binsr.evaluation.evaluate import upscale
from binsr.nn.checkpoint import pretrained
from binsr.nn.models import create_model

SMALL = {"n_feats": 8, "n_blocks": 2}


def _random_lr(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_context_sums_the_conv_radii_and_is_unbounded_with_global_pooling():
    # EDSR: head + 2 blocks x 2 convs + body conv + one upsampler conv per x2 stage + tail
    assert context(create_model("edsr-fp", scale=2, **SMALL)) == 1 + 4 + 1 + 1 + 1
    assert context(create_model("edsr-bbcu", scale=4, **SMALL)) == 1 + 4 + 1 + 2 + 1
    # SRResNet: conv_first + 2 blocks x 2 convs + upsampler + conv_hr + conv_last + the bilinear image skip
    assert context(create_model("bbcu-m", scale=2, **SMALL)) == 1 + 4 + 1 + 1 + 1 + 1
    assert context(create_model("edsr-proposed", att_bin="pixel", att_res="spatial", **SMALL)) == 8  # 1x1 convs
    assert context(create_model("edsr-proposed", att_bin="se", att_res="none", **SMALL)) is None


def test_auto_tiling_starts_above_the_threshold():
    assert AUTO_ABOVE == 512 * 512 and TILE == 256
    assert auto_tile(512, 512, None) == 0 and auto_tile(513, 512, None) == TILE
    assert auto_tile(4000, 4000, 0) == 0 and auto_tile(10, 10, 3) == 3
    with pytest.raises(ValueError, match=r"tile=-1 is not valid; expected a tile side in pixels, or 0"):
        auto_tile(10, 10, -1)


MODELS = [
    ("edsr-fp", 2, {}),
    ("edsr-fp", 3, {}),
    ("srresnet-fp", 4, {}),
    ("edsr-bbcu", 2, {}),
    ("bbcu-m", 2, {}),  # at x3 the bilinear skip's sample positions round (1 ulp) by absolute position
    ("edsr-proposed", 2, {"att_bin": "pixel", "att_res": "spatial"}),
]


def _small(name: str, scale: int, kwargs: dict) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model(name, scale=scale, **SMALL, **kwargs).eval()


@torch.no_grad()
def _float_output(model: torch.nn.Module, lr: np.ndarray) -> np.ndarray:
    return model(to_tensor(lr[None]))[0].permute(1, 2, 0).numpy()


@pytest.mark.filterwarnings("ignore:TF32")
@pytest.mark.parametrize(("name", "scale", "kwargs"), MODELS)
def test_every_tile_sees_exactly_the_input_of_one_pass(name, scale, kwargs):
    # oneDNN rounds a conv differently at different image sizes (up to 1 ulp); torch's own conv sums in the same
    # order at any size. Its bilinear upsampler (SRResNet's image skip) still rounds a vector loop's tail
    # differently on some CPUs (seen with AVX-512), so the bound is a few ulp; a wrong tile is off by far more.
    model = _small(name, scale, kwargs)
    lr = _random_lr(37, 29)
    with torch.backends.mkldnn.flags(enabled=False):
        whole = _float_output(model, lr)
        for tile in (5, 16, 36):
            got = tiled(partial(_float_output, model), lr, scale, tile, context(model))
            np.testing.assert_allclose(got, whole, rtol=0, atol=1e-6, err_msg=f"tile {tile}")


@pytest.mark.parametrize(("name", "scale", "kwargs"), [m for m in MODELS if m[0] in ("edsr-fp", "srresnet-fp")])
def test_float_models_give_the_same_pixels_tiled(name, scale, kwargs):
    model = _small(name, scale, kwargs)
    lr = _random_lr(37, 29)
    whole = upscale(model, lr, scale, tile=0)
    assert whole.shape == (37 * scale, 29 * scale, 3) and len(np.unique(whole)) > 100  # not a flat image
    for tile in (5, 16, 36):
        assert np.array_equal(upscale(model, lr, scale, tile=tile), whole), tile
    with torch.backends.mkldnn.flags(enabled=False):  # one conv algorithm at every size: the same pixels
        ensembled = upscale(model, lr, scale, ensemble=True, tile=0)
        assert np.array_equal(upscale(model, lr, scale, ensemble=True, tile=11), ensembled)
    # With oneDNN the algorithm follows the map's shape, which the ensemble's rotations change per tile: on an
    # AVX2 Zen 3 one pixel of 12876 rounds one level apart (the average of eight outputs sits on a .5); a wrong
    # tile or seam is off by far more, in many pixels.
    tiled_output = upscale(model, lr, scale, ensemble=True, tile=11).astype(int)
    difference = np.abs(tiled_output - upscale(model, lr, scale, ensemble=True, tile=0))
    assert difference.max() <= 1 and np.count_nonzero(difference) <= difference.size // 1000


def test_a_shipped_model_tiles_exactly_on_a_photo_sized_crop():
    model = pretrained("edsr-fp-x2")
    lr = _random_lr(70, 90, seed=1)
    assert np.array_equal(upscale(model, lr, 2, tile=32), upscale(model, lr, 2, tile=0))


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_tiled_bicubic_is_matlab_bicubic(scale):
    lr = _random_lr(23, 31, seed=scale)
    assert np.array_equal(upscale(None, lr, scale, tile=6), imresize(lr, scale))
    alpha = lr[:, :, 0]  # a single plane, as an alpha channel
    assert np.array_equal(upscale(None, alpha, scale, tile=6), imresize(alpha, scale))


def test_global_pooling_tiles_with_a_warning():
    torch.manual_seed(0)
    model = create_model("edsr-proposed", att_bin="se", att_res="se", **SMALL).eval()
    lr = _random_lr(24, 24)
    with pytest.warns(UserWarning, match="pools globally .* differs slightly from one pass; pass tile=0"):
        tiled = upscale(model, lr, 2, tile=8)
    assert tiled.shape == (48, 48, 3)
