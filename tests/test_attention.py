import pytest
import torch

from binsr.attention import PixelAttention, SpatialAttention, SqueezeExcitation, make_attention


def test_squeeze_excitation_is_gap_fc_relu_fc_sigmoid():
    torch.manual_seed(0)
    se = SqueezeExcitation(32, reduction=16)
    x = torch.randn(2, 32, 5, 4)
    w1, b1 = se.fc[1].weight.view(2, 32), se.fc[1].bias
    w2, b2 = se.fc[3].weight.view(32, 2), se.fc[3].bias
    s = torch.sigmoid(torch.relu(x.mean(dim=(2, 3)) @ w1.T + b1) @ w2.T + b2)
    assert torch.allclose(se(x), x * s.view(2, 32, 1, 1), atol=1e-6)
    assert se.last_map.shape == (2, 32, 1, 1)


def test_spatial_attention_one_weight_per_pixel():
    torch.manual_seed(0)
    att = SpatialAttention(8)
    x = torch.randn(1, 8, 3, 3)
    m = torch.sigmoid(torch.einsum("c,nchw->nhw", att.conv.weight.view(8), x) + att.conv.bias).unsqueeze(1)
    assert torch.allclose(att(x), x * m, atol=1e-6)
    assert att.last_map.shape == (1, 1, 3, 3)


def test_pixel_attention_one_weight_per_channel_and_pixel():
    torch.manual_seed(0)
    att = PixelAttention(8)
    x = torch.randn(1, 8, 3, 3)
    m = torch.sigmoid(torch.einsum("oc,nchw->nohw", att.conv.weight.view(8, 8), x) + att.conv.bias.view(1, 8, 1, 1))
    assert torch.allclose(att(x), x * m, atol=1e-6)
    assert att.last_map.shape == (1, 8, 3, 3)


def test_attention_parameter_counts():
    assert sum(p.numel() for p in make_attention("se", 64).parameters()) == 64 * 4 + 4 + 4 * 64 + 64
    assert sum(p.numel() for p in make_attention("spatial", 64).parameters()) == 65
    assert sum(p.numel() for p in make_attention("pixel", 64).parameters()) == 64 * 64 + 64
    assert sum(p.numel() for p in make_attention("none", 64).parameters()) == 0


def test_unknown_attention_kind():
    expected = "attention kind 'channel' is not valid; expected one of none, se, spatial, pixel"
    with pytest.raises(ValueError, match=expected):
        make_attention("channel", 8)
