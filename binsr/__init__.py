"""binsr: binary neural networks for image super-resolution.

    import binsr
    model = binsr.create_model("edsr-proposed", scale=2, n_feats=32, n_blocks=8, att_bin="pixel", att_res="pixel")
    print(binsr.summary(model))
"""

from binsr.attention import PixelAttention, SpatialAttention, SqueezeExcitation, make_attention
from binsr.binary import BinaryConv2d, RPReLU, RSign, binary_sign, sign_weight
from binsr.blocks import AttentiveBinaryBlock, AttentiveBinaryUnit, BBCUBlock, BBCUUnit, ResBlock
from binsr.models import EDSR, MODELS, SRResNet, create_model
from binsr.summary import summary

__version__ = "0.1.0"

__all__ = [
    "EDSR",
    "MODELS",
    "AttentiveBinaryBlock",
    "AttentiveBinaryUnit",
    "BBCUBlock",
    "BBCUUnit",
    "BinaryConv2d",
    "PixelAttention",
    "RPReLU",
    "RSign",
    "ResBlock",
    "SRResNet",
    "SpatialAttention",
    "SqueezeExcitation",
    "binary_sign",
    "create_model",
    "make_attention",
    "sign_weight",
    "summary",
]
