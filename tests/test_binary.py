import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from binsr.nn.binary import BinaryConv2d, RPReLU, RSign, binary_sign, mean_abs_scale, sign_derivative, sign_weight
from binsr.nn.config import BBCU_BINARIZATION, Binarization

LEARNABLE = replace(BBCU_BINARIZATION, alpha_mode="learnable")

POINTS = torch.tensor([-2.0, -1.0, -0.75, -0.5, -0.25, 0.0, 0.25, 0.5, 0.75, 1.0, 1.5])


def grad_of_sign(x: torch.Tensor, backward: str) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    binary_sign(x, backward).sum().backward()
    return x.grad


def test_sign_forward_ties_and_nan_go_to_minus_one():
    x = torch.tensor([-3.0, -0.0, 0.0, 1e-30, 2.0, math.nan])
    assert binary_sign(x).tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, -1.0]


def test_clipped_ste_gradient_is_indicator_of_unit_interval():
    expected = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0]
    assert grad_of_sign(POINTS, "clipped").tolist() == expected


def test_approxsign_gradient_is_bireal_piecewise_quadratic_derivative():
    # 2 + 2x on [-1, 0), 2 - 2x on [0, 1), 0 outside
    expected = [0.0, 0.0, 0.5, 1.0, 1.5, 2.0, 1.5, 1.0, 0.5, 0.0, 0.0]
    assert grad_of_sign(POINTS, "approx").tolist() == expected


def test_identity_ste_gradient_is_one():
    assert grad_of_sign(POINTS, "identity").tolist() == [1.0] * len(POINTS)


def test_approxsign_matches_derivative_of_its_forward_surrogate():
    # Bi-Real's surrogate: x^2 + 2x on [-1, 0), -x^2 + 2x on [0, 1); autograd of that equals eq. (3).
    x = torch.linspace(-0.99, 0.99, 199, dtype=torch.float64, requires_grad=True)
    surrogate = torch.where(x < 0, x * x + 2 * x, -x * x + 2 * x)
    (g,) = torch.autograd.grad(surrogate.sum(), x)
    assert torch.allclose(g, sign_derivative(x.detach(), "approx"), atol=1e-12)


def test_unknown_backward_is_a_one_line_error():
    with pytest.raises(ValueError, match="backward='tanh' is not valid; expected one of clipped, approx, identity"):
        binary_sign(torch.zeros(1), "tanh")


def test_rsign_threshold_convention_and_gradient():
    rsign = RSign(2, sign_backward="clipped")
    with torch.no_grad():
        rsign.threshold.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([0.5, 0.6, -1.0, -0.9]).view(1, 2, 2, 1).requires_grad_(True)
    out = rsign(x)
    assert out.flatten().tolist() == [-1.0, 1.0, -1.0, 1.0]  # x == t goes to -1
    out.sum().backward()
    # d/dt sign(x - t) = -STE'(x - t): all four inputs are within 1 of their threshold
    assert rsign.threshold.grad.tolist() == [-2.0, -2.0]
    assert x.grad.flatten().tolist() == [1.0, 1.0, 1.0, 1.0]


def test_weight_sign_and_clamp_ste():
    w = torch.tensor([-1.5, -1.0, 0.0, 0.3, 2.0], requires_grad=True)
    out = sign_weight(w)
    assert out.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0]
    out.backward(torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert w.grad.tolist() == [0.0, 2.0, 3.0, 4.0, 0.0]


def test_weight_sign_of_a_single_0d_weight():
    # notebook 04 walks one latent weight (a 0-d tensor) through the clamped STE
    for value, grad in ((0.3, -2.0), (1.5, 0.0)):
        w = torch.tensor(value, requires_grad=True)
        out = sign_weight(w)
        assert out.shape == () and out.item() == 1.0
        out.backward(torch.tensor(-2.0))
        assert w.grad.shape == () and w.grad.item() == grad


def test_mean_abs_scale_is_l2_optimal():
    torch.manual_seed(0)
    w = torch.randn(3, 4, 3, 3, dtype=torch.float64)
    alpha = mean_abs_scale(w)
    assert torch.allclose(alpha, w.abs().mean(dim=(1, 2, 3)))
    # d/da ||W - a sign W||^2 = 0 at a = mean|W|
    a = alpha.clone().requires_grad_(True)
    err = ((w - a.view(-1, 1, 1, 1) * torch.sign(w)) ** 2).sum()
    (g,) = torch.autograd.grad(err, a)
    assert torch.allclose(g, torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_rprelu_formula():
    act = RPReLU(1)
    with torch.no_grad():
        act.gamma.fill_(0.5)
        act.beta.fill_(0.25)
        act.zeta.fill_(-1.0)
    x = torch.tensor([-1.5, 0.5, 2.5]).view(1, 1, 3, 1)
    # prelu(x - 0.5) - 1 = [0.25 * -2 - 1, 0 - 1, 2 - 1]
    assert act(x).flatten().tolist() == [-1.5, -1.0, 1.0]
    assert RPReLU(4).beta.tolist() == [0.25] * 4


def test_binary_conv_equals_reference_float_path():
    torch.manual_seed(1)
    conv = BinaryConv2d(5, 7, binarization=LEARNABLE, rprelu=False)
    with torch.no_grad():
        conv.rsign.threshold.uniform_(-0.3, 0.3)
        conv.alpha.uniform_(0.1, 2.0)
    x = torch.randn(2, 5, 6, 9)
    xb = torch.where(x > conv.rsign.threshold.view(1, -1, 1, 1), 1.0, -1.0)
    wb = torch.where(conv.weight > 0, 1.0, -1.0)
    integer = F.conv2d(xb, wb, padding=1)
    assert torch.equal(integer, integer.round())  # exact integers in float32
    assert torch.equal(conv(x), integer * conv.alpha.view(1, -1, 1, 1))


def test_binary_conv_gradients_reach_every_parameter():
    torch.manual_seed(2)
    conv = BinaryConv2d(4, 4, binarization=LEARNABLE)
    x = torch.randn(1, 4, 8, 8) * 0.5
    conv(x).square().sum().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_learnable_alpha_starts_at_mean_abs_and_is_not_computed_on_the_meta_device(monkeypatch):
    torch.manual_seed(0)
    conv = BinaryConv2d(4, 6, binarization=LEARNABLE)
    assert torch.equal(conv.alpha.data, conv.weight.detach().abs().mean(dim=(1, 2, 3)))
    # A checkpoint's skeleton (binsr.nn.checkpoint builds it on the meta device) must not run a meta op: torch's
    # first meta `abs` in a process took 2.5 s of lazy imports on every command that loaded an attentive model.
    import binsr.nn.binary

    monkeypatch.setattr(binsr.nn.binary, "mean_abs_scale", lambda w: pytest.fail("alpha averaged on the meta device"))
    with torch.device("meta"):
        skeleton = BinaryConv2d(4, 6, binarization=LEARNABLE)
    assert skeleton.alpha.is_meta and skeleton.alpha.shape == (6,)


def test_mean_mode_alpha_has_no_gradient_and_tracks_weights():
    conv = BinaryConv2d(3, 2, binarization=BBCU_BINARIZATION)
    assert conv.alpha is None
    with torch.no_grad():
        conv.weight.fill_(-0.5)
    assert conv.scale().tolist() == [0.5, 0.5]


def test_binary_conv_rejects_wrong_input():
    conv = BinaryConv2d(3, 2)
    with pytest.raises(ValueError, match=r"expected \(N, 3, H, W\) input, got \(1, 4, 5, 5\)"):
        conv(torch.zeros(1, 4, 5, 5))
    with pytest.raises(ValueError, match="alpha_mode='max' is not valid"):
        Binarization("approx", "max", "bbcu")
    with pytest.raises(ValueError, match="sign_backward='tanh' is not valid"):
        Binarization("tanh", "mean", "bbcu")


@pytest.mark.parametrize("alpha_mode", ["mean", "learnable"])
def test_bbcu_weight_gradient_is_bbcus_straight_through_estimator(alpha_mode):
    """BBCU's HardBinaryConv: W_b = (alpha sign W).detach() - clamp(W).detach() + clamp(W); y = conv(x, W_b)."""
    torch.manual_seed(0)
    conv = BinaryConv2d(4, 3, binarization=replace(BBCU_BINARIZATION, alpha_mode=alpha_mode), rprelu=False)
    with torch.no_grad():
        conv.weight.mul_(40)  # some |W| > 1, so the clip window matters
    x = torch.randn(2, 4, 5, 5)
    conv(x).square().sum().backward()
    w = conv.weight.detach().clone().requires_grad_(True)
    alpha = conv.scale().detach().view(-1, 1, 1, 1)
    clipped = w.clamp(-1, 1)
    w_b = (alpha * torch.where(w > 0, 1.0, -1.0)).detach() - clipped.detach() + clipped
    torch.nn.functional.conv2d(conv.rsign(x), w_b, padding=1).square().sum().backward()
    assert 0 < (conv.weight.abs() <= 1).float().mean() < 1
    assert torch.allclose(conv.weight.grad, w.grad, rtol=1e-5, atol=1e-6)
    scaled = BinaryConv2d(4, 3, binarization=Binarization("approx", alpha_mode, "scaled"), rprelu=False)
    scaled.load_state_dict(conv.state_dict())
    scaled(x).square().sum().backward()
    assert torch.allclose(scaled.weight.grad, w.grad * alpha, rtol=1e-5, atol=1e-7)
