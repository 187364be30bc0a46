import torch

from binsr.attention import PixelAttention
from binsr.blocks import AttentiveBinaryBlock, AttentiveBinaryUnit, BBCUBlock, BBCUUnit, BinaryUpsampleUnit, ResBlock


def randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter away from its initial value so equalities are not trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def test_attentive_unit_without_attention_is_exactly_the_bbcu_unit():
    torch.manual_seed(0)
    bbcu = BBCUUnit(16, alpha_mode="learnable")
    randomise_(bbcu)
    unit = AttentiveBinaryUnit(16, att_bin="none", att_res="none", alpha_mode="learnable", learn_scales=False)
    unit.load_state_dict(bbcu.state_dict() | {"a1": torch.tensor(1.0), "a2": torch.tensor(1.0)})
    x = torch.randn(2, 16, 7, 5)
    assert torch.equal(unit(x), bbcu(x))
    assert not unit.a1.requires_grad and not unit.a2.requires_grad


def test_bbcu_unit_residual_is_outside_the_activation():
    unit = BBCUUnit(4)
    x = torch.randn(1, 4, 5, 5)
    assert torch.equal(unit(x), unit.conv(x) + x)


def test_attentive_unit_formula_and_scale_gradients():
    torch.manual_seed(1)
    unit = AttentiveBinaryUnit(8, att_bin="pixel", att_res="spatial")
    randomise_(unit, 3)
    x = torch.randn(1, 8, 6, 6)
    expected = unit.a1 * unit.att_bin(unit.conv(x)) + unit.a2 * unit.att_res(x)
    assert torch.equal(unit(x), expected)
    unit(x).square().mean().backward()
    assert unit.a1.grad.abs() > 0 and unit.a2.grad.abs() > 0
    assert isinstance(unit.att_bin, PixelAttention)


def test_blocks_have_two_units_and_keep_shape():
    x = torch.randn(1, 8, 6, 6)
    for block in (BBCUBlock(8), AttentiveBinaryBlock(8, att_bin="se", att_res="se"), ResBlock(8)):
        assert block(x).shape == x.shape
    assert len(BBCUBlock(8)) == 2 and len(AttentiveBinaryBlock(8)) == 2


def test_binary_upsample_unit_residual_is_nearest_upsampled_input():
    unit = BinaryUpsampleUnit(4, factor=2)
    x = torch.randn(1, 4, 3, 5)
    out = unit(x)
    assert out.shape == (1, 4, 6, 10)
    expected = torch.nn.functional.pixel_shuffle(unit.conv(x), 2) + x.repeat_interleave(2, 2).repeat_interleave(2, 3)
    assert torch.equal(out, expected)


def test_resblock_res_scale():
    block = ResBlock(4, res_scale=0.1)
    x = torch.randn(1, 4, 5, 5)
    assert torch.allclose(block(x), x + 0.1 * block.body(x))
