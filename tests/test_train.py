import argparse
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from binsr import checkpoint
from binsr.data import PatchSampler
from binsr.train import (
    Progress,
    TrainConfig,
    add_train_arguments,
    learning_rate,
    resolve_device,
    train,
    train_command,
)

TINY = {"n_feats": 4, "n_blocks": 1}


@pytest.fixture
def images(tmp_path, monkeypatch):
    """A folder of three random 32x32 images (LR bicubic is cached under tmp_path, not ~/.cache)."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def _config(images: str, **overrides) -> TrainConfig:
    fields = dict(steps=6, lr=1e-3, lr_patch=8, batch_size=2, train_set=images, val_sets=(images,),
                  checkpoint_interval=3, device="cpu", compile=False)  # fmt: skip
    return TrainConfig(**{**fields, **overrides})


def _same_tensors(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_cosine_schedule_starts_at_lr_halves_midway_and_ends_at_zero():
    config = TrainConfig(steps=100, lr=2e-3)
    assert learning_rate(config, 0) == 2e-3
    assert learning_rate(config, 50) == pytest.approx(1e-3, abs=1e-18)
    assert learning_rate(config, 100) == 0.0
    assert learning_rate(config, 25) == pytest.approx(1e-3 * (1 + math.sqrt(0.5)))


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == torch.device("cuda", 1)


def test_training_reports_progress_saves_and_validates(images, tmp_path):
    seen: list[Progress] = []
    config = _config(images)
    result = train("edsr-bbcu", TINY, config, tmp_path / "run", callback=seen.append)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5, 6]
    assert [p.lr for p in seen] == [learning_rate(config, s) for s in range(6)]
    assert [p.val_psnr for p in seen[:-1]] == [None] * 5 and seen[-1].val_psnr == result.val[0]["psnr"]
    assert all(math.isfinite(p.loss) and p.loss > 0 for p in seen)
    state = checkpoint.load(result.checkpoint)
    assert state["step"] == 6 and state["config"]["steps"] == 6 and state["metrics"]["val"] == result.val
    assert _same_tensors(state["state_dict"], result.model.state_dict())
    assert checkpoint.load_model(result.checkpoint).config == result.model.config


class _Interrupt(Exception):
    pass


def _stop_at(step: int):
    def callback(progress: Progress) -> None:
        if progress.step == step:
            raise _Interrupt

    return callback


def test_resumed_run_reaches_exactly_the_parameters_of_an_uninterrupted_run(images, tmp_path):
    config = _config(images, val_sets=())
    kwargs = {**TINY, "att_bin": "pixel", "att_res": "se"}
    whole = train("edsr-proposed", kwargs, config, tmp_path / "whole")
    with pytest.raises(_Interrupt):
        train("edsr-proposed", kwargs, config, tmp_path / "parts", callback=_stop_at(3))
    assert checkpoint.load(tmp_path / "parts" / "last.pt")["step"] == 3
    resumed = train("edsr-proposed", kwargs, config, tmp_path / "parts", resume=True)
    assert resumed.step == 6
    assert _same_tensors(resumed.model.state_dict(), whole.model.state_dict())
    opt_whole = checkpoint.load(tmp_path / "whole" / "last.pt")["optimizer"]["state"]
    opt_resumed = checkpoint.load(tmp_path / "parts" / "last.pt")["optimizer"]["state"]
    assert all(_same_tensors(opt_whole[i], opt_resumed[i]) for i in opt_whole)


def test_resume_refuses_another_model_or_schedule(images, tmp_path):
    config = _config(images, steps=2, val_sets=())
    train("edsr-fp", TINY, config, tmp_path)
    with pytest.raises(ValueError, match=r"last\.pt holds .*'edsr-fp'.*; expected .*'edsr-bbcu'"):
        train("edsr-bbcu", TINY, config, tmp_path, resume=True)
    with pytest.raises(ValueError, match=r"last\.pt was trained with different steps, lr; expected the same to resume"):
        train("edsr-fp", TINY, _config(images, steps=4, lr=5e-4, val_sets=()), tmp_path, resume=True)


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(images, tmp_path, monkeypatch):
    config = _config(images, steps=8, checkpoint_interval=2, val_sets=())
    with pytest.raises(_Interrupt):
        train("edsr-fp", TINY, config, tmp_path / "clean", callback=_stop_at(4))
    original = PatchSampler.batch

    def poisoned(self, step):
        lr, hr = original(self, step)
        return (lr * float("nan"), hr) if step == 4 else (lr, hr)

    monkeypatch.setattr(PatchSampler, "batch", poisoned)
    with pytest.raises(FloatingPointError, match=r"^loss is nan at step 5; stopped, last good checkpoint: .*last\.pt$"):
        train("edsr-fp", TINY, config, tmp_path / "nan")
    state = checkpoint.load(tmp_path / "nan" / "last.pt")
    assert state["step"] == 4
    assert all(torch.isfinite(t).all() for t in state["state_dict"].values())
    assert _same_tensors(state["state_dict"], checkpoint.load(tmp_path / "clean" / "last.pt")["state_dict"])


def test_command_line_trains_the_model_it_names(images, tmp_path):
    parser = argparse.ArgumentParser()
    add_train_arguments(parser)
    args = parser.parse_args([
        "--model", "edsr-proposed", "--scale", "3", "--n-feats", "4", "--n-blocks", "1", "--att-bin", "spatial",
        "--steps", "2", "--lr-patch", "8", "--batch-size", "2", "--train-set", images, "--val-sets",
        "--betas", "0.8", "0.9", "--out", str(tmp_path / "cli"),
    ])  # fmt: skip
    result = train_command(args)
    assert result.step == 2 and result.val == []
    assert result.model.config["kwargs"]["att_bin"] == "spatial" and result.model.scale == 3
    assert checkpoint.load(tmp_path / "cli" / "last.pt")["config"]["betas"] == (0.8, 0.9)


def _ddp_worker(rank: int, world: int, port: int, images: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank), XDG_CACHE_HOME=os.path.join(out, "cache"))  # fmt: skip
    torch.set_num_threads(1)
    result = train("edsr-bbcu", TINY, _config(images, steps=3, val_sets=()), out)
    torch.save(result.model.state_dict(), os.path.join(out, f"rank{rank}.pt"))


def test_two_process_ddp_on_cpu_keeps_both_ranks_identical(images, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, images, str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert _same_tensors(rank0, rank1)
    state = checkpoint.load(tmp_path / "last.pt")  # written by rank 0 alone
    assert state["step"] == 3 and _same_tensors(state["state_dict"], rank0)
    single = train("edsr-bbcu", TINY, _config(images, steps=3, val_sets=()), tmp_path / "single")
    assert not _same_tensors(single.model.state_dict(), rank0)  # rank 1's batches (seed + 1) took part


def test_compiled_training_resumes_bit_exactly_and_saves_plain_keys(images, tmp_path):
    config = _config(images, steps=4, checkpoint_interval=2, val_sets=(), compile=True)
    whole = train("edsr-bbcu", TINY, config, tmp_path / "whole")
    with pytest.raises(_Interrupt):
        train("edsr-bbcu", TINY, config, tmp_path / "parts", callback=_stop_at(2))
    resumed = train("edsr-bbcu", TINY, config, tmp_path / "parts", resume=True)
    saved = checkpoint.load(tmp_path / "whole" / "last.pt")["state_dict"]
    assert not [key for key in saved if "_orig_mod" in key]
    assert _same_tensors(whole.model.state_dict(), resumed.model.state_dict())
    eager = train("edsr-bbcu", TINY, _config(images, steps=4, val_sets=()), tmp_path / "eager")
    for name, value in eager.model.state_dict().items():  # the same steps, up to the compiler's rounding
        assert torch.allclose(value, saved[name], rtol=1e-3, atol=1e-4), name
