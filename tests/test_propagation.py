import pytest
import torch

from binsr.nn.models import PREPRINT_LITERAL, create_model
from binsr.nn.propagation import signal_propagation

ARGS = {"scale": 2, "n_feats": 32, "n_blocks": 8}


def _signal(name: str, **kwargs):
    torch.manual_seed(0)
    model = create_model(name, **ARGS, **kwargs).eval()
    return signal_propagation(model, torch.rand(1, 3, 24, 24))


def test_cosine_and_ratio_are_the_definitions_on_a_one_block_net():
    torch.manual_seed(0)
    model = create_model("edsr-fp", scale=2, n_feats=8, n_blocks=1).eval()
    lr = torch.rand(1, 3, 6, 7)
    h0 = model.head((lr - model.rgb_mean) * model.k)
    branch = model.body[0].body(h0)
    h1 = h0 + branch
    [row] = signal_propagation(model, lr)
    assert row.block == 1
    assert row.cosine == pytest.approx(torch.nn.functional.cosine_similarity(h0.flatten(), h1.flatten(), 0).item())
    assert row.branch_ratio == pytest.approx((branch.norm() / h0.norm()).item(), rel=1e-6)


def test_bbcus_amplification_keeps_the_signal_and_the_preprints_literal_init_loses_it():
    """The issue's measurement at initialisation (32x8, x2): BBCU k=65 keeps cos > 0.9 through all 8 blocks;
    SE on both branches with k=1, sigmoid gates and a1=a2=1 is near 0 after a few blocks."""
    bbcu = _signal("edsr-bbcu")
    literal = _signal("edsr-proposed", att_bin="se", att_res="se", **PREPRINT_LITERAL)
    default = _signal("edsr-proposed", att_bin="se", att_res="se")
    assert min(r.cosine for r in bbcu) > 0.9 and max(r.branch_ratio for r in bbcu) < 0.1
    assert literal[-1].cosine < 0.3
    assert [r.cosine for r in default] == pytest.approx([r.cosine for r in bbcu], abs=0.05)
    k1 = _signal("edsr-bbcu", k=1.0)
    assert k1[-1].cosine < bbcu[-1].cosine and k1[0].branch_ratio > 10 * bbcu[0].branch_ratio


def test_models_without_an_edsr_body_are_refused():
    model = create_model("bbcu-l", scale=2, n_feats=8, n_blocks=1)
    with pytest.raises(ValueError, match="needs units with branches|has no EDSR body"):
        signal_propagation(model, torch.rand(1, 3, 6, 6))


def test_propagation_figure_draws_every_variant_on_both_panels():
    from binsr import viz

    signals = viz.initial_signals(torch.rand(1, 3, 12, 12), n_feats=16, n_blocks=2)
    assert len(signals) == 6 and all(len(rows) == 2 for rows in signals.values())
    bbcu, default = signals["BBCU, k = 32.5"], signals["attentive (se), binsr default"]
    assert [r.cosine for r in bbcu] == pytest.approx([r.cosine for r in default], abs=0.05)
    fig = viz.propagation_figure(signals)
    assert [len(ax.lines) for ax in fig.axes] == [7, 6]  # six variants (+ the zero line on the left)
    for i, (label, rows) in enumerate(signals.items()):
        cosine, ratio = fig.axes[0].lines[i], fig.axes[1].lines[i]
        assert cosine.get_label() == ratio.get_label() == label
        assert cosine.get_xdata().tolist() == ratio.get_xdata().tolist() == [1, 2]
        assert cosine.get_ydata().tolist() == [r.cosine for r in rows]
        assert ratio.get_ydata().tolist() == [r.branch_ratio for r in rows]


def test_binary_branches_off_leaves_the_skip_terms_only():
    from binsr.nn.propagation import binary_branches_off

    torch.manual_seed(0)
    model = create_model("edsr-proposed", scale=2, n_feats=8, n_blocks=1, att_bin="se", att_res="spatial").eval()
    lr = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        full = model(lr)
        with binary_branches_off(model):
            off = model(lr)
        for unit in model.body[0]:
            unit.a1.zero_()  # a1 = 0 is the same switch
        assert torch.equal(model(lr), off)
    assert not torch.equal(full, off)
    bbcu = create_model("edsr-bbcu", scale=2, n_feats=8, n_blocks=1).eval()
    with torch.no_grad(), binary_branches_off(bbcu):
        h = bbcu.head((lr - bbcu.rgb_mean) * bbcu.k)
        expected = bbcu.tail(bbcu.upsampler(h + bbcu.body[1](h))) / bbcu.k + bbcu.rgb_mean
        assert torch.allclose(bbcu(lr), expected, atol=1e-6)
    with pytest.raises(ValueError, match="has no binary units"):
        binary_branches_off(create_model("edsr-fp", scale=2, n_feats=8, n_blocks=1)).__enter__()
