"""binsr: binary neural networks for image super-resolution.

    import binsr
    model = binsr.create_model("edsr-proposed", scale=2, n_feats=32, n_blocks=8, att_bin="pixel", att_res="pixel")
    print(binsr.summary(model))
"""

import os

# Before torch loads (when binsr is imported first, as by the `binsr` command): torch's OpenMP workers otherwise
# spin after every parallel op and take both cores from the XNOR engine's numba threads, which made 2-thread
# binary convs up to 1.8x slower right after a torch op (`binsr bench`). Costs ~4% on a 2-thread BBCU training
# step; export OMP_WAIT_POLICY=ACTIVE to keep the spinning.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

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
