import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from binsr import checkpoint
from binsr.checkpoint import load_model
from binsr.cli import main

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
    expected = ["binsr.attention", "binsr.binary", "binsr.blocks", "binsr.cli", "binsr.config", "binsr.models",
                "binsr.summary"]  # fmt: skip
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
    expected = "scale=1 is not valid; expected an upscaling factor of 2 or more"
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
    args = ["train", "--model", "edsr-bbcu", "--n-feats", "8", "--n-blocks", "1", "--steps", "2", "--lr-patch", "16",
            "--batch-size", "2", "--train", "photos-train", "--val", "photos-test", "--out", str(tmp_path),
            "--no-compile"]
    assert main(args) == 0
    assert main(["eval", "--model", "bicubic", str(tmp_path / "last.pt"), "--data", "photos-test", "--scale", "2"]) == 0
    table = capsys.readouterr().out.splitlines()[-4:]
    assert table[0].startswith("| Method | Scale | photos-test PSNR/SSIM |")
    assert table[2].startswith("| Bicubic | x2 | 32.79/0.8996 |")  # the embedded photos' bicubic baseline
    assert table[3].startswith("| last | x2 |")
    assert main(["eval", "--model", str(tmp_path / "last.pt"), "--data", "photos-test", "--scale", "4"]) == 2
    assert "scale" in capsys.readouterr().err
