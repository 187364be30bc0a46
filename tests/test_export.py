"""Exported models run by the XNOR runtime match the float models they came from, on every kernel this machine
runs; the export refuses what the program cannot represent, and writes its file atomically."""

import functools
import io
import json
import random
import tracemalloc
import zipfile

import numpy as np
import pytest
import torch
from torch import nn

from binsr.engine import export, runtime, xnor
from binsr.engine.export import export_model
from binsr.engine.runtime import load_packed
from binsr.nn.binary import BinaryConv2d
from binsr.nn.models import create_model

CASES = [
    ("edsr-bbcu", {"scale": 2}),
    ("edsr-bbcu", {"scale": 4}),
    ("edsr-bbcu", {"scale": 2, "n_feats": 64}),  # 32 channels pack into uint32 words, 64 into uint64
    *[("edsr-proposed", {"scale": 2, "att_bin": kind, "att_res": kind}) for kind in ("none", "se", "spatial", "pixel")],
    ("edsr-proposed", {"scale": 3, "att_bin": "se", "att_res": "pixel"}),
    ("edsr-proposed", {"scale": 2, "att_bin": "spatial", "att_res": "se", "gate_input": "unit"}),
    ("bbcu-l", {"scale": 4}),
    ("bbcu-m", {"scale": 2}),
]


def perturbed_model(name: str, kwargs: dict) -> torch.nn.Module:
    """A small random model whose thresholds, RPReLU, alpha and a1/a2 are moved off their initial values."""
    torch.manual_seed(0)
    model = create_model(name, **{"n_feats": 32, "n_blocks": 2, **kwargs})
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BinaryConv2d):
                for p_name, p in module.named_parameters():
                    if p_name != "weight":
                        p.add_(0.2 * torch.randn_like(p))
        for p_name, p in model.named_parameters():
            if p_name.endswith((".a1", ".a2")):
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def float_accumulators(model: torch.nn.Module, lr: torch.Tensor) -> tuple[torch.Tensor, list[np.ndarray]]:
    """The model's output and, in call order, every binary layer's integer accumulators (NHWC)."""
    seen = []

    def hook(conv, inputs, output):
        seen.append(conv.binary_conv(conv.rsign(inputs[0])).permute(0, 2, 3, 1).numpy())

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, BinaryConv2d)]
    with torch.no_grad():
        sr = model(lr)
    for handle in handles:
        handle.remove()
    return sr, seen


def assert_bitwise_equal(a: torch.Tensor, b: torch.Tensor) -> None:
    """Equal bit for bit (so +0 and -0 differ), except that any NaN equals any NaN."""
    assert a.shape == b.shape
    same = (a.view(torch.int32) == b.view(torch.int32)) | (a.isnan() & b.isnan())
    assert bool(same.all()), f"{int((~same).sum())} of {a.numel()} values differ"


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in CASES])
def test_packed_model_matches_float_model(name, kwargs, kernel, tmp_path):
    model = perturbed_model(name, kwargs)
    lr = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(1))
    sr_float, accumulators = float_accumulators(model, lr)

    packed = load_packed(export_model(model, tmp_path / "model.binsr"))
    trace = []
    sr = packed(lr, trace=trace)
    # Bitwise: the full-precision ops are the float model's torch calls and the binary ones are exact.
    assert_bitwise_equal(sr, sr_float)
    assert len(trace) == len(accumulators) >= 4  # two blocks of two units, and BBCU-M's tail
    for (layer, packed_input), expected in zip(trace, accumulators, strict=True):
        np.testing.assert_array_equal(xnor.xnor_accumulators(packed_input, layer.packed), expected)


@pytest.mark.parametrize("seed", range(10))
def test_shape_fuzz_against_the_float_model(seed, kernel, tmp_path):
    """Random widths 4-130, maps 1-13 pixels a side (1 half the time), batches 1-3, some inputs NaN or +-inf."""
    rng = random.Random(seed)
    name = rng.choice(["edsr-bbcu", "edsr-proposed", "bbcu-l", "bbcu-m"])
    kwargs = {"n_feats": rng.randint(4, 130), "n_blocks": 1, "scale": rng.choice([2, 3])}
    if name == "edsr-proposed":
        kwargs.update(att_bin=rng.choice(["none", "se", "spatial", "pixel"]), att_res=rng.choice(["se", "spatial"]))
    model = perturbed_model(name, kwargs)
    size = [rng.choice([1, rng.randint(2, 13)]) for _ in range(2)]
    lr = torch.rand(rng.randint(1, 3), 3, *size, generator=torch.Generator().manual_seed(seed))
    for value in (float("nan"), float("inf"), float("-inf")):
        if rng.random() < 0.3:
            lr.view(-1)[rng.randrange(lr.numel())] = value
    with torch.no_grad():
        sr_float = model(lr)
    assert_bitwise_equal(load_packed(export_model(model, tmp_path / "m.binsr"))(lr), sr_float)


ONE_PIXEL_CASES = [("edsr-bbcu", {}), ("edsr-proposed", {"n_feats": 65, "att_bin": "spatial", "att_res": "spatial"})]


@pytest.mark.parametrize("name,kwargs", ONE_PIXEL_CASES)
def test_one_pixel_inputs_leave_the_skip_alone(name, kwargs, kernel, tmp_path):
    # A 1x1 map's NHWC view of an NCHW tensor is the tensor itself: the in-place units must not write to it
    # (the long skip), and the NCHW tensors handed back to torch keep the float model's strides.
    model = perturbed_model(name, {"scale": 2, **kwargs})
    lr = torch.rand(3, 3, 1, 1, generator=torch.Generator().manual_seed(2))
    packed = load_packed(export_model(model, tmp_path / "m.binsr"))
    body = packed.program[packed.program.index(runtime.Push()) + 1 : packed.program.index(runtime.AddPopped())]
    with torch.no_grad():
        sr_float, features = model(lr), model.head((lr - model.rgb_mean) * model.k)
        skip = features.clone()
        body_float = model.body(features)
    body_packed = packed.run(features, body)
    assert torch.equal(features, skip)
    assert body_packed.stride() == body_float.stride()
    assert_bitwise_equal(body_packed, body_float)
    assert_bitwise_equal(packed(lr), sr_float)


def test_program_is_typed_ops_that_survive_the_file(tmp_path):
    model = perturbed_model("edsr-proposed", {"scale": 2, "att_bin": "se", "att_res": "pixel"})
    program = export.edsr_program(model)
    loaded = load_packed(export_model(model, tmp_path / "m.binsr")).program
    assert [type(op) for op in loaded] == [type(op) for op in program]
    units = ["AttentiveUnit"] * 4
    expected = ["Normalize", "Conv", "Push", *units, "Conv", "AddPopped", "Conv", "PixelShuffle", "Conv", "Denormalize"]
    assert [type(op).__name__ for op in loaded] == expected
    unit = loaded[3]
    assert unit.name == "body.0.0" and unit.conv.name == "body.0.0.conv" and unit.conv.shape == (32, 32, 3, 3)
    assert (unit.att_bin.kind, unit.att_bin.gate, unit.att_res.kind) == ("se", "2sigmoid", "pixel")
    np.testing.assert_array_equal(unit.att_bin.state["fc1.weight"], model.body[0][0].att_bin.fc1.weight.detach())
    bbcu = load_packed(export_model(perturbed_model("edsr-bbcu", {"scale": 2}), tmp_path / "b.binsr")).program
    units = [op for op in bbcu if isinstance(op, runtime.BBCUUnits)]
    assert len(units) == 1  # one op: the four units stay packed from one to the next
    assert [conv.name for conv in units[0].convs] == [f"body.{b}.{u}.conv" for b in range(2) for u in range(2)]


def test_export_is_one_bit_per_binary_weight(tmp_path):
    model = perturbed_model("edsr-bbcu", {"scale": 2})
    path = export_model(model, tmp_path / "model.binsr")
    with np.load(path) as npz:
        signs = [npz[name] for name in npz.files if name.endswith(".signs")]
    binary_weights = sum(m.weight.numel() for m in model.modules() if isinstance(m, BinaryConv2d))
    assert sum(s.nbytes for s in signs) == binary_weights // 8


def test_export_rejects_full_precision_models(tmp_path):
    with pytest.raises(ValueError, match="no binary layers"):
        export_model(create_model("edsr-fp", n_feats=8, n_blocks=1), tmp_path / "m.binsr")


REFUSALS = [
    (lambda m: setattr(m.head, "padding_mode", "reflect"), "head: padding_mode 'reflect' is not exported"),
    (lambda m: setattr(m.tail, "stride", (2, 2)), "tail: only stride-1, undilated, ungrouped convs are exported"),
    (lambda m: setattr(m.upsampler, "1", nn.Upsample(scale_factor=2)), "upsampler.1: expected an nn.Conv2d"),
    (lambda m: setattr(m.body[0], "0", nn.Identity()), "body.0.0: cannot export body unit Identity"),
    (lambda m: setattr(m.body[0][1], "att_res", nn.ReLU()), "body.0.1.att_res: cannot export attention module ReLU"),
]


@pytest.mark.parametrize("change,message", REFUSALS)
def test_export_refuses_what_it_cannot_represent(change, message, tmp_path):
    model = perturbed_model("edsr-proposed", {"scale": 2, "att_bin": "se", "att_res": "se"})
    change(model)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        export_model(model, tmp_path / "m.binsr")
    assert not (tmp_path / "m.binsr").exists()


def test_export_refuses_attention_the_runtime_would_build_differently(tmp_path):
    from binsr.nn.attention import SqueezeExcitation

    model = perturbed_model("edsr-proposed", {"scale": 2, "att_bin": "se", "att_res": "se"})
    model.body[1][0].att_bin = SqueezeExcitation(32, reduction=4, gate="2sigmoid")
    expected = r"body.1.0.att_bin: SqueezeExcitation does not fit make_attention\('se', 32\)"
    with pytest.raises(ValueError, match=expected):
        export_model(model, tmp_path / "m.binsr")


def test_export_writes_atomically(tmp_path, monkeypatch):
    path = tmp_path / "m.binsr"
    path.write_bytes(b"the previous export")

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(runtime, "save_program", crash)
    with pytest.raises(OSError, match="disk full"):
        export_model(perturbed_model("edsr-bbcu", {"scale": 2}), path)
    assert path.read_bytes() == b"the previous export"
    assert [p.name for p in tmp_path.iterdir()] == ["m.binsr"]  # no temporary file left


def test_old_format_is_refused_with_a_hint(tmp_path):
    path = tmp_path / "old.binsr"
    with path.open("wb") as f:
        np.savez(f, architecture=np.frombuffer(json.dumps({"format": "binsr-packed-1"}).encode(), np.uint8))
    with pytest.raises(ValueError, match=r"has format 'binsr-packed-1'; expected 'binsr-packed-2' \(export it again\)"):
        load_packed(path)


# ---- a .binsr file is untrusted input --------------------------------------------------------------------------


def _members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _zip(members: dict[str, bytes], path) -> None:
    with zipfile.ZipFile(path, "w") as archive:  # stored, as np.savez writes
        for name, data in members.items():
            archive.writestr(name, data)


def _npy(array: np.ndarray) -> bytes:
    stream = io.BytesIO()
    np.lib.format.write_array(stream, array)
    return stream.getvalue()


def _architecture(members: dict[str, bytes]) -> dict:
    return json.loads(np.load(io.BytesIO(members["architecture.npy"])).tobytes())


def _with_architecture(members: dict[str, bytes], architecture) -> dict[str, bytes]:
    text = architecture if isinstance(architecture, str) else json.dumps(architecture)
    return {**members, "architecture.npy": _npy(np.frombuffer(text.encode(), np.uint8))}


def _load_peak(path) -> tuple[object, int]:
    """load_packed(path) or the error it raised, and the most memory numpy and Python held meanwhile (bytes)."""
    tracemalloc.start()
    try:
        loaded = load_packed(path)
    except ValueError as error:
        loaded = error
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return loaded, peak


@pytest.fixture(scope="module")
def small_export(tmp_path_factory):
    """A small real export (attentive units, so every kind of field is there) and its output on a fixed input."""
    model = perturbed_model("edsr-proposed", {"scale": 2, "n_feats": 8, "n_blocks": 1, "att_bin": "se",
                                              "att_res": "pixel"})  # fmt: skip
    path = export_model(model, tmp_path_factory.mktemp("export") / "small.binsr")
    lr = torch.rand(1, 3, 5, 4, generator=torch.Generator().manual_seed(3))
    return path, lr, load_packed(path)(lr)


def _in_program(change):
    """A damage that changes the architecture's JSON with `change(architecture)`."""

    def damage(members: dict[str, bytes]) -> dict[str, bytes]:
        architecture = _architecture(members)
        change(architecture)
        return _with_architecture(members, architecture)

    return damage


def _in_member(name: str, old: bytes, new: bytes):
    return lambda members: {**members, name: members[name].replace(old, new)}


NOT = "is not a binsr-packed-2 file:"
INVALID = "is not a valid binsr-packed-2 file:"
DAMAGE = [  # (what is done to the file, the end of the one-line error); each raised something else, or nothing
    ("zero bytes", lambda m: b"", f"{NOT} not a readable zip archive (File is not a zip file)"),
    ("half the file", lambda m: "half", f"{NOT} not a readable zip archive (File is not a zip file)"),
    ("scale -2", _in_program(lambda a: a.update(scale=-2)), f"{INVALID} scale is -2; expected one of 2, 3, 4"),
    ("JSON nested 100000 deep", lambda m: _with_architecture(m, "[" * 100_000 + "]" * 100_000),
     f"{NOT} its architecture is not JSON (RecursionError)"),
    ("a shape of 432 TB", _in_member("tail.weight.npy", b"(3, 8,", b"(3000000000000, 36000,"),  # 864 bytes and
     f"{NOT} tail.weight.npy declares shape (3000000000000, 36000, 3, 3) but holds 880 bytes of data"),  # 16 of header
    ("an array of objects", _in_member("tail.bias.npy", b"'<f4'", b"'|O' "),
     f"{NOT} tail.bias.npy holds object in C order; expected C-order float32 or uint8"),
    ("a string for an int", _in_program(lambda a: a["program"][1].update(padding="one")),
     f'{INVALID} op 1.padding is "one"; expected int'),
    ("the tail conv first", _in_program(lambda a: a["program"].insert(1, a["program"][-2])),
     f"{INVALID} op 1 (Conv): tail.weight is float32 (3, 8, 3, 3); expected float32 (O, 3, k, k)"),
    ("no Push", _in_program(lambda a: a["program"].pop(2)),
     f"{INVALID} op 5 (AddPopped): nothing was pushed; expected a Push before it"),
    ("an unknown op", _in_program(lambda a: a["program"][0].update(type="Exec")),
     f'{INVALID} op 0 is {{"type": "Exec", "name": "rgb_mean", ...; expected an object of type Conv or Normalize or '
     "Denormalize or Multiply or Divide or LeakyReLU or PixelShuffle or Push or AddPopped or AddPoppedUpsampled or "
     "BBCUUnits or AttentiveUnit or BinaryUpsampleUnit"),
]  # fmt: skip


@pytest.mark.parametrize("damage,change,expected", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_a_damaged_file_is_one_line_naming_it_without_a_large_allocation(damage, change, expected, small_export,
                                                                          tmp_path):  # fmt: skip
    path = tmp_path / "damaged.binsr"
    members = change(_members(small_export[0]))
    if isinstance(members, bytes):
        path.write_bytes(members)
    elif members == "half":
        path.write_bytes(small_export[0].read_bytes()[: small_export[0].stat().st_size // 2])
    else:
        _zip(members, path)
    loaded, peak = _load_peak(path)
    assert isinstance(loaded, ValueError) and str(loaded) == f"{path} {expected}"
    assert peak < 10 * small_export[0].stat().st_size + 2**20


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_truncated_and_flipped_files_are_one_line_or_run_bit_exactly(seed, small_export, tmp_path):
    """Random truncations and byte flips of a real export: each is a one-line error naming the file, or a model
    whose output is the original's bit for bit; none allocates more than a few times the file's size."""
    source, lr, expected = small_export
    data = source.read_bytes()
    rng = random.Random(seed)
    path = tmp_path / "fuzzed.binsr"
    outcomes = {"error": 0, "exact": 0}
    for _ in range(60):
        damaged = bytearray(data[: rng.randrange(len(data))] if rng.random() < 0.3 else data)
        for _ in range(rng.randint(1, 3) if len(damaged) == len(data) else 0):
            damaged[rng.randrange(len(damaged))] ^= rng.randint(1, 255)
        path.write_bytes(bytes(damaged))
        loaded, peak = _load_peak(path)
        assert peak < 10 * len(data) + 2**20
        if isinstance(loaded, ValueError):
            assert str(loaded).startswith(str(path)) and "\n" not in str(loaded)
            outcomes["error"] += 1
        else:
            assert_bitwise_equal(loaded(lr), expected)
            outcomes["exact"] += 1
    assert outcomes["error"] > 0


def _mutations(value, rng: random.Random, arrays: list[str]):
    """A random replacement for a JSON value: another type, an edge number, a reference to another array."""
    pool = [None, True, 0, -1, 1, 2, 3, 10**400, 0.0, -0.5, 1e308, float("nan"), "", "se", "nearest", [], [1],
            {}, {"array": rng.choice(arrays)}, {"array": "missing"}, {"type": "Push"}]  # fmt: skip
    return rng.choice(pool)


def _paths(value, prefix=()):
    """Every (path, value) inside a JSON tree."""
    yield prefix, value
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        yield from _paths(item, (*prefix, key))


@pytest.mark.parametrize("seed", range(3))
def test_fuzz_changed_programs_are_one_line_or_a_model_that_runs(seed, small_export, tmp_path):
    """Random fields of the JSON program replaced (types, edge numbers, other arrays), deleted or ops dropped: each is
    a one-line error naming the file, or a model that runs to an image of the right shape."""
    source, lr, _ = small_export
    members = _members(source)
    original = _architecture(members)
    arrays = [name.removesuffix(".npy") for name in members if name != "architecture.npy"]
    rng = random.Random(seed)
    path = tmp_path / "changed.binsr"
    for _ in range(40):
        architecture = json.loads(json.dumps(original))
        where, _ = rng.choice(list(_paths(architecture))[1:])
        parent = functools.reduce(lambda node, key: node[key], where[:-1], architecture)
        if rng.random() < 0.2:
            del parent[where[-1]]
        else:
            parent[where[-1]] = _mutations(parent[where[-1]], rng, arrays)
        _zip(_with_architecture(members, json.dumps(architecture)), path)
        loaded, _ = _load_peak(path)
        if isinstance(loaded, ValueError):
            assert str(loaded).startswith(str(path)) and "\n" not in str(loaded)
        else:
            assert loaded(lr).shape == (1, 3, 10, 8)
