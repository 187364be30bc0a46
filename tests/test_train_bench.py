import pytest

from binsr import train_bench


def test_ratios_are_eager_over_compiled_and_compiled_over_fp(monkeypatch):
    monkeypatch.setattr(train_bench, "training_step", lambda name, kwargs, compiled: lambda: None)
    fake = {"EDSR-FP|False": 2.0, "EDSR-FP|True": 1.0, "EDSR-BBCU|False": 3.0, "EDSR-BBCU|True": 1.5,
            "attentive (se)|False": 3.6, "attentive (se)|True": 1.2}  # fmt: skip
    monkeypatch.setattr(train_bench, "median_times", lambda candidates, repeats: {k: fake[k] for k in candidates})
    rows = {row["model"]: row for row in train_bench.train_speed_rows()}
    assert rows["EDSR-BBCU"]["compile_speedup"] == 2.0 and rows["EDSR-BBCU"]["vs_fp_compiled"] == 1.5
    assert rows["attentive (se)"]["compile_speedup"] == pytest.approx(3.0)
    assert rows["EDSR-FP"]["vs_fp_compiled"] == 1.0
    text = train_bench.format_train_speed(list(rows.values()))
    assert "EDSR-BBCU          2.00x              1.50x" in text
