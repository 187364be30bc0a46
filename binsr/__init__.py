"""binsr: binary neural networks for image super-resolution.

    import binsr
    model = binsr.create_model("edsr-proposed", scale=2, n_feats=32, n_blocks=8, att_bin="pixel", att_res="pixel")
    print(binsr.summary(model))

`import binsr` loads nothing heavy: the names below, and submodules such as `binsr.models`, are imported on
first use. Importing torch takes seconds, and the `binsr` command must be able to answer a Ctrl-C in them with
one line (`binsr.cli.main`), which it cannot do if the package itself imports torch before the command starts.
"""

import importlib
import sys
import types

__version__ = "0.1.0"

_EXPORTS = {
    "binsr.attention": ("PixelAttention", "SpatialAttention", "SqueezeExcitation", "make_attention"),
    "binsr.binary": ("BinaryConv2d", "RPReLU", "RSign", "binary_sign", "sign_weight"),
    "binsr.blocks": ("AttentiveBinaryBlock", "AttentiveBinaryUnit", "BBCUBlock", "BBCUUnit", "ResBlock"),
    "binsr.models": ("EDSR", "MODELS", "SRResNet", "create_model"),
    "binsr.summary": ("summary",),
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


class _Package(types.ModuleType):
    """The package module. Importing the submodule `binsr.summary` would set the package's attribute `summary` to
    that module, over the function of the same name that binsr exports: an exported name keeps its value."""

    def __setattr__(self, name: str, value: object) -> None:
        if not (name in _HOME and isinstance(value, types.ModuleType)):
            super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
