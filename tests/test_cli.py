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
