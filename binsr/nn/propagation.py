"""Signal propagation through a residual body: does the input's signal survive the blocks?

For a body input h_0 (the head's output) and the output h_i of block i,

(17) cosine_i = <h_0, h_i> / (|h_0| |h_i|)                 1: block i kept the signal, ~0: it is gone
(18) branch ratio of a unit = |branch| / |skip|           for the unit's two summands (`branches()` of
     ResBlock, BBCUUnit (8) and AttentiveBinaryUnit (12)), averaged over the units of a block

BBCU's amplification k (14) keeps (18) small, so a binary branch perturbs the residual stream instead of
replacing it; without k (or with attention gates near 0.5 on the skip) the signal decays block after block.
A trained attentive net can also learn a1 -> 0 and switch its binary branches off: `binary_branches_off`
measures what the binary branches contribute.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from binsr.nn.blocks import AttentiveBinaryUnit, BBCUUnit


@dataclass(frozen=True)
class BlockSignal:
    block: int  # 1-based position in the body
    cosine: float  # (17)
    branch_ratio: float  # (18)


def _units(block: nn.Module) -> list[nn.Module]:
    """The modules of `block` with `branches()` (the block itself for an EDSR ResBlock)."""
    return [m for m in block.modules() if hasattr(m, "branches")]


def body_blocks(model: nn.Module) -> list[nn.Module]:
    """The blocks of an EDSR-style model's body (`model.body` = blocks + a final conv)."""
    body = getattr(model, "body", None)
    if not isinstance(body, nn.Sequential) or len(body) < 2:
        raise ValueError(f"{type(model).__name__} has no EDSR body (nn.Sequential of blocks + conv)")
    return list(body)[:-1]


@contextmanager
def block_outputs(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """A list that holds, while the with block lasts, the outputs of `body_blocks(model)` in `model`'s latest
    forward pass, in order (a pass empties it as it enters the first block), read off the forward pass itself."""
    blocks = body_blocks(model)
    outputs: list[torch.Tensor] = []
    hooks = [blocks[0].register_forward_pre_hook(lambda m, args: outputs.clear())]
    hooks += [b.register_forward_hook(lambda m, args, out: outputs.append(out)) for b in blocks]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


@torch.no_grad()
def signal_propagation(model: nn.Module, lr: torch.Tensor) -> list[BlockSignal]:
    """(17) and (18) for every block of an EDSR-style model's body (`model.body` = blocks + a final conv),
    from one forward pass on `lr` ((N, 3, h, w) in [0, 1]); the model should be in eval mode."""
    blocks = body_blocks(model)
    if not all(_units(b) for b in blocks):
        raise ValueError("every body block needs units with branches() (ResBlock, BBCUUnit, AttentiveBinaryUnit)")
    unit_inputs: dict[nn.Module, torch.Tensor] = {}
    body_input: list[torch.Tensor] = []
    hooks = [blocks[0].register_forward_pre_hook(lambda m, args: body_input.append(args[0]))]
    for block in blocks:
        for unit in _units(block):
            hooks.append(unit.register_forward_pre_hook(lambda m, args: unit_inputs.__setitem__(m, args[0])))
    try:
        with block_outputs(model) as outputs:
            model(lr)
    finally:
        for hook in hooks:
            hook.remove()
    h0 = body_input[0].flatten()
    rows = []
    for i, (block, h) in enumerate(zip(blocks, outputs, strict=True), start=1):
        ratios = []
        for unit in _units(block):
            branch, skip = unit.branches(unit_inputs[unit])
            ratios.append((branch.norm() / skip.norm().clamp_min(1e-30)).item())
        cosine = torch.nn.functional.cosine_similarity(h0, h.flatten(), dim=0).item()
        rows.append(BlockSignal(i, cosine, sum(ratios) / len(ratios)))
    return rows


@contextmanager
def binary_branches_off(model: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every binary unit (8), (12) of `model` outputs its skip term alone (a2 Att_r(x), or x):
    the PSNR the model keeps without its binary branches shows how much it relies on them."""
    units = [m for m in model.modules() if isinstance(m, (BBCUUnit, AttentiveBinaryUnit))]
    if not units:
        raise ValueError(f"{type(model).__name__} has no binary units (BBCUUnit, AttentiveBinaryUnit)")
    hooks = [unit.register_forward_hook(lambda m, args, out: m.branches(args[0])[1]) for unit in units]
    try:
        yield model
    finally:
        for hook in hooks:
            hook.remove()
