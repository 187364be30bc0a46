import math
import os
import signal
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from PIL import Image

from binsr.base.device import resolve_device
from binsr.base.files import claim_run
from binsr.cli import build_parser, main, train_config
from binsr.data.images import PatchSampler
from binsr.nn import checkpoint
from binsr.nn.config import VERSION
from binsr.nn.models import create_model
from binsr.training.distill import distillation, load_teacher
from binsr.training.train import Progress, TrainConfig, TrainingInterrupted, _Loss, learning_rate, train

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
    last = tmp_path / "parts" / "last.pt"
    state = checkpoint.load(last)
    assert state["step"] == 3 and state["model"]["version"] == VERSION
    # as binsr wrote run folders before the model config had a version (2) and the sign's backward its name
    old_names = {("backward" if key == "sign_backward" else key): v for key, v in state["model"]["kwargs"].items()}
    torch.save({**state, "model": {"name": "edsr-proposed", "kwargs": old_names}}, last)
    resumed = train("edsr-proposed", kwargs, config, tmp_path / "parts", resume=True)
    assert resumed.step == 6
    assert _same_tensors(resumed.model.state_dict(), whole.model.state_dict())
    opt_whole = checkpoint.load(tmp_path / "whole" / "last.pt")["optimizer"]["state"]
    opt_resumed = checkpoint.load(tmp_path / "parts" / "last.pt")["optimizer"]["state"]
    assert all(_same_tensors(opt_whole[i], opt_resumed[i]) for i in opt_whole)


def test_scalar_lr_moves_a1_a2_that_many_times_further_in_adams_first_step(images, tmp_path):
    # Adam's first step moves every parameter by lr * g / (|g| + eps): by the lr wherever |g| >> eps = 1e-8.
    kwargs = {**TINY, "att_bin": "se", "att_res": "se"}
    config = _config(images, steps=1, lr=1e-3, val_sets=(), scalar_lr=10.0)
    torch.manual_seed(config.seed)
    start = create_model("edsr-proposed", **kwargs).state_dict()
    moved = train("edsr-proposed", kwargs, config, tmp_path).model.state_dict()
    steps = {key: (moved[key] - start[key]).abs() for key in start}
    for key in ("body.0.0.a1", "body.0.0.a2", "body.0.1.a1", "body.0.1.a2"):
        assert steps[key].item() == pytest.approx(1e-2, rel=1e-2), key  # |g| ~ 1e-6 > eps
    head = steps["head.weight"]
    assert head.max().item() == pytest.approx(1e-3, rel=1e-2)
    with pytest.raises(ValueError, match=r"^scalar_lr=0.0 is not valid; expected a finite number in \(0, inf\)$"):
        train("edsr-proposed", kwargs, _config(images, scalar_lr=0.0), tmp_path / "zero")


def test_resume_reads_checkpoints_older_than_a_setting_and_refuses_a_changed_one(images, tmp_path):
    config = _config(images, steps=2, val_sets=())
    train("edsr-fp", TINY, config, tmp_path)
    state = checkpoint.load(tmp_path / "last.pt")
    del state["config"]["scalar_lr"]  # as written before the setting existed
    torch.save(state, tmp_path / "last.pt")
    assert train("edsr-fp", TINY, config, tmp_path, resume=True).step == 2
    with pytest.raises(ValueError, match="trained with different scalar_lr; expected the same to resume"):
        train("edsr-fp", TINY, _config(images, steps=2, val_sets=(), scalar_lr=2.0), tmp_path, resume=True)


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


def test_a_step_that_makes_the_weights_nan_is_not_saved_and_the_last_good_checkpoint_stays(images, tmp_path,
                                                                                         monkeypatch):  # fmt: skip
    # --lr inf (now refused) did this: the loss of step 3 is finite, its update makes every weight NaN, and the
    # checkpoint saved after it held 12 of 12 non-finite tensors as the "last good checkpoint".
    config = _config(images, steps=6, checkpoint_interval=1, val_sets=())
    with pytest.raises(_Interrupt):
        train("edsr-fp", TINY, config, tmp_path / "clean", callback=_stop_at(2))
    scheduled = learning_rate
    monkeypatch.setattr(
        "binsr.training.train.learning_rate", lambda c, step: math.inf if step == 2 else scheduled(c, step)
    )
    expected = r"^step 3 made 12 of 12 weight tensors NaN or infinite; stopped, last good checkpoint: .*last\.pt$"
    with pytest.raises(FloatingPointError, match=expected):
        train("edsr-fp", TINY, config, tmp_path / "inf")
    state = checkpoint.load(tmp_path / "inf" / "last.pt")
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["state_dict"].values())
    assert _same_tensors(state["state_dict"], checkpoint.load(tmp_path / "clean" / "last.pt")["state_dict"])


def test_command_line_trains_the_model_it_names(images, tmp_path):
    assert main([
        "train", "--model", "edsr-proposed", "--scale", "3", "--n-feats", "4", "--n-blocks", "1", "--att-bin",
        "spatial", "--steps", "2", "--lr-patch", "8", "--batch-size", "2", "--train-set", images, "--val-sets",
        "--betas", "0.8", "0.9", "--out", str(tmp_path / "cli"), "--no-compile",
    ]) == 0  # fmt: skip
    state = checkpoint.load(tmp_path / "cli" / "last.pt")
    assert state["step"] == 2 and state["metrics"]["val"] == []
    assert state["model"]["kwargs"]["att_bin"] == "spatial" and state["model"]["kwargs"]["scale"] == 3
    assert state["config"]["betas"] == (0.8, 0.9) and state["config"]["val_sets"] == ()


def test_train_options_are_the_config_fields_with_their_defaults():
    args = build_parser().parse_args(["train", "--model", "edsr-fp", "--train", "photos-train", "--val", "a", "b"])
    assert train_config(args) == TrainConfig(train_set="photos-train", val_sets=("a", "b"))
    assert train_config(build_parser().parse_args(["train", "--model", "edsr-fp"])) == TrainConfig()


def test_a_folder_that_holds_a_run_is_refused_unless_resumed_or_overwritten(images, tmp_path):
    config = _config(images, steps=2, val_sets=())
    first = train("edsr-fp", TINY, config, tmp_path)
    with pytest.raises(ValueError, match=r"already holds a run \(.*last\.pt\); expected --resume .* or --overwrite"):
        train("edsr-bbcu", TINY, config, tmp_path)
    assert checkpoint.load(tmp_path / "last.pt")["model"]["name"] == "edsr-fp"  # untouched
    assert train("edsr-fp", TINY, config, tmp_path, resume=True).step == 2
    second = train("edsr-fp", TINY, _config(images, steps=2, val_sets=(), seed=1), tmp_path, overwrite=True)
    assert checkpoint.load(tmp_path / "last.pt")["config"]["seed"] == 1
    assert not _same_tensors(first.model.state_dict(), second.model.state_dict())
    with pytest.raises(ValueError, match="resume and overwrite are both set"):
        train("edsr-fp", TINY, config, tmp_path, resume=True, overwrite=True)


def test_a_second_trainer_is_refused_naming_the_holder(images, tmp_path):
    seen = []
    with claim_run(tmp_path / "run"), pytest.raises(ValueError, match=rf"in use by pid {os.getpid()} on "):
        train("edsr-fp", TINY, _config(images), tmp_path / "run", callback=seen.append)
    assert seen == []
    assert train("edsr-fp", TINY, _config(images, steps=1), tmp_path / "run").step == 1  # released


def test_an_output_folder_under_a_file_fails_before_the_first_step(images, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    seen = []
    with pytest.raises(ValueError, match=r"cannot create folder .*file/run: .*file is a file; expected a folder$"):
        train("edsr-fp", TINY, _config(images), tmp_path / "file" / "run", callback=seen.append)
    assert seen == []
    assert main(["train", "--model", "edsr-fp", "--out", str(tmp_path / "file" / "run")]) == 2
    assert capsys.readouterr().err.startswith("binsr train: error: cannot create folder ")


def _signal_at(step: int, signum: int):
    def callback(progress: Progress) -> None:
        if progress.step == step:
            os.kill(os.getpid(), signum)

    return callback


def test_ctrl_c_saves_the_step_in_flight_and_resumes_bit_exactly(images, tmp_path):
    config = _config(images, val_sets=(), checkpoint_interval=100)
    whole = train("edsr-bbcu", TINY, config, tmp_path / "whole")
    before = signal.getsignal(signal.SIGINT)  # Python's default, or SIG_IGN where a shell started us in the background
    with pytest.raises(TrainingInterrupted) as stopped:
        train("edsr-bbcu", TINY, config, tmp_path / "parts", callback=_signal_at(2, signal.SIGINT))
    # the signal lands after step 2; step 3, already under way when it is seen, completes and is saved
    assert stopped.value.step == 3 and stopped.value.checkpoint == tmp_path / "parts" / "last.pt"
    assert checkpoint.load(tmp_path / "parts" / "last.pt")["step"] == 3
    assert signal.getsignal(signal.SIGINT) is before  # restored
    resumed = train("edsr-bbcu", TINY, config, tmp_path / "parts", resume=True)
    assert _same_tensors(resumed.model.state_dict(), whole.model.state_dict())


def test_sigterm_from_the_command_line_exits_130_with_one_line(images, tmp_path, capsys, monkeypatch):
    original = PatchSampler.batch

    def terminated(self, step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return original(self, step)

    monkeypatch.setattr(PatchSampler, "batch", terminated)
    out = tmp_path / "run"
    args = ["train", "--model", "edsr-fp", "--n-feats", "4", "--n-blocks", "1", "--steps", "5", "--lr-patch", "8",
            "--batch-size", "2", "--train", images, "--val-sets", "--out", str(out), "--no-compile"]  # fmt: skip
    assert main(args) == 130
    last_line = capsys.readouterr().err.splitlines()[-1]  # after the progress bar's
    assert last_line == (
        f"binsr train: interrupted; step 2 saved to {out / 'last.pt'}; run the same command with --resume to continue"
    )
    assert checkpoint.load(out / "last.pt")["step"] == 2
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


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


def test_init_from_starts_an_x4_run_from_an_x2_model_and_a_resume_ignores_it(images, tmp_path):
    x2 = train("edsr-bbcu", TINY, _config(images, steps=1, val_sets=()), tmp_path / "x2")
    config = _config(images, scale=4, steps=2, lr=0.0, val_sets=(), init_from=str(x2.checkpoint))
    x4 = train("edsr-bbcu", TINY, config, tmp_path / "x4")  # lr 0: the weights stay where they started
    x2_weights = x2.model.state_dict()
    for key, value in x4.model.state_dict().items():
        if key not in ("upsampler.2.weight", "upsampler.2.bias"):
            assert torch.equal(value, x2_weights[key]), key

    gone = _config(images, scale=4, steps=2, lr=0.0, val_sets=(), init_from=str(tmp_path / "missing.pt"))
    resumed = train("edsr-bbcu", TINY, gone, tmp_path / "x4", resume=True)  # reads last.pt, never init_from
    assert resumed.step == 2 and _same_tensors(resumed.model.state_dict(), x4.model.state_dict())


def test_compiled_loss_stays_compiled_on_a_new_patch_size():
    # A process that trains on several patch sizes (the experiment grid, a notebook) must not fall back to eager:
    # a shape-generic graph failed to build for these nets, so each size gets its own graph.
    torch.manual_seed(0)
    model = create_model("edsr-proposed", scale=2, n_feats=4, n_blocks=1, att_bin="se", att_res="pixel")
    loss = _Loss(model, compile=True)
    for size in (12, 10, 9):
        lr, hr = torch.rand(2, 3, size, size), torch.rand(2, 3, 2 * size, 2 * size)
        compiled = loss(lr, hr)
        assert loss.net.module is not loss.net.eager, f"fell back to eager at patch size {size}"
        torch.testing.assert_close(compiled, torch.nn.functional.l1_loss(model(lr), hr), rtol=1e-5, atol=1e-6)


# ---- distillation from a teacher (binsr.training.distill) ----------------------------------------------------------


@pytest.fixture
def teacher(tmp_path) -> str:
    """A tiny full-precision x2 checkpoint with the students' body shape (4 channels x 1 block)."""
    torch.manual_seed(1)
    return str(checkpoint.save(tmp_path / "teacher.pt", create_model("edsr-fp", scale=2, **TINY)))


def test_weight_0_trains_bit_for_bit_as_without_a_teacher_and_checkpoints_record_teacher_and_weight(
    images, tmp_path, teacher
):
    plain_seen, zero_seen = [], []
    plain = train("edsr-bbcu", TINY, _config(images, val_sets=()), tmp_path / "plain", callback=plain_seen.append)
    zero_config = _config(images, val_sets=(), teacher=teacher, distill_weight=0.0)
    zero = train("edsr-bbcu", TINY, zero_config, tmp_path / "zero", callback=zero_seen.append)
    assert _same_tensors(plain.model.state_dict(), zero.model.state_dict()) and plain_seen == zero_seen
    taught = train("edsr-bbcu", TINY, _config(images, val_sets=(), teacher=teacher, distill_weight=0.5),
                   tmp_path / "taught")  # fmt: skip
    assert not _same_tensors(plain.model.state_dict(), taught.model.state_dict())
    config = checkpoint.load(taught.checkpoint)["config"]
    assert (config["teacher"], config["distill_weight"], config["distill_features"]) == (teacher, 0.5, None)


@pytest.mark.parametrize("features", [None, "cosine"])
def test_a_run_with_a_teacher_resumes_bit_exactly_and_only_with_the_same_teacher(images, tmp_path, teacher, features):
    config = _config(images, val_sets=(), teacher=teacher, distill_weight=0.5, distill_features=features)
    whole = train("edsr-bbcu", TINY, config, tmp_path / "whole")
    with pytest.raises(_Interrupt):
        train("edsr-bbcu", TINY, config, tmp_path / "parts", callback=_stop_at(3))
    resumed = train("edsr-bbcu", TINY, config, tmp_path / "parts", resume=True)
    assert resumed.step == 6 and _same_tensors(resumed.model.state_dict(), whole.model.state_dict())
    changed = "distill_weight" if features is None else "distill_weight, distill_features"
    with pytest.raises(ValueError, match=f"trained with different teacher, {changed}; expected the same to resume"):
        train("edsr-bbcu", TINY, _config(images, val_sets=()), tmp_path / "parts", resume=True)


def test_a_teacher_of_another_scale_or_body_is_refused_with_one_line(images, tmp_path, capsys):
    args = ["train", "--model", "edsr-bbcu", "--n-feats", "4", "--n-blocks", "1", "--steps", "2", "--lr-patch", "8",
            "--batch-size", "2", "--train", images, "--val-sets", "--no-compile"]  # fmt: skip
    assert main([*args, "--teacher", "edsr-fp-x4", "--out", str(tmp_path / "x4")]) == 2
    err = "binsr train: error: teacher edsr-fp-x4 is an x4 model; expected x2, the scale of the run\n"
    assert capsys.readouterr().err == err
    assert not (tmp_path / "x4").exists()  # refused before anything was written
    assert main([*args, "--teacher", "edsr-fp-x2", "--distill-features", "l1", "--out", str(tmp_path / "f")]) == 2
    assert capsys.readouterr().err == (
        "binsr train: error: feature distillation needs two EDSR bodies of one shape; the student's is 4 channels x "
        "1 blocks, the teacher's 32 channels x 8 blocks; expected the same (or output distillation)\n"
    )


def test_distillation_options_reach_the_config():
    args = ["train", "--model", "edsr-bbcu", "--teacher", "edsr-fp-x2", "--distill-weight", "0.5",
            "--distill-features", "cosine"]  # fmt: skip
    config = train_config(build_parser().parse_args(args))
    assert config == TrainConfig(teacher="edsr-fp-x2", distill_weight=0.5, distill_features="cosine")


def test_compiled_feature_distillation_sees_its_hooks_after_a_compiled_run_without_them(teacher):
    # torch.compile reuses a graph without looking at forward hooks unless told to: a feature-distilled run after
    # a plain one of the same architecture (the experiment grid, a notebook) would read no block outputs
    torch.manual_seed(0)
    student = create_model("edsr-bbcu", scale=2, **TINY)
    fp = load_teacher(teacher, 2, torch.device("cpu"))
    lr, hr = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 16, 16)
    _Loss(student, compile=True)(lr, hr)
    with distillation(student, fp, 1.0, "l1") as term:
        compiled, eager = (_Loss(student, c, fp, term)(lr, hr) for c in (True, False))
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)
