"""binsr.viz: the notebooks' figure and widget functions, called headless with hand-checkable numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from matplotlib.colors import to_hex
from matplotlib.figure import Figure
from matplotlib.text import Text
from plotted import bar_heights, image_data, step_counts
from torch import nn

import binsr
from binsr import viz
from binsr.data.metrics import psnr_y
from binsr.nn.binary import SIGN_BACKWARDS, BinaryConv2d, sign_derivative
from binsr.nn.blocks import BBCUBlock, BBCUUnit, ResBlock


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _tiny_model(**kw):
    return binsr.create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=1, **kw)


def _photo(h=24, w=32, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _check_figure(fig, n_axes):
    assert isinstance(fig, Figure)
    assert len(fig.axes) == n_axes
    width, height = fig.get_size_inches()
    assert width <= viz.MAX_FIGSIZE[0] and height <= viz.MAX_FIGSIZE[1] and fig.dpi == viz.FIG_DPI
    fig.canvas.draw()  # renders headless without error
    small = [t.get_text() for t in fig.findobj(Text) if t.get_text() and t.get_fontsize() < 11]
    assert small == []  # readable from the back of the room (the series' style, binsr.viz.STYLE)


# ---- helpers --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"), [("1", True), ("yes", True), ("", False), ("0", False), ("false", False)]
)
def test_quick_mode_reads_the_environment(monkeypatch, value, expected):
    monkeypatch.setenv("BINSR_QUICK", value)
    assert viz.quick_mode() is expected


def test_quick_mode_unset(monkeypatch):
    monkeypatch.delenv("BINSR_QUICK", raising=False)
    assert viz.quick_mode() is False


def test_image_to_tensor_scales_and_orders_channels():
    img = np.zeros((2, 3, 3), dtype=np.uint8)
    img[1, 2] = (255, 0, 51)
    t = viz.image_to_tensor(img)
    assert t.shape == (1, 3, 2, 3)
    assert t[0, :, 1, 2].tolist() == pytest.approx([1.0, 0.0, 0.2])
    with pytest.raises(ValueError):
        viz.image_to_tensor(np.zeros((4, 4), dtype=np.uint8))


def test_capture_input_and_output():
    model = _tiny_model()
    img = _photo()
    head_out = viz.capture(model, img, "head")
    body_in = viz.capture(model, img, "body.0.0", which="input")
    assert head_out.shape == (8, 24, 32)
    assert torch.equal(head_out, body_in)
    with torch.no_grad():
        expected = model.head((viz.image_to_tensor(img) - model.rgb_mean) * model.k)[0]
    assert torch.equal(head_out, expected)
    with pytest.raises(ValueError):
        viz.capture(model, img, "no.such.layer")


# ---- 01 -------------------------------------------------------------------------------------------------


def test_psnr_of_noise():
    assert viz.psnr_of_noise(1.0) == pytest.approx(48.1308, abs=1e-4)
    assert viz.psnr_of_noise(2.0) == pytest.approx(viz.psnr_of_noise(1.0) - 20 * math.log10(2))


def test_add_noise_is_seeded_and_uint8():
    img = _photo()
    a, b = viz.add_noise(img, 3.0, seed=1), viz.add_noise(img, 3.0, seed=1)
    assert a.dtype == np.uint8 and np.array_equal(a, b)
    assert not np.array_equal(a, viz.add_noise(img, 3.0, seed=2))
    assert np.array_equal(viz.add_noise(img, 0.0), img)


def test_one_bit_image_thresholds_each_channel_at_its_mean():
    img = np.array([[[0, 10, 200], [100, 30, 100]]], dtype=np.uint8)  # channel means 50, 20, 150
    out = viz.one_bit_image(img)
    assert out.tolist() == [[[0, 0, 255], [255, 255, 0]]]


def test_sr_vs_classification_figure():
    photo = _photo()
    fig = viz.sr_vs_classification_figure(photo, sigma=2.0, seed=5)
    _check_figure(fig, 4 + 1)  # and the error map's colour bar
    noisy = np.clip(np.round(photo + np.random.default_rng(5).normal(0.0, 2.0, photo.shape)), 0, 255)
    means = photo.reshape(-1, 3).mean(axis=0)
    assert np.array_equal(image_data(fig.axes[0]), photo)
    assert np.array_equal(image_data(fig.axes[1]), np.where(photo > means, 255, 0))
    assert np.array_equal(image_data(fig.axes[2]), noisy)
    np.testing.assert_allclose(image_data(fig.axes[3]), np.abs(noisy - photo).mean(axis=2), rtol=1e-12)
    assert fig.axes[2].get_title().endswith(f"PSNR(Y) {psnr_y(noisy.astype(np.uint8), photo, 0):.2f} dB")


def test_the_error_panel_keeps_its_scale_across_noise_levels():
    for sigma in (0.5, 16.0):  # the slider's ends
        image = viz.sr_vs_classification_figure(_photo(), sigma=sigma).axes[3].images[0]
        assert image.get_clim() == (0.0, viz.ERROR_SCALE_MAX)
    with pytest.raises(ValueError, match="error_max=0"):
        viz.sr_vs_classification_figure(_photo(), error_max=0)


def test_cost_figure():
    with torch.device("meta"):
        costs = {
            n: binsr.summary(binsr.create_model(n, scale=2, n_feats=8, n_blocks=1), (8, 8))
            for n in ("edsr-fp", "edsr-bbcu")
        }
    fig = viz.cost_figure(costs)
    _check_figure(fig, 2)
    ax_ops, ax_par = fig.axes
    flops = [costs[n].flops / 1e9 for n in costs]
    bops64 = [costs[n].bops / 64e9 for n in costs]
    assert flops[1] > 0 and bops64 == [0.0, pytest.approx(bops64[1])] and bops64[1] > 0  # FP has no BOPs
    bars = ax_ops.patches
    assert [b.get_width() for b in bars] == pytest.approx(flops + bops64)  # FLOPs, then BOPs/64 stacked on them
    assert [b.get_x() for b in bars[2:]] == pytest.approx(flops)
    assert [b.get_width() for b in ax_par.patches] == pytest.approx([costs[n].params / 1e3 for n in costs])
    assert [t.get_text() for t in ax_ops.get_yticklabels()] == list(costs)
    assert [t.get_text() for t in ax_ops.texts] == [f" {f + b:.2f}" for f, b in zip(flops, bops64, strict=True)]


# ---- 02 -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backward", SIGN_BACKWARDS)
def test_surrogate_forward_is_the_antiderivative(backward):
    x = torch.linspace(-2.5, 2.5, 501, dtype=torch.float64)
    h = 1e-6
    numeric = (viz.surrogate_forward(x + h, backward) - viz.surrogate_forward(x - h, backward)) / (2 * h)
    away = (x.abs() - 1).abs() > 1e-3
    assert torch.allclose(numeric[away], sign_derivative(x, backward)[away], atol=1e-6)
    assert torch.equal(viz.autograd_sign_gradient(x, backward), sign_derivative(x, backward))


def test_surrogate_forward_values():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    assert viz.surrogate_forward(x, "clipped").tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert viz.surrogate_forward(x, "approx").tolist() == [-1.0, -0.75, 0.0, 0.75, 1.0]
    assert viz.surrogate_forward(x, "identity").tolist() == x.tolist()
    with pytest.raises(ValueError):
        viz.surrogate_forward(x, "tanh")


def test_fraction_with_gradient_by_hand():
    x = torch.tensor([-2.0, -0.5, 0.0, 0.5, 1.0, 1.5])
    assert viz.fraction_with_gradient(x, "clipped") == pytest.approx(4 / 6)  # |x| <= 1
    assert viz.fraction_with_gradient(x, "approx") == pytest.approx(3 / 6)  # |x| < 1 (zero at |x| = 1)
    assert viz.fraction_with_gradient(x, "identity") == 1.0


def test_sign_backward_figure():
    fig = viz.sign_backward_figure(3.0)
    _check_figure(fig, 2)
    labelled = [line for line in fig.axes[0].lines if not line.get_label().startswith("_")]
    assert len(labelled) == 1 + len(SIGN_BACKWARDS)
    forward, backward = fig.axes[0].lines, fig.axes[1].lines
    x = forward[0].get_xdata().astype(np.float64)  # float32: the middle point is not exactly 0
    np.testing.assert_allclose(x, np.linspace(-3.0, 3.0, 801), atol=1e-6)
    inside = np.abs(x) < 1
    approx = np.where(inside, 2 * x - x * abs(x), np.sign(x))
    stand_ins = {"identity": x, "clipped": np.clip(x, -1, 1), "approx": approx}
    slopes = {"identity": np.ones_like(x), "clipped": np.abs(x) <= 1, "approx": np.where(inside, 2 - 2 * np.abs(x), 0)}
    assert np.array_equal(forward[0].get_ydata(), np.where(x > 0, 1.0, -1.0))
    names = {"identity": "identity STE (4)", "clipped": "clipped STE (2)", "approx": "ApproxSign (3)"}
    for i, b in enumerate(SIGN_BACKWARDS):
        assert forward[1 + i].get_label() == backward[i].get_label() == names[b]
        np.testing.assert_allclose(forward[1 + i].get_ydata(), stand_ins[b], atol=1e-6)
        np.testing.assert_allclose(backward[i].get_ydata(), slopes[b], atol=1e-5)


def test_threshold_loss_and_its_gradient():
    assert viz.threshold_loss(0.3, 0.3) == 0.0
    assert viz.threshold_loss(50.0, 0.0) == pytest.approx(2.0)  # half of the samples disagree, each costs 4
    for t in (-1.2, 0.4, 2.0):
        h = 1e-6
        numeric = (viz.threshold_loss(t + h, 0.0) - viz.threshold_loss(t - h, 0.0)) / (2 * h)
        assert viz.threshold_true_gradient(t, 0.0) == pytest.approx(numeric, rel=1e-5)


def test_threshold_surrogate_gradient_identity_by_hand():
    # identity STE: dL/dt = mean(2 (yhat - y) * (-1)) on the same seeded sample
    x = torch.randn(500, generator=torch.Generator().manual_seed(3))
    t, target = 0.7, -0.2
    yhat, y = torch.where(x > t, 1.0, -1.0), torch.where(x > target, 1.0, -1.0)
    expected = float((-2 * (yhat - y)).mean())
    assert viz.threshold_surrogate_gradient(t, target, "identity", n=500, seed=3) == pytest.approx(expected, abs=1e-6)
    # clipped: only samples with |x - t| <= 1 count
    window = ((x - t).abs() <= 1).float()
    expected = float((-2 * (yhat - y) * window).mean())
    assert viz.threshold_surrogate_gradient(t, target, "clipped", n=500, seed=3) == pytest.approx(expected, abs=1e-6)


def test_threshold_descent():
    run = viz.threshold_descent("identity", t0=3.0, steps=60)
    assert run["t"].shape == (61,) and run["t"][0] == 3.0
    assert abs(run["t"][-1]) < 0.05 and run["loss"][-1] < 0.01
    stuck = viz.threshold_descent("clipped", t0=4.0, steps=60)  # few samples within 1 of t = 4
    assert stuck["t"][-1] > 3.0


def test_gradient_mismatch_figure():
    fig = viz.gradient_mismatch_figure(t0=2.0, target=0.5, steps=5, n=500)
    _check_figure(fig, 2)
    ts = np.linspace(-3.0, 3.0, 61)
    true = [4 * math.exp(-t * t / 2) / math.sqrt(2 * math.pi) * np.sign(t - 0.5) for t in ts]
    ax_g, ax_t = fig.axes
    assert np.array_equal(ax_g.lines[0].get_xdata(), ts)
    np.testing.assert_allclose(ax_g.lines[0].get_ydata(), true, rtol=1e-12)
    for i, b in enumerate(SIGN_BACKWARDS):
        surrogate = [viz.threshold_surrogate_gradient(t, 0.5, b, n=500) for t in ts[::10]]
        np.testing.assert_allclose(ax_g.lines[1 + i].get_ydata()[::10], surrogate, rtol=1e-6)
        path = viz.threshold_descent(b, t0=2.0, target=0.5, steps=5, n=500)["t"]
        np.testing.assert_allclose(ax_t.lines[i].get_ydata(), path, rtol=1e-6)
        assert ax_t.lines[i].get_label() == f"{b}: t={path[-1]:.2f}"


# ---- 03 -------------------------------------------------------------------------------------------------


def test_fraction_positive_by_hand():
    x = torch.tensor([[[0.5, -1.0, 2.0], [0.0, 3.0, -0.5]], [[0.4, 0.1, -2.0], [0.9, -0.3, 0.2]]])
    # channel 0: 0.5, 2, 3 are > 0.4 -> 3/6; channel 1: only 0.9 (0.4 is not > 0.4) -> 1/6
    assert viz.fraction_positive(x, 0.4).tolist() == pytest.approx([3 / 6, 1 / 6])
    # per-channel thresholds; and at 0, where 0.0 itself goes to -1
    assert viz.fraction_positive(x, torch.tensor([2.5, -2.5])).tolist() == pytest.approx([1 / 6, 1.0])
    assert viz.fraction_positive(x, 0.0).tolist() == pytest.approx([3 / 6, 4 / 6])
    assert viz.fraction_positive(x.unsqueeze(0), 0.4).tolist() == pytest.approx([3 / 6, 1 / 6])


def test_rsign_apply_matches_the_definition():
    x = torch.randn(3, 5, 7)
    t = torch.tensor([0.1, -0.4, 1.2])
    assert torch.equal(viz.rsign_apply(x, t), torch.where(x > t.view(-1, 1, 1), 1.0, -1.0))


def test_rsign_figure():
    features = torch.randn(4, 10, 12)
    fig = viz.rsign_figure(features, threshold=0.2, channel=1)
    _check_figure(fig, 4)
    ax_h, ax_x, ax_b, ax_f = fig.axes
    x = features[1].numpy()
    assert np.array_equal(bar_heights(ax_h), np.histogram(x.flatten(), bins=60)[0])
    assert np.array_equal(image_data(ax_x), x)
    assert np.array_equal(image_data(ax_b), np.where(x > 0.2, 1.0, -1.0))
    plus = (features > 0.2).double().mean(dim=(1, 2)).numpy()
    np.testing.assert_allclose(bar_heights(ax_f), plus, rtol=1e-6)
    assert ax_b.get_title() == f"sign(x - t):\n{plus[1]:.0%} are +1"
    assert [to_hex(bar.get_facecolor()) for bar in ax_f.patches][1] == to_hex("tab:red")  # the channel shown


def test_thermometer_by_hand():
    x = torch.tensor([[0.0, 1.0], [2.0, 3.0]])
    code = viz.thermometer(x, [0.5, 1.5, 2.5])
    assert code.flatten().tolist() == pytest.approx([-1.0, -1 / 3, 1 / 3, 1.0])
    assert torch.equal(viz.thermometer(x, [1.5, 1.5]), torch.where(x > 1.5, 1.0, -1.0))


def test_correlation():
    a = torch.randn(100)
    assert viz.correlation(a, 2 * a + 1) == pytest.approx(1.0)
    assert viz.correlation(a, -a) == pytest.approx(-1.0)


def test_thermometer_figure_and_more_levels_help():
    x = torch.randn(40, 40, generator=torch.Generator().manual_seed(0))
    q = lambda n: torch.quantile(x.flatten(), torch.linspace(0, 1, n + 2)[1:-1])  # noqa: E731
    assert viz.correlation(viz.thermometer(x, q(8)), x) > viz.correlation(viz.thermometer(x, q(1)), x)
    fig = viz.thermometer_figure(x, levels=4)
    _check_figure(fig, 2)
    thresholds = np.quantile(x.numpy(), [0.2, 0.4, 0.6, 0.8])
    code = np.mean([np.where(x.numpy() > t, 1.0, -1.0) for t in thresholds], axis=0)
    assert np.array_equal(image_data(fig.axes[0]), x.numpy())
    np.testing.assert_allclose(image_data(fig.axes[1]), code, atol=1e-6)
    r = np.corrcoef(code.flatten(), x.numpy().flatten())[0, 1]
    assert fig.axes[1].get_title().endswith(f"correlation with x: {r:.3f}")
    shared = viz.thermometer_figure(x, levels=4, shared=True)
    assert np.array_equal(image_data(shared.axes[1]), np.where(x.numpy() > 0, 1.0, -1.0))


def test_rprelu_apply_by_hand():
    x = torch.tensor([-2.0, 0.0, 2.0])
    # u = x - 1 = [-3, -1, 1]; PReLU_0.5(u) = [-1.5, -0.5, 1]; + 0.3
    assert viz.rprelu_apply(x, 1.0, 0.5, 0.3).tolist() == pytest.approx([-1.2, -0.2, 1.3])
    feats = torch.randn(2, 3, 4, 5)
    assert torch.equal(viz.rprelu_apply(feats, 0.0, 0.25, 0.0), F.prelu(feats, torch.tensor([0.25])))


def test_rprelu_figure():
    fig = viz.rprelu_figure(0.1, 0.3, -0.2)
    _check_figure(fig, 1)
    identity, prelu, rprelu, pivot = fig.axes[0].lines[:4]  # then the axes lines
    x = np.linspace(-3.0, 3.0, 401)
    np.testing.assert_allclose(rprelu.get_xdata(), x, atol=1e-6)
    np.testing.assert_allclose(identity.get_ydata(), x, atol=1e-6)
    np.testing.assert_allclose(prelu.get_ydata(), np.where(x > 0, x, 0.25 * x), atol=1e-6)
    np.testing.assert_allclose(rprelu.get_ydata(), np.where(x > 0.1, x - 0.1, 0.3 * (x - 0.1)) - 0.2, atol=1e-6)
    assert (list(pivot.get_xdata()), list(pivot.get_ydata())) == ([0.1], [-0.2])
    values = torch.randn(500)
    fig = viz.rprelu_figure(0.1, 0.3, -0.2, values=values)
    _check_figure(fig, 2)
    v = values.numpy().astype(np.float64)
    out = np.where(v > 0.1, v - 0.1, 0.3 * (v - 0.1)) - 0.2
    bins = np.linspace(min(v.min(), out.min()), max(v.max(), out.max()), 80)
    assert len(fig.axes[1].patches) == 2 * 79
    counts = bar_heights(fig.axes[1])
    assert np.array_equal(counts[:79], np.histogram(v, bins)[0])
    assert np.abs(counts[79:] - np.histogram(out, bins)[0]).sum() <= 2  # float32 RPReLU vs float64 at bin edges


# ---- 04 -------------------------------------------------------------------------------------------------


def test_binarization_error_by_hand():
    w = torch.tensor([0.5, -1.5, 1.0])
    # sign = [1, -1, 1]; W - 1*sign = [-0.5, -0.5, 0] -> 0.5
    assert viz.binarization_error(w, 1.0).tolist() == pytest.approx([0.5])
    w2 = torch.tensor([[[[0.5]], [[-1.5]]], [[[2.0]], [[0.0]]]])  # two output channels
    # ch 0 alpha 1: [-0.5, -0.5] -> 0.5; ch 1 alpha 2: [0, 0 - 2*(-1)] -> 4 (sign(0) = -1)
    assert viz.binarization_error(w2, torch.tensor([1.0, 2.0])).tolist() == pytest.approx([0.5, 4.0])


def test_alpha_error_curve_minimum_is_mean_abs():
    w = torch.randn(300, generator=torch.Generator().manual_seed(1))
    alphas = np.linspace(0, 2, 20001)
    errors = viz.alpha_error_curve(w, alphas)
    best = float(w.abs().mean())
    assert alphas[errors.argmin()] == pytest.approx(best, abs=1e-4)
    assert errors.min() == pytest.approx(float(w @ w) - w.numel() * best**2, rel=1e-5)


def test_alpha_error_figure():
    w = torch.randn(50)
    fig = viz.alpha_error_figure(w, alpha=0.5)
    _check_figure(fig, 2)
    ax_w, ax_e = fig.axes
    ordered = np.sort(w.numpy())
    assert np.array_equal(ax_w.lines[0].get_ydata(), ordered)
    assert np.array_equal(ax_w.lines[1].get_ydata(), np.where(ordered > 0, 0.5, -0.5))
    best = float(np.abs(w.numpy().astype(np.float64)).mean())
    alphas = np.linspace(0.0, 2.5 * best, 201)
    flat = w.numpy().astype(np.float64)
    curve, mean_line, current = ax_e.lines
    np.testing.assert_allclose(curve.get_xdata(), alphas, rtol=1e-6)
    errors = [((flat - a * np.where(flat > 0, 1, -1)) ** 2).sum() for a in alphas]
    np.testing.assert_allclose(curve.get_ydata(), errors, rtol=1e-6)
    assert mean_line.get_xdata()[0] == pytest.approx(best, rel=1e-6)
    assert current.get_xdata()[0] == 0.5
    assert current.get_ydata()[0] == pytest.approx(((np.abs(flat) - 0.5) ** 2).sum(), rel=1e-6)


def test_binary_convs_finds_every_binary_conv():
    names = [n for n, _ in viz.binary_convs(binsr.create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=2))]
    assert names == ["body.0.0.conv", "body.0.1.conv", "body.1.0.conv", "body.1.1.conv"]


def test_train_and_track_counts_flips():
    model = _tiny_model(alpha_mode="learnable")
    weights = [m.weight for _, m in viz.binary_convs(model)]
    before = [w.detach().clone() for w in weights]
    record = viz.train_and_track(model, _photo(8, 8), _photo(16, 16, seed=1), steps=1, lr=5e-3)
    assert set(record) == {"loss", "flips", "max_abs_w", "beyond_one"}
    assert all(len(v) == 1 for v in record.values())
    flips = sum(int(((w > 0) != (b > 0)).sum()) for w, b in zip(weights, before, strict=True))
    assert record["flips"][0] == flips > 0
    assert record["max_abs_w"][0] == pytest.approx(max(float(w.detach().abs().max()) for w in weights))
    assert record["beyond_one"][0] == 0
    with pytest.raises(ValueError):
        viz.train_and_track(
            binsr.create_model("edsr-fp", scale=2, n_feats=4, n_blocks=1), _photo(8, 8), _photo(16, 16), 1
        )


def test_flips_and_alpha_figures():
    model = _tiny_model(alpha_mode="learnable")
    record = {"loss": np.array([0.3, 0.2, 0.25]), "flips": np.array([7, 0, 4])}
    fig = viz.flips_figure(record)
    _check_figure(fig, 2)
    assert fig.axes[0].lines[0].get_xdata().tolist() == [1, 2, 3]
    assert fig.axes[0].lines[0].get_ydata().tolist() == [0.3, 0.2, 0.25]
    assert bar_heights(fig.axes[1]).tolist() == [7, 0, 4]
    assert [bar.get_x() + bar.get_width() / 2 for bar in fig.axes[1].patches] == [1, 2, 3]
    assert fig.axes[1].get_title() == "sign flips per step (total 11)"

    model = _tiny_model(alpha_mode="learnable")
    viz.train_and_track(model, _photo(8, 8), _photo(16, 16, seed=1), steps=2)
    fig = viz.alpha_comparison_figure(model)
    _check_figure(fig, 2)
    alphas, means, err_alpha, err_mean = [], [], [], []
    for _, conv in viz.binary_convs(model):
        w = conv.weight.detach().double().flatten(1)
        a, m = conv.scale().detach().double(), w.abs().mean(dim=1)
        assert not torch.allclose(a, m)  # learned: the two axes differ
        signs = torch.where(w > 0, 1.0, -1.0).double()
        alphas += a.tolist()
        means += m.tolist()
        err_alpha += ((w - a[:, None] * signs) ** 2).sum(dim=1).tolist()
        err_mean += ((w - m[:, None] * signs) ** 2).sum(dim=1).tolist()
    np.testing.assert_allclose(fig.axes[0].collections[0].get_offsets(), np.c_[means, alphas], rtol=1e-5)
    np.testing.assert_allclose(fig.axes[1].collections[0].get_offsets(), np.c_[err_mean, err_alpha], rtol=1e-4)
    assert fig.axes[1].get_title().endswith(f"{sum(err_alpha) / sum(err_mean):.3f}× the optimum")


def test_latent_walk():
    pushes = np.r_[np.ones(40), -np.ones(40)]
    identity = viz.latent_walk(pushes, lr=0.05, w0=0.1, clamp=False)
    assert identity.shape == (81,)
    assert identity.max() == pytest.approx(2.1, abs=1e-5) and identity[-1] == pytest.approx(0.1, abs=1e-5)
    clamped = viz.latent_walk(pushes, lr=0.05, w0=0.1, clamp=True)
    assert clamped[-1] > 1.0 and clamped[-1] == clamped.max() == clamped[40]  # frozen once past 1
    clipped = viz.latent_walk(pushes, lr=0.05, w0=0.1, clamp=True, clip_weight=True)
    assert clipped.max() == 1.0 and clipped[-1] == -1.0
    assert int((np.sign(clipped[1:]) != np.sign(clipped[:-1])).sum()) == 1


def test_latent_walk_figure():
    fig = viz.latent_walk_figure(10, 10, lr=0.1)
    _check_figure(fig, 1)
    identity, clamped, clipped = fig.axes[0].lines[:3]
    steps = np.r_[np.arange(11), np.arange(9, -1, -1)]  # +lr for 10 steps, then -lr for 10
    np.testing.assert_allclose(identity.get_ydata(), 0.1 + 0.1 * steps, atol=1e-6)
    assert identity.get_label() == "identity STE: 0 sign flip(s)"
    pushes = np.r_[np.ones(10), -np.ones(10)]
    assert np.array_equal(clamped.get_ydata(), viz.latent_walk(pushes, 0.1, 0.1, clamp=True))
    assert np.array_equal(clipped.get_ydata(), viz.latent_walk(pushes, 0.1, 0.1, clamp=True, clip_weight=True))
    assert clipped.get_label() == "clamped STE + clip W to [-1, 1]: 1 sign flip(s)"


# ---- 05 -------------------------------------------------------------------------------------------------


def test_negative_energy():
    assert viz.negative_energy(torch.tensor([-1.0, 2.0, -3.0])) == 10.0


def test_residual_placement():
    conv = BinaryConv2d(6, 6)
    x = 3 * torch.randn(6, 9, 9)
    r = viz.residual_placement(conv, x)
    assert set(r) == {"x", "branch", "outside", "inside"}
    with torch.no_grad():
        assert torch.equal(r["outside"], _unit_with(conv)(x[None])[0])  # eq. (8) is the outside placement
        assert torch.equal(r["inside"], conv.rprelu((r["branch"] + x)[None])[0])
        conv.rprelu.beta.fill_(1.0)  # RPReLU is then a shift, so the placement no longer matters
    r1 = viz.residual_placement(conv, x)
    assert torch.allclose(r1["inside"], r1["outside"], atol=1e-5)
    assert viz.negative_energy(r["inside"]) < viz.negative_energy(r["outside"])


def _unit_with(conv):
    unit = BBCUUnit(conv.in_channels)
    unit.conv = conv
    return unit


def test_residual_placement_figure():
    r = viz.residual_placement(BinaryConv2d(4, 4), torch.randn(4, 8, 8))
    fig = viz.residual_placement_figure(r)
    _check_figure(fig, 2)
    ax_s, ax_h = fig.axes
    x = r["x"].flatten().numpy()
    energy = lambda t: float((np.minimum(t, 0) ** 2).sum())  # noqa: E731
    for i, key in enumerate(("outside", "inside")):
        out = r[key].flatten().numpy()
        # all 256 points are drawn (max_points 4000), shuffled: find each point's input x, check its output
        points = np.asarray(ax_s.collections[i].get_offsets())
        order = np.argsort(x)
        j = order[np.searchsorted(x[order], points[:, 0])]
        assert len(points) == len(set(j)) == x.size and np.array_equal(x[j], points[:, 0])
        assert np.array_equal(out[j], points[:, 1])
        assert np.array_equal(step_counts(ax_h.patches[i]), np.histogram(out, bins=100)[0])
        assert ax_h.patches[i].get_label() == f"{key}: {energy(out) / energy(x):.0%}"
    assert np.array_equal(step_counts(ax_h.patches[2]), np.histogram(x, bins=100)[0])


def test_amplitude_ratio_scales_as_one_over_k():
    unit = BBCUUnit(8)
    x = torch.randn(8, 10, 10)
    r1 = viz.amplitude_ratio(unit, x, 1.0)
    assert viz.amplitude_ratio(unit, x, 10.0) == pytest.approx(r1 / 10, rel=1e-5)  # threshold 0: same bits
    with torch.no_grad():
        expected = unit.conv(x[None]).std() / x.std()
    assert r1 == pytest.approx(float(expected), rel=1e-6)


def test_amplification_figure_draws_the_curve_it_is_given_or_computes_it():
    unit, x = BBCUUnit(4), torch.randn(4, 6, 6)
    ks, ratios = viz.amplification_curve(unit, x)
    assert ks[0] == pytest.approx(0.1) and ks[-1] == pytest.approx(1000.0)
    assert ratios[3] == pytest.approx(viz.amplitude_ratio(unit, x, ks[3]))
    computed = viz.amplification_figure(unit, x, k=20.0)
    given = viz.amplification_figure(unit, x, k=20.0, curve=(ks, ratios))
    _check_figure(given, 2)
    for fig in (computed, given):
        np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), ratios)
    with torch.no_grad():
        branch = unit.conv(20.0 * x[None]).flatten().numpy()
    residual = (20.0 * x).flatten().numpy()
    ax_r, ax_h = given.axes
    np.testing.assert_allclose(ax_r.lines[0].get_xdata(), np.logspace(-1, 3, 9))
    assert ax_r.lines[1].get_xdata()[0] == 20.0
    assert ax_r.lines[1].get_ydata()[0] == pytest.approx(branch.std(ddof=1) / residual.std(ddof=1), rel=1e-5)
    bins = np.linspace(min(branch.min(), residual.min()), max(branch.max(), residual.max()), 100)
    assert np.array_equal(step_counts(ax_h.patches[0]), np.histogram(residual, bins)[0])
    assert np.array_equal(step_counts(ax_h.patches[1]), np.histogram(branch, bins)[0])


def test_block_summary_counts_by_hand():
    s = viz.block_summary(BBCUBlock(8), 8, (4, 5))
    assert s.bops == 2 * 8 * 8 * 9 * 20 and s.flops == 0
    assert s.params == pytest.approx(2 * 8 * 8 * 9 / 32)
    r = viz.block_summary(ResBlock(8), 8, (4, 5))
    assert r.flops == 2 * 8 * 8 * 9 * 20 and r.bops == 0
    assert r.fp_params == 2 * (8 * 8 * 9 + 8)


def test_run_with_hooks_sees_one_pass_without_grad_and_leaves_no_hook_behind():
    model = nn.Sequential(nn.Conv2d(3, 4, 1), nn.ReLU())
    seen = []
    image = np.zeros((2, 3, 3), dtype=np.uint8)
    viz.run_with_hooks(model, image, [(model[0], lambda m, i, o: seen.append((o.shape, torch.is_grad_enabled())))])
    model(viz.image_to_tensor(image))
    assert seen == [(torch.Size([1, 4, 2, 3]), False)] and not model[0]._forward_hooks

    def boom(m, i, o):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        viz.run_with_hooks(model, image, [(model[1], boom)])
    assert not model[1]._forward_hooks
