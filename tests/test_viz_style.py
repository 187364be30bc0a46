"""binsr.viz's series style: every figure function is styled, text is readable on a projector, one colour per model."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text

import binsr
from binsr import viz


def _image(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _texts(fig: Figure) -> list[Text]:
    fig.canvas.draw()  # tick labels exist only once drawn
    return [t for t in fig.findobj(Text) if t.get_text() and t.get_visible()]


def test_every_figure_function_is_styled():
    names = [name for name in dir(viz) if name.endswith("_figure") and name != "new_figure"]
    assert len(names) >= 25
    unstyled = [name for name in names if getattr(getattr(viz, name), "__wrapped__", None) is None]
    assert unstyled == []


def test_style_sizes_and_resolution():
    assert 100 <= viz.FIG_DPI <= 110
    assert viz.STYLE["xtick.labelsize"] >= 11 and viz.STYLE["legend.fontsize"] >= 11
    assert viz.STYLE["axes.titlesize"] >= 13
    fig = viz.new_figure(20.0, 20.0)
    assert tuple(fig.get_size_inches()) == viz.MAX_FIGSIZE and fig.dpi == viz.FIG_DPI


def test_a_styled_figure_is_readable_and_leaves_rcparams_alone():
    before = dict(matplotlib.rcParams)
    fig = viz.gradient_mismatch_figure(t0=1.0, steps=5, n=200)
    assert dict(matplotlib.rcParams) == before  # the style applies to the figure, not to the session
    texts = _texts(fig)
    ticks = [t for ax in fig.axes for t in ax.get_xticklabels() + ax.get_yticklabels() if t.get_text()]
    legends = [t for ax in fig.axes for t in ax.get_legend().get_texts()]
    assert ticks and legends
    assert min(t.get_fontsize() for t in ticks) == viz.STYLE["xtick.labelsize"]
    assert min(t.get_fontsize() for t in legends) == viz.STYLE["legend.fontsize"]
    assert all(ax.title.get_fontsize() == viz.STYLE["axes.titlesize"] for ax in fig.axes)
    assert min(t.get_fontsize() for t in texts) >= 11
    assert all(ax.get_xlabel() and ax.get_ylabel() for ax in fig.axes)  # both panels have labelled axes


def test_log_axes_and_late_ticks_keep_the_style():
    # Ticks created lazily at draw time (log axes, colour bars) must not fall back to matplotlib's 10 pt.
    with torch.device("meta"):
        nets = {n: binsr.create_model(n, scale=2, n_feats=8, n_blocks=1) for n in ("edsr-fp", "edsr-bbcu")}
        costs = {n: binsr.summary(net, (8, 8)) for n, net in nets.items()}
    for fig in (viz.cost_figure(costs), viz.sr_vs_classification_figure(_image(), 2.0)):
        assert min(t.get_fontsize() for t in _texts(fig)) >= 11


@pytest.mark.parametrize(
    ("label", "family"),
    [
        ("EDSR-FP", "FP"), ("FP", "FP"), ("srresnet-fp", "FP"), ("EDSR-BBCU", "BBCU"), ("bbcu-m", "BBCU"),
        ("BBCU, thresholds = 0", "BBCU"), ("BBCU shipped (edsr-bbcu-x2)", "BBCU"),
        ("proposed-pixel-bin-only", "proposed"), ("attentive (se), binsr default", "proposed"),
        ("Bicubic x2", "bicubic"), ("HR", "HR"), ("yours (40 steps)", None), ("this run", None),
    ],
)  # fmt: skip
def test_model_family(label, family):
    assert viz.model_family(label) == family
    assert viz.model_color(label) == (viz.OTHER_COLOR if family is None else viz.MODEL_COLORS[family])


def test_model_colours_are_distinct():
    colours = [to_hex(c) for c in (*viz.MODEL_COLORS.values(), viz.OTHER_COLOR)]
    assert len(set(colours)) == len(colours)
    assert to_hex(viz.MODEL_COLORS["HR"]) == "#000000" and to_hex(viz.MODEL_COLORS["bicubic"]) == to_hex("tab:gray")


def test_model_figures_use_the_model_colours():
    torch.manual_seed(0)
    models = {
        "FP": binsr.create_model("edsr-fp", scale=2, n_feats=8, n_blocks=2),
        "BBCU": binsr.create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=2),
        "proposed": binsr.create_model("edsr-proposed", scale=2, n_feats=8, n_blocks=2),
    }
    stats = {label: viz.body_activations(m, _image()) for label, m in models.items()}
    lines = viz.stream_figure(stats).axes[0].lines
    assert [to_hex(line.get_color()) for line in lines] == [to_hex(viz.MODEL_COLORS[k]) for k in models]

    rows = [
        {"label": "Bicubic", "scale": 2, "ops": 0.0, "val": {"Set5": {"psnr": 33.7}, "Set14": {"psnr": 30.3}}},
        {"label": "EDSR-BBCU", "scale": 2, "ops": 3.0e9, "val": {"Set5": {"psnr": 34.1}, "Set14": {"psnr": 30.8}}},
        {"label": "proposed-se", "scale": 2, "ops": 3.0e9, "val": {"Set5": {"psnr": 33.1}, "Set14": {"psnr": 29.9}}},
        {"label": "proposed-pixel", "scale": 2, "ops": 4.9e9, "val": {"Set5": {"psnr": 33.0}, "Set14": {"psnr": 29.9}}},
    ]  # fmt: skip
    ax = viz.results_figure(rows).axes[0]
    points, bicubic = ax.lines[:3], ax.lines[3]
    assert [to_hex(p.get_color()) for p in points] == [to_hex(viz.model_color(r["label"])) for r in rows[1:]]
    assert points[1].get_marker() != points[2].get_marker()  # two proposed variants: same colour, other markers
    assert to_hex(bicubic.get_color()) == to_hex(viz.MODEL_COLORS["bicubic"])
    assert "Set5 and Set14" in ax.get_ylabel() and "dB" in ax.get_ylabel()  # which sets the mean is over

    hr = _image(48, 64)
    fig = viz.crop_compare_figure(hr, {"bicubic": _image(48, 64, 1), "BBCU": _image(48, 64, 2)}, 2, size=32)
    titles = {ax.get_title().split("\n")[0]: to_hex(ax.title.get_color()) for ax in fig.axes[:3]}
    assert titles == {"HR": "#000000", "bicubic": to_hex("tab:gray"), "BBCU": to_hex("tab:orange")}

    diffs = [{"set": "Set5", "image": "a", "diff": 0.5}, {"set": "Set5", "image": "b", "diff": -0.2}]
    bars = viz.paired_difference_figure(diffs, ("proposed", "BBCU")).axes[0].patches
    assert [to_hex(b.get_facecolor()) for b in bars] == [to_hex("tab:green"), to_hex("tab:orange")]


def test_diverging_map_runs_between_the_two_models():
    cmap = viz.model_diverging_cmap("BBCU", "proposed")
    assert to_hex(cmap(0.0)) == to_hex("tab:orange") and to_hex(cmap(1.0)) == to_hex("tab:green")
    assert to_hex(cmap(0.5)) == "#ffffff"  # a zero difference is white (an odd number of levels)
