"""Notebooks 05 and 06, signal propagation (17), (18): which initialisations keep the input's signal."""

from __future__ import annotations

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from binsr.nn.models import PREPRINT_LITERAL, bbcu_k, create_model
from binsr.nn.propagation import BlockSignal, signal_propagation
from binsr.viz.common import as_input, model_color, model_family, new_figure, styled


def initialisation_variants(n_feats: int = 32, attention: str = "se") -> dict[str, tuple[str, dict]]:
    """label -> (registry name, arguments): FP, BBCU with k = 1 and BBCU's k, the attentive unit (12) as the
    preprint reads it, with a1 = 1/k and gates started at 0.95, and binsr's default (gates at 1, BBCU's k)."""
    att = {"att_bin": attention, "att_res": attention}
    k = bbcu_k(n_feats)
    return {
        "EDSR-FP": ("edsr-fp", {}),
        "BBCU, k = 1": ("edsr-bbcu", {"k": 1.0}),
        f"BBCU, k = {k:g}": ("edsr-bbcu", {}),
        f"attentive ({attention}), preprint literal": ("edsr-proposed", {**att, **PREPRINT_LITERAL}),
        f"attentive ({attention}), a1 = 1/{k:g}, gates 0.95": (
            "edsr-proposed", {**att, **PREPRINT_LITERAL, "a1_init": 1 / k, "gate_init": 0.95},
        ),
        f"attentive ({attention}), binsr default": ("edsr-proposed", att),
    }  # fmt: skip


def initial_signals(
    image: np.ndarray | torch.Tensor, n_feats: int = 32, n_blocks: int = 8, attention: str = "se", seed: int = 0
) -> dict[str, list[BlockSignal]]:
    """(17), (18) per block for every variant of `initialisation_variants`, untrained (seeded), on `image`."""
    signals = {}
    for label, (name, kwargs) in initialisation_variants(n_feats, attention).items():
        torch.manual_seed(seed)
        model = create_model(name, scale=2, n_feats=n_feats, n_blocks=n_blocks, **kwargs).eval()
        signals[label] = signal_propagation(model, as_input(image))
    return signals


@styled
def propagation_figure(signals: dict[str, list[BlockSignal]]) -> Figure:
    """Left: cosine (17) between the body's input and each block's output; right: branch / skip amplitude (18).
    Colour = model family (`model_color`), line style = variant within the family."""
    fig = new_figure(10, 4.4)
    ax_cos, ax_ratio = fig.subplots(1, 2)
    styles = ("o-", "s--", "^:", "D-.")  # dashed lines stay visible where two variants coincide
    seen: dict[str | None, int] = {}
    for label, rows in signals.items():
        family = model_family(label)
        style = styles[seen.get(family, 0) % len(styles)]
        seen[family] = seen.get(family, 0) + 1
        blocks = [r.block for r in rows]
        ax_cos.plot(blocks, [r.cosine for r in rows], style, color=model_color(label), label=label)
        ax_ratio.semilogy(blocks, [r.branch_ratio for r in rows], style, color=model_color(label), label=label)
    ax_cos.set(xlabel="block", ylabel="cos(body input, block output)", ylim=(-0.2, 1.05),
               title="(17) does the input's signal survive?")  # fmt: skip
    ax_cos.axhline(0, color="grey", lw=0.8)
    ax_ratio.set(xlabel="block", ylabel="|branch| / |skip| (log scale)", title="(18) branch vs skip amplitude")
    for ax in (ax_cos, ax_ratio):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # blocks are counted, not measured
    fig.legend(*ax_cos.get_legend_handles_labels(), loc="outside lower center", ncols=2)  # below both panels
    return fig
