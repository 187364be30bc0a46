"""binsr: binary neural networks for image super-resolution.

    import binsr
    model = binsr.create_model("edsr-proposed", scale=2, n_feats=32, n_blocks=8, att_bin="pixel", att_res="pixel")
    print(binsr.summary(model))

The package in layers; a layer imports only the layers above it in this list (tests/test_layout.py checks it),
and each package's docstring lists its modules:

    base         atomic files and run folders, accepted-value intervals, the torch device
    nn           the network: binary primitives, attention, blocks, models and their config, summary, checkpoints
    data         images and scores: image files and benchmark sets, MATLAB bicubic, PSNR/SSIM, downloads
    engine       the 1-bit engine: packed bits, XNOR kernels (numba and C), packed models, tiles
    evaluation   benchmark tables, upscaling photos, the engine's speed
    training     the training loop, its settings, distillation, experiments
    viz          the notebooks' figures and widgets
    cli, demo    the `binsr` command (`__main__`)

`import binsr` loads nothing heavy: the names below, and subpackages such as `binsr.nn`, are imported on first
use. Importing torch takes seconds, and the `binsr` command must be able to answer a Ctrl-C in them with one
line (`binsr.cli.main`), which it cannot do if the package itself imports torch before the command starts.
"""

import importlib
import sys

__version__ = "0.1.0"

_EXPORTS = {
    "binsr.nn.attention": ("PixelAttention", "SpatialAttention", "SqueezeExcitation", "make_attention"),
    "binsr.nn.binary": ("BinaryConv2d", "RPReLU", "RSign", "binary_sign", "sign_weight"),
    "binsr.nn.blocks": ("AttentiveBinaryBlock", "AttentiveBinaryUnit", "BBCUBlock", "BBCUUnit", "ResBlock"),
    "binsr.nn.models": ("EDSR", "MODELS", "SRResNet", "create_model"),
    "binsr.nn.summary": ("summary",),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_HOME)


def __getattr__(name: str) -> object:
    """An exported name or a submodule, imported now (PEP 562: called only for names not yet set)."""
    if name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
        setattr(sys.modules[__name__], name, value)
        return value
    try:
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"{__name__}.{name}":
            raise
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOME})
