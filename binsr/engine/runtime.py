"""Run a `.binsr` file (see `binsr.engine.export`) with the XNOR engine; needs numpy and torch (numba for the portable
kernel), no training code.

A packed model is a program: a list of ops, the small frozen dataclasses below, each holding its arrays and run
by its own `__call__(x, state)` on an NCHW tensor. `binsr.engine.export` builds them from a model, `save_program` and
`load_packed` write and read them; the file stores each op as JSON (its class name and fields) with its arrays
beside it, named after the module they came from. A file is untrusted input: `load_packed` checks every size,
type and shape in it, and that the ops fit together, before it allocates anything the file does not hold.

Binary units run in `binsr.engine.xnor` on NHWC maps; a run of BBCU units (one `BBCUUnits` op) stays packed between
units, each one fusing alpha, RPReLU, the residual add and the next unit's RSign. Full-precision ops (head, body
conv, upsampler, tail) are the float model's torch.nn.functional calls on NCHW tensors with the same layout, and
attention is the `binsr.nn.attention` module itself, so every op rounds like the float model: the packed model's
output equals the float model's bit for bit.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import math
import struct
import types
import typing
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from binsr.engine import xnor
from binsr.engine.tiling import context
from binsr.nn.attention import ATTENTION_KINDS, GATE_FORMS, make_attention
from binsr.nn.models import SCALES

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
    """A `binsr.nn.attention` module ("none" is the identity), rebuilt from its kind, gate form, state dict and the
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
OPS = {cls.__name__: cls for cls in Op.__args__}


# ---- the model and its file -----------------------------------------------------------------------------------


def _radius(op: Op | Attention | BinaryConv) -> int | None:
    """LR pixels of context `op` adds, counted as `binsr.engine.tiling.context` counts the modules it came from (None:
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
        """LR pixels of context an output pixel can depend on, as `binsr.engine.tiling.context` gives it for the float
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


def save_program(file: BinaryIO, scale: int, config: dict | None, program: list[Op]) -> None:
    """Write a program to an open binary file as an uncompressed .npz: the JSON architecture and the arrays."""
    arrays: dict[str, np.ndarray] = {}
    architecture = {"format": FORMAT, "scale": scale, "config": config, "program": _encode(program, arrays, "")}
    np.savez(file, architecture=np.frombuffer(json.dumps(architecture).encode(), np.uint8), **arrays)


def load_packed(path: str | Path) -> PackedModel:
    """The PackedModel stored at `path` (written by `binsr.engine.export.export_model`); a one-line ValueError naming
    the file and what was expected when it is damaged or not one."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"packed model {path} does not exist")
    try:
        arrays = _read_arrays(path)
        architecture = _read_architecture(arrays.pop("architecture", None))
    except ValueError as error:
        raise ValueError(f"{path} is not a {FORMAT} file: {error}") from None
    found = architecture.get("format")
    if found != FORMAT:
        found = repr(found) if isinstance(found, str) and len(found) < 40 else _shown(found)
        raise ValueError(f"{path} has format {found}; expected {FORMAT!r} (export it again)")
    try:
        scale, config, program = (architecture.get(key) for key in ("scale", "config", "program"))
        if type(scale) is not int or scale not in SCALES:
            raise ValueError(f"scale is {scale!r}; expected one of {', '.join(map(str, SCALES))}")
        if not (config is None or isinstance(config, dict)):
            raise ValueError(f"config is {type(config).__name__}; expected an object or null")
        if not (isinstance(program, list) and program):
            raise ValueError("program is not a list of ops; expected one")
        ops = [_decode_dataclass(op, OPS, arrays, f"op {i}") for i, op in enumerate(program)]
        _check_program(ops, scale)
    except ValueError as error:
        raise ValueError(f"{path} is not a valid {FORMAT} file: {error}") from None
    return PackedModel(scale, config, ops)


# ---- reading a file that may be damaged or hostile -----------------------------------------------------------

ARRAY_DTYPES = (np.dtype(np.float32), np.dtype(np.uint8))  # what export writes: weights and sign bits, the JSON


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of the uncompressed .npz at `path`; each member is read only once its size, counted with the
    others', fits in the file (so nothing larger than the file is ever allocated) and its zip CRC is checked."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
            if sum(info.file_size for info in members) > size:
                raise ValueError(f"its members claim more than its {size:,} bytes")
            arrays = {}
            for info in members:
                name = info.filename.removesuffix(".npy")
                if info.compress_type != zipfile.ZIP_STORED or name == info.filename or name in arrays:
                    raise ValueError(f"member {info.filename!r} is not one stored .npy array")
                arrays[name] = _npy(archive.read(info), info.filename)
            return arrays
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, struct.error, OverflowError) as error:
        raise ValueError(f"not a readable zip archive ({error})") from None


def _npy(data: bytes, name: str) -> np.ndarray:
    """The array in the .npy bytes `data`, once its header's dtype and shape account for the data exactly."""
    stream = io.BytesIO(data)
    version = np.lib.format.read_magic(stream)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f"{name} is .npy version {version}; expected 1.0 or 2.0")
    read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, fortran_order, dtype = read_header(stream)
    if dtype not in ARRAY_DTYPES or fortran_order:
        raise ValueError(f"{name} holds {dtype} in {'Fortran' if fortran_order else 'C'} order; expected C-order "
                         f"{' or '.join(map(str, ARRAY_DTYPES))}")  # fmt: skip
    count = math.prod(shape)
    if stream.tell() + count * dtype.itemsize != len(data):
        raise ValueError(f"{name} declares shape {shape} but holds {len(data) - stream.tell():,} bytes of data")
    return np.frombuffer(data, dtype, count, stream.tell()).reshape(shape).copy()


def _read_architecture(array: np.ndarray | None) -> dict:
    if array is None or array.dtype != np.uint8 or array.ndim != 1:
        raise ValueError("no architecture (a 1-D uint8 array of JSON)")
    try:
        architecture = json.loads(array.tobytes())
    except (ValueError, RecursionError) as error:  # RecursionError: nesting deeper than the parser goes
        raise ValueError(f"its architecture is not JSON ({type(error).__name__})") from None
    if not isinstance(architecture, dict):
        raise ValueError(f"its architecture is a JSON {type(architecture).__name__}; expected an object")
    return architecture


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode_dataclass(value: Any, allowed: dict[str, type], arrays: dict[str, np.ndarray], where: str) -> Any:
    """The op (or op part) that the JSON `value` describes, one of `allowed`, with every field of its declared type."""
    kind = value.get("type") if isinstance(value, dict) else None
    if not (isinstance(kind, str) and kind in allowed):
        raise ValueError(f"{where} is {_shown(value)}; expected an object of type {' or '.join(allowed)}")
    cls = allowed[kind]
    names = {f.name for f in dataclasses.fields(cls)}
    needed = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
    given = value.keys() - {"type"}
    if not needed <= given <= names:
        raise ValueError(f"{where} ({kind}) has fields {', '.join(sorted(given))}; expected {', '.join(sorted(names))}")
    hints = _field_types(cls)
    return cls(**{key: _decode(value[key], hints[key], arrays, f"{where}.{key}") for key in given})


def _decode(value: Any, hint: Any, arrays: dict[str, np.ndarray], where: str) -> Any:
    """The JSON `value` as the type `hint` (a field's annotation), arrays looked up by name; else a ValueError."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is types.UnionType:  # X | None
        if value is None:
            return None
        hint = next(arg for arg in args if arg is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _decode_dataclass(value, {hint.__name__: hint}, arrays, where)
    if origin is tuple and isinstance(value, list) and (args[-1] is Ellipsis or len(value) == len(args)):
        kinds = [args[0]] * len(value) if args[-1] is Ellipsis else args
        items = enumerate(zip(value, kinds, strict=True))
        return tuple(_decode(item, kind, arrays, f"{where}[{i}]") for i, (item, kind) in items)
    if origin is dict and isinstance(value, dict):
        return {key: _decode(item, args[1], arrays, f"{where}.{key}") for key, item in value.items()}
    name = value.get("array") if isinstance(value, dict) else None
    if hint is np.ndarray and isinstance(name, str) and name in arrays:
        return arrays[name]
    if hint is float and type(value) in (int, float) and abs(value) < 1e308:  # finite: not NaN, inf, nor 10**400
        return float(value)
    if hint in (int, str, bool) and type(value) is hint:  # True is not an int here, nor 1 a bool
        return value
    raise ValueError(f"{where} is {_shown(value)}; expected {getattr(hint, '__name__', hint)}")


def _shown(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


# ---- does the program fit together? ---------------------------------------------------------------------------


@dataclass
class _Flow:
    """What the checker knows of the map between two ops: its channels, its scale over the input image, and the
    stack of skip tensors (each as channels and scale)."""

    channels: int = 3
    factor: int = 1
    stack: list[tuple[int, int]] = field(default_factory=list)


def _check_program(ops: list[Op], scale: int) -> None:
    """Refuse a program whose ops do not fit together: each must take the channels the one before gives, with the
    arrays its fields declare, and the whole must map 3 channels to 3 at `scale` with every skip pushed and popped."""
    flow = _Flow()
    for i, op in enumerate(ops):
        try:
            _check_op(op, flow)
        except ValueError as error:
            raise ValueError(f"op {i} ({type(op).__name__}): {error}") from None
    if (flow.channels, flow.factor, flow.stack) != (3, scale, []):
        raise ValueError(f"the program ends with {flow.channels} channels at x{flow.factor} and {len(flow.stack)} "
                         f"skips unused; expected 3 channels at x{scale} and none")  # fmt: skip


def _check_op(op: Op, flow: _Flow) -> None:
    if isinstance(op, Conv):
        out, _, k, _ = _conv_shape(op.weight, flow.channels, f"{op.name}.weight")
        if op.padding != k // 2:
            raise ValueError(f"padding {op.padding}; expected {k // 2}, which keeps the map's size")
        _expect(op.bias, (out,), f"{op.name}.bias")
        flow.channels = out
    elif isinstance(op, (Normalize, Denormalize)):
        _expect(op.mean, (1, 3, 1, 1), f"{op.name}.mean")
        _nonzero(op.k, "k")
        if flow.channels != 3:
            raise ValueError(f"it takes an image; expected 3 channels, got {flow.channels}")
    elif isinstance(op, (Multiply, Divide)):
        _nonzero(op.k, "k")
    elif isinstance(op, PixelShuffle):
        _shuffle(flow, op.factor)
    elif isinstance(op, Push):
        flow.stack.append((flow.channels, flow.factor))
    elif isinstance(op, (AddPopped, AddPoppedUpsampled)):
        _check_skip(op, flow)
    elif isinstance(op, BBCUUnits):
        if not op.convs:
            raise ValueError("no units; expected at least one")
        for conv in op.convs:
            _check_binary_conv(conv, flow.channels, flow.channels)
    elif isinstance(op, AttentiveUnit):
        _check_binary_conv(op.conv, flow.channels, flow.channels)
        for attention in (op.att_bin, op.att_res):
            _check_attention(attention, flow.channels)
        _expect(op.a1, (), f"{op.name}.a1")
        _expect(op.a2, (), f"{op.name}.a2")
    elif isinstance(op, BinaryUpsampleUnit):  # (13): a conv to factor^2 times the channels, shuffled back
        if op.factor < 1:
            raise ValueError(f"factor {op.factor}; expected a positive one")
        _check_binary_conv(op.conv, flow.channels, flow.channels * op.factor**2)
        flow.factor *= op.factor


def _check_skip(op: AddPopped | AddPoppedUpsampled, flow: _Flow) -> None:
    if not flow.stack:
        raise ValueError("nothing was pushed; expected a Push before it")
    channels, factor = flow.stack.pop()
    if isinstance(op, AddPoppedUpsampled):
        if not (op.factor == int(op.factor) >= 1 and op.mode in ("nearest", "bilinear", "bicubic")):
            raise ValueError(f"upsampling by {op.factor} ({op.mode!r}); expected a whole factor, nearest, bilinear "
                             "or bicubic")  # fmt: skip
        if (op.mode == "nearest") != (op.align_corners is None):
            raise ValueError(f"align_corners={op.align_corners} with {op.mode!r}; expected None exactly for nearest")
        factor *= int(op.factor)
    if (channels, factor) != (flow.channels, flow.factor):
        raise ValueError(f"the skip has {channels} channels at x{factor}, the map {flow.channels} at x{flow.factor}; "
                         "expected the same")  # fmt: skip


def _shuffle(flow: _Flow, factor: int) -> None:
    if factor < 1 or flow.channels % factor**2:
        raise ValueError(f"pixel shuffle by {factor} of {flow.channels} channels; expected a factor whose square "
                         "divides them")  # fmt: skip
    flow.channels //= factor**2
    flow.factor *= factor


def _conv_shape(weight: np.ndarray, channels: int, what: str) -> tuple[int, ...]:
    if weight.dtype != np.float32 or weight.ndim != 4 or weight.shape[1] != channels or weight.shape[0] < 1:
        raise ValueError(f"{what} is {weight.dtype} {weight.shape}; expected float32 (O, {channels}, k, k)")
    if weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f"{what} has a {weight.shape[2]}x{weight.shape[3]} kernel; expected a square, odd one")
    return weight.shape


def _check_binary_conv(conv: BinaryConv, channels: int, out: int) -> None:
    expected = (out, channels, conv.shape[2], conv.shape[2])
    if conv.shape != expected or conv.shape[2] not in xnor.KERNEL_SIZES:
        raise ValueError(f"{conv.name} has shape {conv.shape}; expected {expected} with k in {xnor.KERNEL_SIZES}")
    _expect(conv.signs, (-(-math.prod(conv.shape) // 8),), f"{conv.name}.signs", np.uint8)
    _expect(conv.threshold, (channels,), f"{conv.name}.threshold")
    _expect(conv.alpha, (out,), f"{conv.name}.alpha")
    _expect(conv.rprelu, (3, out), f"{conv.name}.rprelu")


def _check_attention(attention: Attention, channels: int) -> None:
    if not (attention.kind in ATTENTION_KINDS and attention.gate in GATE_FORMS and attention.input_scale > 0):
        raise ValueError(f"{attention.name} is {attention.kind!r} with a {attention.gate!r} gate seeing "
                         f"{attention.input_scale} x; expected a kind of {', '.join(ATTENTION_KINDS)}, a gate of "
                         f"{', '.join(GATE_FORMS)} and a positive scale")  # fmt: skip
    if attention.channels != channels:
        raise ValueError(f"{attention.name} has {attention.channels} channels; expected {channels}")
    with torch.device("meta"):  # shapes only
        expected = make_attention(attention.kind, channels, attention.gate).state_dict()
    if attention.state.keys() != expected.keys():
        raise ValueError(f"{attention.name} holds {', '.join(attention.state) or 'nothing'}; expected "
                         f"{', '.join(expected) or 'nothing'}")  # fmt: skip
    for key, value in expected.items():
        _expect(attention.state[key], tuple(value.shape), f"{attention.name}.{key}")


def _expect(array: np.ndarray | None, shape: tuple[int, ...], what: str, dtype: type = np.float32) -> None:
    """Refuse `array` unless it is a `dtype` array of `shape` (None passes: the field is optional)."""
    if array is not None and (array.dtype != dtype or array.shape != shape):
        raise ValueError(f"{what} is {array.dtype} {array.shape}; expected {np.dtype(dtype)} {shape}")


def _nonzero(value: float, what: str) -> None:
    if value == 0:
        raise ValueError(f"{what} is 0; expected a nonzero number")
