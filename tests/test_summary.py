import pytest

from binsr.nn.models import create_model
from binsr.nn.summary import summary


@pytest.mark.parametrize(
    "name, scale, gops, kparams, exact_params",
    [  # BBCU (Xia et al. 2022) Table 1 at a 320x180 LR input; exact_params is what the architecture holds
        ("bbcu-l", 2, "18.55", 225, 225_027),
        ("bbcu-l", 4, "79.20", 372, 372_739),
        ("bbcu-m", 2, "1.83", 46, 46_147),
        ("bbcu-m", 4, "3.95", 51, 50_755),
    ],
)
def test_reproduces_bbcu_table_1(name, scale, gops, kparams, exact_params):
    result = summary(create_model(name, scale=scale), lr_size=(180, 320))
    assert f"{result.ops / 1e9:.2f}" == gops
    assert result.params == exact_params
    # BBCU prints 372.7 K as "372" but 50.8 K as "51": equal to the printed K, up to their rounding
    assert abs(result.params / 1e3 - kparams) < 1


def test_bbcu_l_x2_exact_counts():
    result = summary(create_model("bbcu-l", scale=2))
    lr, hr = 180 * 320, 360 * 640
    assert result.bops == 32 * 64 * 64 * 9 * lr
    macs = 3 * 64 * 9 * lr + 64 * 256 * 9 * lr + 64 * 64 * 9 * hr + 64 * 3 * 9 * hr
    assert result.flops == macs + 3 * hr  # + the image-space skip
    assert result.fp_params == (3 * 64 * 9 + 64) + (64 * 256 * 9 + 256) + (64 * 64 * 9 + 64) + (64 * 3 * 9 + 3)
    assert result.binary_params == 32 * 64 * 64 * 9
    # RSign thresholds (64) + RPReLU (3 * 64) per binary conv, reported apart
    assert result.per_channel_params == 32 * 4 * 64


def test_storage_bytes_pack_binary_weights_to_one_bit():
    result = summary(create_model("edsr-bbcu", scale=2, n_feats=32, n_blocks=8))
    assert result.packed_bytes == result.binary_params // 8 + 4 * (result.fp_params + result.per_channel_params)
    assert result.float_bytes == 4 * (result.fp_params + result.binary_params + result.per_channel_params)
    text = str(result)
    assert "OPs = FLOPs + BOPs/64" in text and "body.0.0.conv" in text


def test_attention_convs_are_counted_full_precision():
    plain = summary(create_model("edsr-proposed", n_feats=32, n_blocks=1, att_bin="none", att_res="none"), (10, 10))
    pixel = summary(create_model("edsr-proposed", n_feats=32, n_blocks=1, att_bin="none", att_res="pixel"), (10, 10))
    assert pixel.flops - plain.flops == 2 * 32 * 32 * 100
    assert pixel.fp_params - plain.fp_params == 2 * (32 * 32 + 32)


def test_bad_lr_size():
    with pytest.raises(ValueError, match="lr_size=\\(0, 5\\) must be"):
        summary(create_model("edsr-fp", n_feats=4, n_blocks=1), lr_size=(0, 5))
