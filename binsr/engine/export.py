"""Export a trained binary SR model (edsr-bbcu, edsr-proposed, bbcu-l, bbcu-m) to a `.binsr` file.

The model's forward becomes a program of `binsr.engine.runtime` ops that `binsr.engine.runtime.PackedModel` runs in
order: binary convs as their sign bits, one bit per weight (np.packbits of W > 0 in (O, C, k, k) order), with RSign
thresholds, alpha and RPReLU in float32; full-precision convs, attention and the unit scales a1/a2 in float32. Whatever
the ops cannot represent exactly (a stride, a padding mode other than zeros, an unknown module) is refused with an
error, never approximated. The file is an uncompressed numpy .npz (loads with allow_pickle=False), written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from binsr.base.files import atomic_write
from binsr.engine import runtime, xnor
from binsr.engine.runtime import Op
from binsr.nn.attention import ATTENTION_KINDS, make_attention
from binsr.nn.binary import BinaryConv2d
from binsr.nn.blocks import AttentiveBinaryUnit, BBCUUnit, BinaryUpsampleUnit
from binsr.nn.models import EDSR, SRResNet


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def rprelu_rows(conv: BinaryConv2d) -> np.ndarray | None:
    """RPReLU's (gamma, beta, zeta) as a (3, O) float32 array, or None without RPReLU."""
    if conv.rprelu is None:
        return None
    return np.stack([_numpy(conv.rprelu.gamma), _numpy(conv.rprelu.beta), _numpy(conv.rprelu.zeta)])


def pack_binary_conv(conv: BinaryConv2d) -> xnor.PackedConv:
    """A BinaryConv2d's weights, alpha and RPReLU in XNOR-kernel form (its RSign threshold stays separate)."""
    return xnor.pack_conv(_numpy(conv.weight), _numpy(conv.scale()), rprelu_rows(conv))


def conv_op(name: str, conv: nn.Module) -> runtime.Conv:
    """An nn.Conv2d as a runtime Conv; refuses what F.conv2d with one zero padding would not reproduce."""
    if not isinstance(conv, nn.Conv2d):
        raise ValueError(f"{name}: expected an nn.Conv2d, got {type(conv).__name__}")
    padding = conv.padding
    if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
        raise ValueError(f"{name}: only stride-1, undilated, ungrouped convs are exported; got {conv}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"{name}: padding_mode {conv.padding_mode!r} is not exported; expected 'zeros'")
    if isinstance(padding, str) or padding[0] != padding[1]:
        raise ValueError(f"{name}: padding {padding!r} is not exported; expected the same number on each side")
    bias = None if conv.bias is None else _numpy(conv.bias)
    return runtime.Conv(name, _numpy(conv.weight), bias, padding[0])


def binary_conv_op(name: str, conv: BinaryConv2d) -> runtime.BinaryConv:
    """A BinaryConv2d as its sign bits, threshold, alpha and RPReLU rows."""
    k = conv.kernel_size
    if k not in xnor.KERNEL_SIZES or conv.padding != k // 2:
        raise ValueError(f"{name}: kernel size {k} with padding {conv.padding} is not exported; expected k in "
                         f"{xnor.KERNEL_SIZES} with padding k // 2")  # fmt: skip
    weight = _numpy(conv.weight)
    return runtime.BinaryConv(
        name, np.packbits(weight > 0), weight.shape, _numpy(conv.rsign.threshold), _numpy(conv.scale()),
        rprelu_rows(conv),
    )  # fmt: skip


def attention_op(name: str, module: nn.Module, channels: int) -> runtime.Attention:
    """An attention module as kind, gate form, state dict and input scale; refused unless `make_attention` rebuilds
    it exactly."""
    kind = next((k for k in ATTENTION_KINDS if type(module) is type(make_attention(k, channels))), None)
    if kind is None:
        raise ValueError(f"{name}: cannot export attention module {type(module).__name__}")
    gate = module.gate.form if kind != "none" else "sigmoid"
    state = {k: _numpy(v) for k, v in module.state_dict().items()}
    op = runtime.Attention(name, kind, gate, channels, state, getattr(module, "input_scale", 1.0))
    try:
        rebuilt = op.module
    except RuntimeError as error:  # load_state_dict: other shapes, e.g. another SE reduction
        raise ValueError(f"{name}: {type(module).__name__} does not fit make_attention({kind!r}, {channels}): "
                         f"{str(error).splitlines()[-1].strip()}") from None  # fmt: skip
    if str(rebuilt) != str(module):
        raise ValueError(f"{name}: {module} differs from what the runtime would build, {rebuilt}")
    return op


def unit_ops(units: list[tuple[str, nn.Module]]) -> list[Op]:
    """Named binary units as ops; consecutive BBCU units become one BBCUUnits op (packed from unit to unit)."""
    ops: list[Op] = []
    for name, unit in units:
        if isinstance(unit, BBCUUnit):
            conv = binary_conv_op(f"{name}.conv", unit.conv)
            if ops and isinstance(ops[-1], runtime.BBCUUnits):
                ops[-1] = runtime.BBCUUnits((*ops[-1].convs, conv))
            else:
                ops.append(runtime.BBCUUnits((conv,)))
        elif isinstance(unit, AttentiveBinaryUnit):
            channels = unit.conv.in_channels
            ops.append(runtime.AttentiveUnit(
                name, binary_conv_op(f"{name}.conv", unit.conv),
                attention_op(f"{name}.att_bin", unit.att_bin, channels),
                attention_op(f"{name}.att_res", unit.att_res, channels), _numpy(unit.a1), _numpy(unit.a2),
            ))  # fmt: skip
        else:
            raise ValueError(f"{name}: cannot export body unit {type(unit).__name__}; expected BBCU or attentive units")
    return ops


def _blocks(prefix: str, blocks: nn.Module) -> list[tuple[str, nn.Module]]:
    """The units of a body of blocks (each a sequence of units) with their module names."""
    return [(f"{prefix}.{b}.{u}", unit) for b, block in enumerate(blocks) for u, unit in enumerate(block)]


def edsr_program(model: EDSR) -> list[Op]:
    """EDSR.forward as ops: input scaling, head, binary units, body conv + long skip, upsampler, tail."""
    mean = _numpy(model.rgb_mean)
    ops: list[Op] = [runtime.Normalize("rgb_mean", mean, model.k), conv_op("head", model.head), runtime.Push()]
    *blocks, body_conv = model.body
    ops += [*unit_ops(_blocks("body", blocks)), conv_op(f"body.{len(blocks)}", body_conv), runtime.AddPopped()]
    for i, stage in enumerate(model.upsampler):
        if isinstance(stage, nn.PixelShuffle):
            ops.append(runtime.PixelShuffle(stage.upscale_factor))
        else:
            ops.append(conv_op(f"upsampler.{i}", stage))
    return [*ops, conv_op("tail", model.tail), runtime.Denormalize("rgb_mean", mean, model.k)]


def _leaky_relu(name: str, module: nn.Module) -> runtime.LeakyReLU:
    if not isinstance(module, nn.LeakyReLU):
        raise ValueError(f"{name}: expected an nn.LeakyReLU, got {type(module).__name__}")
    return runtime.LeakyReLU(module.negative_slope)


def srresnet_program(model: SRResNet) -> list[Op]:
    """SRResNet.forward as ops (BBCU-L, BBCU-M): k*x, conv_first, binary body, upsampling, conv_hr, conv_last,
    plus the upsampled k*x, all / k."""
    lrelu = _leaky_relu("lrelu", model.lrelu)
    ops: list[Op] = [runtime.Multiply(model.k), runtime.Push(), conv_op("conv_first", model.conv_first), lrelu]
    ops += unit_ops(_blocks("body", model.body))
    for i, stage in enumerate(model.upsampler):
        name = f"upsampler.{i}"
        if isinstance(stage, BinaryUpsampleUnit):
            ops.append(runtime.BinaryUpsampleUnit(binary_conv_op(f"{name}.conv", stage.conv), stage.factor))
        elif isinstance(stage, nn.PixelShuffle):
            ops.append(runtime.PixelShuffle(stage.upscale_factor))
        elif isinstance(stage, nn.LeakyReLU):
            ops.append(_leaky_relu(name, stage))
        else:
            ops.append(conv_op(name, stage))
    if isinstance(model.conv_hr, BBCUUnit):
        ops += unit_ops([("conv_hr", model.conv_hr)])
    else:
        ops.append(conv_op("conv_hr", model.conv_hr))
    ops += [lrelu, conv_op("conv_last", model.conv_last)]
    skip = model.image_skip
    if not isinstance(skip, nn.Upsample) or skip.size is not None:
        raise ValueError(f"image_skip: expected an nn.Upsample by a scale factor, got {skip}")
    return [*ops, runtime.AddPoppedUpsampled(skip.scale_factor, skip.mode, skip.align_corners), runtime.Divide(model.k)]


def pack_model(model: nn.Module) -> runtime.PackedModel:
    """`model` (a binary EDSR or SRResNet, used in eval mode) as a PackedModel in memory, as `export_model` writes
    it: no file involved."""
    programs = {EDSR: edsr_program, SRResNet: srresnet_program}
    if type(model) not in programs:
        raise ValueError(f"export supports EDSR and SRResNet models; got {type(model).__name__}")
    if not any(isinstance(m, BinaryConv2d) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no binary layers; export is for binary models")
    return runtime.PackedModel(model.scale, getattr(model, "config", None), programs[type(model)](model))


def export_model(model: nn.Module, path: str | Path) -> Path:
    """Write `model` (a binary EDSR or SRResNet, used in eval mode) to `path` as a .binsr file, atomically."""
    packed = pack_model(model)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as tmp, open(tmp, "wb") as f:  # a file object: numpy would append ".npz" to a name
        runtime.save_program(f, packed.scale, packed.config, packed.program)
    return path
