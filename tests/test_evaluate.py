import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from binsr.data.images import load_images
from binsr.data.imresize import imresize
from binsr.data.metrics import psnr_y, ssim_y
from binsr.engine import tiling
from binsr.evaluation.evaluate import evaluate, format_table, self_ensemble, upscale, write_csv, write_json

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class NearestUp(nn.Module):
    """Pixel replication: equivariant to flips and rotations, and exactly predictable after uint8 rounding."""

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        self.calls: list[tuple[torch.Size, bool, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((x.shape, torch.is_grad_enabled(), self.training))
        return F.interpolate(x, scale_factor=self.scale, mode="nearest")


def test_bicubic_on_photos_test():
    (result,) = evaluate(None, ["photos-test"], 4)
    assert (result["method"], result["name"], result["scale"]) == ("Bicubic", "photos-test", 4)
    assert [image["name"] for image in result["images"]] == ["chelsea", "coffee", "camera", "text"]
    assert result["psnr"] == pytest.approx(28.5411, abs=1e-4)
    assert result["ssim"] == pytest.approx(0.77410, abs=1e-5)
    assert result["psnr"] == pytest.approx(np.mean([image["psnr"] for image in result["images"]]), abs=1e-12)


def test_bicubic_on_set5_matches_the_metrics_test():
    if not (DATA / "Set5").is_dir():
        pytest.skip(f"{DATA / 'Set5'} not present")
    (result,) = evaluate(None, "Set5", 4, data_root=DATA)
    assert result["psnr"] == pytest.approx(28.4290, abs=1e-4) and result["ssim"] == pytest.approx(0.81114, abs=1e-5)


def test_model_runs_in_eval_mode_without_grad_and_is_restored():
    model = NearestUp(2).train()
    (result,) = evaluate(model, ["photos-test"], 2, method="Nearest")
    assert model.training
    assert [(shape[2:], grad, training) for shape, grad, training in model.calls][0] == ((150, 225), False, False)
    for image, pair in zip(result["images"], load_images("photos-test", 2), strict=True):
        replicated = np.kron(pair.lr, np.ones((2, 2, 1), np.uint8))
        assert image["psnr"] == psnr_y(replicated, pair.hr, 2)
        assert image["ssim"] == ssim_y(replicated, pair.hr, 2)
    assert result["method"] == "Nearest"


def test_self_ensemble_averages_the_eight_orientations():
    model = NearestUp(2)
    lr = torch.rand(1, 3, 5, 7)
    out = self_ensemble(model, lr)
    assert sorted(shape[2:] for shape, _, _ in model.calls) == [(5, 7)] * 4 + [(7, 5)] * 4
    torch.testing.assert_close(out, model(lr), rtol=0, atol=1e-6)
    model.calls.clear()
    plain = evaluate(model, ["photos-test"], 2)[0]
    ensembled = evaluate(model, ["photos-test"], 2, self_ensemble=True)[0]
    assert len(model.calls) == 4 * 9
    assert ensembled["psnr"] == plain["psnr"] and ensembled["ssim"] == plain["ssim"]


def test_upscale_is_bicubic_without_a_model_and_the_rounded_output_with_one():
    lr = np.random.default_rng(0).integers(0, 256, (6, 9, 3), dtype=np.uint8)
    assert np.array_equal(upscale(None, lr, 3), imresize(lr, 3))
    model = NearestUp(2)
    sr = upscale(model, lr, 2)
    assert sr.dtype == np.uint8 and np.array_equal(sr, np.kron(lr, np.ones((2, 2, 1), np.uint8)))
    assert model.calls == [(torch.Size([1, 3, 6, 9]), False, True)]  # no autograd graph; the mode is the caller's


def test_model_scale_must_match():
    with pytest.raises(ValueError, match="model.scale=2 but scale=4"):
        evaluate(NearestUp(2), ["photos-test"], 4)


RESULTS = [
    {
        "method": "Bicubic",
        "name": "Set5",
        "scale": 2,
        "psnr": 33.6734,
        "ssim": 0.93029,
        "images": [{"name": "baby", "psnr": 37.1, "ssim": 0.95}],
    },
    {"method": "Bicubic", "name": "Set14", "scale": 2, "psnr": 30.3246, "ssim": 0.86985, "images": []},
    {"method": "BBCU", "name": "Set5", "scale": 2, "psnr": 37.0, "ssim": 0.95, "images": []},
]


def test_format_table():
    assert format_table(RESULTS) == "\n".join(
        [
            "| Method | Scale | Set5 PSNR/SSIM | Set14 PSNR/SSIM |",
            "|---|---|---|---|",
            "| Bicubic | x2 | 33.67/0.9303 | 30.32/0.8699 |",
            "| BBCU | x2 | 37.00/0.9500 | - |",
        ]
    )


def test_csv_and_json(tmp_path):
    write_csv(RESULTS, tmp_path / "r.csv")
    with open(tmp_path / "r.csv") as f:
        assert list(csv.reader(f)) == [
            ["method", "scale", "dataset", "image", "psnr", "ssim"],
            ["Bicubic", "2", "Set5", "baby", "37.1", "0.95"],
        ]
    write_json(RESULTS, tmp_path / "r.json")
    assert json.loads((tmp_path / "r.json").read_text()) == RESULTS


def test_scale_below_2_is_refused_and_json_stays_valid_for_an_exact_reconstruction(tmp_path):
    with pytest.raises(ValueError, match=r"^scale=1 is not valid; expected an upscaling factor of 2 or more$"):
        evaluate(None, ["photos-test"], 1)
    exact = [{"method": "HR", "name": "x", "scale": 2, "psnr": float("inf"), "ssim": 1.0,
              "images": [{"name": "a", "psnr": float("inf"), "ssim": 1.0}]}]  # fmt: skip
    write_json(exact, tmp_path / "r.json")
    text = (tmp_path / "r.json").read_text()
    assert "Infinity" not in text
    assert json.loads(text)[0]["psnr"] is None and json.loads(text)[0]["images"][0]["psnr"] is None


def test_images_too_small_to_score_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "set"
    folder.mkdir()
    Image.fromarray(np.zeros((14, 40, 3), np.uint8)).save(folder / "thin.png")
    with pytest.raises(ValueError, match=r"set/thin is 40x14; expected at least 15x15 to score at x2$"):
        evaluate(None, [str(folder)], 2)
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(folder / "dot.png")
    with pytest.raises(ValueError, match=r"image .*dot\.png is 1x1; expected at least 2x2 pixels at x2$"):
        evaluate(None, [str(folder)], 2)


def test_large_images_are_tiled_automatically_with_the_same_scores(monkeypatch):
    model = NearestUp(2)
    whole = evaluate(model, ["photos-test"], 2, tile=0)[0]
    monkeypatch.setattr(tiling, "AUTO_ABOVE", 64 * 64)
    monkeypatch.setattr(tiling, "TILE", 64)
    model.calls.clear()
    tiled = evaluate(model, ["photos-test"], 2)[0]
    assert max(shape[2] for shape, _, _ in model.calls) == 64  # 64-pixel tiles, no pad: nearest has no context
    assert tiled == whole
