import numpy as np
import pytest
import torch
from PIL import Image

from binsr import checkpoint
from binsr.cli import main
from binsr.evaluate import upscale
from binsr.imresize import imresize
from binsr.models import create_model
from binsr.photos import COMPARE_GAP, input_files, upscale_photos


@pytest.fixture
def model_file(tmp_path):
    torch.manual_seed(0)
    return str(checkpoint.save(tmp_path / "tiny.pt", create_model("edsr-fp", scale=2, n_feats=4, n_blocks=1)))


def _rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_upscale_writes_the_model_output_and_a_bicubic_comparison(tmp_path, model_file, capsys):
    rgb = _rgb(9, 13)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "photo.png"), "--model", model_file, "-o", str(out), "--compare"]) == 0
    assert capsys.readouterr().out.splitlines() == [str(out / "photo-x2.png"), str(out / "photo-x2-compare.png")]
    sr = upscale(checkpoint.load_model(model_file), rgb, 2)
    assert np.array_equal(np.array(Image.open(out / "photo-x2.png")), sr)
    compare = np.array(Image.open(out / "photo-x2-compare.png"))
    assert compare.shape == (18, 26 + COMPARE_GAP + 26, 3)
    assert np.array_equal(compare[:, :26], imresize(rgb, 2))
    assert (compare[:, 26 : 26 + COMPARE_GAP] == 255).all()
    assert np.array_equal(compare[:, 26 + COMPARE_GAP :], sr)


def test_any_mode_goes_in_and_alpha_comes_out_bicubic(tmp_path, model_file):
    rgb, alpha = _rgb(8, 10), np.random.default_rng(1).integers(0, 256, (8, 10), dtype=np.uint8)
    Image.fromarray(np.dstack([rgb, alpha])).save(tmp_path / "rgba.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    palette = Image.fromarray(rgb).quantize(16)
    palette.save(tmp_path / "palette.png", transparency=0)
    Image.fromarray(rgb).save(tmp_path / "photo.jpg", quality=90)
    Image.fromarray(rgb[:, :, 0].astype(np.uint16) * 257).save(tmp_path / "deep.png")
    written = upscale_photos([tmp_path], model_file, tmp_path / "out")
    modes = {path.name: Image.open(path).mode for path in written}
    assert modes == {"deep-x2.png": "RGB", "grey-x2.png": "RGB", "palette-x2.png": "RGBA", "photo-x2.png": "RGB",
                     "rgba-x2.png": "RGBA"}  # fmt: skip
    upscaled = np.array(Image.open(tmp_path / "out" / "rgba-x2.png"))
    assert np.array_equal(upscaled[:, :, 3], imresize(alpha, 2))
    assert np.array_equal(upscaled[:, :, :3], upscale(checkpoint.load_model(model_file), rgb, 2))
    palette_alpha = np.array(Image.open(tmp_path / "out" / "palette-x2.png"))[:, :, 3]
    assert np.array_equal(palette_alpha, imresize(np.where(np.array(palette) == 0, 0, 255).astype(np.uint8), 2))


def test_bad_inputs_fail_in_one_line_before_any_work(tmp_path, model_file, capsys):
    Image.fromarray(_rgb(8, 8)).save(tmp_path / "a.png")
    (tmp_path / "sub").mkdir()
    Image.fromarray(_rgb(8, 8)).save(tmp_path / "sub" / "a.jpg")
    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "a.png"), str(tmp_path / "sub"), "--model", model_file, "-o", str(out)]) == 2
    expected = f"inputs {tmp_path / 'a.png'} and {tmp_path / 'sub' / 'a.jpg'} share the name 'a'; expected distinct"
    assert capsys.readouterr().err.startswith(f"binsr upscale: error: {expected}") and not out.exists()
    assert main(["upscale", str(tmp_path / "none.png"), "--model", model_file, "-o", str(out)]) == 2
    expected = f"input {tmp_path / 'none.png'} does not exist; expected an image file or a folder of images"
    assert capsys.readouterr().err == f"binsr upscale: error: {expected}\n"
    assert main(["upscale", str(tmp_path / "a.png"), "--model", "no-such-model", "-o", str(out)]) == 2
    assert "'no-such-model' is neither a checkpoint file nor a shipped model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"no images \(.*\) in folder .*empty$"):
        input_files([tmp_path / "empty"])
