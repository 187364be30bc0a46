import math

import pytest
import torch
from torch import nn

from binsr.nn.attention import (
    Gate,
    PixelAttention,
    SpatialAttention,
    SqueezedConv,
    SqueezeExcitation,
    make_attention,
)


def _captured_map(att, x):
    maps = []
    handle = att.gate.register_forward_hook(lambda m, i, out: maps.append(out))
    out = att(x)
    handle.remove()
    return out, maps[0]


def test_squeeze_excitation_is_gap_fc_relu_fc_sigmoid():
    torch.manual_seed(0)
    se = SqueezeExcitation(32, reduction=16)
    x = torch.randn(2, 32, 5, 4)
    w1, b1 = se.fc1.weight.view(2, 32), se.fc1.bias
    w2, b2 = se.fc2.weight.view(32, 2), se.fc2.bias
    s = torch.sigmoid(torch.relu(x.mean(dim=(2, 3)) @ w1.T + b1) @ w2.T + b2)
    out, m = _captured_map(se, x)
    assert torch.allclose(out, x * s.view(2, 32, 1, 1), atol=1e-6)
    assert m.shape == (2, 32, 1, 1)


def test_squeezed_conv_is_the_1x1_conv_it_replaces():
    torch.manual_seed(0)
    conv, squeezed = nn.Conv2d(32, 2, 1), SqueezedConv(32, 2, 1)
    squeezed.load_state_dict(conv.state_dict())  # the same keys and shapes: stored SE checkpoints load
    x = torch.randn(3, 32, 1, 1)
    torch.testing.assert_close(squeezed(x), conv(x), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(N, C, 1, 1\) map, got shape \(3, 32, 2, 2\)"):
        squeezed(torch.randn(3, 32, 2, 2))


def test_spatial_attention_one_weight_per_pixel():
    torch.manual_seed(0)
    att = SpatialAttention(8)
    x = torch.randn(1, 8, 3, 3)
    m = torch.sigmoid(torch.einsum("c,nchw->nhw", att.conv.weight.view(8), x) + att.conv.bias).unsqueeze(1)
    out, hooked = _captured_map(att, x)
    assert torch.allclose(out, x * m, atol=1e-6)
    assert hooked.shape == (1, 1, 3, 3)


def test_pixel_attention_one_weight_per_channel_and_pixel():
    torch.manual_seed(0)
    att = PixelAttention(8)
    x = torch.randn(1, 8, 3, 3)
    m = torch.sigmoid(torch.einsum("oc,nchw->nohw", att.conv.weight.view(8, 8), x) + att.conv.bias.view(1, 8, 1, 1))
    out, hooked = _captured_map(att, x)
    assert torch.allclose(out, x * m, atol=1e-6)
    assert hooked.shape == (1, 8, 3, 3)


def test_gate_forms_and_their_inverse():
    z = torch.tensor([-2.0, 0.0, 3.0])
    assert torch.equal(Gate("sigmoid")(z), torch.sigmoid(z))
    assert torch.equal(Gate("2sigmoid")(z), 2 * torch.sigmoid(z))
    assert Gate("2sigmoid")(torch.zeros(1)).item() == 1.0
    assert Gate("sigmoid").inverse(0.95) == pytest.approx(math.log(19))
    assert Gate("2sigmoid").inverse(1.0) == 0.0
    with pytest.raises(ValueError, match=r"gate_init=1.0 is out of range for the 'sigmoid' gate; expected \(0, 1.0\)"):
        Gate("sigmoid").inverse(1.0)
    with pytest.raises(ValueError, match="gate form 'tanh' is not valid; expected one of sigmoid, 2sigmoid"):
        Gate("tanh")


@pytest.mark.parametrize("kind", ["se", "spatial", "pixel"])
def test_gate_init_one_starts_every_attention_at_the_identity(kind):
    torch.manual_seed(0)
    att = make_attention(kind, 16, gate="2sigmoid", gate_init=1.0)
    x = torch.randn(2, 16, 5, 6)
    assert torch.equal(att(x), x)
    half = make_attention(kind, 16, gate="sigmoid", gate_init=0.95)
    assert torch.allclose(half(x), 0.95 * x, atol=1e-6)


@pytest.mark.parametrize("kind", ["se", "spatial", "pixel"])
def test_input_scale_is_what_the_logits_see_and_the_map_still_multiplies_x(kind):
    """Eq. (9b): out = x * gate(z(s x)); the same weights at s = 1 fed s x give the same map."""
    torch.manual_seed(0)
    scaled = make_attention(kind, 16, input_scale=1 / 65)
    plain = make_attention(kind, 16)
    plain.load_state_dict(scaled.state_dict())
    x = 65 * torch.randn(2, 16, 5, 6)
    gate_map = plain.attention_map(x * (1 / 65))
    assert torch.equal(scaled.attention_map(x), gate_map)
    assert torch.equal(scaled(x), x * gate_map)
    assert "input_scale=0.015384615384615385" in repr(scaled) and "input_scale" not in repr(plain)
    assert type(scaled)(16, input_scale=1 / 65).input_scale == scaled.input_scale  # the class takes it directly
    with pytest.raises(ValueError, match="input_scale=0.0; expected a positive finite number"):
        make_attention(kind, 16, input_scale=0.0)


def test_one_adam_step_moves_the_logits_of_amplified_features_k_times_further():
    """Why (9b): Adam's first step moves every weight by about lr whatever its gradient's size, so a 1x1 conv's
    logits move by lr * sum_c |s x_c|: k times further when the gate sees k-amplified features (s = 1)."""
    torch.manual_seed(0)
    x = 65 * torch.randn(2, 16, 5, 6)  # features of a body amplified by k = 65
    target = torch.randn(2, 16, 5, 6)
    moves = {}
    for scale in (1.0, 1 / 65):
        att = make_attention("spatial", 16, gate="2sigmoid", gate_init=1.0, input_scale=scale)
        optimizer = torch.optim.Adam(att.parameters(), lr=2e-3)
        ((att(x) - 65 * target) ** 2).mean().backward()
        optimizer.step()
        with torch.no_grad():
            moves[scale] = att.logits(x * scale) - att.conv.bias  # the weights' part of the new logits
    assert torch.allclose(moves[1.0], 65 * moves[1 / 65], rtol=1e-4, atol=1e-5)
    assert moves[1.0].abs().max() > 1.0 > 0.05 > moves[1 / 65].abs().max()  # a gate 2 sigmoid(z) = 1 at z = 0


def test_attention_parameter_counts():
    assert sum(p.numel() for p in make_attention("se", 64).parameters()) == 64 * 4 + 4 + 4 * 64 + 64
    assert sum(p.numel() for p in make_attention("spatial", 64).parameters()) == 65
    assert sum(p.numel() for p in make_attention("pixel", 64).parameters()) == 64 * 64 + 64
    assert sum(p.numel() for p in make_attention("none", 64).parameters()) == 0


def test_unknown_attention_kind():
    expected = "attention kind 'channel' is not valid; expected one of none, se, spatial, pixel"
    with pytest.raises(ValueError, match=expected):
        make_attention("channel", 8)
