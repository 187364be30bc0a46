"""The xnor engine gives the torch engine's pixels, bit for bit, on every shipped binary model, tiled and whole, on
every XNOR kernel this machine runs; `auto` picks it only where that holds and says which engine runs."""

import functools
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from binsr.cli import main
from binsr.data.images import to_tensor
from binsr.engine import inference as engine
from binsr.engine import runtime, xnor
from binsr.engine.export import export_model, pack_model
from binsr.engine.tiling import context
from binsr.evaluation.evaluate import evaluate, upscale
from binsr.nn import checkpoint
from binsr.nn.models import create_model

SHIPPED_BINARY = ["edsr-bbcu-x2", "edsr-bbcu-x4", "edsr-proposed-x2", "edsr-proposed-x4", "edsr-proposed-pixel-x2",
                  "edsr-proposed-pixel-x4", "edsr-proposed-spatial-x2"]  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    """One thread unless a test asks for more (`threads`): these are many small runs, which a second thread
    slows down wherever other jobs load the machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@functools.cache
def shipped(name: str) -> torch.nn.Module:
    return checkpoint.pretrained(name)


def _lr(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_every_binary_model_is_shipped_and_tested():
    manifest = checkpoint.read_manifest()["models"]
    assert sorted(SHIPPED_BINARY) == sorted(name for name in manifest if not name.startswith("edsr-fp"))


@pytest.mark.filterwarnings("ignore:.* pools globally")
@pytest.mark.parametrize("name", SHIPPED_BINARY)
def test_xnor_engine_gives_torch_pixels_tiled_and_whole(name, kernel):
    model = shipped(name)
    packed = pack_model(model)
    assert packed.context() == context(model)
    x = to_tensor(_lr(13, 7)[None])  # odd sizes
    with torch.no_grad():
        assert torch.equal(packed(x), model(x))
    lr = _lr(37, 29, seed=1)
    for tile in (0, 16):  # 16: six tiles of a 37x29 image, with the seams and overlap the torch engine uses
        want = upscale(model, lr, model.scale, tile=tile)
        assert np.array_equal(upscale(packed, lr, model.scale, tile=tile), want), tile


def test_xnor_engine_on_two_threads_and_self_ensembled_gives_torch_pixels(threads):
    model = shipped("edsr-bbcu-x2")
    packed, line = engine.prepare(model, "xnor")
    lr = _lr(21, 30, seed=2)
    assert np.array_equal(upscale(packed, lr, 2, tile=16), upscale(model, lr, 2, tile=16))
    small = lr[:10, :7]
    assert np.array_equal(upscale(packed, small, 2, ensemble=True), upscale(model, small, 2, ensemble=True))
    assert line.startswith(f"engine: xnor, {threads} thread") and f"XNOR kernel: {xnor.current_kernel()}" in line


@pytest.mark.parametrize("name,kwargs", [("bbcu-m", {"scale": 2}), ("bbcu-l", {"scale": 3}),
                                         ("edsr-proposed", {"att_bin": "spatial", "att_res": "se"})])  # fmt: skip
def test_a_packed_model_has_the_float_models_context(name, kwargs):
    model = create_model(name, n_feats=8, n_blocks=2, **kwargs)
    assert pack_model(model).context() == context(model)


@pytest.mark.parametrize("factor", [2, 3])
def test_pixel_shuffle_op_copies_exactly_what_torch_does(factor):
    x = torch.randn(2, 3 * factor * factor, 5, 7, generator=torch.Generator().manual_seed(factor))
    x[0, 0, 0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0])
    got = runtime.PixelShuffle(factor)(x, runtime.State())
    assert torch.equal(got.view(torch.int32), F.pixel_shuffle(x, factor).view(torch.int32))


def test_auto_takes_xnor_for_binary_models_only_and_says_why_not():
    fp, fp_line = engine.prepare(shipped_fp := checkpoint.pretrained("edsr-fp-x2"), "auto")
    assert fp is shipped_fp
    assert fp_line == f"engine: torch on cpu, {torch.get_num_threads()} thread" + \
        ("s" if torch.get_num_threads() > 1 else "") + " (auto: edsr-fp has no binary layers)"  # fmt: skip
    bbcu, line = engine.prepare(shipped("edsr-bbcu-x2"), "auto")
    if xnor.current_kernel() == "portable":
        assert bbcu is shipped("edsr-bbcu-x2") and "only the portable XNOR kernel would run" in line
    else:
        assert isinstance(bbcu, runtime.PackedModel) and line.startswith("engine: xnor")
    with pytest.raises(ValueError, match="the xnor engine cannot run edsr-fp: EDSR has no binary layers"):
        engine.prepare(shipped_fp, "xnor")
    with pytest.raises(ValueError, match="unknown engine 'fast'; expected one of auto, xnor, torch"):
        engine.prepare(shipped_fp, "fast")


def test_a_binsr_file_runs_on_xnor_only(tmp_path):
    path = export_model(shipped("edsr-bbcu-x2"), tmp_path / "bbcu.binsr")
    packed, line = engine.load(str(path), "auto")
    assert isinstance(packed, runtime.PackedModel) and line.startswith("engine: xnor")
    lr = _lr(9, 12)
    assert np.array_equal(upscale(packed, lr, 2), upscale(shipped("edsr-bbcu-x2"), lr, 2))
    with pytest.raises(ValueError, match=r"bbcu.binsr is a packed model, which only the xnor engine runs"):
        engine.load(str(path), "torch")
    with pytest.raises(ValueError, match=r"packed model .*bbcu.binsr is for scale x2; expected x4"):
        engine.load(str(path), "xnor", expect_scale=4)


def test_upscale_and_eval_commands_give_the_same_results_on_both_engines(tmp_path, capsys):
    rgb = _lr(23, 19, seed=3)
    Image.fromarray(rgb).save(tmp_path / "photo.png")
    for name in ("torch", "xnor"):
        argv = ["upscale", str(tmp_path / "photo.png"), "--model", "edsr-bbcu-x2", "-o", str(tmp_path / name),
                "--engine", name, "--threads", "1", "--compare"]  # fmt: skip
        assert main(argv) == 0
        assert capsys.readouterr().err.startswith(f"engine: {name}")
    for written in ("photo-x2.png", "photo-x2-compare.png"):
        torch_png, xnor_png = (np.array(Image.open(tmp_path / name / written)) for name in ("torch", "xnor"))
        assert np.array_equal(torch_png, xnor_png), written
    (tmp_path / "set").mkdir()
    Image.fromarray(_lr(40, 34, seed=4)).save(tmp_path / "set" / "a.png")
    tables = []
    for name in ("torch", "xnor"):
        assert main(["eval", "--model", "edsr-bbcu-x2", "--data", str(tmp_path / "set"), "--engine", name]) == 0
        out = capsys.readouterr()
        assert out.err.startswith(f"edsr-bbcu-x2: engine: {name}")
        tables.append(out.out)
    assert tables[0] == tables[1] and "| edsr-bbcu-x2 | x2 |" in tables[0]
    assert main(["upscale", str(tmp_path / "photo.png"), "--model", "edsr-bbcu-x2", "-o", str(tmp_path),
                 "--threads", "0"]) == 2  # fmt: skip
    assert capsys.readouterr().err == "binsr upscale: error: --threads 0 is not valid; expected 1 or more\n"


def test_evaluate_scores_a_packed_model_as_its_float_model(tmp_path):
    Image.fromarray(_lr(30, 26, seed=5)).save(tmp_path / "a.png")
    model = shipped("edsr-proposed-spatial-x2")
    rows = [evaluate(m, [str(tmp_path)], 2)[0] for m in (model, pack_model(model))]
    assert rows[0]["images"] == rows[1]["images"] and rows[1]["method"] == "PackedModel"


def test_bench_upscale_times_both_engines_interleaved_on_the_same_image(tmp_path, monkeypatch, capsys):
    from binsr.evaluation import bench

    order = []
    real_upscale = upscale

    def counted(net, *args, **kwargs):
        order.append(("xnor" if isinstance(net, runtime.PackedModel) else "torch", torch.get_num_threads()))
        return real_upscale(net, *args, **kwargs)

    monkeypatch.setattr("binsr.evaluation.evaluate.upscale", counted)
    rows = bench.upscale_rows(_lr(12, 10), threads=(1, 2), repeats=2)
    # every run timed (no untimed call first), in rotating order, each at its own thread count
    assert order == [("torch", 1), ("xnor", 1), ("torch", 2), ("xnor", 2), ("xnor", 1), ("torch", 2), ("xnor", 2),
                     ("torch", 1)]  # fmt: skip
    assert [(r["case"], r["shape"], r["threads"]) for r in rows] == [
        ("whole upscale", "edsr-bbcu-x2 @10x12", 1), ("whole upscale", "edsr-bbcu-x2 @10x12", 2)
    ]  # fmt: skip
    assert rows[0]["speedup"] == rows[0]["torch"] / rows[0]["xnor"] and rows[0]["scaling"] == 1.0
    assert rows[1]["scaling"] == rows[0]["xnor"] / rows[1]["xnor"]
    lines = bench.format_upscale(rows).splitlines()
    assert lines[0].startswith(f"upscale with edsr-bbcu-x2 @10x12: torch ({torch.backends.cpu.get_cpu_capability()}")
    assert lines[3].startswith(f"  2  {rows[1]['torch']:>8.2f} {rows[1]['xnor']:>7.2f} {rows[1]['speedup']:>7.2f}x")
    Image.fromarray(_lr(12, 10)).save(tmp_path / "a.png")
    assert main(["bench", "--upscale", str(tmp_path / "a.png"), "--threads", "1", "--repeats", "1", "--split"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == xnor.describe() and out[1].startswith("upscale with edsr-bbcu-x2 @10x12")
    assert out[4] == "edsr-bbcu-x2, 1 thread, CPU time, on a 10x12 piece: ms per stage (medians)"
    assert out[5].split() == ["head", "binary", "units", "body", "conv", "upsampler", "tail", "rest", "total"]
    assert [line.split()[0] for line in out[6:]] == ["torch", "xnor"]


def test_stage_times_cut_an_inner_tile_and_account_for_every_op():
    from binsr.evaluation import bench

    assert {bench._stage(op) for op in pack_model(shipped("edsr-proposed-x4")).program} == set(bench.STAGES)
    times = bench.stage_times("edsr-bbcu-x2", _lr(60, 70), tile=16, repeats=1)
    assert times["piece"] == "56x56"  # a 16-pixel tile with the model's 20 pixels of overlap on each side
    assert set(times["torch"]) == set(times["xnor"]) == set(bench.STAGES)
    assert all(t > 0 for engine in ("torch", "xnor") for t in times[engine].values())


def test_commands_keep_freed_memory_in_the_heap_for_the_next_tile():
    # In a fresh process: the setting is process-wide, for good. glibc's mallinfo2 says where a 64 MiB tensor
    # lives: a chunk of its own, mapped afresh (and faulted in page by page) each time, or the heap, where its
    # memory stays when freed, ready for the next one.
    script = """
import ctypes, torch
from binsr.engine.inference import reuse_freed_memory
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
def mapped_and_kept():
    before = libc.mallinfo2().hblkhd
    tensor = torch.empty(16 << 20)
    mapped = libc.mallinfo2().hblkhd - before
    del tensor
    return mapped, libc.mallinfo2().fordblks
print(*mapped_and_kept(), reuse_freed_memory(), *mapped_and_kept())
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if result.returncode != 0 and "mallinfo2" in result.stderr:
        pytest.skip("no glibc mallinfo2 here")
    mapped, _, took, mapped_then, kept_then = result.stdout.split()
    assert int(mapped) >= 64 << 20  # by default: mapped for itself, given back when freed
    assert took == "True" and int(mapped_then) == 0 and int(kept_then) >= 64 << 20  # in the heap, and kept there
