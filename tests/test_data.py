from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.data.images import (
    DEFAULT_DATA_ROOT,
    PHOTO_SETS,
    PatchSampler,
    SRPair,
    dataset_names,
    load_images,
    read_image,
    resolve_data_root,
)
from binsr.data.imresize import imresize, modcrop

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Keep the generated-LR cache and $BINSR_DATA out of the user's environment."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BINSR_DATA", raising=False)


def _random_rgb(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _make_set(folder: Path, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    images = [_random_rgb(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    for i, img in enumerate(images):
        Image.fromarray(img).save(folder / f"img{i}.png")
    return images


# read_image


def test_read_image_converts_grey_rgba_and_16_bit(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8)
    Image.fromarray(grey).save(tmp_path / "grey.png")
    assert np.array_equal(read_image(tmp_path / "grey.png"), np.stack([grey] * 3, axis=2))

    rgba = np.dstack([_random_rgb(6, 8), np.full((6, 8), 7, np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    assert np.array_equal(read_image(tmp_path / "rgba.png"), rgba[:, :, :3])

    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    assert np.array_equal(read_image(tmp_path / "grey16.png"), np.stack([grey] * 3, axis=2))


def test_read_image_turns_a_photo_upright_by_its_exif_orientation(tmp_path):
    rgb = _random_rgb(6, 8)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: the camera was turned; show the image rotated 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "turned.png", exif=exif.tobytes())
    assert np.array_equal(read_image(tmp_path / "turned.png"), np.rot90(rgb, -1))


def test_read_image_names_a_corrupt_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="missing.png"):
        read_image(tmp_path / "missing.png")


# load_images from folders


def test_folder_without_lr_generates_matlab_bicubic_and_caches_it(tmp_path):
    images = _make_set(tmp_path / "Mine" / "HR", [(50, 61), (40, 40)])
    pairs = load_images(tmp_path / "Mine", 3)
    assert [p.name for p in pairs] == ["img0", "img1"]
    assert pairs[0].hr.shape == (48, 60, 3) and pairs[0].lr.shape == (16, 20, 3)
    assert np.array_equal(pairs[0].hr, modcrop(images[0], 3))
    assert np.array_equal(pairs[0].lr, imresize(modcrop(images[0], 3), 1 / 3))
    assert len(list((tmp_path / "cache" / "binsr" / "lr").glob("*.png"))) == 2
    assert not (tmp_path / "Mine" / "LR_bicubic").exists()
    again = load_images(tmp_path / "Mine", 3)
    assert np.array_equal(again[1].lr, pairs[1].lr)


def test_folder_lr_files_are_used_and_checked(tmp_path):
    _make_set(tmp_path / "Mine" / "HR", [(40, 40)])
    (tmp_path / "Mine" / "LR_bicubic" / "X2").mkdir(parents=True)
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "Mine" / "LR_bicubic" / "X2" / "img0x2.png")
    assert load_images(tmp_path / "Mine", 2)[0].lr.max() == 0
    Image.fromarray(np.zeros((21, 20, 3), np.uint8)).save(tmp_path / "Mine" / "LR_bicubic" / "X2" / "img0x2.png")
    with pytest.raises(ValueError, match=r"img0x2.png has shape \(21, 20, 3\); expected \(20, 20, 3\)"):
        load_images(tmp_path / "Mine", 2)


def test_plain_folder_of_images_works_like_t91(tmp_path):
    _make_set(tmp_path / "flat", [(30, 30), (32, 34)])
    assert [p.hr.shape for p in load_images(tmp_path / "flat", 4)] == [(28, 28, 3), (32, 32, 3)]


def test_bad_datasets_are_named_in_the_error(tmp_path):
    (tmp_path / "empty" / "HR").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty/HR"):
        load_images(tmp_path / "empty", 2)
    with pytest.raises(FileNotFoundError, match="'NoSuchSet'"):
        load_images("NoSuchSet", 2, data_root=tmp_path)
    with pytest.raises(ValueError, match="scale=0"):
        load_images("photos-test", 0)


# data root and names


def test_data_root_argument_then_env_then_default(tmp_path, monkeypatch):
    _make_set(tmp_path / "root" / "MySet" / "HR", [(20, 20)])
    (tmp_path / "root" / "NotASet").mkdir()
    assert resolve_data_root(tmp_path / "root") == tmp_path / "root"
    assert resolve_data_root() == (DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else None)
    monkeypatch.setenv("BINSR_DATA", str(tmp_path / "root"))
    assert resolve_data_root() == tmp_path / "root"
    assert dataset_names() == ["photos-train", "photos-test", "MySet"]
    assert load_images("MySet", 2)[0].lr.shape == (10, 10, 3)
    assert resolve_data_root(tmp_path) == tmp_path  # the argument wins over $BINSR_DATA
    with pytest.raises(FileNotFoundError, match="nowhere"):
        resolve_data_root(tmp_path / "nowhere")


def test_default_data_root_is_shared_data_beside_the_project():
    assert DEFAULT_DATA_ROOT == DATA


# built-in photographs


def test_photo_sets_are_fixed_disjoint_and_offline():
    assert PHOTO_SETS["photos-test"] == ("chelsea", "coffee", "camera", "text")
    assert not set(PHOTO_SETS["photos-test"]) & set(PHOTO_SETS["photos-train"])
    pairs = load_images("photos-test", 4)
    assert [(p.name, p.hr.shape, p.lr.shape) for p in pairs] == [
        ("chelsea", (300, 448, 3), (75, 112, 3)),
        ("coffee", (400, 600, 3), (100, 150, 3)),
        ("camera", (512, 512, 3), (128, 128, 3)),
        ("text", (172, 448, 3), (43, 112, 3)),
    ]
    camera = pairs[2].hr
    assert np.array_equal(camera[:, :, 0], camera[:, :, 2])
    assert len(load_images("photos-train", 2)) == 11


# shared benchmark data


def test_set5_loads_matlab_lr_files():
    if not (DATA / "Set5").is_dir():
        pytest.skip(f"{DATA / 'Set5'} not present")
    pairs = load_images("Set5", 3, data_root=DATA)
    assert [p.name for p in pairs] == ["baby", "bird", "butterfly", "head", "woman"]
    lr = np.array(Image.open(DATA / "Set5" / "LR_bicubic" / "X3" / "womanx3.png"))
    assert pairs[4].hr.shape == (342, 228, 3) and np.array_equal(pairs[4].lr, lr)


def test_t91_and_grey_bridge_load():
    if not (DATA / "T91").is_dir() or not (DATA / "Set14").is_dir():
        pytest.skip(f"{DATA} has no T91 or Set14")
    assert len(load_images("T91", 4, data_root=DATA)) == 91
    bridge = next(p for p in load_images("Set14", 4, data_root=DATA) if p.name == "bridge")
    assert bridge.lr.shape == (128, 128, 3) and np.array_equal(bridge.lr[:, :, 0], bridge.lr[:, :, 1])


# PatchSampler


def _nearest_pairs(sizes: list[tuple[int, int]], scale: int) -> list[SRPair]:
    """Pairs whose HR is the LR repeated scale x scale times, so aligned crops can be checked exactly."""
    lrs = [_random_rgb(h, w, seed=i) for i, (h, w) in enumerate(sizes)]
    return [SRPair(f"im{i}", np.kron(lr, np.ones((scale, scale, 1), np.uint8)), lr) for i, lr in enumerate(lrs)]


def test_batches_have_the_right_shapes_and_aligned_crops():
    sampler = PatchSampler(_nearest_pairs([(30, 40), (25, 25)], 3), 3, lr_patch=12, batch_size=5, seed=1)
    lr, hr = sampler.batch(0)
    assert lr.shape == (5, 3, 12, 12) and hr.shape == (5, 3, 36, 36)
    assert lr.dtype == hr.dtype == torch.float32
    assert float(lr.min()) >= 0 and float(lr.max()) <= 1
    for step in range(20):
        lr, hr = sampler.batch(step)
        assert torch.equal(hr, lr.repeat_interleave(3, dim=2).repeat_interleave(3, dim=3))


def test_batch_is_a_pure_function_of_seed_and_step():
    pairs = _nearest_pairs([(30, 40), (25, 25)], 2)
    first, resumed = PatchSampler(pairs, 2, lr_patch=8, seed=7), PatchSampler(pairs, 2, lr_patch=8, seed=7)
    for _ in range(3):
        first.batch(0)  # earlier calls must not influence later ones
    assert torch.equal(first.batch(5)[0], resumed.batch(5)[0])
    assert not torch.equal(first.batch(5)[0], first.batch(6)[0])
    assert not torch.equal(first.batch(5)[0], PatchSampler(pairs, 2, lr_patch=8, seed=8).batch(5)[0])


def test_augmentation_reaches_all_eight_symmetries():
    pairs = _nearest_pairs([(6, 6)], 2)  # the patch is the whole image, so only the augmentation varies
    seen = {PatchSampler(pairs, 2, lr_patch=6, batch_size=1).batch(step)[0].numpy().tobytes() for step in range(64)}
    assert len(seen) == 8
    plain = PatchSampler(pairs, 2, lr_patch=6, batch_size=1, augment=False)
    assert len({plain.batch(step)[0].numpy().tobytes() for step in range(16)}) == 1


def test_small_images_are_skipped_with_a_warning():
    pairs = _nearest_pairs([(30, 40), (10, 50)], 2)
    with pytest.warns(UserWarning, match="im1"):
        assert [p.name for p in PatchSampler(pairs, 2, lr_patch=12).pairs] == ["im0"]
    with pytest.raises(ValueError, match="lr_patch=64"), pytest.warns(UserWarning):
        PatchSampler(pairs, 2, lr_patch=64)
    with pytest.raises(ValueError, match="im0"):
        PatchSampler(pairs, 3)


def test_dataset_size_counts_the_images_iter_images_yields_without_reading_them(tmp_path):
    from binsr.data.images import dataset_size, iter_images

    (tmp_path / "Mine" / "HR").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / "Mine" / "HR" / f"{i}.png")
    (tmp_path / "Mine" / "HR" / "notes.txt").write_text("not an image")
    assert dataset_size("Mine", tmp_path) == 3 == len(list(iter_images("Mine", 2, tmp_path)))
    assert dataset_size("photos-test") == 4
