"""binsr.viz.lesson: the classroom switch, timed cells and the run times saved in a notebook."""

from __future__ import annotations

import json

import pytest

from binsr import viz


def test_the_run_mode_follows_the_switch_and_quick_mode_overrides_it(monkeypatch):
    monkeypatch.delenv("BINSR_QUICK", raising=False)
    assert viz.run_mode(False).name == "full" and viz.run_mode(True).name == "classroom"
    monkeypatch.setenv("BINSR_QUICK", "1")
    assert viz.run_mode(False).name == viz.run_mode(True).name == "quick"
    assert viz.run_mode(True).quick and not viz.RunMode("classroom").quick
    assert "CLASSROOM = True" in str(viz.RunMode("full"))


def test_pick_falls_back_from_quick_to_classroom_to_full():
    full, classroom, quick = viz.RunMode("full"), viz.RunMode("classroom"), viz.RunMode("quick")
    assert [m.pick(full=150, classroom=50, quick=20) for m in (full, classroom, quick)] == [150, 50, 20]
    assert [m.pick(full=150, classroom=50) for m in (full, classroom, quick)] == [150, 50, 50]
    assert [m.pick(full=150) for m in (full, classroom, quick)] == [150, 150, 150]
    with pytest.raises(ValueError, match="lesson"):
        viz.RunMode("lesson")


def test_timed_prints_the_wall_time_even_when_the_block_fails(capsys):
    with viz.timed("training"):
        pass
    assert capsys.readouterr().out.startswith("(training ran in 0.0 s of wall-clock time")
    with pytest.raises(KeyError), viz.timed():
        {}["missing"]
    assert "this cell ran in" in capsys.readouterr().out


def test_cell_seconds_reads_the_execution_times_jupyter_saved(tmp_path):
    def cell(start: str, end: str | None) -> dict:
        stamps = {"iopub.execute_input": start, "shell.execute_reply": end} if end else {}
        return {"cell_type": "code", "metadata": {"execution": stamps}, "source": "", "outputs": []}

    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# title"},
        cell("2026-11-29T18:04:31.070Z", "2026-11-29T18:04:36.243Z"),
        cell("2026-11-29T18:04:36.245Z", None),  # never executed
        cell("2026-11-29T18:04:59.500Z", "2026-11-29T18:06:01.000Z"),
    ]
    path = tmp_path / "nb.ipynb"
    path.write_text(json.dumps({"cells": cells}))
    assert viz.cell_seconds(path) == pytest.approx({1: 5.173, 3: 61.5})
    assert viz.run_seconds(path) == pytest.approx(66.673)
    cells[3]["metadata"]["tags"] = ["solution"]  # runs only when its button is pressed: not part of Run All
    path.write_text(json.dumps({"cells": cells}))
    assert viz.run_seconds(path) == pytest.approx(5.173)
