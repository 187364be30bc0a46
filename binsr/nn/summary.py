"""Model summary in BBCU's convention (what larq's `summary` does, for PyTorch and SR).

(15) OPs    = FLOPs + BOPs / 64        FLOPs = full-precision multiply-accumulates, BOPs = binary ones
(16) Params = FP params + binary params / 32

FP params are conv and linear weights and biases; the per-channel RSign thresholds, RPReLU parameters, alpha
scales and a1/a2 are left out of (16), as in BBCU, and reported on a line of their own.

Counting is done with forward hooks on a copy of the model on the meta device (shapes only, no arithmetic):
nn.Conv2d and nn.Linear count FLOPs, BinaryConv2d counts BOPs, and nn.Upsample counts one op per output
element for the image-space skip of BBCU's nets. BBCU's Table 1 includes that skip: MACs alone give
1.82 G for BBCU-M x2 and 79.19 G for BBCU-L x4 where the table prints 1.83 G and 79.20 G.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field

import torch
from torch import nn

from binsr.nn.binary import BinaryConv2d


@dataclass
class LayerStats:
    name: str
    kind: str  # "fp", "binary" or "skip"
    out_shape: tuple[int, ...]
    params: int = 0
    flops: int = 0
    bops: int = 0


@dataclass
class ModelSummary:
    layers: list[LayerStats] = field(default_factory=list)
    fp_params: int = 0
    binary_params: int = 0
    per_channel_params: int = 0

    @property
    def flops(self) -> int:
        return sum(layer.flops for layer in self.layers)

    @property
    def bops(self) -> int:
        return sum(layer.bops for layer in self.layers)

    @property
    def ops(self) -> float:
        """Eq. (15)."""
        return self.flops + self.bops / 64

    @property
    def params(self) -> float:
        """Eq. (16)."""
        return self.fp_params + self.binary_params / 32

    @property
    def packed_bytes(self) -> int:
        """Storage with binary weights packed to one bit and every other parameter in float32."""
        return (self.binary_params + 7) // 8 + 4 * (self.fp_params + self.per_channel_params)

    @property
    def float_bytes(self) -> int:
        """Storage with every parameter in float32."""
        return 4 * (self.fp_params + self.binary_params + self.per_channel_params)

    def __str__(self) -> str:
        header = f"{'layer':<34} {'kind':<6} {'output':<18} {'params':>10} {'MACs':>10} {'binary MACs':>12}"
        lines = [header, "-" * len(header)]
        for layer in self.layers:
            shape = "x".join(str(d) for d in layer.out_shape[1:])
            lines.append(
                f"{layer.name:<34} {layer.kind:<6} {shape:<18} {layer.params:>10,} "
                f"{_si(layer.flops):>10} {_si(layer.bops):>12}"
            )
        lines += [
            "-" * len(header),
            f"FLOPs {_si(self.flops)}   BOPs {_si(self.bops)}   OPs = FLOPs + BOPs/64 = {_si(self.ops)}",
            f"Params = FP {self.fp_params:,} + binary {self.binary_params:,}/32 = {self.params / 1e3:,.1f} K",
            f"per-channel parameters (thresholds, RPReLU, alpha, a1/a2), not in Params: {self.per_channel_params:,}",
            f"storage: {self.packed_bytes / 1024:,.1f} KiB with 1-bit weights vs "
            f"{self.float_bytes / 1024:,.1f} KiB float32 ({self.float_bytes / max(self.packed_bytes, 1):.1f}x smaller)",
        ]
        return "\n".join(lines)


def _si(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{n:.0f}"


def _conv_macs(weight: torch.Tensor, out: torch.Tensor) -> int:
    """Multiply-accumulates of a convolution: each output element costs weight[0].numel() = (in/groups)*kh*kw."""
    return out[0].numel() * weight[0].numel()


def summary(model: nn.Module, lr_size: tuple[int, int] = (180, 320)) -> ModelSummary:
    """Per-layer and total cost of `model` for one LR input of `lr_size` = (height, width) (BBCU: 180x320)."""
    if len(lr_size) != 2 or min(lr_size) < 1:
        raise ValueError(f"lr_size={lr_size!r} must be (height, width) with positive sides")
    result = ModelSummary()
    for module in model.modules():
        if isinstance(module, BinaryConv2d):
            result.binary_params += module.weight.numel()
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            result.fp_params += sum(p.numel() for p in module.parameters(recurse=False))
    result.per_channel_params = sum(p.numel() for p in model.parameters()) - result.fp_params - result.binary_params

    meta_model = copy.deepcopy(model).to("meta").eval()

    def hook(name: str):
        def record(module: nn.Module, inputs, out: torch.Tensor) -> None:
            stats = LayerStats(name, "fp", tuple(out.shape))
            if isinstance(module, BinaryConv2d):
                stats.kind, stats.params, stats.bops = "binary", module.weight.numel(), _conv_macs(module.weight, out)
            elif isinstance(module, nn.Conv2d):
                stats.params = sum(p.numel() for p in module.parameters(recurse=False))
                stats.flops = _conv_macs(module.weight, out)
            elif isinstance(module, nn.Linear):
                stats.params = sum(p.numel() for p in module.parameters(recurse=False))
                stats.flops = out[0].numel() * module.in_features
            else:  # nn.Upsample: the image-space skip, one add per output element
                stats.kind, stats.flops = "skip", out[0].numel()
            result.layers.append(stats)

        return record

    handles = [
        m.register_forward_hook(hook(name))
        for name, m in meta_model.named_modules()
        if isinstance(m, (BinaryConv2d, nn.Conv2d, nn.Linear, nn.Upsample))
    ]
    try:
        with torch.no_grad():
            meta_model(torch.zeros(1, 3, *lr_size, device="meta"))
    finally:
        for h in handles:
            h.remove()
    return result
