"""Checkpoints: one file holds everything needed to rebuild a model and to resume its training.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
`torch.load(..., weights_only=True)` (no pickled code runs on load):

    format      "binsr-checkpoint-1"
    model       {"name": registry name, "version": binsr.nn.config.VERSION, "kwargs": full arguments}
                -> `create_model(name, **kwargs)` once `complete_config` has brought an older version up to date
    state_dict  the model's parameters and buffers
    step        optimizer steps taken
    config      the TrainConfig as a dict (absent in shipped checkpoints)
    optimizer   the optimizer's state_dict (absent in shipped checkpoints)
    rng         torch's CPU RNG state (absent in shipped checkpoints)
    metrics     free-form results, e.g. validation PSNR

The learning-rate schedule is a pure function of the step, so the step is the whole scheduler state.
Files are written to a temporary file in the target directory and renamed over the target (`atomic_write`), so
a crash mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import torch
from torch import nn

from binsr.base.files import atomic_write
from binsr.nn.config import VERSION
from binsr.nn.models import complete_config, create_model

FORMAT = "binsr-checkpoint-1"
ASSETS = Path(__file__).resolve().parents[2] / "assets"


def save(path: str | Path, model: nn.Module, step: int = 0, **fields) -> Path:
    """Atomically write `model` (with its registry config) and extra `fields` (config, optimizer, ...) to `path`."""
    if not hasattr(model, "config"):
        raise ValueError(f"model {type(model).__name__} has no .config; build it with binsr.create_model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "model": {"name": model.config["name"], "version": VERSION, "kwargs": dict(model.config["kwargs"])},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        **fields,
    }
    with atomic_write(path) as tmp:
        torch.save(state, tmp)
    return path


def load(path: str | Path) -> dict:
    """The checkpoint dict at `path` (tensors on CPU), with its "model" and "state_dict" checked for form."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a torch file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a {FORMAT} file")
    model, weights = state.get("model"), state.get("state_dict")
    kwargs = model.get("kwargs") if isinstance(model, dict) else None
    named = isinstance(kwargs, dict) and isinstance(model.get("name"), str)
    if not (named and all(isinstance(key, str) for key in kwargs)):
        raise ValueError(f"checkpoint {path} has no model {{name, kwargs}}; expected one to rebuild the model from")
    if not (isinstance(weights, dict) and all(isinstance(k, str) and torch.is_tensor(v) for k, v in weights.items())):
        raise ValueError(f"checkpoint {path} has no state_dict of tensors; expected the model's weights")
    return state


def _listed(names: list[str], limit: int = 3) -> str:
    return ", ".join(names[:limit]) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_fit(path: Path, skeleton: nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Refuse a state dict that is not exactly `skeleton`'s (a meta-device model): same keys, same shapes."""
    expected = {key: tuple(value.shape) for key, value in skeleton.state_dict().items()}
    found = {key: tuple(value.shape) for key, value in weights.items()}
    if expected == found:
        return
    what = f"{skeleton.config['name']} {skeleton.config['kwargs']}"
    wanted, held = sum(math.prod(s) for s in expected.values()), sum(math.prod(s) for s in found.values())
    if wanted != held:
        raise ValueError(f"checkpoint {path} asks for {what}, {wanted:,} numbers, but holds {held:,}; "
                         "expected the weights of that model")  # fmt: skip
    missing = sorted(expected.keys() - found.keys())
    unexpected = sorted(found.keys() - expected.keys())
    reshaped = sorted(k for k in expected.keys() & found.keys() if expected[k] != found[k])
    problems = [f"{label} {_listed(keys)}" for label, keys in
                (("missing", missing), ("unexpected", unexpected), ("other shape", reshaped)) if keys]  # fmt: skip
    raise ValueError(f"checkpoint {path} does not fit {what}: {'; '.join(problems)}")


def load_model(path: str | Path, expect_name: str | None = None, expect_scale: int | None = None) -> nn.Module:
    """Rebuild the model stored at `path` (in eval mode); fail if it is not `expect_name` / `expect_scale`, if
    its weights do not fit its architecture, or if any weight is NaN or infinite."""
    state = load(path)
    try:  # create_model checks every argument's type and range before it builds anything
        stored = complete_config(state["model"])  # a model stored before an argument existed is rebuilt as it was
        with torch.device("meta"):  # shapes only: a checkpoint asking for a large model allocates nothing here
            skeleton = create_model(stored["name"], **stored["kwargs"])
    except ValueError as error:
        raise ValueError(f"checkpoint {path} asks for a model binsr does not build: {error}") from None
    name, kwargs = stored["name"], stored["kwargs"]
    if expect_name is not None and name != expect_name:
        raise ValueError(f"checkpoint {path} holds a {name!r} model; expected {expect_name!r}")
    if expect_scale is not None and kwargs.get("scale") != expect_scale:
        raise ValueError(f"checkpoint {path} is for scale x{kwargs.get('scale')}; expected x{expect_scale}")
    weights = state["state_dict"]
    _check_fit(Path(path), skeleton, weights)
    bad = [key for key, value in weights.items() if value.is_floating_point() and not torch.isfinite(value).all()]
    if bad:
        raise ValueError(f"checkpoint {path} has NaN or infinite values in {_listed(bad)}; expected finite weights")
    model = create_model(name, **kwargs)
    model.load_state_dict(weights)
    return model.eval()


def warm_start(model: nn.Module, path: str | Path) -> list[str]:
    """Copy into `model` the weights of the checkpoint at `path` that fit it by name and shape, and return their
    names; the rest keep their initialisation. This is how EDSR trains x3 and x4 from an x2 model: head, body and
    the first upsampling stage carry over, the new stage starts fresh. Refuse a checkpoint of another model (its
    arguments must equal `model`'s but for the scale)."""
    state = load(path)
    ours, theirs = model.config, complete_config(state["model"])
    if theirs["name"] != ours["name"] or {**theirs["kwargs"], "scale": 0} != {**ours["kwargs"], "scale": 0}:
        raise ValueError(f"checkpoint {path} holds {theirs['name']} {theirs['kwargs']}; expected {ours['name']} "
                         f"with the arguments {ours['kwargs']} (any scale)")  # fmt: skip
    own = model.state_dict()
    fitting = {key: value for key, value in state["state_dict"].items() if key in own and own[key].shape == value.shape}
    model.load_state_dict(fitting, strict=False)
    return sorted(fitting)


def load_any(spec: str, expect_scale: int | None = None) -> nn.Module:
    """A shipped model by name (see `pretrained`) or the model of a checkpoint file."""
    shipped = read_manifest()["models"]
    if spec in shipped:
        model = pretrained(spec)
        if expect_scale is not None and model.scale != expect_scale:
            raise ValueError(f"shipped model {spec} is for scale x{model.scale}; expected x{expect_scale}")
        return model
    if not Path(spec).is_file():
        names = ", ".join(sorted(shipped)) or "(none shipped)"
        raise FileNotFoundError(f"model {spec!r} is neither a checkpoint file nor a shipped model; expected a "
                                f".pt file or one of {names}")  # fmt: skip
    return load_model(spec, expect_scale=expect_scale)


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file at `path`."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(assets_dir: str | Path = ASSETS) -> dict:
    """`assets/manifest.json`: {"models": {name: entry}} for the shipped checkpoints; empty when absent."""
    path = Path(assets_dir) / "manifest.json"
    if not path.is_file():
        return {"models": {}}
    try:
        manifest = json.loads(path.read_text())
    except ValueError as error:
        raise ValueError(f"manifest {path} is not valid JSON ({error})") from None
    if not (isinstance(manifest, dict) and isinstance(manifest.get("models"), dict)):
        raise ValueError(f'manifest {path} has no "models" table; expected {{"models": {{name: entry}}}}')
    return manifest


MANIFEST_KEYS = ("file", "model", "arguments", "sha256")


def shipped_config(entry: dict) -> dict:
    """A manifest entry's model {"name", "kwargs"}, brought up to date as a checkpoint's is (`complete_config`;
    entries written before the version was recorded have none)."""
    return complete_config({"name": entry["model"], "version": entry.get("version", 1), "kwargs": entry["arguments"]})


def pretrained(name: str, assets_dir: str | Path = ASSETS) -> nn.Module:
    """A shipped model, e.g. `pretrained("edsr-bbcu-x2")`, after checking its file against the manifest's hash."""
    models = read_manifest(assets_dir)["models"]
    if name not in models:
        raise ValueError(f"no shipped model {name!r}; expected one of {', '.join(sorted(models)) or '(none shipped)'}")
    entry = models[name]
    missing = [key for key in MANIFEST_KEYS if key not in entry]
    if missing:
        expected = ", ".join(MANIFEST_KEYS)
        raise ValueError(f"manifest entry {name!r} in {assets_dir} lacks {', '.join(missing)}; expected {expected}")
    path = Path(assets_dir) / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"shipped checkpoint {path} for {name!r} is missing")
    digest = sha256(path)
    if digest != entry["sha256"]:
        raise ValueError(f"shipped checkpoint {path} has sha256 {digest}; the manifest expects {entry['sha256']}")
    return load_model(path, expect_name=entry["model"], expect_scale=entry["arguments"].get("scale"))
