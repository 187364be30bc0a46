"""Shared helpers of the notebook figures: quick mode, the series' figure style and model colours, image
tensors, forward hooks, sampling."""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from binsr.data.images import to_tensor
from binsr.nn.binary import BinaryConv2d
from binsr.nn.summary import summary

# One style for the whole series, sized to be read from the back of a room on a projector: at 100 dpi a
# 10-inch figure is 1000 px wide (it fits a notebook column at 1280x720 without being scaled down), and 11-pt
# ticks and legends are 15 px tall. Every figure function applies it through `styled`.
FIG_DPI = 100
MAX_FIGSIZE = (10.0, 5.0)  # inches: wider figures are scaled down by the notebook, shrinking their fonts
STYLE: dict[str, object] = {
    "font.size": 12,
    "axes.titlesize": 13,
    "axes.labelsize": 12,
    "xtick.labelsize": 11,
    "ytick.labelsize": 11,
    "legend.fontsize": 11,
    "legend.title_fontsize": 11,
    "figure.titlesize": 14,
    "lines.linewidth": 2.0,
    "lines.markersize": 6.0,
    "legend.framealpha": 0.85,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
}
TICK_SIZE = STYLE["xtick.labelsize"]

# One colour per model family in every notebook: the same model is the same colour in 06, 07, 08 and 09.
MODEL_COLORS: dict[str, str] = {
    "bicubic": "tab:gray",
    "FP": "tab:blue",  # EDSR-FP and every full-precision net
    "BBCU": "tab:orange",  # EDSR-BBCU, BBCU-L, BBCU-M
    "proposed": "tab:green",  # the attentive binary net (12), every attention kind
    "HR": "black",  # the ground truth
}
OTHER_COLOR = "tab:purple"  # a label of no known family (e.g. "yours"), distinct from all of the above
# Words of a label that name a family ("EDSR-BBCU, thresholds = 0" -> BBCU); the first one found wins.
_FAMILY_WORDS = {"bicubic": "bicubic", "fp": "FP", "bbcu": "BBCU", "proposed": "proposed", "attentive": "proposed",
                 "hr": "HR"}  # fmt: skip


def styled(make: Callable[..., Figure]) -> Callable[..., Figure]:
    """Decorator of every figure function: build the figure under STYLE, then pin the tick labels' size on each
    axes (matplotlib creates most tick labels lazily when the figure is drawn, after the style is gone)."""

    @functools.wraps(make)
    def build(*args, **kwargs) -> Figure:
        with matplotlib.rc_context(STYLE):
            fig = make(*args, **kwargs)
        for ax in fig.axes:
            ax.tick_params(which="both", labelsize=TICK_SIZE)
        return fig

    return build


def model_family(label: str) -> str | None:
    """The MODEL_COLORS family a label names ("EDSR-FP" -> "FP", "proposed-se" -> "proposed"), or None."""
    for word in re.split(r"[^a-z0-9]+", label.lower()):
        if word in _FAMILY_WORDS:
            return _FAMILY_WORDS[word]
    return None


def model_color(label: str) -> str:
    """The colour of a model in every figure of the series (MODEL_COLORS by `model_family`; OTHER_COLOR if none)."""
    family = model_family(label)
    return OTHER_COLOR if family is None else MODEL_COLORS[family]


def env_flag(name: str) -> bool:
    """True when the environment variable `name` is set to anything but "", "0", "false" or "no"."""
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")


def quick_mode() -> bool:
    """True when BINSR_QUICK is set (CI): the notebooks' loops shrink."""
    return env_flag("BINSR_QUICK")


def new_figure(width: float = 9.0, height: float = 3.2) -> Figure:
    """A pyplot-free figure at the notebooks' resolution (FIG_DPI), at most MAX_FIGSIZE inches."""
    size = (min(width, MAX_FIGSIZE[0]), min(height, MAX_FIGSIZE[1]))
    return Figure(figsize=size, dpi=FIG_DPI, layout="constrained")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1], as the models and `binsr.evaluation.evaluate` see it."""
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
QUANTIZED_CMAPS = {name: matplotlib.colormaps[name].resampled(24) for name in ("viridis", "magma", "inferno")}


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


def binary_convs(model: nn.Module) -> list[tuple[str, BinaryConv2d]]:
    """(name, module) of every BinaryConv2d in `model`, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BinaryConv2d)]


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors' entries."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


class _Broadcast(nn.Module):
    """Lets `binsr.nn.summary` (which feeds an RGB image) cost a block on `channels` feature maps; no cost itself."""

    def __init__(self, block: nn.Module, channels: int):
        super().__init__()
        self.block, self.channels = block, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x[:, :1].expand(-1, self.channels, -1, -1))


def block_summary(block: nn.Module, channels: int, lr_size: tuple[int, int] = (180, 320)):
    """`binsr.nn.summary` of a single block that takes (N, channels, H, W) feature maps."""
    return summary(_Broadcast(block, channels), lr_size)
