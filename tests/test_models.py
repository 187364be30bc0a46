import pytest
import torch

from binsr.nn.binary import BinaryConv2d
from binsr.nn.config import BBCU_BINARIZATION, VERSION
from binsr.nn.models import MODELS, PREPRINT_LITERAL, bbcu_k, complete_config, create_model, model_arguments

# edsr-proposed's defaults, all in its registry entry
PROPOSED_DEFAULTS = {
    "scale": 2,
    "n_feats": 64,
    "n_blocks": 16,
    "k": None,
    "sign_backward": "approx",
    "alpha_mode": "learnable",
    "weight_grad": "bbcu",
    "att_bin": "se",
    "att_res": "se",
    "gate": "2sigmoid",
    "gate_init": 1.0,
    "gate_input": "unit",
    "a1_init": 1.0,
    "a2_init": 1.0,
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_every_model_and_scale_has_the_right_output_shape(name, scale):
    model = create_model(name, scale=scale, n_feats=8, n_blocks=1)
    out = model(torch.rand(2, 3, 7, 10))
    assert out.shape == (2, 3, 7 * scale, 10 * scale)
    assert model.scale == scale


def test_config_records_full_arguments_and_rebuilds_the_model():
    model = create_model("edsr-proposed", scale=2, n_feats=16, n_blocks=2, att_bin="se")
    assert model.config == {"name": "edsr-proposed", "kwargs": {**PROPOSED_DEFAULTS, "n_feats": 16, "n_blocks": 2}}
    twin = create_model(model.config["name"], **model.config["kwargs"])
    assert twin.state_dict().keys() == model.state_dict().keys()


def test_stored_configs_of_every_version_migrate_to_todays_arguments():
    today = create_model("edsr-proposed", n_feats=16, n_blocks=2, att_bin="pixel").config
    version_2 = {
        "name": "edsr-proposed",
        "kwargs": {  # binsr's files until the version was recorded: no "version"
            "scale": 2,
            "n_feats": 16,
            "n_blocks": 2,
            "att_bin": "pixel",
            "att_res": "se",
            "k": None,
            "alpha_mode": "learnable",
            "backward": "approx",
            "a1_init": 1.0,
            "a2_init": 1.0,
            "gate": "2sigmoid",
            "gate_init": 1.0,
            "weight_grad": "bbcu",
            "gate_input": "unit",
        },
    }
    assert complete_config(version_2) == today
    assert complete_config({**version_2, "version": 2}) == today
    # a model stored before gate_input existed had gates that saw the amplified features: it is completed with
    # that value, not with today's default, and is rebuilt as it was trained
    version_1 = {"name": "edsr-proposed", "kwargs": {k: v for k, v in version_2["kwargs"].items() if k != "gate_input"}}
    amplified = {**today, "kwargs": {**today["kwargs"], "gate_input": "amplified"}}
    assert complete_config(version_1) == amplified
    assert complete_config({**version_1, "version": 1}) == amplified
    assert complete_config({**today, "version": VERSION}) == today
    # other models only renamed the sign's backward
    bbcu = {
        "name": "edsr-bbcu",
        "kwargs": {
            "scale": 2,
            "n_feats": 8,
            "n_blocks": 1,
            "k": None,
            "alpha_mode": "mean",
            "backward": "clipped",
            "weight_grad": "bbcu",
        },
    }
    assert complete_config(bbcu)["kwargs"]["sign_backward"] == "clipped"
    with pytest.raises(ValueError, match=r"^model config version 4 is not valid; expected an integer in \[1, 3\]$"):
        complete_config({**today, "version": 4})


def test_every_default_is_stated_once_in_the_registry():
    # edsr-proposed's defaults, all in its registry entry; BBCU's binarization is edsr-bbcu's default
    assert MODELS["edsr-proposed"].defaults == PROPOSED_DEFAULTS
    assert {name: model_arguments(name) for name in MODELS} == {name: e.defaults for name, e in MODELS.items()}
    bbcu = create_model("edsr-bbcu", n_feats=8, n_blocks=1)
    assert {c.binarization for c in bbcu.modules() if isinstance(c, BinaryConv2d)} == {BBCU_BINARIZATION}
    assert {
        c.binarization.alpha_mode
        for c in create_model("bbcu-m", n_feats=8, n_blocks=1).modules()
        if isinstance(c, BinaryConv2d)
    } == {"mean"}


def test_amplification_factor_defaults():
    assert bbcu_k(64) == 130.0 and bbcu_k(32) == 65.0
    assert create_model("edsr-bbcu", n_feats=32, n_blocks=1).k == 65.0
    assert create_model("edsr-proposed", n_feats=32, n_blocks=1).k == 65.0
    assert create_model("edsr-proposed", n_feats=32, n_blocks=1, **PREPRINT_LITERAL).k == 1.0
    assert create_model("edsr-fp", n_feats=32, n_blocks=1).k == 1.0
    assert create_model("bbcu-l", n_feats=64, n_blocks=1).k == 130.0


def test_edsr_k_scales_the_network_input_and_divides_the_output():
    torch.manual_seed(0)
    model = create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=1, k=7.0)
    seen = {}

    def record(module, inputs, output):
        seen["in"] = inputs[0]

    model.head.register_forward_hook(record)
    x = torch.rand(1, 3, 4, 4)
    model(x)
    assert torch.allclose(seen["in"], (x - model.rgb_mean) * 7.0)


def test_binary_layer_counts_and_alpha_modes():
    def binary_convs(m):
        return [c for c in m.modules() if isinstance(c, BinaryConv2d)]

    assert len(binary_convs(create_model("edsr-bbcu", n_feats=8, n_blocks=3))) == 6

    def alpha_modes(name):
        return {c.binarization.alpha_mode for c in binary_convs(create_model(name, n_feats=8, n_blocks=1))}

    assert alpha_modes("edsr-bbcu") == {"mean"} and alpha_modes("edsr-proposed") == {"learnable"}
    assert len(binary_convs(create_model("bbcu-m", scale=4, n_feats=8, n_blocks=2))) == 4 + 2 + 1
    assert len(binary_convs(create_model("bbcu-l", scale=4, n_feats=8, n_blocks=2))) == 4


def test_gradients_reach_every_parameter_of_the_proposed_model():
    torch.manual_seed(0)
    model = create_model("edsr-proposed", scale=2, n_feats=8, n_blocks=1, att_bin="se", att_res="spatial")
    (model(torch.rand(1, 3, 8, 8)) - torch.rand(1, 3, 16, 16)).abs().mean().backward()
    assert [n for n, p in model.named_parameters() if p.grad is None] == []
    # a dead ReLU in SE's one-unit bottleneck may legitimately stop a gradient; nothing else may be zero
    zero = [n for n, p in model.named_parameters() if not p.grad.abs().sum() > 0 and "att_bin.fc" not in n]
    assert zero == []


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown model 'edsr-xnor'; expected one of edsr-fp, edsr-bbcu"):
        create_model("edsr-xnor")
    with pytest.raises(ValueError, match="model 'edsr-fp' has no argument att_bin; valid: scale, n_feats"):
        create_model("edsr-fp", att_bin="se")
    with pytest.raises(ValueError, match=r"^scale=5 is not valid; expected one of 2, 3, 4$"):
        create_model("edsr-fp", scale=5)
    with pytest.raises(ValueError, match="att_res='channel' is not valid"):
        create_model("edsr-proposed", att_res="channel")
    assert model_arguments("bbcu-m")["k"] is None


@pytest.mark.parametrize("kind", ["se", "spatial", "pixel"])
def test_default_attentive_net_starts_as_edsr_bbcu(kind):
    """Gates started at 1 (2 sigmoid), a1 = a2 = 1 and BBCU's k: with the same weights, the same function."""
    torch.manual_seed(0)
    bbcu = create_model("edsr-bbcu", scale=2, n_feats=16, n_blocks=2, alpha_mode="learnable").eval()
    proposed = create_model("edsr-proposed", scale=2, n_feats=16, n_blocks=2, att_bin=kind, att_res=kind).eval()
    missing = proposed.load_state_dict(bbcu.state_dict(), strict=False).missing_keys
    assert missing and all(".att_" in key or key.endswith((".a1", ".a2")) for key in missing)
    x = torch.rand(1, 3, 9, 11)
    assert torch.equal(proposed(x), bbcu(x))


def test_unit_gate_input_divides_what_every_gate_sees_by_k():
    kwargs = {"n_feats": 32, "n_blocks": 2, "att_bin": "se", "att_res": "pixel"}
    unit = create_model("edsr-proposed", **kwargs)  # the default
    amplified = create_model("edsr-proposed", **kwargs, gate_input="amplified")
    k = bbcu_k(32)
    assert k == 65.0
    for model, expected in ((amplified, 1.0), (unit, 1 / k)):
        gates = [m for m in model.modules() if hasattr(m, "gate")]
        assert len(gates) == 2 * 2 * 2 and all(m.input_scale == expected for m in gates)
    with pytest.raises(ValueError, match="gate_input='raw' is not valid; expected one of amplified, unit"):
        create_model("edsr-proposed", gate_input="raw")


def test_bbcu_m_tail_binary_convs_get_bbcus_scaled_init():
    """BBCU's code applies Kaiming-normal x 0.1 to upconv and HRconv, binary in BBCU-M:
    alpha ~ 0.1 * mean|N(0, 2/fan_in)|."""
    torch.manual_seed(0)
    model = create_model("bbcu-m", scale=4, n_feats=64, n_blocks=1)
    expected = 0.1 * (2 / (64 * 9)) ** 0.5 * (2 / torch.pi) ** 0.5  # 0.0047
    for unit in (*model.upsampler, model.conv_hr):
        assert unit.conv.scale().mean().item() == pytest.approx(expected, rel=0.03)
    body = model.body[0][0].conv.scale().mean().item()  # the body keeps nn.Conv2d's default: mean|U(-b, b)| = b/2
    assert body == pytest.approx(0.5 / (64 * 9) ** 0.5, rel=0.03)
