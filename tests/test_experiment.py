import json
from functools import partial

import numpy as np
import pytest
import torch
from PIL import Image

from binsr.demo import SHIPPED, load_shipped
from binsr.nn import checkpoint
from binsr.training import experiment, report
from binsr.training.train import TrainConfig


def _row(label, scale, set5, set14=None, model="edsr-proposed", att=("se", "se")):
    val = {"Set5": {"psnr": set5, "ssim": 0.9}} | ({"Set14": {"psnr": set14, "ssim": 0.8}} if set14 else {})
    return {"label": label, "model": model, "scale": scale, "params": 12345.0, "ops": 2.5e9,
            "arguments": {"att_bin": att[0], "att_res": att[1]},
            "train_seconds": 90.0, "steps": 10, "lr": 1e-3, "val": val}  # fmt: skip


def test_markdown_table_has_one_row_per_run_and_a_column_per_set():
    rows = [_row("EDSR-FP", 2, 33.456, 30.1, model="edsr-fp"), _row("proposed-se", 4, 28.0)]
    assert report.format_markdown(rows).splitlines() == [
        "| model | scale | Params (K) | OPs (G) | Set5 PSNR / SSIM | Set14 PSNR / SSIM | train time (min) |",
        "|---|---|---|---|---|---|---|",
        "| EDSR-FP | x2 | 12.3 | 2.50 | 33.46 / 0.9000 | 30.10 / 0.8000 | 1.5 |",
        "| proposed-se | x4 | 12.3 | 2.50 | 28.00 / 0.9000 | - | 1.5 |",
    ]


def test_best_proposed_is_the_highest_mean_x2_psnr_among_both_branch_attention_runs():
    rows = [
        _row("EDSR-FP", 2, 40.0, 40.0, model="edsr-fp"),
        _row("proposed-se", 2, 31.0, 29.0),
        _row("proposed-pixel", 2, 30.5, 29.6, att=("pixel", "pixel")),
        _row("proposed-spatial", 4, 35.0, 35.0, att=("spatial", "spatial")),
        _row("proposed-pixel-bin-only", 2, 36.0, 36.0, att=("pixel", "none")),
    ]
    assert experiment.best_proposed(rows) == "proposed-pixel"
    with pytest.raises(ValueError, match="no x2 proposed run with attention on both branches"):
        experiment.best_proposed(rows[:1] + rows[-1:])


def test_bar_chart_is_a_png_with_one_panel_per_scale(tmp_path):
    report.plot_results([_row("a", 2, 30.0, 28.0), _row("b", 4, 27.0, 25.0)], tmp_path / "r.png")
    assert Image.open(tmp_path / "r.png").size == (1680, 540)  # 2 panels x 7 in, 4.5 in, at 120 dpi


def test_parallel_runs_keep_the_order_of_the_calls():
    assert list(experiment._parallel(pow, [(2, 3), (3, 2), (2, 5)], jobs=2)) == [8, 9, 32]


@pytest.fixture
def data_root(tmp_path, monkeypatch):
    """T91, Set5 and Set14 stand-ins of random images, large enough for a 48 px LR patch at x4."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    for name, count, size in (("T91", 2, 192), ("Set5", 2, 48), ("Set14", 1, 48)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(count):
            image = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
            Image.fromarray(image).save(tmp_path / "data" / name / f"{i}.png")
    return str(tmp_path / "data")


def test_grid_tunes_trains_reports_resumes_and_ships(tmp_path, data_root, monkeypatch):
    monkeypatch.setattr(experiment, "BACKBONE", {"n_feats": 4, "n_blocks": 1})
    # eager and two patches a step: compiling each of the 11 runs was most of this test's time (test_train
    # covers compiled training); the grid's bookkeeping is the same at any batch size
    monkeypatch.setattr(experiment, "TrainConfig", partial(TrainConfig, compile=False, batch_size=2))
    # the chart, redrawn after each run, was another third: test_bar_chart_is_a_png... draws it, here it is recorded
    charts = []
    monkeypatch.setattr(report, "plot_results", lambda rows, path: charts.append((list(rows), path)))
    # FP, BBCU, se and pixel: enough to pick a best proposed variant
    monkeypatch.setattr(experiment, "VARIANTS", experiment.VARIANTS[:3] + experiment.VARIANTS[4:5])
    monkeypatch.setattr(experiment, "TUNE_LRS", (1e-3, 2e-3))
    out = tmp_path / "exp"
    rows = experiment.run_experiment(out, steps=2, lr=None, tune_steps=1, data_root=data_root)

    tune = json.loads((out / "tune.json").read_text())
    assert tune["chosen"] == max(experiment.TUNE_LRS, key=lambda lr: tune["psnr"][str(lr)])
    best = experiment.best_proposed(rows)
    x2 = [("Bicubic", 2)] + [(v.label, 2) for v in experiment.VARIANTS]
    x4 = [("Bicubic", 4), ("EDSR-FP", 4), ("EDSR-BBCU", 4), (best, 4)]
    assert [(r["label"], r["scale"]) for r in rows] == x2 + x4
    trained = [r for r in rows if r["model"] != "bicubic"]
    assert all(r["steps"] == 2 and r["lr"] == tune["chosen"] and r["train_set"] == "T91" for r in trained)
    assert all(set(r["val"]) == {"Set5", "Set14"} for r in rows)
    assert rows[2]["arguments"]["k"] is None and rows[4]["arguments"]["att_bin"] == "pixel"
    assert json.loads((out / "results.json").read_text()) == rows
    assert len((out / "results.md").read_text().splitlines()) == 2 + 9
    assert len(charts) == 4 + 3 and charts[-1] == (rows, out / "results.png")  # redrawn after every trained run

    # every run is finished, so a second invocation reads the same results back without training
    assert experiment.run_experiment(out, steps=2, lr=tune["chosen"], data_root=data_root) == rows

    assets = tmp_path / "assets"
    manifest = experiment.ship(rows, assets)
    x2_proposed = ["edsr-proposed-x2" if label == best else f"edsr-proposed-{label[9:]}-x2"
                   for label in ("proposed-se", "proposed-pixel")]  # fmt: skip
    assert list(manifest["models"]) == [
        "edsr-fp-x2", "edsr-bbcu-x2", *x2_proposed, "edsr-fp-x4", "edsr-bbcu-x4", "edsr-proposed-x4"
    ]  # fmt: skip
    shipped_rows = json.loads((assets / "results.json").read_text())
    assert shipped_rows == [{k: v for k, v in r.items() if k != "checkpoint"} for r in rows]
    by_key = {(r["label"], r["scale"]): r for r in rows}
    for name, entry in manifest["models"].items():
        row = by_key[(entry["label"], int(name[-1]))]
        assert entry["val"] == row["val"] and entry["arguments"] == row["arguments"]
        shipped = checkpoint.load(assets / entry["file"])
        assert "optimizer" not in shipped and shipped["step"] == 2
        trained = checkpoint.load(row["checkpoint"])["state_dict"]
        assert all(torch.equal(trained[k], v) for k, v in checkpoint.pretrained(name, assets).state_dict().items())
    assert manifest["models"]["edsr-proposed-x2"]["label"] == best
    models, missing = load_shipped(assets)
    assert list(models) == list(SHIPPED) and missing == []

    # one longer run replaces its shipped entry and leaves the others as they are
    again = experiment.run_row("EDSR-BBCU", rows[2]["checkpoint"])
    assert again == rows[2]
    updated = experiment.ship_rows({"edsr-bbcu-x2": {**again, "label": "BBCU again"}}, [again], assets)
    assert list(updated["models"]) == list(manifest["models"])
    assert updated["models"]["edsr-bbcu-x2"]["label"] == "BBCU again"
    assert updated["models"]["edsr-fp-x4"] == manifest["models"]["edsr-fp-x4"]
    assert json.loads((assets / "results.json").read_text()) == [{k: v for k, v in again.items() if k != "checkpoint"}]


def test_run_row_refuses_an_unfinished_run(tmp_path):
    from binsr.nn.models import create_model

    model = create_model("edsr-fp", scale=2, n_feats=4, n_blocks=1)
    path = checkpoint.save(tmp_path / "last.pt", model, 3, config={"steps": 10}, metrics={"val": []})
    with pytest.raises(ValueError, match=r"last.pt is not a finished, validated run \(step 3\)"):
        experiment.run_row("x", path)


def test_side_by_side_figure_has_a_full_view_and_a_crop_per_panel():
    from binsr.viz import side_by_side_figure

    image = np.zeros((40, 60, 3), dtype=np.uint8)
    other = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    fig = side_by_side_figure({"HR": (image, None), "bicubic": (other, 31.234)}, crop=(10, 20, 16))
    assert [ax.get_title() for ax in fig.axes] == ["HR", "bicubic\n31.23 dB", "", ""]  # full views, then crops
    shown = [np.asarray(ax.images[0].get_array()) for ax in fig.axes]
    assert np.array_equal(shown[1], other) and np.array_equal(shown[3], other[10:26, 20:36])
    assert np.array_equal(shown[0], image) and shown[2].shape == (16, 16, 3) and not shown[2].any()
    outline = fig.axes[1].lines[0]
    assert (list(outline.get_xdata()), list(outline.get_ydata())) == ([20, 36, 36, 20, 20], [10, 10, 26, 26, 10])
    with pytest.raises(ValueError, match=r"crop=\(30, 0, 16\) does not fit a 40x60 image"):
        side_by_side_figure({"HR": (image, None)}, crop=(30, 0, 16))
    with pytest.raises(ValueError, match=r"panels have shapes .*; expected one shape for all"):
        side_by_side_figure({"HR": (image, None), "x": (image[:20], None)}, crop=(0, 0, 8))


def test_shipped_results_name_a_warm_start_by_its_run_folder_not_a_local_path(tmp_path):
    rows = [{"label": "x4", "checkpoint": "/runs/fp-x4/last.pt", "init_from": "/runs/fp-x2/last.pt"},
            {"label": "x2", "checkpoint": "/runs/fp-x2/last.pt", "init_from": None}]  # fmt: skip
    experiment.ship_rows({}, rows, tmp_path, replace=True)
    assert json.loads((tmp_path / "results.json").read_text()) == [
        {"label": "x4", "init_from": "fp-x2"},
        {"label": "x2", "init_from": None},
    ]


def test_benchmark_sets_scored_by_binsr_eval_join_the_shipped_results(tmp_path):
    from skimage import data as photos

    from binsr.cli import main

    images = tmp_path / "Tiny" / "HR"
    images.mkdir(parents=True)
    Image.fromarray(photos.astronaut()[100:160, 200:264]).save(images / "a.png")
    Image.fromarray(photos.chelsea()[50:90, 100:150]).save(images / "b.png")
    scored = tmp_path / "tiny.json"
    main(["eval", "--model", "bicubic", "edsr-bbcu-x2", "--data", str(tmp_path / "Tiny"), "--scale", "2",
          "--json", str(scored)])  # fmt: skip
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("manifest.json", "results.json"):
        (assets / name).write_text((checkpoint.ASSETS / name).read_text())
    before = json.loads((assets / "results.json").read_text())

    results = experiment.enter_benchmarks([scored], assets)

    scored_rows = json.loads(scored.read_text())
    evaluated = {(r["method"], r["scale"]): {"psnr": r["psnr"], "ssim": r["ssim"]} for r in scored_rows}
    tiny = str(tmp_path / "Tiny")
    by_key = {(row["label"], row["scale"]): row for row in results}
    assert by_key["Bicubic", 2]["val"][tiny] == evaluated["Bicubic", 2]
    assert by_key["EDSR-BBCU", 2]["val"][tiny] == evaluated["edsr-bbcu-x2", 2]
    assert checkpoint.read_manifest(assets)["models"]["edsr-bbcu-x2"]["val"][tiny] == evaluated["edsr-bbcu-x2", 2]
    # every other number stays as it was, and so does every row the evaluation did not touch
    for old, new in zip(before, results, strict=True):
        assert {k: v for k, v in new["val"].items() if k != tiny} == old["val"]
        assert (tiny in new["val"]) == ((old["label"], old["scale"]) in (("Bicubic", 2), ("EDSR-BBCU", 2)))
    assert json.loads((assets / "results.json").read_text()) == results

    scored.write_text(json.dumps([{"method": "my-model", "name": "Tiny", "scale": 2, "psnr": 30.0, "ssim": 0.9}]))
    with pytest.raises(ValueError, match="'my-model' is not shipped"):
        experiment.enter_benchmarks([scored], assets)


def test_budget_table_pools_seeds_as_mean_and_half_range():
    rows = [_row("BBCU", 2, 36.0, 32.0), _row("BBCU", 2, 36.2, 32.1), _row("SE", 2, 36.3)]
    rows[2]["steps"] = 100
    assert report.format_budget(rows).splitlines() == [
        "| model | steps | seeds | Set5 PSNR | Set14 PSNR |",
        "|---|---|---|---|---|",
        "| BBCU | 10 | 2 | 36.100 ± 0.100 | 32.050 ± 0.050 |",
        "| SE | 100 | 1 | 36.300 | - |",
    ]


def test_budget_figure_plots_the_seed_mean_against_steps_with_the_range_as_error_bars(tmp_path):
    rows = [_row("BBCU", 2, 36.0, 32.0), _row("BBCU", 2, 36.2, 32.1), _row("BBCU", 2, 36.5, 32.4)]
    rows[2]["steps"] = 1000
    fig = report.plot_budget(rows, tmp_path / "budget.png")
    set5, set14 = fig.axes
    assert [ax.get_title() for ax in fig.axes] == ["Set5", "Set14"] and set5.get_xscale() == "log"
    line = set5.lines[0]
    assert list(line.get_xdata()) == [10, 1000]
    np.testing.assert_allclose(np.asarray(line.get_ydata(), dtype=float), [36.1, 36.5])
    segments = set5.collections[0].get_segments()  # the error bars: the two seeds' range at 10 steps, none at 1000
    assert [list(s[:, 1]) for s in segments] == [[36.0, 36.2], [36.5, 36.5]]
    np.testing.assert_allclose(np.asarray(set14.lines[0].get_ydata(), dtype=float), [32.05, 32.4])
    assert Image.open(tmp_path / "budget.png").size == (864, 432)


def test_a_run_row_records_its_seed_and_scores_more_sets_in_one_pass(tmp_path):
    from dataclasses import asdict

    from skimage import data as photos

    from binsr.evaluation.evaluate import evaluate
    from binsr.nn.models import create_model
    from binsr.training.train import TrainConfig

    torch.manual_seed(0)
    model = create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=1)
    config = asdict(TrainConfig(steps=10, seed=3))
    metrics = {"train_seconds": 1.0, "val": [{"name": "Set5", "psnr": 30.0, "ssim": 0.9}]}
    path = checkpoint.save(tmp_path / "last.pt", model, 10, config=config, metrics=metrics)
    (tmp_path / "Tiny").mkdir()
    Image.fromarray(photos.astronaut()[:90, :70]).save(tmp_path / "Tiny" / "a.png")

    row = experiment.run_row("BBCU", path)
    scored = experiment.score_sets(row, [str(tmp_path / "Tiny")])

    assert row["seed"] == 3 and row["val"] == {"Set5": {"psnr": 30.0, "ssim": 0.9}}
    expected = evaluate(checkpoint.load_model(path), [str(tmp_path / "Tiny")], 2, tile=0)[0]
    assert scored["val"] == {**row["val"], str(tmp_path / "Tiny"): {"psnr": expected["psnr"], "ssim": expected["ssim"]}}
    assert {k: v for k, v in scored.items() if k != "val"} == {k: v for k, v in row.items() if k != "val"}


def test_a_distilled_variant_trains_with_its_teacher_and_is_neither_shipped_nor_a_best_candidate(
    tmp_path, data_root, monkeypatch
):
    from binsr.nn.models import create_model

    monkeypatch.setattr(experiment, "BACKBONE", {"n_feats": 4, "n_blocks": 1})
    teacher = checkpoint.save(tmp_path / "fp-x2.pt", create_model("edsr-fp", scale=2, n_feats=4, n_blocks=1))
    variant = experiment.distilled(experiment.VARIANTS[1], 0.5, teacher=str(tmp_path / "fp-x{scale}.pt"))
    row = experiment.run_variant(variant, 2, 1, 1e-3, tmp_path / "exp", data_root)
    assert row["label"] == "EDSR-BBCU-distilled" and row["model"] == "edsr-bbcu"
    assert row["distill"] == {"teacher": str(teacher), "weight": 0.5, "features": None}
    assert checkpoint.load(row["checkpoint"])["config"]["teacher"] == str(teacher)
    se = _row("proposed-se", 2, 30.0)
    se_distilled = {**_row("proposed-se-distilled", 2, 31.0), "distill": row["distill"]}
    assert experiment.best_proposed([se, se_distilled]) == "proposed-se"
    assert experiment._shipped_name(se_distilled, "proposed-se") is None


def test_the_grid_adds_distilled_twins_of_bbcu_se_and_pixel_and_at_x4_of_bbcu_and_the_best(
    tmp_path, data_root, monkeypatch
):
    calls = []

    def run_variant(variant, scale, steps, lr, out_dir, data_root):
        calls.append((variant.label, scale, variant.settings))
        att = variant.kwargs.get("att_bin", "se"), variant.kwargs.get("att_res", "se")
        psnr = 30.0 + ("pixel" in variant.label) + 5 * ("distilled" in variant.label)  # a distilled SE run "wins"
        return {**_row(variant.label, scale, psnr, model=variant.model, att=att), "distill": variant.settings or None}

    monkeypatch.setattr(experiment, "run_variant", run_variant)
    with pytest.raises(ValueError, match="distill_weight=-1.0; expected a finite weight >= 0"):
        experiment.run_experiment(tmp_path / "bad", 1, 1e-3, data_root=data_root, distill_weight=-1.0)
    with pytest.raises(ValueError, match="distill_features='l1' without a distill_weight; expected both"):
        experiment.run_experiment(tmp_path / "bad", 1, 1e-3, data_root=data_root, distill_features="l1")
    assert calls == [] and not (tmp_path / "bad").exists()
    experiment.run_experiment(tmp_path / "exp", 1, 1e-3, data_root=data_root, distill_weight=2.0, distill_features="l1")
    settings = {"teacher": "edsr-fp-x{scale}", "distill_weight": 2.0, "distill_features": "l1"}
    twins = ("EDSR-BBCU", "proposed-se", "proposed-pixel")
    assert calls == (
        [(v.label, 2, {}) for v in experiment.VARIANTS] + [(f"{label}-distilled", 2, settings) for label in twins]
        + [(label, 4, {}) for label in ("EDSR-FP", "EDSR-BBCU", "proposed-pixel")]
        + [(f"{label}-distilled", 4, settings) for label in ("EDSR-BBCU", "proposed-pixel")]
    )  # fmt: skip


def test_benchmark_table_has_a_psnr_ssim_column_per_standard_set():
    rows = [_row("EDSR-FP", 2, 37.026, 32.7, model="edsr-fp")]
    rows[0]["val"]["Urban100"] = {"psnr": 29.8434, "ssim": 0.90214}
    assert report.format_benchmarks(rows).splitlines() == [
        "| model | scale | Set5 PSNR / SSIM | Set14 PSNR / SSIM | B100 PSNR / SSIM | Urban100 PSNR / SSIM |",
        "|---|---|---|---|---|---|",
        "| EDSR-FP | x2 | 37.03 / 0.9000 | 32.70 / 0.8000 | - | 29.84 / 0.9021 |",
    ]
