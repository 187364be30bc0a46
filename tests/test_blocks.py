from dataclasses import replace

import torch

from binsr.nn.attention import PixelAttention
from binsr.nn.blocks import AttentiveBinaryBlock, AttentiveBinaryUnit, BBCUBlock, BBCUUnit, BinaryUpsampleUnit, ResBlock
from binsr.nn.config import BBCU_BINARIZATION, Attention

LEARNABLE = replace(BBCU_BINARIZATION, alpha_mode="learnable")
# the papers' gates (sigmoid, PyTorch's init) seeing x as it is
PAPERS = Attention(
    att_bin="none", att_res="none", gate="sigmoid", gate_init=None, gate_input="amplified", a1_init=1.0, a2_init=1.0
)


def randomise_(module: torch.nn.Module, seed: int = 0) -> None:
    """Move every parameter away from its initial value so equalities are not trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)


def test_attentive_unit_without_attention_is_exactly_the_bbcu_unit():
    torch.manual_seed(0)
    bbcu = BBCUUnit(16, LEARNABLE)
    randomise_(bbcu)
    unit = AttentiveBinaryUnit(16, LEARNABLE, PAPERS, learn_scales=False)
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
    unit = AttentiveBinaryUnit(8, LEARNABLE, replace(PAPERS, att_bin="pixel", att_res="spatial"))
    randomise_(unit, 3)
    x = torch.randn(1, 8, 6, 6)
    branch = unit.conv(x)
    # each scalar multiplies its gate map, not the features (one pass less): exactly this order of operations
    folded = branch * (unit.a1 * unit.att_bin.attention_map(branch)) + x * (unit.a2 * unit.att_res.attention_map(x))
    assert torch.equal(unit(x), folded)
    textbook = unit.a1 * unit.att_bin(branch) + unit.a2 * unit.att_res(x)
    torch.testing.assert_close(unit(x), textbook, rtol=1e-6, atol=1e-6)
    unit(x).square().mean().backward()
    # d/da1 of mean(out^2) = mean(2 out * Att_b(branch)), and likewise for a2 with Att_r(x)
    out = textbook.detach()
    torch.testing.assert_close(unit.a1.grad, (2 * out * unit.att_bin(branch)).mean().detach())
    torch.testing.assert_close(unit.a2.grad, (2 * out * unit.att_res(x)).mean().detach())
    assert isinstance(unit.att_bin, PixelAttention)


def _grid(corner: float, edge: float, centre: float) -> torch.Tensor:
    return torch.tensor([[corner, edge, corner], [edge, centre, edge], [corner, edge, corner]]).view(1, 1, 3, 3)


def test_blocks_on_a_constant_image_give_the_hand_computed_numbers():
    # A constant 3x3 kernel on a constant 3x3 image, zero-padded: a corner sums 4 pixels, an edge 6, the centre 9.
    ones = torch.ones(1, 1, 3, 3)
    bbcu = BBCUBlock(1)
    for unit in bbcu:
        unit.conv.weight.data.fill_(0.5)  # sign(W) = +1, alpha = mean|W| = 0.5
    # each unit adds 0.5 * (4, 6, 9) to a positive input: (1 + 2 + 2, 1 + 3 + 3, 1 + 4.5 + 4.5)
    assert torch.equal(bbcu(ones), _grid(5, 7, 10))
    # a negative input has sign -1 everywhere, and RPReLU's slope 0.25 scales the negative sums: -0.25 * 0.5 * (4, 6, 9)
    assert torch.equal(bbcu(-ones), _grid(-2, -2.5, -3.25))
    attentive = AttentiveBinaryBlock(
        1, binarization=BBCU_BINARIZATION, attention=replace(PAPERS, a1_init=2.0, a2_init=0.5)
    )
    for unit in attentive:
        unit.conv.weight.data.fill_(0.5)
    # unit 1: 2 * 0.5 * (4, 6, 9) + 0.5 * 1 = (4.5, 6.5, 9.5); unit 2: (4, 6, 9) + 0.5 * (4.5, 6.5, 9.5)
    assert torch.equal(attentive(ones), _grid(6.25, 9.25, 13.75))
    res = ResBlock(1, res_scale=0.5)
    for conv in (res.body[0], res.body[2]):
        conv.weight.data.fill_(1.0)
        conv.bias.data.zero_()
    # the first conv gives (4, 6, 9); the second sums those over each 3x3 neighbourhood: (25, 35, 49)
    assert torch.equal(res(ones), _grid(1 + 12.5, 1 + 17.5, 1 + 24.5))


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
