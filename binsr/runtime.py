"""Run a `.binsr` file (see `binsr.export`) with the XNOR engine; needs numpy, numba and torch, no training code.

Binary units run in `binsr.xnor` on NHWC maps; runs of BBCU units stay packed between units, each one fusing
alpha, RPReLU, the residual add and the next unit's RSign. Full-precision ops (head, body conv, upsampler,
tail, attention) run as torch.nn.functional calls on NCHW tensors, the same calls in the same layout as the
float model, so they round the same way: every binary layer sees the float model's input bit for bit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from binsr import xnor
from binsr.attention import Gate

FORMAT = "binsr-packed-1"


@dataclass(frozen=True)
class BinaryLayer:
    """A binary conv as the runtime holds it: the RSign threshold of its input and the packed conv."""

    threshold: np.ndarray
    conv: xnor.PackedConv


def _to_nhwc(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()


class PackedModel:
    """An exported model; `model(lr)` maps an (N, 3, h, w) float image in [0, 1] to its super-resolution."""

    def __init__(self, architecture: dict, arrays: dict[str, np.ndarray]):
        if architecture.get("format") != FORMAT:
            raise ValueError(f"architecture format {architecture.get('format')!r} is not {FORMAT!r}")
        self.scale, self.config, self.program = architecture["scale"], architecture["config"], architecture["program"]
        self.tensors = {name: torch.from_numpy(array) for name, array in arrays.items() if array.dtype == np.float32}
        self.binary = {
            op["conv"]["signs"]: self._binary_layer(op["conv"], arrays)
            for op in self.program
            if op["op"] in ("bbcu_unit", "attentive_unit", "binary_upsample_unit")
        }

    @staticmethod
    def _binary_layer(spec: dict, arrays: dict[str, np.ndarray]) -> BinaryLayer:
        shape = tuple(spec["shape"])
        signs = np.unpackbits(arrays[spec["signs"]], count=int(np.prod(shape))).reshape(shape)
        rprelu = None if spec["rprelu"] is None else arrays[spec["rprelu"]]
        conv = xnor.pack_conv(np.where(signs, 1.0, -1.0).astype(np.float32), arrays[spec["alpha"]], rprelu)
        return BinaryLayer(arrays[spec["threshold"]], conv)

    def _conv(self, x: torch.Tensor, spec: dict) -> torch.Tensor:
        bias = None if spec["bias"] is None else self.tensors[spec["bias"]]
        return F.conv2d(x, self.tensors[spec["weight"]], bias, padding=spec["padding"])

    def _attention(self, x: torch.Tensor, spec: dict) -> torch.Tensor:
        """x * m(x), with the op sequence of binsr.attention."""
        if spec["kind"] == "none":
            return x
        gate = Gate(spec.get("gate", "sigmoid"))
        if spec["kind"] == "se":
            hidden = F.relu(self._conv(F.adaptive_avg_pool2d(x, 1), spec["reduce"]))
            return x * gate(self._conv(hidden, spec["expand"]))
        return x * gate(self._conv(x, spec["conv"]))

    def _bbcu_units(self, x: torch.Tensor, layers: list[BinaryLayer], trace: list | None) -> torch.Tensor:
        """x <- x + RPReLU(BinaryConv(x)) for each layer, in place on one NHWC map, packed between units."""
        y = _to_nhwc(x)
        packed = xnor.pack_activations(y, layers[0].threshold)
        for i, layer in enumerate(layers):
            if trace is not None:
                trace.append((layer, packed))
            following = layers[i + 1].threshold if i + 1 < len(layers) else None
            y, packed = xnor.xnor_conv(packed, layer.conv, residual=y, next_threshold=following, out=y)
        return _to_nchw(y)

    def _binary_branch(self, x: torch.Tensor, op: dict, trace: list | None) -> torch.Tensor:
        """RPReLU(BinaryConv(x)) of the op's binary conv, NCHW."""
        layer = self.binary[op["conv"]["signs"]]
        packed = xnor.pack_activations(_to_nhwc(x), layer.threshold)
        if trace is not None:
            trace.append((layer, packed))
        return _to_nchw(xnor.xnor_conv(packed, layer.conv)[0])

    def __call__(self, lr: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        """Super-resolve `lr`; with `trace`, append (BinaryLayer, packed input) for every binary layer run."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, h, w) image batch, got shape {tuple(lr.shape)}")
        return self.run(lr.float().contiguous(), self.program, trace)

    @torch.no_grad()
    def run(self, x: torch.Tensor, ops: list[dict], trace: list | None = None) -> torch.Tensor:
        """Apply `ops` (the program or a slice of it, e.g. the body) to the NCHW map x; `trace` as in __call__."""
        stack, i = [], 0
        while i < len(ops):
            op = ops[i]
            if op["op"] == "bbcu_unit":  # a run of BBCU units stays packed from one unit to the next
                end = i
                while end < len(ops) and ops[end]["op"] == "bbcu_unit":
                    end += 1
                x = self._bbcu_units(x, [self.binary[u["conv"]["signs"]] for u in ops[i:end]], trace)
                i = end
                continue
            if op["op"] == "attentive_unit":  # a1 * Att_b(RPReLU(BinaryConv(x))) + a2 * Att_r(x)
                branch = self._attention(self._binary_branch(x, op, trace), op["att_bin"])
                x = self.tensors[op["a1"]] * branch + self.tensors[op["a2"]] * self._attention(x, op["att_res"])
            elif op["op"] == "binary_upsample_unit":  # PixelShuffle(RPReLU(BinaryConv(x))) + nearest_up(x)
                branch = F.pixel_shuffle(self._binary_branch(x, op, trace), op["factor"])
                x = branch + F.interpolate(x, scale_factor=op["factor"], mode="nearest")
            elif op["op"] == "conv":
                x = self._conv(x, op)
            elif op["op"] == "normalize":
                x = (x - self.tensors[op["mean"]]) * op["k"]
            elif op["op"] == "denormalize":
                x = x / op["k"] + self.tensors[op["mean"]]
            elif op["op"] == "multiply":
                x = x * op["k"]
            elif op["op"] == "divide":
                x = x / op["k"]
            elif op["op"] == "leaky_relu":
                x = F.leaky_relu(x, op["slope"])
            elif op["op"] == "push":
                stack.append(x)
            elif op["op"] == "add_popped":
                x = stack.pop() + x
            elif op["op"] == "add_popped_upsampled":
                mode, corners = op["mode"], op["align_corners"]
                x = x + F.interpolate(stack.pop(), scale_factor=op["factor"], mode=mode, align_corners=corners)
            elif op["op"] == "pixel_shuffle":
                x = F.pixel_shuffle(x, op["factor"])
            else:
                raise ValueError(f"unknown op {op['op']!r} in the program")
            i += 1
        return x


def load_packed(path: str | Path) -> PackedModel:
    """The PackedModel stored at `path` (written by `binsr.export.export_model`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed model {path} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    if "architecture" not in arrays:
        raise ValueError(f"{path} is not a {FORMAT} file (no architecture)")
    return PackedModel(json.loads(arrays.pop("architecture").tobytes()), arrays)
