from pathlib import Path

import pytest

from binsr.cli import main


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


def test_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "summary" in capsys.readouterr().out



def test_export_writes_a_packed_model_smaller_than_the_checkpoint(tmp_path, capsys):
    checkpoint = Path(__file__).resolve().parents[1] / "assets" / "edsr-bbcu-x2.pt"
    out = tmp_path / "bbcu.binsr"
    assert main(["export", str(checkpoint), str(out)]) == 0
    ratio = checkpoint.stat().st_size / out.stat().st_size
    assert ratio > 3  # 32x8 EDSR-BBCU: 1-bit body, float head/tail
    assert f"({ratio:.1f}x)" in capsys.readouterr().out


def test_export_refuses_a_full_precision_model(capsys):
    checkpoint = Path(__file__).resolve().parents[1] / "assets" / "edsr-fp-x2.pt"
    assert main(["export", str(checkpoint), "unused.binsr"]) == 2
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
