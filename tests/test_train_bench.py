import pytest

from binsr.training import train_bench


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


def test_distillation_overhead_is_the_step_with_the_teacher_over_the_step_without(monkeypatch):
    made = []
    monkeypatch.setattr(train_bench, "load_teacher", lambda spec, scale, device: f"{spec} x{scale}")
    monkeypatch.setattr(train_bench, "distilled_step", lambda *args: made.append(args) or (lambda: None))
    fake = {"EDSR-BBCU|False": 1.0, "EDSR-BBCU|True": 1.25, "attentive (se)|False": 1.6, "attentive (se)|True": 1.9}
    timed = lambda candidates, repeats, clock: {k: fake[k] for k in candidates}  # noqa: E731
    monkeypatch.setattr(train_bench, "median_times", timed)
    rows = {row["model"]: row for row in train_bench.distill_overhead_rows()}
    assert [args[2] for args in made] == [None, "edsr-fp-x2 x2"] * 2  # each model without and with the teacher
    assert rows["EDSR-BBCU"]["overhead"] == 1.25 and rows["attentive (se)"]["overhead"] == pytest.approx(1.1875)
    text = train_bench.format_distill_overhead(list(rows.values()))
    assert "EDSR-BBCU          1.25x  (1250 ms vs 1000 ms)" in text
