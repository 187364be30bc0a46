"""Headless tests of the notebook part 2 helpers in binsr.viz (notebooks 06-10): numbers, not just 'it runs'."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from plotted import bar_heights, image_data, step_counts

import binsr
from binsr import viz
from binsr.data.imresize import imresize
from binsr.nn import checkpoint
from binsr.training.train import Progress


def _image(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _proposed(att_bin="pixel", att_res="spatial", n_feats=8, n_blocks=2, seed=0):
    torch.manual_seed(seed)
    return binsr.create_model(
        "edsr-proposed", scale=2, n_feats=n_feats, n_blocks=n_blocks, att_bin=att_bin, att_res=att_res
    ).eval()


# ---- 06 attention ----------------------------------------------------------------------------------------


def test_attention_kind_and_units():
    model = _proposed("se", "none")
    units = viz.attentive_units(model)
    assert [name for name, _ in units] == ["body.0.0", "body.0.1", "body.1.0", "body.1.1"]
    assert {(viz.attention_kind(u.att_bin), viz.attention_kind(u.att_res)) for _, u in units} == {("se", "none")}
    with pytest.raises(ValueError, match="not an attention module"):
        viz.attention_kind(torch.nn.ReLU())


def test_attention_cost_matches_the_formulas():
    c, h, w = 32, 180, 320
    pixel = viz.attention_cost("pixel", c, (h, w))
    assert pixel["params"] == c * c + c
    assert pixel["flops"] == c * c * h * w
    assert pixel["products"] == c * h * w
    spatial = viz.attention_cost("spatial", c, (h, w))
    assert (spatial["params"], spatial["flops"]) == (c + 1, c * h * w)
    se = viz.attention_cost("se", c, (h, w))
    assert se["params"] == 2 * c * (c // 16) + c // 16 + c  # two 1x1 convs with biases
    assert se["flops"] == 2 * c * (c // 16)  # on the pooled 1x1 map: once per image
    assert viz.attention_cost("none", c) == {"params": 0, "flops": 0, "products": 0}


def test_unit_cost_table_pixel_attention_is_fifteen_bbcu_units():
    rows = {row["unit"]: row for row in viz.unit_cost_table(32, (180, 320))}
    bbcu = rows["BBCU (8)"]
    assert bbcu["ops"] == 9 * 32 * 32 * 180 * 320 / 64
    # two C x C 1x1 convs per pixel against 9 C^2 / 64 OPs of the binary conv: 1 + 2 * 64 / 9
    assert rows["attentive (12), pixel"]["ops_vs_bbcu"] == pytest.approx(1 + 128 / 9)
    assert rows["attentive (12), spatial"]["ops_vs_bbcu"] == pytest.approx(1 + 2 * 64 / (9 * 32))


def test_attention_signals_reconstruct_eq_12():
    model = _proposed("pixel", "spatial")
    with torch.no_grad():
        for _, unit in viz.attentive_units(model):
            unit.a1.fill_(0.7)
            unit.a2.fill_(1.3)
    signals = viz.attention_signals(model, _image())
    assert list(signals) == ["body.0.0", "body.0.1", "body.1.0", "body.1.1"]
    s = signals["body.1.0"]
    assert s["branch"].shape == s["x"].shape == s["m_b"].shape == (8, 24, 32)
    assert s["m_r"].shape == (1, 24, 32)
    assert s["kinds"] == ("pixel", "spatial") and s["a1"] == pytest.approx(0.7)
    assert torch.allclose(s["out"], 0.7 * s["m_b"] * s["branch"] + 1.3 * s["m_r"] * s["x"], atol=1e-6)
    share = viz.branch_share(s)
    assert share.shape == (24, 32) and float(share.min()) >= 0 and float(share.max()) <= 1
    with pytest.raises(ValueError, match="no AttentiveBinaryUnit"):
        viz.attention_signals(binsr.create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=1), _image())


def test_attention_models_from_assets_then_local_runs(tmp_path):
    from binsr.nn import checkpoint

    assets, runs = tmp_path / "assets", tmp_path / "runs"
    pixel = _proposed("pixel", "pixel")
    path = checkpoint.save(assets / "p.pt", pixel)
    entry = {"file": "p.pt", "model": "edsr-proposed", "arguments": pixel.config["kwargs"]}
    entry["sha256"] = checkpoint.sha256(path)
    (assets / "manifest.json").write_text(json.dumps({"models": {"edsr-proposed-pixel-x2": entry}}))
    checkpoint.save(runs / "proposed-spatial-x2" / "last.pt", _proposed("spatial", "spatial"))
    checkpoint.save(runs / "proposed-pixel-x2" / "last.pt", _proposed("none", "none"))  # shadowed by the shipped one
    found = viz.attention_models(assets, runs, kinds=("pixel", "spatial", "se"))
    assert list(found) == ["pixel", "spatial"]
    assert found["pixel"][0] == "shipped edsr-proposed-pixel-x2"
    assert found["spatial"][0].startswith("local run") and not found["spatial"][1].training
    unit = viz.attentive_units(found["spatial"][1])[0][1]
    assert viz.attention_kind(unit.att_bin) == "spatial"
    assert viz.attention_models(tmp_path / "nothing") == {}


def test_branch_share_without_attention_is_the_plain_ratio():
    s = {
        "a1": 1.0, "a2": 1.0, "m_b": None, "m_r": None,
        "branch": torch.full((2, 3, 4), 1.0), "x": torch.full((2, 3, 4), -3.0),
    }  # fmt: skip
    assert torch.allclose(viz.branch_share(s), torch.full((3, 4), 0.25))
    s["m_b"] = torch.full((2, 3, 4), 0.5)
    assert torch.allclose(viz.branch_share(s), torch.full((3, 4), 0.5 / 3.5))
    assert torch.allclose(viz.branch_share(s, attention=False), torch.full((3, 4), 0.25))


def test_gate_summary_and_figures():
    model = _proposed("pixel", "se")
    with torch.no_grad():  # gates start at 1 everywhere: moved, so that each map and each unit differ
        for name, p in model.named_parameters():
            if ".att_" in name:
                p.add_(0.5 * torch.randn_like(p))
    image = _image()
    signals = viz.attention_signals(model, image)
    rows = viz.gate_summary(signals, image=image)
    assert len({r["m_b_mean"] for r in rows} | {r["m_r_mean"] for r in rows}) == 8
    assert len(rows) == 4
    for r in rows:
        for key in ("m_b_off", "m_b_on", "m_r_off", "m_r_on", "share", "share_without_attention"):
            assert 0.0 <= r[key] <= 1.0
        assert r["m_b_p10"] <= r["m_b_mean"] <= r["m_b_p90"]
        assert -1.0 <= r["edge_corr"] <= 1.0  # pixel maps have spatial extent
    none_rows = viz.gate_summary(viz.attention_signals(_proposed("none", "none"), image))
    assert all(r["share"] == pytest.approx(r["share_without_attention"]) for r in none_rows)
    assert all(r["edge_corr"] is None and r["m_b_on"] == 1.0 for r in none_rows)
    fig = viz.gate_figure(rows)
    ax_g, ax_s = fig.axes
    for bars, key, shift in zip(ax_g.containers, ("m_b", "m_r"), (-0.15, 0.15), strict=True):
        points = bars.lines[0]
        np.testing.assert_allclose(points.get_xdata(), np.arange(4) + shift)
        assert points.get_ydata().tolist() == [r[f"{key}_mean"] for r in rows]
        ends = np.array(bars.lines[2][0].get_segments())[:, :, 1]  # each error bar: (x, p10) to (x, p90)
        np.testing.assert_allclose(ends, [[r[f"{key}_p10"], r[f"{key}_p90"]] for r in rows])
    assert ax_s.lines[0].get_ydata().tolist() == [r["share"] for r in rows]
    assert ax_s.lines[1].get_ydata().tolist() == [r["share_without_attention"] for r in rows]
    for block, unit in ((0, 0), (1, 1)):
        fig = viz.attention_browser_figure(image, signals, block=block, unit=unit, channel=3)
        assert isinstance(fig, Figure) and len(fig.axes) >= 4
        s = signals[f"body.{block}.{unit}"]
        ax_i, ax_b, _, _ = fig.axes[:4]
        assert np.array_equal(image_data(ax_i), image)
        assert np.array_equal(image_data(ax_b), s["m_b"][3].numpy())  # pixel attention: the channel asked for
        assert np.array_equal(bar_heights(fig.axes[2]), s["m_r"].flatten().numpy())  # SE: a weight per channel
        assert [to_hex(b.get_facecolor()) for b in fig.axes[2].patches].index(to_hex("tab:red")) == 3
        b = (s["a1"] * s["m_b"] * s["branch"]).abs().sum(dim=0)
        r = (s["a2"] * s["m_r"] * s["x"]).abs().sum(dim=0)
        np.testing.assert_allclose(image_data(fig.axes[3]), (b / (b + r)).numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="no attentive unit"):
        viz.attention_browser_figure(image, signals, block=5)


def test_attention_maps_on_the_gate_range_or_stretched():
    model = _proposed("pixel", "pixel")
    signals = viz.attention_signals(model, _image())
    assert signals["body.0.0"]["gate_range"] == (0.0, 2.0)  # binsr's 2 sigmoid gate
    m_b = signals["body.0.0"]["m_b"][3]
    stretched, full = (
        viz.attention_browser_figure(_image(), signals, channel=3, scale=scale).axes[1].images[0].get_clim()
        for scale in viz.MAP_SCALES
    )
    assert full == (0.0, 2.0)
    expected = torch.quantile(m_b.flatten(), torch.tensor([0.01, 0.99])).tolist()
    assert stretched == pytest.approx((expected[0], max(expected[1], expected[0] + 1e-3)))
    with pytest.raises(ValueError, match="scale='log'"):
        viz.attention_browser_figure(_image(), signals, scale="log")


def test_attention_browser_titles_do_not_run_into_each_other():
    """Four panels side by side: each title must fit above its own panel (notebook 06 drew "a1 = 0.84, a2 = 0.90"
    through the next panel's "mean 0.98, scale 0.975-0.996")."""
    signals = viz.attention_signals(_proposed("pixel", "pixel"), _image())
    for name in signals:  # long names and wide numbers: the worst case of the model's units
        signals[name] = {**signals[name], "a1": -10.123, "a2": -10.456}
    fig = viz.attention_browser_figure(_image(), signals, channel=3)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()  # the layout places the titles
    renderer = canvas.get_renderer()
    boxes = sorted((ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()), key=lambda b: b.x0)
    assert len(boxes) == 4
    assert all(left.x1 < right.x0 for left, right in itertools.pairwise(boxes))
    assert boxes[-1].x1 <= fig.bbox.width


def test_branch_scales():
    model = _proposed()
    with torch.no_grad():
        viz.attentive_units(model)[2][1].a1.fill_(2.5)
    s = viz.branch_scales(model)
    assert list(s["names"]) == ["body.0.0", "body.0.1", "body.1.0", "body.1.1"]
    np.testing.assert_allclose(s["a1"], [1, 1, 2.5, 1])
    np.testing.assert_allclose(s["a2"], [1, 1, 1, 1])
    with torch.no_grad():
        viz.attentive_units(model)[1][1].a2.fill_(0.5)
    ax_a, ax_r = viz.branch_scales_figure(model).axes
    np.testing.assert_allclose(ax_a.lines[0].get_ydata(), [1, 1, 2.5, 1])
    np.testing.assert_allclose(ax_a.lines[1].get_ydata(), [1, 0.5, 1, 1])
    np.testing.assert_allclose([b.get_y() + b.get_height() for b in ax_r.patches], [1, 2, 2.5, 1])  # bars from 1
    assert [t.get_text() for t in ax_a.get_xticklabels()] == ["0.0", "0.1", "1.0", "1.1"]


def test_edge_strength_is_zero_on_flat_images():
    flat = np.full((16, 16, 3), 100, np.uint8)
    assert float(np.abs(viz.edge_strength(flat)).max()) < 1e-12
    step = flat.copy()
    step[:, 8:] = 200
    assert viz.edge_strength(step)[:, 7:9].min() > 0


# ---- 07 activation distributions ---------------------------------------------------------------------------


def test_body_activations_bbcu_and_fp():
    torch.manual_seed(0)
    bbcu = binsr.create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=3).eval()
    stats = viz.body_activations(bbcu, _image())
    assert [s["name"] for s in stats] == ["body.0", "body.1", "body.2"]
    for s in stats:
        assert len(s["rsign_in"]) == len(s["plus"]) == len(s["pre"]) == len(s["post"]) == 2
        assert s["gated"] == []
        assert s["plus"][0].shape == (8,) and ((s["plus"][0] >= 0) & (s["plus"][0] <= 1)).all()
        assert 0.0 <= s["in_window"][0] <= 1.0
    # the stream is divided by k: the first block's input equals head(k (x - mean)) / k
    features = viz.capture(bbcu, _image(), "body.0", which="input")
    assert stats[0]["input_std"] == pytest.approx(float((features / bbcu.k).std()), rel=1e-5)
    fp = viz.body_activations(binsr.create_model("edsr-fp", scale=2, n_feats=8, n_blocks=2), _image())
    assert all(s["rsign_in"] == [] and len(s["pre"]) == 1 for s in fp)


def test_body_activations_attentive_gated_is_a1_times_att():
    model = _proposed("pixel", "pixel", n_blocks=1)
    with torch.no_grad():
        for _, unit in viz.attentive_units(model):
            unit.a1.fill_(3.0)
    stats = viz.body_activations(model, _image(), n_samples=10**9)  # keep every value
    signals = viz.attention_signals(model, _image())
    s = signals["body.0.0"]
    expected = (3.0 * s["m_b"] * s["branch"]).flatten().numpy()
    np.testing.assert_allclose(np.sort(stats[0]["gated"][0]), np.sort(expected), rtol=1e-5, atol=1e-6)


def test_imbalance_dead_channels_and_entropy():
    stats = [{"plus": [np.array([0.0, 1.0, 0.5, 0.25]), np.array([0.5, 0.5, 0.5, 0.5])], "in_window": [0.1, 0.2]}]
    np.testing.assert_allclose(viz.plus_imbalance(stats), [0.3125, 0.0])
    np.testing.assert_array_equal(viz.dead_channels(stats), [2, 0])
    np.testing.assert_allclose(viz.binary_entropy([0.5, 0.0, 1.0, 0.25]), [1.0, 0.0, 0.0, 0.8112781], atol=1e-6)


def test_ablated_resets_a_copy_only():
    model = _proposed("pixel", "pixel", n_blocks=1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(0.3)
    clone = viz.ablated(model, rprelu_shifts=True, thresholds=True, attention=True)
    unit = viz.attentive_units(clone)[0][1]
    assert unit.conv.rprelu.gamma.abs().max().item() == 0.0 and unit.conv.rprelu.zeta.abs().max().item() == 0.0
    assert unit.conv.rsign.threshold.abs().max().item() == 0.0
    assert isinstance(unit.att_bin, torch.nn.Identity) and isinstance(unit.att_res, torch.nn.Identity)
    original = viz.attentive_units(model)[0][1]
    assert original.conv.rprelu.gamma.min().item() > 0.29 and viz.attention_kind(original.att_bin) == "pixel"
    assert unit.conv.rprelu.beta[0].item() == pytest.approx(original.conv.rprelu.beta[0].item())  # slope kept


def test_activation_figures():
    torch.manual_seed(0)
    models = {
        "FP": binsr.create_model("edsr-fp", scale=2, n_feats=8, n_blocks=2),
        "BBCU": binsr.create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=2),
        "proposed": _proposed(n_blocks=2),
    }
    stats = {label: viz.body_activations(m, _image()) for label, m in models.items()}
    ax_x, ax_t, ax_p = viz.activation_figure(stats, block=1, unit=1).axes
    for patch, s in zip(ax_x.patches, stats.values(), strict=True):
        assert np.array_equal(step_counts(patch), np.histogram(s[1]["input"], bins=80)[0])
    for i, label in enumerate(("BBCU", "proposed")):  # FP has no RSign: no curve
        b = stats[label][1]
        window = np.histogram(np.clip(b["rsign_in"][1], -6, 6), np.linspace(-6, 6, 97))[0]
        assert np.array_equal(step_counts(ax_t.patches[i]), window)
        assert ax_t.patches[i].get_label() == f"{label}: {b['in_window'][1]:.0%}"
        assert np.array_equal(ax_p.lines[i].get_ydata(), np.sort(b["plus"][1]))

    b = stats["proposed"][0]
    ax = viz.branch_stages_figure(stats["proposed"], 0, 1, "proposed").axes[0]
    stages = (b["pre"][1], b["post"][1], b["gated"][1])
    lo = min(np.quantile(v, 0.001) for v in stages)
    hi = max(np.quantile(v, 0.999) for v in stages)
    for patch, v in zip(ax.patches, stages, strict=True):
        assert np.array_equal(step_counts(patch), np.histogram(np.clip(v, lo, hi), np.linspace(lo, hi, 100))[0])
        assert f"mean {v.mean():.3f}, std {v.std():.3f}" in patch.get_label()

    ax_i, ax_w = viz.imbalance_figure({k: stats[k] for k in ("BBCU", "proposed")}).axes
    for line_i, line_w, label in zip(ax_i.lines, ax_w.lines, ("BBCU", "proposed"), strict=True):
        plus = [p for block in stats[label] for p in block["plus"]]
        assert len(plus) == 4
        np.testing.assert_allclose(line_i.get_ydata(), [np.abs(p - 0.5).mean() for p in plus], rtol=1e-6)
        assert line_w.get_ydata().tolist() == [w for block in stats[label] for w in block["in_window"]]

    lines = viz.stream_figure(stats).axes[0].lines
    assert [line.get_label() for line in lines] == list(stats)
    for line, model in zip(lines, models.values(), strict=True):
        k = float(getattr(model, "k", 1.0))
        stream = [float((viz.capture(model, _image(), f"body.{i}", which="input") / k).std()) for i in range(2)]
        np.testing.assert_allclose(line.get_ydata(), stream, rtol=1e-5)
    with pytest.raises(ValueError, match="no binary branch"):
        viz.branch_stages_figure(stats["FP"], 0)


# ---- 08 training -----------------------------------------------------------------------------------------


def test_model_choice():
    assert viz.model_choice("FP") == ("edsr-fp", {"n_feats": 32, "n_blocks": 8})
    assert viz.model_choice("BBCU", n_feats=16) == ("edsr-bbcu", {"n_feats": 16, "n_blocks": 8})
    name, kwargs = viz.model_choice("proposed", "se", "none")
    assert name == "edsr-proposed" and (kwargs["att_bin"], kwargs["att_res"]) == ("se", "none")
    assert "gate_input" not in kwargs  # the model's default
    assert viz.model_choice("proposed", "pixel", "pixel", gate_input="amplified")[1]["gate_input"] == "amplified"
    assert "gate_input" not in viz.model_choice("BBCU", gate_input="amplified")[1]
    with pytest.raises(ValueError, match="block='XNOR'"):
        viz.model_choice("XNOR")


def test_training_log_records_and_calls_back():
    calls = []
    log = viz.TrainingLog(lambda lg: calls.append(lg.steps[-1]), every=3, total=7)
    for step in range(1, 8):
        log(Progress(step, 1.0 / step, 1e-3, 25.0 if step >= 5 else None))
    assert log.steps == list(range(1, 8))
    assert log.loss[-1] == pytest.approx(1 / 7)
    assert (log.val_steps, log.val_psnr) == ([5], [25.0])  # recorded once, when it first appears
    assert calls == [3, 5, 6, 7]  # every 3rd step, a new validation, and the last step
    ax_l, ax_p = viz.training_figure(log, {"bicubic": 30.0, "BBCU shipped": 31.0}).axes
    assert ax_l.lines[0].get_xdata().tolist() == list(range(1, 8))
    assert ax_l.lines[0].get_ydata() == pytest.approx([1 / s for s in range(1, 8)])
    assert [(line.get_ydata()[0], line.get_label()) for line in ax_p.lines] == [
        (30.0, "bicubic: 30.00 dB"), (31.0, "BBCU shipped: 31.00 dB"), (25.0, "this run: 25.00 dB")]  # fmt: skip
    assert ax_p.lines[2].get_xdata().tolist() == [5]
    assert isinstance(viz.training_figure(viz.TrainingLog(total=5)), Figure)  # an empty log draws too


def test_train_small_reports_every_step_and_shows_no_progress_bar(tmp_path, capsys):
    log = viz.TrainingLog(total=2)
    result = viz.train_small(
        "BBCU", scale=2, steps=2, batch_size=2, n_feats=8, n_blocks=1, val_sets=(), train_set="photos-test",
        callback=log, out_dir=tmp_path,
    )  # fmt: skip
    assert result.step == 2 and log.steps == [1, 2]
    assert all(math.isfinite(v) for v in log.loss)
    assert log.lr[0] == pytest.approx(2e-3)  # the cosine schedule starts at lr
    assert result.model.config["name"] == "edsr-bbcu" and (tmp_path / "last.pt").is_file()
    assert capsys.readouterr().err == ""  # no tqdm bar: a notebook would save it at 0 %


def test_train_small_learns_from_the_shipped_fp_model_of_its_scale(tmp_path):
    manifest = checkpoint.read_manifest(checkpoint.ASSETS)
    assert viz.fp_teacher(2, manifest) == "edsr-fp-x2" and viz.fp_teacher(3, manifest) is None
    result = viz.train_small(
        "BBCU", scale=2, steps=1, batch_size=2, n_feats=8, n_blocks=1, val_sets=(), train_set="photos-test",
        out_dir=tmp_path, teacher=viz.fp_teacher(2, manifest), distill_weight=0.5,
    )  # fmt: skip
    config = checkpoint.load(result.checkpoint)["config"]
    assert (config["teacher"], config["distill_weight"]) == ("edsr-fp-x2", 0.5)


def test_shipped_match():
    model = binsr.create_model("edsr-bbcu", scale=2, n_feats=32, n_blocks=8)
    manifest = {"models": {"edsr-bbcu-x2": {"model": "edsr-bbcu", "arguments": model.config["kwargs"]}}}
    assert viz.shipped_match("edsr-bbcu", {"n_feats": 32, "n_blocks": 8}, 2, manifest) == "edsr-bbcu-x2"
    assert viz.shipped_match("edsr-bbcu", {"n_feats": 32, "n_blocks": 8}, 4, manifest) is None
    assert viz.shipped_match("edsr-bbcu", {"n_feats": 16, "n_blocks": 8}, 2, manifest) is None


# ---- 09 side by side -------------------------------------------------------------------------------------


def test_super_resolve_and_errors():
    lr = _image(12, 16)
    model = binsr.create_model("edsr-fp", scale=2, n_feats=8, n_blocks=1)
    out = viz.super_resolve({"bicubic": None, "FP": model}, lr, 2)
    np.testing.assert_array_equal(out["bicubic"], imresize(lr, 2))
    assert out["FP"].shape == (24, 32, 3) and out["FP"].dtype == np.uint8
    assert float(viz.y_error(out["FP"], out["FP"]).max()) == 0.0
    white, black = np.full((2, 2, 3), 255, np.uint8), np.zeros((2, 2, 3), np.uint8)
    np.testing.assert_allclose(viz.y_error(white, black), 219.0)  # Y spans 16..235


def test_crop_box():
    assert viz.crop_box((100, 200, 3), 0.0, 0.0, 50) == (0, 0, 50)
    assert viz.crop_box((100, 200, 3), 1.0, 1.0, 50) == (50, 150, 50)
    assert viz.crop_box((100, 200, 3), 0.5, 0.5, 500) == (0, 50, 100)  # clipped to the image


def test_crop_figures():
    hr = _image(48, 64)
    outputs = {"a": _image(48, 64, 1), "b": hr.copy()}
    fig = viz.crop_compare_figure(hr, outputs, 2, 0.5, 0.5, 32)
    assert len(fig.axes) == 2 * 3 + 1  # 2 rows x (HR + 2 outputs) + a colour bar
    assert "inf dB" in fig.axes[2].get_title()  # output b equals HR
    top, bottom = fig.axes[:3], fig.axes[3:6]  # the axes go row by row
    crop = (slice(8, 40), slice(16, 48))  # the middle of the free range: (48 - 32) / 2, (64 - 32) / 2
    for ax, shown in zip(top, (hr, outputs["a"], outputs["b"]), strict=True):
        assert np.array_equal(image_data(ax), shown[crop])
    assert np.array_equal(image_data(bottom[0]), hr) and bottom[0].get_title() == "crop at (8, 16)"
    y = lambda im: 16 + (65.481 * im[..., 0] + 128.553 * im[..., 1] + 24.966 * im[..., 2]) / 255  # noqa: E731
    error = np.abs(y(outputs["a"][crop].astype(np.float64)) - y(hr[crop].astype(np.float64)))
    np.testing.assert_allclose(image_data(bottom[1]), error, rtol=1e-9)
    assert not image_data(bottom[2]).any()
    psnr = 10 * np.log10(255**2 / np.mean((y(outputs["a"] * 1.0) - y(hr * 1.0))[2:-2, 2:-2] ** 2))
    assert fig.axes[1].get_title() == f"a\n{psnr:.2f} dB"
    assert isinstance(viz.side_by_side_crop({"x": (hr, outputs)}, "x", 2, 0.1, 0.9, 16), Figure)
    fig = viz.error_difference_figure(hr, outputs["b"], outputs["a"], ("b", "a"), crop=(0, 0, 32))
    diff = viz.y_error(outputs["a"][:32, :32], hr[:32, :32])  # b equals HR: all of a's error is b's lead
    assert np.array_equal(image_data(fig.axes[0]), hr[:32, :32])
    np.testing.assert_allclose(image_data(fig.axes[1]), diff, rtol=1e-12)
    assert fig.axes[1].get_title().startswith(f"b closer on {(diff > 0.5).mean():.0%} of pixels\na closer on 0%")


def _results():
    def rows(method, values):
        images = [{"name": n, "psnr": p, "ssim": p / 40} for n, p in values.items()]
        return {"method": method, "name": "Set5", "scale": 2, "psnr": float(np.mean(list(values.values()))),
                "ssim": float(np.mean([i["ssim"] for i in images])), "images": images}  # fmt: skip

    return [rows("BBCU", {"baby": 30.0, "bird": 28.0}), rows("proposed", {"baby": 30.5, "bird": 27.0})]


def test_per_image_table():
    table = viz.per_image_table(_results())
    lines = table.splitlines()
    assert lines[0] == "| set | image | BBCU | proposed |"
    assert lines[2] == "| Set5 | baby | 30.00 | **30.50** |"
    assert lines[3] == "| Set5 | bird | **28.00** | 27.00 |"
    assert lines[4] == "| Set5 | **mean** | **29.00** | 28.75 |"
    assert "0.7625" in viz.per_image_table(_results(), "ssim")


def test_paired_difference():
    diffs = viz.paired_difference(_results(), "proposed", "BBCU")
    assert [(d["image"], d["diff"]) for d in diffs] == [("baby", 0.5), ("bird", -1.0)]
    ax = viz.paired_difference_figure(diffs, ("proposed", "BBCU")).axes[0]
    assert "better on 1 of 2 images" in ax.get_title()
    assert bar_heights(ax).tolist() == [0.5, -1.0]
    colors = [to_hex(viz.model_color(m)) for m in ("proposed", "BBCU")]  # the better model's, per image
    assert [to_hex(bar.get_facecolor()) for bar in ax.patches] == colors
    assert ax.lines[1].get_ydata()[0] == -0.25  # the mean
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Set5/baby", "Set5/bird"]


def test_manifest_table_and_results(tmp_path):
    manifest = {"models": {"edsr-fp-x2": {"label": "EDSR-FP", "steps": 300, "lr": 0.002,
                                          "val": {"Set5": {"psnr": 35.123, "ssim": 0.94321}}}}}  # fmt: skip
    table = viz.manifest_table(manifest).splitlines()
    assert table[0] == "| shipped | variant | steps | lr | Set5 PSNR / SSIM |"
    assert table[2] == "| edsr-fp-x2 | EDSR-FP | 300 | 0.002 | 35.12 / 0.9432 |"
    assert viz.find_results((tmp_path,)) is None
    (tmp_path / "results.json").write_text(json.dumps([]))
    assert viz.find_results((tmp_path / "missing", tmp_path)) == tmp_path / "results.json"
    rows = [
        {"label": "Bicubic", "scale": 2, "ops": 0.0, "val": {"Set5": {"psnr": 33.7}}},
        {"label": "EDSR-FP", "scale": 2, "ops": 11.4e9, "val": {"Set5": {"psnr": 35.0}}},
        {"label": "EDSR-BBCU", "scale": 2, "ops": 3.0e9, "val": {"Set5": {"psnr": 33.0}}},
        {"label": "EDSR-FP", "scale": 4, "ops": 12e9, "val": {"Set5": {"psnr": 29.0}}},
    ]
    fig = viz.results_figure(rows, {"bicubic x4": 28.4})
    assert [ax.get_title() for ax in fig.axes] == ["x2: quality vs cost", "x4: quality vs cost"]
    assert [len(ax.lines) for ax in fig.axes] == [2 + 1, 1 + 1]  # points, then one line per baseline
    assert fig.axes[0].lines[-1].get_ydata()[0] == pytest.approx(33.7)  # the bicubic row became a line

    # A baseline more than BASELINE_ZOOM_DB below every model is named, not drawn, so that two models 0.02 dB apart
    # are not squeezed into one point; each point is the mean over the sets at the model's OPs.
    rows = [
        {"label": "Bicubic", "scale": 2, "ops": 0.0, "val": {"Set5": {"psnr": 33.67}, "Set14": {"psnr": 30.32}}},
        {"label": "EDSR-BBCU", "scale": 2, "ops": 3.08e9, "val": {"Set5": {"psnr": 36.82}, "Set14": {"psnr": 32.49}}},
        {"label": "proposed-se", "scale": 2, "ops": 3.08e9, "val": {"Set5": {"psnr": 36.91}, "Set14": {"psnr": 32.54}}},
    ]  # fmt: skip
    ax = viz.results_figure(rows).axes[0]
    assert [(line.get_xdata()[0], line.get_ydata()[0]) for line in ax.lines] == [
        (pytest.approx(3.08), pytest.approx(34.655)),
        (pytest.approx(3.08), pytest.approx(34.725)),
    ]
    assert [t.get_text() for t in ax.texts] == ["Bicubic x2: 32.00 dB, below this range"]
    assert ax.get_ylim()[0] > 34.6  # the two models 0.07 dB apart span most of the axis


# ---- 10 XNOR inference -----------------------------------------------------------------------------------


def test_weight_bits_decode_the_packed_layout():
    from binsr.engine.export import pack_binary_conv

    torch.manual_seed(0)
    conv = binsr.BinaryConv2d(70, 6)  # two words per pixel, and an output block of 4 that is half padding
    packed = pack_binary_conv(conv)
    for o in range(6):
        np.testing.assert_array_equal(viz.weight_bits(packed, o), (conv.weight[o] > 0).flatten(1).T.numpy())
    assert viz.weight_bits(packed, 0).shape == (9, 70)
    fig = viz.bit_layout_figure(conv, packed, out_channel=5)
    assert fig.axes[2].get_title() == "differences: 0"
    signs = (conv.weight[5] > 0).flatten(1).T.numpy()  # (taps, channels)
    assert np.array_equal(image_data(fig.axes[0]), signs) and np.array_equal(image_data(fig.axes[1]), signs)
    assert not image_data(fig.axes[2]).any()
    packed.bits[0, 0, 1, 5] ^= 1  # channel 64 of tap (0, 0) flipped in the packed words only
    fig = viz.bit_layout_figure(conv, packed, out_channel=5)
    assert fig.axes[2].get_title() == "differences: 1" and np.argwhere(image_data(fig.axes[2])).tolist() == [[0, 64]]


def test_sign_string():
    assert viz.sign_string(0b1011, 6) == "++-+--"
    assert viz.sign_string(np.uint64(2**63), 64) == "-" * 63 + "+"


@pytest.mark.parametrize("name", ["edsr-bbcu", "edsr-proposed"])
def test_accumulator_check_is_exact(name):
    torch.manual_seed(0)
    model = binsr.create_model(name, scale=2, n_feats=8, n_blocks=2).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "rsign" in n or "rprelu" in n:
                p.add_(0.3 * torch.randn_like(p))
    rows = viz.accumulator_check(model, _image(10, 12))
    assert [r["name"] for r in rows] == ["body.0.0.conv", "body.0.1.conv", "body.1.0.conv", "body.1.1.conv"]
    assert all(r["equal"] and r["max_abs_diff"] == 0 for r in rows)
    assert rows[0]["shape"] == (1, 10, 12, 8) and rows[0]["count"] == 10 * 12 * 8


def test_size_and_bench_figures():
    fig = viz.size_figure({"BBCU": {"float32 checkpoint": 800 * 1024, ".binsr": 240 * 1024}, "FP": {"x": 512}})
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["BBCU: float32 checkpoint", "BBCU: .binsr", "FP: x"]
    assert [bar.get_width() for bar in ax.patches] == [800.0, 240.0, 0.5]
    assert [bar.get_hatch() for bar in ax.patches] == ["//", "", ""]
    assert [t.get_text() for t in ax.texts] == [" 800.0 KiB", " 240.0 KiB", " 0.5 KiB"]
    row = {"case": "conv", "shape": "32->32 @96x96", "kernel": "avx2", "threads": 2, "speedup": 3.0}
    rows = [row, {**row, "case": "pack + conv", "speedup": 0.5}]
    fig = viz.bench_figure(rows)
    assert [t.get_text() for t in fig.axes[0].texts] == ["3.0x", "0.5x"]
    assert bar_heights(fig.axes[0]).tolist() == [3.0, 0.5]
    # the kernel that ran, and so the instruction set, under every bar
    assert fig.axes[0].get_xticklabels()[0].get_text() == "conv\n32->32 @96x96\navx2 kernel, 2 thr."
