"""Shared helpers of the notebook figures: quick mode, figure size, image tensors, forward hooks, sampling."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from binsr.data import to_tensor

FIG_DPI = 75


def quick_mode() -> bool:
    """True when the environment variable BINSR_QUICK is set to anything but "", "0" or "false" (CI)."""
    return os.environ.get("BINSR_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def new_figure(width: float = 9.0, height: float = 3.2) -> Figure:
    """A pyplot-free figure at the notebooks' size and resolution (at most 10 x 4 inches, 75 dpi)."""
    return Figure(figsize=(min(width, 10.0), min(height, 4.0)), dpi=FIG_DPI, layout="constrained")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1], as the models and `binsr.evaluate` see it."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return to_tensor(image[None])


def as_input(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A model input: uint8 images go through `image_to_tensor`, tensors pass unchanged."""
    return image_to_tensor(image) if isinstance(image, np.ndarray) else image


def run_with_hooks(model: nn.Module, image: np.ndarray | torch.Tensor, hooks: list[tuple[nn.Module, Callable]]):
    """Run `model` on `image` without grad, with the forward hooks [(module, hook(module, inputs, output))]
    registered for this one pass only."""
    handles = [module.register_forward_hook(hook) for module, hook in hooks]
    try:
        with torch.no_grad():
            model(as_input(image))
    finally:
        for handle in handles:
            handle.remove()


def capture(model: nn.Module, image: np.ndarray | torch.Tensor, module_name: str, which: str = "output"):
    """Run `model` on `image` (no grad) and return the input or output of the submodule `module_name`.

    The batch dimension is dropped: the result has shape (C, H, W).
    """
    if which not in ("input", "output"):
        raise ValueError(f"which={which!r} must be 'input' or 'output'")
    modules = dict(model.named_modules())
    if module_name not in modules:
        raise ValueError(f"model has no submodule {module_name!r}")
    store: dict[str, torch.Tensor] = {}

    def hook(module, inputs, out):
        store["t"] = (inputs[0] if which == "input" else out).detach()

    run_with_hooks(model, image, [(modules[module_name], hook)])
    return store["t"][0]


# 24-level colour maps: noisy feature maps drawn with a continuous map make PNGs that do not compress.
QUANTIZED_CMAPS = {
    name: matplotlib.colormaps[name].resampled(24) for name in ("viridis", "magma", "inferno", "coolwarm")
}
_MODEL_COLORS = {"FP": "tab:blue", "BBCU": "tab:orange", "proposed": "tab:red", "bicubic": "tab:gray"}


def model_color(label: str) -> str:
    """A stable colour per model family, matched on the label's prefix (e.g. "proposed (no attention)")."""
    for key, color in _MODEL_COLORS.items():
        if label.lower().startswith(key.lower()):
            return color
    return "black"


@functools.cache
def _sample_index(numel: int, n: int, seed: int) -> torch.Tensor:
    return torch.randperm(numel, generator=torch.Generator().manual_seed(seed))[:n]


def sample_tensor(t: torch.Tensor, n: int = 20000, seed: int = 0) -> torch.Tensor:
    """At most `n` entries of `t`, drawn without replacement with a fixed seed (for histograms)."""
    flat = t.detach().flatten()
    return flat[_sample_index(flat.numel(), n, seed)] if flat.numel() > n else flat


def sample_values(t: torch.Tensor, n: int = 20000, seed: int = 0) -> np.ndarray:
    """`sample_tensor` as a float numpy array."""
    return sample_tensor(t, n, seed).float().numpy()
