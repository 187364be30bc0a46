"""Checkpoints: one file holds everything needed to rebuild a model and to resume its training.

A checkpoint is a dict of tensors and plain Python values only, so it loads with
`torch.load(..., weights_only=True)` (no pickled code runs on load):

    format      "binsr-checkpoint-1"
    model       {"name": registry name, "kwargs": full arguments}   -> `create_model(name, **kwargs)`
    state_dict  the model's parameters and buffers
    step        optimizer steps taken
    config      the TrainConfig as a dict (absent in shipped checkpoints)
    optimizer   the optimizer's state_dict (absent in shipped checkpoints)
    rng         torch's CPU RNG state (absent in shipped checkpoints)
    metrics     free-form results, e.g. validation PSNR

The learning-rate schedule is a pure function of the step, so the step is the whole scheduler state.
Files are written to a temporary file in the target directory and renamed over the target, so a crash
mid-write never leaves a truncated checkpoint behind.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

from binsr.models import create_model

FORMAT = "binsr-checkpoint-1"
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def save(path: str | Path, model: nn.Module, step: int = 0, **fields) -> Path:
    """Atomically write `model` (with its registry config) and extra `fields` (config, optimizer, ...) to `path`."""
    if not hasattr(model, "config"):
        raise ValueError(f"model {type(model).__name__} has no .config; build it with binsr.create_model")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": FORMAT,
        "model": {"name": model.config["name"], "kwargs": dict(model.config["kwargs"])},
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "step": int(step),
        **fields,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
        os.chmod(tmp, 0o644)  # mkstemp makes the file private; a checkpoint is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path) -> dict:
    """The checkpoint dict at `path` (tensors on CPU)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {path} is corrupt or not a torch file ({type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ValueError(f"checkpoint {path} is not a {FORMAT} file")
    return state


def load_model(path: str | Path, expect_name: str | None = None, expect_scale: int | None = None) -> nn.Module:
    """Rebuild the model stored at `path` (in eval mode); fail if it is not `expect_name` / `expect_scale`."""
    state = load(path)
    name, kwargs = state["model"]["name"], state["model"]["kwargs"]
    if expect_name is not None and name != expect_name:
        raise ValueError(f"checkpoint {path} holds a {name!r} model; expected {expect_name!r}")
    if expect_scale is not None and kwargs.get("scale") != expect_scale:
        raise ValueError(f"checkpoint {path} is for scale x{kwargs.get('scale')}; expected x{expect_scale}")
    model = create_model(name, **kwargs)
    model.load_state_dict(state["state_dict"])
    return model.eval()


def sha256(path: str | Path) -> str:
    """Hex SHA-256 of the file at `path`."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def read_manifest(assets_dir: str | Path = ASSETS) -> dict:
    """`assets/manifest.json`: {"models": {name: entry}} for the shipped checkpoints; empty when absent."""
    path = Path(assets_dir) / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {"models": {}}


def pretrained(name: str, assets_dir: str | Path = ASSETS) -> nn.Module:
    """A shipped model, e.g. `pretrained("edsr-bbcu-x2")`, after checking its file against the manifest's hash."""
    models = read_manifest(assets_dir)["models"]
    if name not in models:
        raise ValueError(f"no shipped model {name!r}; expected one of {', '.join(sorted(models)) or '(none shipped)'}")
    entry = models[name]
    path = Path(assets_dir) / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"shipped checkpoint {path} for {name!r} is missing")
    digest = sha256(path)
    if digest != entry["sha256"]:
        raise ValueError(f"shipped checkpoint {path} has sha256 {digest}; the manifest expects {entry['sha256']}")
    return load_model(path, expect_name=entry["model"], expect_scale=entry["arguments"]["scale"])
