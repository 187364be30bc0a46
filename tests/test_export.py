"""Exported models run by the XNOR runtime match the float models they came from."""

import numpy as np
import pytest
import torch

from binsr import xnor
from binsr.binary import BinaryConv2d
from binsr.export import export_model
from binsr.models import create_model
from binsr.runtime import load_packed

CASES = [
    ("edsr-bbcu", {"scale": 2}),
    ("edsr-bbcu", {"scale": 4}),
    ("edsr-bbcu", {"scale": 2, "n_feats": 64}),  # 32 channels pair taps in a word, 64 do not
    *[("edsr-proposed", {"scale": 2, "att_bin": kind, "att_res": kind}) for kind in ("none", "se", "spatial", "pixel")],
    ("edsr-proposed", {"scale": 3, "att_bin": "se", "att_res": "pixel"}),
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


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{'-'.join(map(str, k.values()))}" for n, k in CASES])
def test_packed_model_matches_float_model(name, kwargs, tmp_path):
    model = perturbed_model(name, kwargs)
    lr = torch.rand(2, 3, 11, 9, generator=torch.Generator().manual_seed(1))
    sr_float, accumulators = float_accumulators(model, lr)

    packed = load_packed(export_model(model, tmp_path / "model.binsr"))
    trace = []
    sr = packed(lr, trace=trace)
    # Bitwise: the full-precision ops are the float model's torch calls and the binary ones are exact.
    assert torch.equal(sr, sr_float)
    assert len(trace) == len(accumulators) >= 4  # two blocks of two units, and BBCU-M's tail
    for (layer, packed_input), expected in zip(trace, accumulators, strict=True):
        np.testing.assert_array_equal(xnor.xnor_accumulators(packed_input, layer.conv), expected)


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
