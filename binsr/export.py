"""Export a trained binary SR model (edsr-bbcu, edsr-proposed, bbcu-l, bbcu-m) to a `.binsr` file.

The file is an uncompressed numpy .npz (loads with allow_pickle=False): binary convs as their sign bits, one
bit per weight (np.packbits of W > 0 in (O, C, k, k) order), RSign thresholds, alpha and RPReLU as float32;
full-precision convs, attention and the unit scales a1/a2 as float32; and the architecture as a JSON
program, a list of ops that `binsr.runtime.PackedModel` interprets in order, mirroring the model's forward.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from binsr import xnor
from binsr.attention import PixelAttention, SpatialAttention, SqueezeExcitation
from binsr.binary import BinaryConv2d
from binsr.blocks import AttentiveBinaryUnit, BBCUUnit, BinaryUpsampleUnit
from binsr.models import EDSR, SRResNet
from binsr.runtime import FORMAT


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


class _Writer:
    """Collects the arrays of the file under unique names."""

    def __init__(self):
        self.arrays: dict[str, np.ndarray] = {}

    def add(self, name: str, array: np.ndarray) -> str:
        if name in self.arrays:
            raise ValueError(f"array name {name!r} is used twice")
        self.arrays[name] = array
        return name

    def conv(self, name: str, conv: nn.Conv2d) -> dict:
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError(f"{name}: only stride-1, undilated, ungrouped convs are exported; got {conv}")
        bias = None if conv.bias is None else self.add(f"{name}.bias", _numpy(conv.bias))
        return {"weight": self.add(f"{name}.weight", _numpy(conv.weight)), "bias": bias, "padding": conv.padding[0]}

    def binary_conv(self, name: str, conv: BinaryConv2d) -> dict:
        rprelu = rprelu_rows(conv)
        return {
            "signs": self.add(f"{name}.signs", np.packbits(_numpy(conv.weight) > 0)),
            "shape": list(conv.weight.shape),
            "threshold": self.add(f"{name}.threshold", _numpy(conv.rsign.threshold)),
            "alpha": self.add(f"{name}.alpha", _numpy(conv.scale())),
            "rprelu": None if rprelu is None else self.add(f"{name}.rprelu", rprelu),
        }

    def attention(self, name: str, module: nn.Module) -> dict:
        if isinstance(module, nn.Identity):
            return {"kind": "none"}
        if isinstance(module, SqueezeExcitation):
            return {
                "kind": "se",
                "gate": module.gate.form,
                "reduce": self.conv(f"{name}.reduce", module.fc1),
                "expand": self.conv(f"{name}.expand", module.fc2),
            }
        if isinstance(module, (SpatialAttention, PixelAttention)):
            return {
                "kind": "pixel" if isinstance(module, PixelAttention) else "spatial",
                "gate": module.gate.form,
                "conv": self.conv(f"{name}.conv", module.conv),
            }
        raise ValueError(f"{name}: cannot export attention module {type(module).__name__}")


def _unit_op(writer: _Writer, name: str, unit: nn.Module) -> dict:
    if isinstance(unit, BBCUUnit):
        return {"op": "bbcu_unit", "conv": writer.binary_conv(f"{name}.conv", unit.conv)}
    if isinstance(unit, AttentiveBinaryUnit):
        return {
            "op": "attentive_unit",
            "conv": writer.binary_conv(f"{name}.conv", unit.conv),
            "att_bin": writer.attention(f"{name}.att_bin", unit.att_bin),
            "att_res": writer.attention(f"{name}.att_res", unit.att_res),
            "a1": writer.add(f"{name}.a1", _numpy(unit.a1)),
            "a2": writer.add(f"{name}.a2", _numpy(unit.a2)),
        }
    raise ValueError(f"{name}: cannot export body unit {type(unit).__name__}; expected BBCU or attentive units")


def _body_ops(writer: _Writer, blocks: nn.Module) -> list[dict]:
    return [_unit_op(writer, f"body.{b}.{u}", unit) for b, block in enumerate(blocks) for u, unit in enumerate(block)]


def edsr_program(model: EDSR, writer: _Writer) -> list[dict]:
    """EDSR.forward as ops: input scaling, head, binary units, body conv + long skip, upsampler, tail."""
    mean = writer.add("rgb_mean", _numpy(model.rgb_mean))
    ops = [{"op": "normalize", "mean": mean, "k": model.k}, {"op": "conv", **writer.conv("head", model.head)}]
    *blocks, body_conv = model.body
    ops += [{"op": "push"}, *_body_ops(writer, blocks), {"op": "conv", **writer.conv("body_conv", body_conv)}]
    ops.append({"op": "add_popped"})
    for i, stage in enumerate(model.upsampler):
        if isinstance(stage, nn.Conv2d):
            ops.append({"op": "conv", **writer.conv(f"upsampler.{i}", stage)})
        else:
            ops.append({"op": "pixel_shuffle", "factor": stage.upscale_factor})
    ops += [{"op": "conv", **writer.conv("tail", model.tail)}, {"op": "denormalize", "mean": mean, "k": model.k}]
    return ops


def srresnet_program(model: SRResNet, writer: _Writer) -> list[dict]:
    """SRResNet.forward as ops (BBCU-L, BBCU-M): k*x, conv_first, binary body, upsampling, conv_hr, conv_last,
    plus the bilinearly upsampled k*x, all / k."""
    lrelu = {"op": "leaky_relu", "slope": model.lrelu.negative_slope}
    ops = [{"op": "multiply", "k": model.k}, {"op": "push"}]
    ops += [{"op": "conv", **writer.conv("conv_first", model.conv_first)}, lrelu, *_body_ops(writer, model.body)]
    for i, stage in enumerate(model.upsampler):
        if isinstance(stage, BinaryUpsampleUnit):
            conv = writer.binary_conv(f"upsampler.{i}.conv", stage.conv)
            ops.append({"op": "binary_upsample_unit", "conv": conv, "factor": stage.factor})
        elif isinstance(stage, nn.Conv2d):
            ops.append({"op": "conv", **writer.conv(f"upsampler.{i}", stage)})
        elif isinstance(stage, nn.PixelShuffle):
            ops.append({"op": "pixel_shuffle", "factor": stage.upscale_factor})
        else:
            ops.append({"op": "leaky_relu", "slope": stage.negative_slope})
    if isinstance(model.conv_hr, BBCUUnit):
        ops.append(_unit_op(writer, "conv_hr", model.conv_hr))
    else:
        ops.append({"op": "conv", **writer.conv("conv_hr", model.conv_hr)})
    ops += [lrelu, {"op": "conv", **writer.conv("conv_last", model.conv_last)}]
    skip = model.image_skip
    ops.append(
        {
            "op": "add_popped_upsampled",
            "factor": skip.scale_factor,
            "mode": skip.mode,
            "align_corners": skip.align_corners,
        }
    )
    return [*ops, {"op": "divide", "k": model.k}]


def export_model(model: nn.Module, path: str | Path) -> Path:
    """Write `model` (a binary EDSR or SRResNet, used in eval mode) to `path` as a .binsr file."""
    programs = {EDSR: edsr_program, SRResNet: srresnet_program}
    if type(model) not in programs:
        raise ValueError(f"export supports EDSR and SRResNet models; got {type(model).__name__}")
    if not any(isinstance(m, BinaryConv2d) for m in model.modules()):
        raise ValueError(f"{type(model).__name__} has no binary layers; export is for binary models")
    writer = _Writer()
    architecture = {
        "format": FORMAT,
        "scale": model.scale,
        "config": getattr(model, "config", None),
        "program": programs[type(model)](model, writer),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # a file object keeps numpy from appending ".npz" to the name
        np.savez(f, architecture=np.frombuffer(json.dumps(architecture).encode(), np.uint8), **writer.arrays)
    return path
