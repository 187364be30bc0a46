import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.cli import main
from binsr.data.imresize import imresize
from binsr.evaluation.evaluate import upscale
from binsr.evaluation.photos import COMPARE_GAP, input_files, upscale_photos
from binsr.nn import checkpoint
from binsr.nn.models import create_model


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


def _listing(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_no_input_is_written_over_and_no_output_without_overwrite(tmp_path, model_file, capsys):
    Image.fromarray(_rgb(8, 9)).save(tmp_path / "a.png")
    Image.fromarray(_rgb(8, 9, seed=1)).save(tmp_path / "a-x2.png")  # what a.png's output is named
    before = _listing(tmp_path)
    for extra in ([], ["--overwrite"]):  # an input is never replaced, asked or not
        assert main(["upscale", str(tmp_path / "a-x2.png"), str(tmp_path / "a.png"), "--model", model_file,
                     "-o", str(tmp_path), *extra]) == 2  # fmt: skip
        expected = (f"output {tmp_path / 'a-x2.png'} would write over the input {tmp_path / 'a-x2.png'}; expected "
                    "another output folder")  # fmt: skip
        assert capsys.readouterr().err == f"binsr upscale: error: {expected}\n"
        assert _listing(tmp_path) == before  # refused before anything was written

    out = tmp_path / "out"
    assert main(["upscale", str(tmp_path / "a.png"), "--model", model_file, "-o", str(out), "--compare"]) == 0
    (out / "a-x2-compare.png").write_bytes(b"keep me")
    written = _listing(out)
    assert main(["upscale", str(tmp_path / "a.png"), "--model", model_file, "-o", str(out), "--compare"]) == 2
    expected = f"output {out / 'a-x2.png'} already exists; expected --overwrite to replace it"
    assert capsys.readouterr().err.endswith(f"binsr upscale: error: {expected}\n")
    assert _listing(out) == written
    args = ["upscale", str(tmp_path / "a.png"), "--model", model_file, "-o", str(out), "--compare", "--overwrite"]
    assert main(args) == 0
    assert _listing(out)["a-x2.png"] == written["a-x2.png"] and _listing(out)["a-x2-compare.png"] != b"keep me"


def _error_lines(stderr: str) -> list[str]:
    """The lines of stderr a terminal shows (a progress bar redraws its line after a carriage return), less blank
    ones and those that name the engine (printed once the outputs are cleared, before any image is read)."""
    shown = (line.split("\r")[-1].strip() for line in stderr.split("\n"))
    return [line for line in shown if line and not line.startswith("engine: ")]


def test_float_images_in_0_1_are_scaled_and_others_refused(tmp_path, model_file, capsys):
    values = np.random.default_rng(2).random((9, 7)).astype(np.float32)
    Image.fromarray(values, mode="F").save(tmp_path / "float.tif")
    assert main(["upscale", str(tmp_path / "float.tif"), "--model", model_file, "-o", str(tmp_path / "out")]) == 0
    grey = np.repeat(np.round(values * 255).astype(np.uint8)[:, :, None], 3, axis=2)  # was 0 or 1: nearly black
    sr = np.array(Image.open(tmp_path / "out" / "float-x2.png"))
    assert np.array_equal(sr, upscale(checkpoint.load_model(model_file), grey, 2))
    Image.fromarray(values * 255, mode="F").save(tmp_path / "wide.tif")
    assert main(["upscale", str(tmp_path / "wide.tif"), "--model", model_file, "-o", str(tmp_path / "out")]) == 2
    expected = (f"cannot read image {tmp_path / 'wide.tif'}: it holds floats from {values.min() * 255:g} to "
                f"{values.max() * 255:g}; expected floats in [0, 1]")  # fmt: skip
    assert _error_lines(capsys.readouterr().err) == [f"binsr upscale: error: {expected}"]


def _bomb_png(path):
    """A PNG whose header claims 100000x100000 pixels (10 G, over PIL's decompression-bomb limit)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0")) +
                     chunk(b"IEND", b""))  # fmt: skip


def test_a_decompression_bomb_is_one_line_in_upscale_and_eval(tmp_path, model_file, capsys):
    (tmp_path / "set").mkdir()
    _bomb_png(tmp_path / "set" / "bomb.png")
    limit = f"exceeds limit of {2 * Image.MAX_IMAGE_PIXELS} pixels, could be decompression bomb DOS attack."
    expected = f"cannot read image {tmp_path / 'set' / 'bomb.png'}: Image size (10000000000 pixels) {limit}"
    assert main(["upscale", str(tmp_path / "set"), "--model", model_file, "-o", str(tmp_path / "out")]) == 2
    assert _error_lines(capsys.readouterr().err) == [f"binsr upscale: error: {expected}"]
    assert main(["eval", "--data", str(tmp_path / "set"), "--scale", "2"]) == 2
    assert _error_lines(capsys.readouterr().err) == [f"binsr eval: error: {expected}"]
