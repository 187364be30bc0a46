import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from binsr.cli import build_parser, main, model_kwargs
from binsr.nn import checkpoint
from binsr.nn.checkpoint import load_model
from binsr.nn.config import argument_fields
from binsr.nn.models import MODELS, model_arguments
from binsr.training.train import TrainResult

ROOT = Path(__file__).resolve().parents[1]


def test_summary_command_prints_bbcu_table_1_numbers(capsys):
    assert main(["summary", "bbcu-m", "--scale", "2"]) == 0
    out = capsys.readouterr().out
    assert "OPs = FLOPs + BOPs/64 = 1.83 G" in out
    assert "binary 1,363,968/32 = 46.1 K" in out


def test_bad_model_argument_is_one_line_on_stderr(capsys):
    assert main(["summary", "edsr-fp", "--att-bin", "se"]) == 2
    err = capsys.readouterr().err
    expected = "model 'edsr-fp' has no argument att_bin; valid: scale, n_feats, n_blocks, res_scale"
    assert err == f"binsr summary: error: {expected}\n"


def _a_value_other_than_the_default(setting, default):
    """A value the field `setting` accepts, other than `default`, as (command-line text, value)."""
    if "choices" in setting.metadata:
        value = next(choice for choice in setting.metadata["choices"] if choice != default)
        return str(value), value
    value = 3 if setting.metadata["valid"].integer else 0.75
    return str(value), value


@pytest.mark.parametrize("command", ["summary", "train"])
def test_every_model_argument_is_an_option_that_reaches_the_models_config(command):
    parser = build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    options = {option for action in subparser._actions for option in action.option_strings}
    settings = argument_fields()
    assert {"--" + name.replace("_", "-") for name in settings} <= options
    for model, entry in MODELS.items():
        for name in entry.defaults:
            text, value = _a_value_other_than_the_default(settings[name], entry.defaults[name])
            flag = "--" + name.replace("_", "-")
            words = ["summary", model] if command == "summary" else ["train", "--model", model]
            args = parser.parse_args([*words, flag, text])
            built = model_arguments(model, **model_kwargs(args))
            assert built[name] == value != entry.defaults[name], (model, name)
    args = parser.parse_args(["summary", "edsr-proposed", "--gate-init", "none", "--k", "None"])
    assert model_kwargs(args) == {"gate_init": None, "k": None}


def test_a_model_given_no_scale_has_its_registry_scale_in_summary_and_train(capsys, monkeypatch):
    """--scale has no default of its own: BBCU-L is an x4 net (BBCU's Table 1), the EDSR models x2."""
    assert main(["summary", "bbcu-l"]) == 0
    assert "'scale': 4" in capsys.readouterr().out.splitlines()[0]
    runs = []
    monkeypatch.setattr("binsr.training.train.train", lambda *a, **kw: runs.append(a) or TrainResult(None, 1, 0.0))
    for model, scale in (("bbcu-l", 4), ("edsr-fp", 2)):
        assert main(["train", "--model", model, "--steps", "1"]) == 0
        assert runs[-1][2].scale == scale and runs[-1][3] == f"runs/train/{model}-x{scale}"


def test_help_lists_every_command_in_order(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    listed = re.findall(r"^ {4}(\w+)", capsys.readouterr().out, flags=re.MULTILINE)
    assert listed == ["summary", "eval", "upscale", "train", "experiment", "export", "download", "bench", "demo"]


def test_summary_loads_neither_matplotlib_nor_the_training_code():
    code = ("import sys; from binsr.cli import main; main(['summary', 'edsr-fp']); "
            "print(sorted(m for m in sys.modules if m.startswith(('matplotlib', 'skimage', 'binsr.'))))")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    expected = ["binsr.base", "binsr.base.intervals", "binsr.cli", "binsr.nn", "binsr.nn.attention",
                "binsr.nn.binary", "binsr.nn.blocks", "binsr.nn.config", "binsr.nn.models", "binsr.nn.summary",
                "binsr.training", "binsr.training.config"]  # fmt: skip
    assert out.splitlines()[-1] == str(expected)


def test_export_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    out = tmp_path / "file" / "bbcu.binsr"
    assert main(["export", str(ROOT / "assets" / "edsr-bbcu-x2.pt"), str(out)]) == 2
    expected = f"cannot create folder {out.parent}: {out.parent} is a file; expected a folder"
    assert capsys.readouterr().err == f"binsr export: error: {expected}\n"


def test_eval_refuses_nan_weights_and_scale_1(tmp_path, capsys):
    model = load_model(ROOT / "assets" / "edsr-fp-x2.pt")
    model.tail.bias.data[1] = float("nan")
    nan = checkpoint.save(tmp_path / "nan.pt", model)
    assert main(["eval", "--model", str(nan), "--data", "photos-test"]) == 2
    expected = f"checkpoint {nan} has NaN or infinite values in tail.bias; expected finite weights"
    assert capsys.readouterr().err == f"binsr eval: error: {expected}\n"
    assert main(["eval", "--data", "photos-test", "--scale", "1", "--json", str(tmp_path / "r.json")]) == 2
    expected = "argument --scale: 1 is not valid; expected an integer in [2, inf)"
    assert capsys.readouterr().err == f"binsr eval: error: {expected}\n"
    assert not (tmp_path / "r.json").exists()


def test_export_writes_a_packed_model_smaller_than_the_checkpoint(tmp_path, capsys):
    packed = ROOT / "assets" / "edsr-bbcu-x2.pt"
    out = tmp_path / "bbcu.binsr"
    assert main(["export", str(packed), str(out)]) == 0
    ratio = packed.stat().st_size / out.stat().st_size
    assert ratio > 3  # 32x8 EDSR-BBCU: 1-bit body, float head/tail
    assert f"({ratio:.1f}x)" in capsys.readouterr().out


def test_export_refuses_a_full_precision_model(capsys):
    assert main(["export", str(ROOT / "assets" / "edsr-fp-x2.pt"), "unused.binsr"]) == 2
    assert "EDSR has no binary layers" in capsys.readouterr().err


def test_train_then_eval_the_checkpoint_from_the_command_line(tmp_path, capsys):
    args = [
        "train",
        "--model",
        "edsr-bbcu",
        "--n-feats",
        "8",
        "--n-blocks",
        "1",
        "--steps",
        "2",
        "--lr-patch",
        "16",
        "--batch-size",
        "2",
        "--train",
        "photos-train",
        "--val",
        "photos-test",
        "--out",
        str(tmp_path),
        "--no-compile",
    ]
    assert main(args) == 0
    assert main(["eval", "--model", "bicubic", str(tmp_path / "last.pt"), "--data", "photos-test", "--scale", "2"]) == 0
    table = capsys.readouterr().out.splitlines()[-4:]
    assert table[0].startswith("| Method | Scale | photos-test PSNR/SSIM |")
    assert table[2].startswith("| Bicubic | x2 | 32.79/0.8996 |")  # the embedded photos' bicubic baseline
    assert table[3].startswith("| last | x2 |")
    assert main(["eval", "--model", str(tmp_path / "last.pt"), "--data", "photos-test", "--scale", "4"]) == 2
    assert "scale" in capsys.readouterr().err


TRAIN = ["train", "--model", "edsr-fp"]
PARSE_ERRORS = [  # refused where they are parsed, before anything is imported or read
    ([*TRAIN, "--checkpoint-interval", "0"], "argument --checkpoint-interval: 0 is not valid; expected an integer in "
                                            "[1, inf)"),
    ([*TRAIN, "--lr-patch", "0"], "argument --lr-patch: 0 is not valid; expected an integer in [1, inf)"),
    ([*TRAIN, "--batch-size", "0"], "argument --batch-size: 0 is not valid; expected an integer in [1, inf)"),
    ([*TRAIN, "--n-feats", "0"], "argument --n-feats: 0 is not valid; expected an integer in [1, 256]"),
    ([*TRAIN, "--n-blocks", "1000000"], "argument --n-blocks: 1000000 is not valid; expected an integer in [1, 32]"),
    ([*TRAIN, "--lr", "inf"], "argument --lr: inf is not valid; expected a finite number in [0, 1]"),
    ([*TRAIN, "--lr", "1e30"], "argument --lr: 1e30 is not valid; expected a finite number in [0, 1]"),
    ([*TRAIN, "--betas", "0.9"], "argument --betas: expected 2 arguments"),
    ([*TRAIN, "--scale", "5"], "argument --scale: invalid choice: 5 (choose from 2, 3, 4)"),
    (["upscale", "a.png", "--model", "m", "-o", "out", "--tile", "1"], "argument --tile: 1 is too small (the tiles' "
     "overlap would cost more than the tiles); expected 0 for one pass or at least 32 pixels"),
    (["eval", "--tile", "-1"], "argument --tile: -1 is not valid; expected an integer in [0, inf)"),
    (["summary", "edsr-fp", "--lr-size", "0", "9"], "argument --lr-size: 0 is not valid; expected an integer in "
                                                   "[1, inf)"),
    (["bench", "--threads", "0"], "argument --threads: 0 is not valid; expected an integer in [1, inf)"),
    (["experiment", "--steps", "10", "--jobs", "two"], "argument --jobs: two is not valid; expected an integer in "
                                                       "[1, inf)"),
]  # fmt: skip


@pytest.mark.parametrize("args,expected", PARSE_ERRORS, ids=[" ".join(args[1:]) for args, _ in PARSE_ERRORS])
def test_bad_options_are_one_line_where_they_are_parsed(args, expected, capsys):
    assert main(args) == 2
    assert capsys.readouterr().err == f"binsr {args[0]}: error: {expected}\n"


def test_devices_torch_does_not_know_or_this_machine_lacks_are_one_line(tmp_path, capsys):
    args = [*TRAIN, "--out", str(tmp_path / "run"), "--device", "banana"]
    assert main(args) == 2
    expected = "device 'banana' is not valid; expected auto, cpu, cuda, cuda:N, mps, ..."
    assert capsys.readouterr().err == f"binsr train: error: {expected}\n"
    assert not (tmp_path / "run").exists()
    assert main(["upscale", "missing.png", "--model", "edsr-fp-x2", "-o", str(tmp_path), "--device", "meta"]) == 2
    expected = "device 'meta' is not available here (Cannot copy out of meta tensor; no data!); expected auto, cpu"
    assert capsys.readouterr().err == f"binsr upscale: error: {expected} or a device this machine has\n"
    if not torch.cuda.is_available():
        assert main(["upscale", "missing.png", "--model", "edsr-fp-x2", "-o", str(tmp_path), "--device", "cuda"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("binsr upscale: error: device 'cuda' is not available here (") and err.count("\n") == 1


@pytest.mark.parametrize("n_feats", [-5, "32"])
def test_a_checkpoint_with_bad_arguments_is_one_line_in_every_command(n_feats, tmp_path, capsys):
    state = torch.load(ROOT / "assets" / "edsr-bbcu-x2.pt", weights_only=True)
    state["model"]["kwargs"]["n_feats"] = n_feats
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    expected = (f"checkpoint {bad} asks for a model binsr does not build: n_feats={n_feats!r} is not valid; expected "
                "an integer in [1, 256]")  # fmt: skip
    for command in (["upscale", str(ROOT / "README.md"), "--model", str(bad), "-o", str(tmp_path / "out")],
                    ["eval", "--model", str(bad), "--data", "photos-test"], ["export", str(bad), str(tmp_path / "b")],
                    ["summary", str(bad)]):  # fmt: skip
        assert main(command) == 2
        assert capsys.readouterr().err == f"binsr {command[0]}: error: {expected}\n"


def test_ctrl_c_while_torch_is_still_importing_is_one_line():
    # A Ctrl-C lands in the first seconds of every command, while torch imports: raised here by an import hook.
    code = """if True:
        import sys

        class CtrlC:
            def find_spec(self, name, path=None, target=None):
                if name == "torch":
                    raise KeyboardInterrupt

        sys.meta_path.insert(0, CtrlC())
        from binsr.cli import build_parser, main, model_kwargs
        sys.exit(main(["summary", "edsr-fp"]))"""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert (result.returncode, result.stderr) == (130, "binsr: interrupted\n")
