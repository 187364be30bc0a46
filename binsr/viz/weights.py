"""Notebook 04, weight binarization (6): the scale alpha, sign flips, the STE clamp."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from binsr.nn.binary import sign_weight
from binsr.viz.common import binary_convs, image_to_tensor, new_figure, styled


def binarization_error(w: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
    """||W_l - alpha_l sign(W_l)||^2 per output channel l (eq. 6); a 1-D `w` counts as one channel."""
    w2 = w.detach().reshape(1, -1) if w.dim() == 1 else w.detach().reshape(w.shape[0], -1)
    a = torch.as_tensor(alpha, dtype=w2.dtype).reshape(-1, 1)
    return ((w2 - a * sign_weight(w2)) ** 2).sum(dim=1)


def alpha_error_curve(w: torch.Tensor, alphas: np.ndarray | torch.Tensor) -> np.ndarray:
    """||W - alpha sign(W)||^2 over all of `w` for each alpha in `alphas` (computed directly, in float64)."""
    flat = w.detach().flatten().double()
    a = torch.as_tensor(np.asarray(alphas, dtype=np.float64)).view(-1, 1)
    return ((flat.view(1, -1) - a * sign_weight(flat).view(1, -1)) ** 2).sum(dim=1).numpy()


@styled
def alpha_error_figure(w: torch.Tensor, alpha: float | None = None) -> Figure:
    """Left: latent weights vs alpha*sign(W). Right: ||W - alpha sign W||^2 over alpha, minimum at mean|W|."""
    flat = w.detach().flatten()
    best = float(flat.abs().mean())
    alpha = best if alpha is None else float(alpha)
    alphas = np.linspace(0.0, 2.5 * best, 201)
    errors = alpha_error_curve(flat, alphas)
    fig = new_figure(10.0, 3.8)
    ax_w, ax_e = fig.subplots(1, 2)
    order = torch.argsort(flat)
    ax_w.plot(flat[order].numpy(), color="tab:blue", label="latent W (sorted)")
    ax_w.plot((alpha * sign_weight(flat[order])).numpy(), color="tab:red", label=f"α sign(W), α = {alpha:.3g}")
    ax_w.set_xlabel("weight index (sorted)")
    ax_w.set_ylabel("weight value")
    ax_w.set_title("latent vs binary weights")
    ax_w.legend()
    ax_e.plot(alphas, errors, color="black")
    ax_e.axvline(best, color="tab:purple", ls="--", label=f"mean|W| = {best:.3g}")
    ax_e.plot([alpha], [alpha_error_curve(flat, [alpha])[0]], "o", color="tab:red", label="current α")
    ax_e.set_xlabel("scale α")
    ax_e.set_ylabel("squared error")
    ax_e.set_title("||W - α sign W||²")
    ax_e.legend()
    return fig


def train_and_track(
    model: nn.Module,
    lr_image: np.ndarray,
    hr_image: np.ndarray,
    steps: int,
    lr: float = 1e-3,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Fit `model` to one LR/HR pair with Adam and the L1 loss, recording what happens to the latent weights.

    Returns per step: `loss`, `flips` (latent weights of all BinaryConv2d whose sign changed in that step),
    `max_abs_w` (largest |latent weight|), and `beyond_one` (weights with |w| > 1, which get no gradient).
    """
    torch.manual_seed(seed)
    x, y = image_to_tensor(lr_image), image_to_tensor(hr_image)
    weights = [m.weight for _, m in binary_convs(model)]
    if not weights:
        raise ValueError("model has no BinaryConv2d layers")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    record: dict[str, list[float]] = {"loss": [], "flips": [], "max_abs_w": [], "beyond_one": []}
    model.train()
    for _ in range(steps):
        before = [w.detach() > 0 for w in weights]
        loss = F.l1_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            record["loss"].append(float(loss))
            record["flips"].append(sum(int(((w > 0) != b).sum()) for w, b in zip(weights, before, strict=True)))
            record["max_abs_w"].append(max(float(w.abs().max()) for w in weights))
            record["beyond_one"].append(sum(int((w.abs() > 1).sum()) for w in weights))
    model.eval()
    return {k: np.array(v) for k, v in record.items()}


@styled
def flips_figure(record: dict[str, np.ndarray]) -> Figure:
    """Loss and latent-weight sign flips per step from `train_and_track`."""
    fig = new_figure(10.0, 3.6)
    ax_l, ax_f = fig.subplots(1, 2)
    steps = np.arange(1, len(record["loss"]) + 1)
    ax_l.plot(steps, record["loss"], color="black")
    ax_l.set_xlabel("training step")
    ax_l.set_ylabel("L1 loss (pixel values in [0, 1])")
    ax_l.set_title("loss")
    ax_f.bar(steps, record["flips"], color="tab:purple")
    ax_f.set_xlabel("training step")
    ax_f.set_ylabel("latent weights flipped")
    ax_f.set_title(f"sign flips per step (total {int(record['flips'].sum()):,})")
    return fig


@styled
def alpha_comparison_figure(model: nn.Module) -> Figure:
    """Per output channel of every BinaryConv2d: the alpha in use vs mean|W_l|, and the reconstruction error
    ||W_l - alpha_l sign W_l||^2 with each."""
    alphas, means, err_alpha, err_mean = [], [], [], []
    for _, conv in binary_convs(model):
        a = conv.scale().detach()
        m = conv.weight.detach().abs().mean(dim=(1, 2, 3))
        alphas.append(a)
        means.append(m)
        err_alpha.append(binarization_error(conv.weight, a))
        err_mean.append(binarization_error(conv.weight, m))
    a, m = torch.cat(alphas).numpy(), torch.cat(means).numpy()
    ea, em = torch.cat(err_alpha).numpy(), torch.cat(err_mean).numpy()
    fig = new_figure(10.0, 4.0)
    ax_a, ax_e = fig.subplots(1, 2)
    ax_a.scatter(m, a, s=14, color="tab:red")
    lim = [0, max(m.max(), a.max()) * 1.05]
    ax_a.plot(lim, lim, color="grey", lw=0.8, ls=":")
    ax_a.set_xlabel("mean|W_l|")
    ax_a.set_ylabel("α_l in use")
    ax_a.set_title("α per output channel")
    ax_e.scatter(em, ea, s=14, color="tab:purple")
    lim = [min(em.min(), ea.min()) * 0.95, max(em.max(), ea.max()) * 1.05]
    ax_e.plot(lim, lim, color="grey", lw=0.8, ls=":")
    ax_e.set_xlabel("error with α = mean|W_l|")
    ax_e.set_ylabel("error with α in use")
    ax_e.set_title(f"||W_l - α sign W_l||²: {ea.sum() / em.sum():.3f}× the optimum")
    return fig


def latent_walk(
    pushes: np.ndarray, lr: float = 0.05, w0: float = 0.1, clamp: bool = True, clip_weight: bool = False
) -> np.ndarray:
    """A single latent weight under SGD when the loss pushes its binary value by `pushes[t]` at step t.

    The upstream gradient dL/d sign(w) is -pushes[t]. With `clamp` it reaches w through the STE of eq. (6)
    (`sign_weight`: zero for |w| > 1); without, through the plain identity STE. With `clip_weight` the
    latent weight is also clipped to [-1, 1] after every step (BinaryConnect). Returns w after each step.
    """
    w = torch.tensor(float(w0), requires_grad=True)
    path = [w.item()]
    for p in np.asarray(pushes, dtype=float):
        wb = sign_weight(w) if clamp else w + (torch.where(w > 0, 1.0, -1.0) - w).detach()
        (grad,) = torch.autograd.grad(wb * (-p), w)
        with torch.no_grad():
            w -= lr * grad
            if clip_weight:
                w.clamp_(-1.0, 1.0)
        path.append(w.item())
    return np.array(path)


@styled
def latent_walk_figure(up_steps: int = 40, down_steps: int = 40, lr: float = 0.05, w0: float = 0.1) -> Figure:
    """One latent weight pushed up for `up_steps` then down for `down_steps`, under three update rules."""
    pushes = np.r_[np.ones(up_steps), -np.ones(down_steps)]
    rules = {
        "identity STE": dict(clamp=False),
        "clamped STE (binsr, eq. 6)": dict(clamp=True),
        "clamped STE + clip W to [-1, 1]": dict(clamp=True, clip_weight=True),
    }
    fig = new_figure(10.0, 4.0)
    ax = fig.subplots()
    for (name, kw), color in zip(rules.items(), ("tab:green", "tab:red", "tab:blue"), strict=True):
        path = latent_walk(pushes, lr, w0, **kw)
        flips = int((np.sign(path[1:]) != np.sign(path[:-1])).sum())
        ax.plot(path, color=color, lw=2, label=f"{name}: {flips} sign flip(s)")
    ax.axhspan(1, ax.get_ylim()[1], color="grey", alpha=0.15)
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(up_steps, color="grey", ls=":", lw=1)
    ax.set_xlabel("SGD step (the push reverses at the dotted line)")
    ax.set_ylabel("latent weight w")
    ax.set_title("|w| > 1 (shaded): the clamped STE passes no gradient")
    ax.legend(loc="lower left")
    return fig
