"""Run a `.binsr` file (see `binsr.export`) with the XNOR engine; needs numpy and torch (numba for the portable
kernel), no training code.

A packed model is a program: a list of ops, the small frozen dataclasses below, each holding its arrays and run
by its own `__call__(x, state)` on an NCHW tensor. `binsr.export` builds them from a model, `save_program` and
`load_packed` write and read them; the file stores each op as JSON (its class name and fields) with its arrays
beside it, named after the module they came from.

Binary units run in `binsr.xnor` on NHWC maps; a run of BBCU units (one `BBCUUnits` op) stays packed between
units, each one fusing alpha, RPReLU, the residual add and the next unit's RSign. Full-precision ops (head, body
conv, upsampler, tail) are the float model's torch.nn.functional calls on NCHW tensors with the same layout, and
attention is the `binsr.attention` module itself, so every op rounds like the float model: the packed model's
output equals the float model's bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binsr import xnor
from binsr.attention import make_attention
from binsr.tiling import context

FORMAT = "binsr-packed-2"


def _tensor(array: np.ndarray | None) -> torch.Tensor | None:
    return None if array is None else torch.from_numpy(array)


def _to_nhwc(x: torch.Tensor) -> np.ndarray:
    """A C-contiguous NHWC copy of x: never a view, since the binary units update their map in place."""
    return x.permute(0, 2, 3, 1).numpy().copy(order="C")


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    """An NCHW copy with the standard strides, which the float model's tensors have even for 1x1 maps (torch
    may choose another conv algorithm, rounding differently, for other strides)."""
    return torch.from_numpy(xnor.to_nchw(x))


@dataclass
class State:
    """What the ops of one run share: the stack of skip tensors, and the optional trace of binary layers."""

    stack: list[torch.Tensor] = field(default_factory=list)
    trace: list | None = None


# ---- full-precision ops ---------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Conv:
    """nn.Conv2d with stride 1, no dilation or groups, zero padding."""

    name: str
    weight: np.ndarray
    bias: np.ndarray | None
    padding: int

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return F.conv2d(x, _tensor(self.weight), _tensor(self.bias), padding=self.padding)


@dataclass(frozen=True, eq=False)
class Normalize:
    """EDSR's input: (x - mean) * k."""

    name: str
    mean: np.ndarray
    k: float

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return (x - _tensor(self.mean)) * self.k


@dataclass(frozen=True, eq=False)
class Denormalize:
    """EDSR's output: x / k + mean."""

    name: str
    mean: np.ndarray
    k: float

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x / self.k + _tensor(self.mean)


@dataclass(frozen=True)
class Multiply:
    """x * k (SRResNet's input)."""

    k: float

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x * self.k


@dataclass(frozen=True)
class Divide:
    """x / k (SRResNet's output)."""

    k: float

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return x / self.k


@dataclass(frozen=True)
class LeakyReLU:
    slope: float

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return F.leaky_relu(x, self.slope)


@dataclass(frozen=True)
class PixelShuffle:
    """F.pixel_shuffle as factor^2 strided copies into an array from numpy: torch's own shuffle copies 2.5x slower
    here, and torch's allocator has the kernel fault a large output in 4 KiB page by page, where numpy asks for
    huge pages (EDSR's x2 upsampler output of a 296x296 tile: 45 MB, 33 ms of faults)."""

    factor: int

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        n, channels, height, width = x.shape
        r = self.factor
        out = torch.from_numpy(np.empty((n, channels // (r * r), height * r, width * r), np.float32))
        into, source = out.view(n, -1, height, r, width, r), x.reshape(n, -1, r, r, height, width)
        for i in range(r):
            for j in range(r):
                into[:, :, :, i, :, j].copy_(source[:, :, i, j])
        return out


@dataclass(frozen=True)
class Push:
    """Keep x for a later skip connection."""

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        state.stack.append(x)
        return x


@dataclass(frozen=True)
class AddPopped:
    """EDSR's long skip: the pushed tensor + x."""

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return state.stack.pop() + x


@dataclass(frozen=True)
class AddPoppedUpsampled:
    """SRResNet's image skip: x + the pushed tensor interpolated by `factor`."""

    factor: float
    mode: str
    align_corners: bool | None

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        skip = state.stack.pop()
        return x + F.interpolate(skip, scale_factor=self.factor, mode=self.mode, align_corners=self.align_corners)


@dataclass(frozen=True, eq=False)
class Attention:
    """A `binsr.attention` module ("none" is the identity), rebuilt from its kind, gate form, state dict and the
    scale its logits see (9b)."""

    name: str
    kind: str
    gate: str
    channels: int
    state: dict[str, np.ndarray]
    input_scale: float = 1.0

    @functools.cached_property
    def module(self) -> nn.Module:
        module = make_attention(self.kind, self.channels, self.gate, input_scale=self.input_scale)
        module.load_state_dict({key: torch.from_numpy(array) for key, array in self.state.items()})
        return module.eval()

    def __call__(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        return self.module(x, scale)


# ---- binary ops -----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class BinaryConv:
    """A BinaryConv2d: RSign thresholds, sign bits (np.packbits of W > 0 in (O, C, k, k) order), alpha, RPReLU."""

    name: str
    signs: np.ndarray
    shape: tuple[int, int, int, int]
    threshold: np.ndarray
    alpha: np.ndarray
    rprelu: np.ndarray | None  # (3, O): gamma, beta, zeta

    @functools.cached_property
    def packed(self) -> xnor.PackedConv:
        """The conv in XNOR-kernel form."""
        signs = np.unpackbits(self.signs, count=int(np.prod(self.shape))).reshape(self.shape)
        return xnor.pack_conv(np.where(signs, 1.0, -1.0).astype(np.float32), self.alpha, self.rprelu)

    def branch(self, x: torch.Tensor, state: State) -> torch.Tensor:
        """RPReLU(BinaryConv(x)), NCHW in and out."""
        packed = xnor.pack_activations_nchw(x.contiguous().numpy(), self.threshold)
        if state.trace is not None:
            state.trace.append((self, packed))
        return _to_nchw(xnor.xnor_conv(packed, self.packed)[0])


@dataclass(frozen=True, eq=False)
class BBCUUnits:
    """Consecutive BBCU units (8), x <- x + RPReLU(BinaryConv(x)), in place on one NHWC map packed between units."""

    convs: tuple[BinaryConv, ...]

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        y = _to_nhwc(x)
        packed = xnor.pack_activations(y, self.convs[0].threshold)
        for conv, following in zip(self.convs, (*self.convs[1:], None), strict=True):
            if state.trace is not None:
                state.trace.append((conv, packed))
            threshold = None if following is None else following.threshold
            y, packed = xnor.xnor_conv(packed, conv.packed, residual=y, next_threshold=threshold, out=y)
        return _to_nchw(y)


@dataclass(frozen=True, eq=False)
class AttentiveUnit:
    """Eq. (12): a1 * Att_b(RPReLU(BinaryConv(x))) + a2 * Att_r(x)."""

    name: str
    conv: BinaryConv
    att_bin: Attention
    att_res: Attention
    a1: np.ndarray
    a2: np.ndarray

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        return self.att_bin(self.conv.branch(x, state), _tensor(self.a1)) + self.att_res(x, _tensor(self.a2))


@dataclass(frozen=True, eq=False)
class BinaryUpsampleUnit:
    """Eq. (13): PixelShuffle(RPReLU(BinaryConv(x))) + nearest_up(x)."""

    conv: BinaryConv
    factor: int

    def __call__(self, x: torch.Tensor, state: State) -> torch.Tensor:
        branch = F.pixel_shuffle(self.conv.branch(x, state), self.factor)
        return branch + F.interpolate(x, scale_factor=self.factor, mode="nearest")


Op = (
    Conv | Normalize | Denormalize | Multiply | Divide | LeakyReLU | PixelShuffle | Push | AddPopped
    | AddPoppedUpsampled | BBCUUnits | AttentiveUnit | BinaryUpsampleUnit
)  # fmt: skip
TYPES = {cls.__name__: cls for cls in (*Op.__args__, Attention, BinaryConv)}


# ---- the model and its file -----------------------------------------------------------------------------------


def _radius(op: Op | Attention | BinaryConv) -> int | None:
    """LR pixels of context `op` adds, counted as `binsr.tiling.context` counts the modules it came from (None:
    unbounded), so that the packed model's tiles have the same seams as the float model's."""
    match op:
        case Conv():
            return op.weight.shape[-1] // 2
        case BinaryConv():
            return op.shape[-1] // 2
        case Attention():
            return context(op.module)
        case AddPoppedUpsampled():
            return 1
        case BBCUUnits():
            parts = op.convs
        case AttentiveUnit():
            parts = (op.conv, op.att_bin, op.att_res)
        case BinaryUpsampleUnit():
            parts = (op.conv,)
        case _:
            return 0
    radii = [_radius(part) for part in parts]
    return None if None in radii else sum(radii)


class PackedModel:
    """An exported model; `model(lr)` maps an (N, 3, h, w) float image in [0, 1] to its super-resolution."""

    def __init__(self, scale: int, config: dict | None, program: list[Op]):
        self.scale, self.config, self.program = scale, config, program

    def context(self) -> int | None:
        """LR pixels of context an output pixel can depend on, as `binsr.tiling.context` gives it for the float
        model; None when unbounded (squeeze-and-excitation pools globally)."""
        radii = [_radius(op) for op in self.program]
        return None if None in radii else sum(radii)

    def __call__(self, lr: torch.Tensor, trace: list | None = None) -> torch.Tensor:
        """Super-resolve `lr`; with `trace`, append (BinaryConv, packed input) for every binary layer run."""
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"expected an (N, 3, h, w) image batch, got shape {tuple(lr.shape)}")
        return self.run(lr.float().contiguous(), self.program, trace)

    @torch.no_grad()
    def run(self, x: torch.Tensor, ops: list[Op], trace: list | None = None) -> torch.Tensor:
        """Apply `ops` (the program or a slice of it, e.g. the body) to the NCHW map x; `trace` as in __call__."""
        state = State(trace=trace)
        for op in ops:
            x = op(x, state)
        return x


def _encode(value: Any, arrays: dict[str, np.ndarray], name: str) -> Any:
    """JSON for `value`; its arrays go to `arrays` under `name`.field (`name` is the enclosing op's own name)."""
    if dataclasses.is_dataclass(value):
        name = getattr(value, "name", name)
        encoded = {"type": type(value).__name__}
        for f in dataclasses.fields(value):
            encoded[f.name] = _encode(getattr(value, f.name), arrays, f"{name}.{f.name}")
        return encoded
    if isinstance(value, np.ndarray):
        if name in arrays and arrays[name] is not value:
            raise ValueError(f"two different arrays are named {name!r}")
        arrays[name] = value
        return {"array": name}
    if isinstance(value, dict):
        return {key: _encode(item, arrays, f"{name}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(item, arrays, name) for item in value]
    return value


def _decode(value: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(value, list):
        return tuple(_decode(item, arrays) for item in value)
    if not isinstance(value, dict):
        return value
    if "array" in value:
        return arrays[value["array"]]
    decoded = {key: _decode(item, arrays) for key, item in value.items() if key != "type"}
    if "type" not in value:
        return decoded
    if value["type"] not in TYPES:
        raise ValueError(f"unknown op {value['type']!r} in the program; expected one of {', '.join(TYPES)}")
    return TYPES[value["type"]](**decoded)


def save_program(file: BinaryIO, scale: int, config: dict | None, program: list[Op]) -> None:
    """Write a program to an open binary file as an uncompressed .npz: the JSON architecture and the arrays."""
    arrays: dict[str, np.ndarray] = {}
    architecture = {"format": FORMAT, "scale": scale, "config": config, "program": _encode(program, arrays, "")}
    np.savez(file, architecture=np.frombuffer(json.dumps(architecture).encode(), np.uint8), **arrays)


def load_packed(path: str | Path) -> PackedModel:
    """The PackedModel stored at `path` (written by `binsr.export.export_model`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed model {path} does not exist")
    with np.load(path, allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    if "architecture" not in arrays:
        raise ValueError(f"{path} is not a {FORMAT} file (no architecture)")
    architecture = json.loads(arrays.pop("architecture").tobytes())
    if architecture.get("format") != FORMAT:
        raise ValueError(f"{path} has format {architecture.get('format')!r}; expected {FORMAT!r} (export it again)")
    return PackedModel(architecture["scale"], architecture["config"], list(_decode(architecture["program"], arrays)))
