"""Figures and widget callbacks for the notebooks.

Every function here is a plain function: it takes arrays, tensors or modules and returns a matplotlib
`Figure` (built without pyplot, so nothing leaks into an inline backend and tests run headless) or numbers.
The notebooks wire them to `ipywidgets.interactive`; tests call them directly.

Equation numbers refer to the library docstrings: (1)-(7) `binsr.binary`, (8), (12), (13) `binsr.blocks`,
(14) `binsr.models`, (15), (16) `binsr.summary`.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from binsr.binary import SIGN_BACKWARDS, BinaryConv2d, RPReLU, RSign, binary_sign, sign_derivative, sign_weight

# =========================================================================================================
# Demo (binsr.demo): SR results side by side, each with a zoomed crop and its PSNR.
# =========================================================================================================


def side_by_side_figure(panels: dict[str, tuple[np.ndarray, float | None]], crop: tuple[int, int, int]) -> Figure:
    """One column per panel {label: (uint8 HxWx3 image, PSNR in dB or None)}, all the same size: the whole
    image with the crop outlined on top, the crop (y, x, size) enlarged below."""
    y, x, size = crop
    shapes = {image.shape for image, _ in panels.values()}
    if len(shapes) != 1:
        raise ValueError(f"panels have shapes {sorted(shapes)}; expected one shape for all")
    height, width = next(iter(shapes))[:2]
    if y < 0 or x < 0 or size < 1 or y + size > height or x + size > width:
        raise ValueError(f"crop={crop} does not fit a {height}x{width} image; expected (y, x, size) inside it")
    fig = Figure(figsize=(2.4 * len(panels), 2.4 * (height / width + 1) + 0.6), layout="constrained")
    axes = fig.subplots(2, len(panels), squeeze=False, height_ratios=[height / width, 1])
    for column, (label, (image, psnr)) in enumerate(panels.items()):
        top, bottom = axes[0, column], axes[1, column]
        top.imshow(image)
        top.plot([x, x + size, x + size, x, x], [y, y, y + size, y + size, y], color="red", linewidth=1.2)
        top.set_title(label if psnr is None else f"{label}\n{psnr:.2f} dB")
        bottom.imshow(image[y : y + size, x : x + size], interpolation="nearest")
        for ax in (top, bottom):
            ax.set_xticks([])
            ax.set_yticks([])
    return fig


# =========================================================================================================
# Notebooks part 1 (01-05): why binarize, sign and its gradient, RSign/RPReLU, weight binarization, BBCU.
# =========================================================================================================

FIG_DPI = 75
_BACKWARD_COLORS = {"identity": "tab:green", "clipped": "tab:orange", "approx": "tab:red"}
_BACKWARD_LABELS = {"identity": "identity STE (4)", "clipped": "clipped STE (2)", "approx": "ApproxSign (3)"}


def quick_mode() -> bool:
    """True when the environment variable BINSR_QUICK is set to anything but "", "0" or "false" (CI)."""
    return os.environ.get("BINSR_QUICK", "").strip().lower() not in ("", "0", "false", "no")


def new_figure(width: float = 9.0, height: float = 3.2) -> Figure:
    """A pyplot-free figure at the notebooks' size and resolution (at most 10 x 4 inches, 75 dpi)."""
    return Figure(figsize=(min(width, 10.0), min(height, 4.0)), dpi=FIG_DPI, layout="constrained")


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> float (1, 3, H, W) in [0, 1]."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def capture(model: nn.Module, image: np.ndarray | torch.Tensor, module_name: str, which: str = "output"):
    """Run `model` on `image` (no grad) and return the input or output of the submodule `module_name`.

    The batch dimension is dropped: the result has shape (C, H, W).
    """
    if which not in ("input", "output"):
        raise ValueError(f"which={which!r} must be 'input' or 'output'")
    modules = dict(model.named_modules())
    if module_name not in modules:
        raise ValueError(f"model has no submodule {module_name!r}")
    x = image_to_tensor(image) if isinstance(image, np.ndarray) else image
    store: dict[str, torch.Tensor] = {}

    def hook(module, inputs, out):
        store["t"] = (inputs[0] if which == "input" else out).detach()

    handle = modules[module_name].register_forward_hook(hook)
    try:
        with torch.no_grad():
            model(x)
    finally:
        handle.remove()
    return store["t"][0]


# ---- 01 why binarize ------------------------------------------------------------------------------------


def psnr_of_noise(sigma: float) -> float:
    """PSNR in dB of i.i.d. noise with standard deviation `sigma` grey levels on an 8-bit image: 20 log10(255/sigma)."""
    return 20.0 * math.log10(255.0 / sigma)


def add_noise(image: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """`image` (uint8) plus Gaussian noise of `sigma` grey levels, rounded and clipped back to uint8."""
    rng = np.random.default_rng(seed)
    noisy = image.astype(np.float64) + rng.normal(0.0, sigma, image.shape)
    return np.clip(np.round(noisy), 0, 255).astype(np.uint8)


def one_bit_image(image: np.ndarray) -> np.ndarray:
    """Each channel binarized at its mean (RSign with the threshold at the channel mean): 8 possible colours."""
    x = image.astype(np.float64)
    bits = x > x.mean(axis=(0, 1), keepdims=True)
    return np.where(bits, 255, 0).astype(np.uint8)


def sr_vs_classification_figure(image: np.ndarray, sigma: float = 3.0, label: str = "cat", seed: int = 0) -> Figure:
    """Why SR is harder than classification: the 1-bit image (still recognisable), and faint noise everywhere.

    A classifier only needs its argmax to survive; an SR network is scored on every one of its 3*H*W outputs
    (PSNR on Y as `binsr.metrics.psnr_y` measures it).
    """
    from binsr.metrics import psnr_y

    noisy = add_noise(image, sigma, seed)
    diff = np.abs(noisy.astype(np.float64) - image.astype(np.float64)).mean(axis=2)
    fig = new_figure(10.0, 3.4)
    axes = fig.subplots(1, 4)
    axes[0].imshow(image)
    axes[0].set_title("original (8 bits/channel)")
    axes[1].imshow(one_bit_image(image))
    axes[1].set_title(f"1 bit/channel:\na classifier still says '{label}'")
    axes[2].imshow(noisy)
    axes[2].set_title(f"noise sigma={sigma:g} grey levels\nPSNR(Y) {psnr_y(noisy, image, 0):.2f} dB")
    axes[3].imshow(diff, cmap="magma", vmin=0, vmax=max(3 * sigma, 1e-6))
    axes[3].set_title("|error|: small, but everywhere")
    for ax in axes:
        ax.set_axis_off()
    return fig


def cost_figure(summaries: dict) -> Figure:
    """Stacked bars of FLOPs and BOPs/64 (eq. 15) and bars of Params (eq. 16) for `{name: ModelSummary}`."""
    names = list(summaries)
    flops = np.array([summaries[n].flops for n in names]) / 1e9
    bops64 = np.array([summaries[n].bops / 64 for n in names]) / 1e9
    params = np.array([summaries[n].params for n in names]) / 1e3
    fig = new_figure(10.0, 3.4)
    ax_ops, ax_par = fig.subplots(1, 2)
    pos = np.arange(len(names))
    ax_ops.barh(pos, flops, color="tab:blue", label="FLOPs")
    ax_ops.barh(pos, bops64, left=flops, color="tab:orange", label="BOPs / 64")
    ax_ops.set_xscale("log")
    ax_ops.set_xlabel("G OPs (log scale)")
    ax_ops.set_title("OPs = FLOPs + BOPs/64  (15)")
    ax_ops.legend(loc="lower right", fontsize=8)
    ax_par.barh(pos, params, color="tab:purple")
    ax_par.set_xscale("log")
    ax_par.set_xlabel("K params (log scale)")
    ax_par.set_title("Params = FP + binary/32  (16)")
    for ax in (ax_ops, ax_par):
        ax.set_yticks(pos, names)
        ax.invert_yaxis()
    for p, v in zip(pos, flops + bops64, strict=True):
        ax_ops.text(v, p, f" {v:.2f}", va="center", fontsize=8)
    for p, v in zip(pos, params, strict=True):
        ax_par.text(v, p, f" {v:.1f}", va="center", fontsize=8)
    return fig


# ---- 02 sign and its gradient ---------------------------------------------------------------------------


def surrogate_forward(x: torch.Tensor, backward: str) -> torch.Tensor:
    """The smooth function whose derivative is the surrogate gradient of eq. (2), (3) or (4).

    identity: x; clipped: clamp(x, -1, 1) (hardtanh); approx: the piecewise quadratic of Bi-Real Net,
    2x + x^2 on [-1, 0), 2x - x^2 on [0, 1), sign(x) outside.
    """
    if backward == "identity":
        return x.clone()
    if backward == "clipped":
        return x.clamp(-1, 1)
    if backward == "approx":
        inner = torch.where(x < 0, 2 * x + x * x, 2 * x - x * x)
        return torch.where(x.abs() < 1, inner, torch.where(x > 0, 1.0, -1.0).to(x.dtype))
    raise ValueError(f"backward={backward!r} is not valid; expected one of {', '.join(SIGN_BACKWARDS)}")


def autograd_sign_gradient(x: torch.Tensor, backward: str) -> torch.Tensor:
    """d binary_sign(x)/dx as autograd computes it (what a training run actually uses)."""
    x = x.detach().clone().requires_grad_(True)
    binary_sign(x, backward).sum().backward()
    return x.grad


def sign_backward_figure(x_max: float = 2.0, backwards: tuple[str, ...] = SIGN_BACKWARDS) -> Figure:
    """Forward sign (1) with each surrogate's smooth stand-in, and their derivatives (2)-(4) on [-x_max, x_max]."""
    x = torch.linspace(-x_max, x_max, 801)
    fig = new_figure(9.5, 3.4)
    ax_f, ax_g = fig.subplots(1, 2)
    ax_f.plot(x, binary_sign(x), color="black", lw=2.5, label="sign(x) (1)")
    for b in backwards:
        ax_f.plot(x, surrogate_forward(x, b), color=_BACKWARD_COLORS[b], ls="--", label=_BACKWARD_LABELS[b])
        ax_g.plot(x, sign_derivative(x, b), color=_BACKWARD_COLORS[b], lw=2, label=_BACKWARD_LABELS[b])
    ax_f.set_ylim(-max(1.6, min(x_max, 4.0)), max(1.6, min(x_max, 4.0)))
    ax_f.set_title("forward: sign (1) and each surrogate's stand-in")
    ax_g.set_title("backward: surrogate d sign/dx")
    ax_g.set_ylim(-0.1, 2.2)
    for ax in (ax_f, ax_g):
        ax.axvline(0, color="grey", lw=0.5)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("x")
        ax.legend(fontsize=7, loc="upper left")
    return fig


def fraction_with_gradient(x: torch.Tensor, backward: str) -> float:
    """Fraction of the entries of `x` whose surrogate derivative is non-zero."""
    return float((sign_derivative(x, backward) != 0).float().mean())


def _threshold_data(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, generator=torch.Generator().manual_seed(seed))


def threshold_loss(t: float, target: float) -> float:
    """Population loss of the toy regression: E (sign(x - t) - sign(x - t*))^2 = 4 |Phi(t) - Phi(t*)|, x ~ N(0, 1)."""
    phi = lambda z: 0.5 * (1.0 + math.erf(z / math.sqrt(2.0)))  # noqa: E731
    return 4.0 * abs(phi(t) - phi(target))


def threshold_true_gradient(t: float, target: float) -> float:
    """d/dt of `threshold_loss`: 4 * density(t) * sign(t - t*), the gradient sign(.) really has on average."""
    density = math.exp(-0.5 * t * t) / math.sqrt(2.0 * math.pi)
    return 4.0 * density * float(np.sign(t - target))


def threshold_surrogate_gradient(t: float, target: float, backward: str, n: int = 20000, seed: int = 0) -> float:
    """The gradient autograd reports for the toy regression loss mean (binary_sign(x - t) - sign(x - t*))^2."""
    x = _threshold_data(n, seed)
    y = torch.where(x > target, 1.0, -1.0)
    tt = torch.tensor(float(t), requires_grad=True)
    loss = ((binary_sign(x - tt, backward) - y) ** 2).mean()
    loss.backward()
    return float(tt.grad)


def threshold_descent(
    backward: str, t0: float = 2.5, target: float = 0.0, steps: int = 60, lr: float = 0.5, n: int = 4000, seed: int = 0
) -> dict[str, np.ndarray]:
    """Gradient descent on the toy threshold regression with the surrogate `backward`.

    The model is b = sign(x - t) (an RSign, eq. 5, with one threshold); the data are x ~ N(0, 1) with
    labels sign(x - t*). Returns the threshold and the population loss after each step (step 0 = start).
    """
    x = _threshold_data(n, seed)
    y = torch.where(x > target, 1.0, -1.0)
    t = torch.tensor(float(t0), requires_grad=True)
    ts, losses = [t.item()], [threshold_loss(t.item(), target)]
    for _ in range(steps):
        loss = ((binary_sign(x - t, backward) - y) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, t)
        with torch.no_grad():
            t -= lr * grad
        ts.append(t.item())
        losses.append(threshold_loss(t.item(), target))
    return {"t": np.array(ts), "loss": np.array(losses)}


def gradient_mismatch_figure(
    t0: float = 2.5, lr: float = 0.5, target: float = 0.0, steps: int = 60, n: int = 4000
) -> Figure:
    """Left: true vs surrogate gradient of the toy loss over t. Right: descent trajectories from t0."""
    ts = np.linspace(-3.0, 3.0, 61)
    fig = new_figure(10.0, 3.4)
    ax_g, ax_t = fig.subplots(1, 2)
    ax_g.plot(ts, [threshold_true_gradient(t, target) for t in ts], color="black", lw=2.5, label="true dL/dt")
    for b in SIGN_BACKWARDS:
        g = [threshold_surrogate_gradient(t, target, b, n=n) for t in ts]
        ax_g.plot(ts, g, color=_BACKWARD_COLORS[b], label=_BACKWARD_LABELS[b])
        run = threshold_descent(b, t0, target, steps, lr, n)
        ax_t.plot(run["t"], color=_BACKWARD_COLORS[b], label=f"{b}: t={round(run['t'][-1], 2) + 0.0:.2f}")
    ax_g.axvline(target, color="grey", lw=0.5)
    ax_g.set_xlabel("threshold t")
    ax_g.set_title(f"gradient of the loss (target t*={target:g})")
    ax_g.legend(fontsize=7)
    ax_t.axhline(target, color="black", lw=1, ls=":", label="t*")
    ax_t.set_xlabel("step")
    ax_t.set_ylabel("t")
    ax_t.set_title(f"gradient descent from t0={t0:g}, lr={lr:g}")
    ax_t.legend(fontsize=7)
    return fig


# ---- 03 RSign and RPReLU --------------------------------------------------------------------------------


def rsign_apply(features: torch.Tensor, threshold: float | torch.Tensor) -> torch.Tensor:
    """RSign (5) of `features` (C, H, W) or (N, C, H, W) with one threshold for all channels, or one per channel."""
    x = features if features.dim() == 4 else features.unsqueeze(0)
    rsign = RSign(x.shape[1])
    with torch.no_grad():
        rsign.threshold.copy_(torch.as_tensor(threshold, dtype=rsign.threshold.dtype).expand(x.shape[1]))
        out = rsign(x)
    return out if features.dim() == 4 else out[0]


def fraction_positive(features: torch.Tensor, threshold: float | torch.Tensor) -> np.ndarray:
    """Per channel, the fraction of RSign (5) outputs that are +1 at `threshold` (features: (C,H,W) or (N,C,H,W))."""
    b = rsign_apply(features, threshold)
    dims = (1, 2) if b.dim() == 3 else (0, 2, 3)
    return (b > 0).float().mean(dim=dims).numpy()


def rsign_figure(features: torch.Tensor, threshold: float = 0.0, channel: int = 0) -> Figure:
    """Histogram of one channel with the threshold, its binary map b = RSign(x), and the +1 fraction per channel."""
    x = features[channel]
    b = rsign_apply(features, threshold)[channel]
    frac = fraction_positive(features, threshold)
    fig = new_figure(10.0, 3.3)
    ax_h, ax_x, ax_b, ax_f = fig.subplots(1, 4, width_ratios=[1.2, 1, 1, 1.2])
    ax_h.hist(x.flatten().numpy(), bins=60, color="tab:blue")
    ax_h.axvline(threshold, color="tab:red", lw=2, label=f"t = {threshold:.3g}")
    ax_h.set_title(f"channel {channel}: x_k")
    ax_h.legend(fontsize=7)
    ax_x.imshow(x.numpy(), cmap="gray")
    ax_x.set_title("feature map")
    ax_b.imshow(b.numpy(), cmap="gray", vmin=-1, vmax=1)
    ax_b.set_title(f"sign(x - t): {frac[channel]:.0%} are +1")
    for ax in (ax_x, ax_b):
        ax.set_axis_off()
    colors = ["tab:red" if c == channel else "tab:gray" for c in range(len(frac))]
    ax_f.bar(np.arange(len(frac)), frac, color=colors)
    ax_f.axhline(0.5, color="black", lw=0.5, ls=":")
    ax_f.set_ylim(0, 1)
    ax_f.set_xlabel("channel")
    ax_f.set_title("fraction of +1 per channel")
    return fig


def thermometer(x: torch.Tensor, thresholds) -> torch.Tensor:
    """Mean of the RSign (5) maps of one feature map `x` (H, W) at several thresholds: a thermometer code.

    Channels that see the same values but have different thresholds together encode graded intensity;
    with one shared threshold all copies are identical and only one bit survives.
    """
    t = torch.as_tensor(thresholds, dtype=x.dtype).flatten()
    copies = x.unsqueeze(0).expand(len(t), -1, -1)
    return rsign_apply(copies, t).mean(dim=0)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors' entries."""
    a, b = a.flatten().double(), b.flatten().double()
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-300))


def thermometer_figure(x: torch.Tensor, levels: int = 4, shared: bool = False) -> Figure:
    """The map `x` (H, W), and its thermometer code with `levels` thresholds at evenly spaced quantiles
    (or all at 0 when `shared`), with the correlation between the two."""
    q = torch.linspace(0, 1, levels + 2)[1:-1]
    thresholds = torch.zeros(levels) if shared else torch.quantile(x.flatten(), q)
    code = thermometer(x, thresholds)
    fig = new_figure(7.0, 3.3)
    ax_x, ax_c = fig.subplots(1, 2)
    ax_x.imshow(x.numpy(), cmap="gray")
    ax_x.set_title("feature map x")
    ax_c.imshow(code.numpy(), cmap="gray", vmin=-1, vmax=1)
    kind = "all at t=0" if shared else "at quantiles"
    ax_c.set_title(f"mean of {levels} sign maps ({kind})\ncorrelation with x: {correlation(code, x):.3f}")
    for ax in (ax_x, ax_c):
        ax.set_axis_off()
    return fig


def rprelu_apply(x: torch.Tensor, gamma: float, beta: float, zeta: float) -> torch.Tensor:
    """RPReLU (7) with one (gamma, beta, zeta) for every channel of `x` ((C,H,W), (N,C,H,W) or 1-D)."""
    shape = x.shape
    x4 = x.reshape(1, 1, -1, 1) if x.dim() == 1 else (x if x.dim() == 4 else x.unsqueeze(0))
    act = RPReLU(x4.shape[1])
    with torch.no_grad():
        act.gamma.fill_(gamma)
        act.beta.fill_(beta)
        act.zeta.fill_(zeta)
        return act(x4).reshape(shape)


def rprelu_figure(
    gamma: float = 0.0, beta: float = 0.25, zeta: float = 0.0, values: torch.Tensor | None = None
) -> Figure:
    """Left: RPReLU (7) as a function with its pivot (gamma, zeta). Right: the distribution of `values` before/after."""
    ncols = 1 if values is None else 2
    fig = new_figure(4.8 * ncols, 3.3)
    axes = np.atleast_1d(fig.subplots(1, ncols))
    span = 3.0 if values is None else float(values.abs().quantile(0.99)) * 1.2 + abs(gamma)
    x = torch.linspace(-span, span, 401)
    ax = axes[0]
    ax.plot(x, x, color="grey", lw=0.8, ls=":", label="identity")
    ax.plot(x, rprelu_apply(x, 0.0, 0.25, 0.0), color="tab:gray", lw=1, label="PReLU, beta=0.25")
    ax.plot(x, rprelu_apply(x, gamma, beta, zeta), color="tab:red", lw=2.5, label="RPReLU")
    ax.plot([gamma], [zeta], "o", color="tab:red")
    ax.axhline(0, color="grey", lw=0.5)
    ax.axvline(0, color="grey", lw=0.5)
    ax.set_title(f"gamma={gamma:.2g}, beta={beta:.2g}, zeta={zeta:.2g}")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_xlabel("x")
    if values is not None:
        v = values.flatten()
        out = rprelu_apply(v, gamma, beta, zeta)
        lo = float(torch.minimum(v.min(), out.min()))
        hi = float(torch.maximum(v.max(), out.max()))
        bins = np.linspace(lo, hi, 80)
        axes[1].hist(v.numpy(), bins=bins, alpha=0.5, color="tab:blue", label=f"input, mean {float(v.mean()):.2f}")
        axes[1].hist(out.numpy(), bins=bins, alpha=0.5, color="tab:red", label=f"RPReLU, mean {float(out.mean()):.2f}")
        axes[1].set_title("activation distribution")
        axes[1].legend(fontsize=7)
    return fig


# ---- 04 weight binarization and alpha ------------------------------------------------------------------


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


def alpha_error_figure(w: torch.Tensor, alpha: float | None = None) -> Figure:
    """Left: latent weights vs alpha*sign(W). Right: ||W - alpha sign W||^2 over alpha, minimum at mean|W|."""
    flat = w.detach().flatten()
    best = float(flat.abs().mean())
    alpha = best if alpha is None else float(alpha)
    alphas = np.linspace(0.0, 2.5 * best, 201)
    errors = alpha_error_curve(flat, alphas)
    fig = new_figure(9.5, 3.3)
    ax_w, ax_e = fig.subplots(1, 2)
    order = torch.argsort(flat)
    ax_w.plot(flat[order].numpy(), color="tab:blue", label="latent W (sorted)")
    ax_w.plot((alpha * sign_weight(flat[order])).numpy(), color="tab:red", label=f"alpha*sign(W), alpha={alpha:.3g}")
    ax_w.set_xlabel("weight index (sorted)")
    ax_w.set_title("latent vs binary weights")
    ax_w.legend(fontsize=7)
    ax_e.plot(alphas, errors, color="black")
    ax_e.axvline(best, color="tab:green", ls="--", label=f"mean|W| = {best:.3g}")
    ax_e.plot([alpha], [alpha_error_curve(flat, [alpha])[0]], "o", color="tab:red", label="current alpha")
    ax_e.set_xlabel("alpha")
    ax_e.set_title("||W - alpha sign W||^2")
    ax_e.legend(fontsize=7)
    return fig


def binary_convs(model: nn.Module) -> list[tuple[str, BinaryConv2d]]:
    """(name, module) of every BinaryConv2d in `model`, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BinaryConv2d)]


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


def flips_figure(record: dict[str, np.ndarray]) -> Figure:
    """Loss and latent-weight sign flips per step from `train_and_track`."""
    fig = new_figure(9.5, 3.2)
    ax_l, ax_f = fig.subplots(1, 2)
    steps = np.arange(1, len(record["loss"]) + 1)
    ax_l.plot(steps, record["loss"], color="black")
    ax_l.set_xlabel("step")
    ax_l.set_title("L1 loss")
    ax_f.bar(steps, record["flips"], color="tab:orange")
    ax_f.set_xlabel("step")
    ax_f.set_title(f"sign flips per step (total {int(record['flips'].sum()):,})")
    return fig


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
    fig = new_figure(9.5, 3.3)
    ax_a, ax_e = fig.subplots(1, 2)
    ax_a.scatter(m, a, s=8, color="tab:red")
    lim = [0, max(m.max(), a.max()) * 1.05]
    ax_a.plot(lim, lim, color="grey", lw=0.8, ls=":")
    ax_a.set_xlabel("mean|W_l|")
    ax_a.set_ylabel("alpha_l in use")
    ax_a.set_title("alpha per output channel")
    ax_e.scatter(em, ea, s=8, color="tab:purple")
    lim = [min(em.min(), ea.min()) * 0.95, max(em.max(), ea.max()) * 1.05]
    ax_e.plot(lim, lim, color="grey", lw=0.8, ls=":")
    ax_e.set_xlabel("error with alpha = mean|W_l|")
    ax_e.set_ylabel("error with alpha in use")
    ax_e.set_title(f"||W - alpha sign W||^2: {ea.sum() / em.sum():.3f}x the optimum")
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


def latent_walk_figure(up_steps: int = 40, down_steps: int = 40, lr: float = 0.05, w0: float = 0.1) -> Figure:
    """One latent weight pushed up for `up_steps` then down for `down_steps`, under three update rules."""
    pushes = np.r_[np.ones(up_steps), -np.ones(down_steps)]
    rules = {
        "identity STE": dict(clamp=False),
        "clamped STE (binsr, eq. 6)": dict(clamp=True),
        "clamped STE + clip W to [-1, 1]": dict(clamp=True, clip_weight=True),
    }
    fig = new_figure(9.5, 3.3)
    ax = fig.subplots()
    for (name, kw), color in zip(rules.items(), ("tab:green", "tab:red", "tab:blue"), strict=True):
        path = latent_walk(pushes, lr, w0, **kw)
        flips = int((np.sign(path[1:]) != np.sign(path[:-1])).sum())
        ax.plot(path, color=color, lw=2, label=f"{name}: {flips} sign flip(s)")
    ax.axhspan(1, ax.get_ylim()[1], color="grey", alpha=0.15)
    ax.axhline(0, color="black", lw=0.5)
    ax.axvline(up_steps, color="grey", ls=":", lw=1)
    ax.set_xlabel("step (the push reverses at the dotted line)")
    ax.set_ylabel("latent w")
    ax.set_title("|w| > 1 (shaded): the clamped STE passes no gradient")
    ax.legend(fontsize=8)
    return fig


# ---- 05 the BBCU block ----------------------------------------------------------------------------------


def residual_placement(conv: BinaryConv2d, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """A BBCU unit with its residual outside vs inside RPReLU, on features `x` (C, H, W) or (N, C, H, W).

    outside (eq. 8): RPReLU(alpha * conv(RSign(x), sign W)) + x
    inside:          RPReLU(alpha * conv(RSign(x), sign W) + x)
    """
    x4 = x if x.dim() == 4 else x.unsqueeze(0)
    with torch.no_grad():
        y = conv.binary_conv(conv.rsign(x4)) * conv.scale().view(1, -1, 1, 1)
        outside = conv.rprelu(y) + x4
        inside = conv.rprelu(y + x4)
    squeeze = (lambda t: t) if x.dim() == 4 else (lambda t: t[0])
    return {"x": squeeze(x4), "branch": squeeze(y), "outside": squeeze(outside), "inside": squeeze(inside)}


def negative_energy(t: torch.Tensor) -> float:
    """sum of min(t, 0)^2: the energy of the negative part of a tensor."""
    return float((t.clamp(max=0) ** 2).sum())


def residual_placement_figure(result: dict[str, torch.Tensor], max_points: int = 4000) -> Figure:
    """Output vs input of the unit for both placements, and the histograms, from `residual_placement`."""
    x = result["x"].flatten()
    idx = torch.randperm(x.numel(), generator=torch.Generator().manual_seed(0))[:max_points]
    fig = new_figure(10.0, 3.4)
    ax_s, ax_h = fig.subplots(1, 2)
    e_x = negative_energy(result["x"])
    for key, color in (("outside", "tab:blue"), ("inside", "tab:red")):
        out = result[key].flatten()
        kept = negative_energy(result[key]) / max(e_x, 1e-12)
        ax_s.scatter(x[idx], out[idx], s=2, alpha=0.4, color=color, label=f"residual {key}")
        ax_h.hist(out.numpy(), bins=100, histtype="step", color=color, lw=1.5, label=f"{key}: neg. energy {kept:.0%}")
    ax_h.hist(x.numpy(), bins=100, histtype="step", color="black", lw=1, label="input x")
    lim = [float(x.min()), float(x.max())]
    ax_s.plot(lim, lim, color="grey", lw=0.8, ls=":")
    ax_s.set_xlabel("input x (the full-precision residual)")
    ax_s.set_ylabel("unit output")
    ax_s.set_title("what the next unit receives")
    ax_s.legend(fontsize=7, markerscale=4)
    ax_h.set_yscale("log")
    ax_h.set_title("distribution (neg. energy relative to x)")
    ax_h.legend(fontsize=7)
    return fig


def amplitude_ratio(unit: nn.Module, x: torch.Tensor, k: float) -> float:
    """std of the binary branch over std of the residual for a BBCU unit (8) fed k * x (eq. 14).

    `unit` is a BBCUUnit (its `conv` is the branch RPReLU(alpha conv(RSign(.), sign W))).
    """
    x4 = (x if x.dim() == 4 else x.unsqueeze(0)) * k
    with torch.no_grad():
        branch = unit.conv(x4)
    return float(branch.std() / x4.std())


def amplification_figure(unit: nn.Module, x: torch.Tensor, k: float = 130.0) -> Figure:
    """The branch/residual amplitude ratio over k (log-log) with the current k, and both amplitudes' histograms."""
    ks = np.logspace(-1, 3, 9)
    ratios = [amplitude_ratio(unit, x, kk) for kk in ks]
    x4 = (x if x.dim() == 4 else x.unsqueeze(0)) * k
    with torch.no_grad():
        branch = unit.conv(x4)
    ratio = float(branch.std() / x4.std())
    fig = new_figure(10.0, 3.3)
    ax_r, ax_h = fig.subplots(1, 2)
    ax_r.loglog(ks, ratios, color="black")
    ax_r.plot([k], [ratio], "o", color="tab:red", label=f"k = {k:.3g}: ratio {ratio:.3g}")
    ax_r.axhline(1.0, color="grey", lw=0.5, ls=":")
    ax_r.set_xlabel("amplification k")
    ax_r.set_ylabel("std(branch) / std(residual)")
    ax_r.set_title("binary branch vs residual (14)")
    ax_r.legend(fontsize=7)
    lo = float(torch.minimum(branch.min(), x4.min()))
    hi = float(torch.maximum(branch.max(), x4.max()))
    bins = np.linspace(lo, hi, 100)
    ax_h.hist(x4.flatten().numpy(), bins=bins, histtype="step", color="tab:blue", lw=1.5, label="residual k*x")
    ax_h.hist(branch.flatten().numpy(), bins=bins, histtype="step", color="tab:red", lw=1.5, label="binary branch")
    ax_h.set_yscale("log")
    ax_h.set_title(f"amplitudes at k = {k:.3g}")
    ax_h.legend(fontsize=7)
    return fig


class _Broadcast(nn.Module):
    """Lets `binsr.summary` (which feeds an RGB image) cost a block on `channels` feature maps; no cost itself."""

    def __init__(self, block: nn.Module, channels: int):
        super().__init__()
        self.block, self.channels = block, channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(x[:, :1].expand(-1, self.channels, -1, -1))


def block_summary(block: nn.Module, channels: int, lr_size: tuple[int, int] = (180, 320)):
    """`binsr.summary` of a single block that takes (N, channels, H, W) feature maps."""
    from binsr.summary import summary

    return summary(_Broadcast(block, channels), lr_size)


# =========================================================================================================
# Notebooks part 2 (06-10): attention maps, activation distributions, training live, side by side, XNOR.
# Plain functions as above; the notebooks wire them to ipywidgets, tests/test_viz_part2.py calls them.
# =========================================================================================================

import copy  # noqa: E402
import functools  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import matplotlib  # noqa: E402

from binsr.attention import PixelAttention, SpatialAttention, SqueezeExcitation, make_attention  # noqa: E402
from binsr.blocks import AttentiveBinaryUnit, BBCUUnit, ResBlock  # noqa: E402

# 24-level colour maps: noisy feature maps drawn with a continuous map make PNGs that do not compress.
_QUANTIZED = {name: matplotlib.colormaps[name].resampled(24) for name in ("viridis", "magma", "inferno", "coolwarm")}
_MODEL_COLORS = {"FP": "tab:blue", "BBCU": "tab:orange", "proposed": "tab:red", "bicubic": "tab:gray"}


def _color(label: str) -> str:
    """A stable colour per model family, matched on the label's prefix (e.g. "proposed (no attention)")."""
    for key, color in _MODEL_COLORS.items():
        if label.lower().startswith(key.lower()):
            return color
    return "black"


def _as_input(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    return image_to_tensor(image) if isinstance(image, np.ndarray) else image


@functools.cache
def _sample_index(numel: int, n: int, seed: int) -> torch.Tensor:
    return torch.randperm(numel, generator=torch.Generator().manual_seed(seed))[:n]


def _sample_tensor(t: torch.Tensor, n: int = 20000, seed: int = 0) -> torch.Tensor:
    flat = t.detach().flatten()
    return flat[_sample_index(flat.numel(), n, seed)] if flat.numel() > n else flat


def _sample(t: torch.Tensor, n: int = 20000, seed: int = 0) -> np.ndarray:
    """At most `n` entries of `t`, drawn without replacement with a fixed seed (for histograms)."""
    flat = t.detach().flatten()
    if flat.numel() > n:
        flat = flat[_sample_index(flat.numel(), n, seed)]
    return flat.float().numpy()


# ---- 06 attention modules -------------------------------------------------------------------------------


def attention_kind(module: nn.Module) -> str:
    """The `binsr.attention.ATTENTION_KINDS` name of an attention module ("none" for nn.Identity)."""
    for kind, cls in (("se", SqueezeExcitation), ("spatial", SpatialAttention), ("pixel", PixelAttention)):
        if isinstance(module, cls):
            return kind
    if isinstance(module, nn.Identity):
        return "none"
    raise ValueError(f"{type(module).__name__} is not an attention module of binsr.attention")


def attentive_units(model: nn.Module) -> list[tuple[str, AttentiveBinaryUnit]]:
    """(name, unit) of every attentive binary unit (12) in `model`, in definition order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, AttentiveBinaryUnit)]


def attention_cost(kind: str, channels: int = 32, lr_size: tuple[int, int] = (180, 320)) -> dict[str, float]:
    """Cost of one attention module (9)-(11) on `channels` maps of `lr_size`, counted by `binsr.summary`.

    params and flops follow (15)/(16) (conv weights and biases; multiply-accumulates of its 1x1 convs);
    `products` is the elementwise x * m (one multiply per feature element), which (15) does not count.
    """
    if kind == "none":
        return {"params": 0, "flops": 0, "products": 0}
    with torch.device("meta"):
        stats = block_summary(make_attention(kind, channels), channels, lr_size)
    return {"params": stats.params, "flops": stats.flops, "products": channels * lr_size[0] * lr_size[1]}


def unit_cost_table(channels: int = 32, lr_size: tuple[int, int] = (180, 320)) -> list[dict]:
    """OPs (15) and Params (16) of one unit, BBCU (8) vs attentive (12) with the same attention on both branches."""
    rows = []
    with torch.device("meta"):
        base = block_summary(BBCUUnit(channels), channels, lr_size)
        rows.append({"unit": "BBCU (8)", "ops": base.ops, "params": base.params, "attention_ops": 0.0})
        for kind in ("se", "spatial", "pixel"):
            stats = block_summary(AttentiveBinaryUnit(channels, kind, kind), channels, lr_size)
            row = {"unit": f"attentive (12), {kind}", "ops": stats.ops, "params": stats.params}
            rows.append({**row, "attention_ops": stats.flops})
    for row in rows:
        row["ops_vs_bbcu"] = row["ops"] / base.ops
    return rows


def attention_models(
    assets_dir: str | Path,
    runs_dir: str | Path | None = None,
    kinds: tuple[str, ...] = ("pixel", "spatial"),
    scale: int = 2,
) -> dict[str, tuple[str, nn.Module]]:
    """Trained attentive models (edsr-proposed with attention `kind` on both branches), one per kind in `kinds`
    where one exists: a shipped checkpoint of `assets_dir` first, else the run `runs_dir/proposed-<kind>-x<scale>/
    last.pt` of a local `binsr experiment`. Returns {kind: (where it came from, model in eval mode)}."""
    from binsr import checkpoint

    shipped = checkpoint.read_manifest(assets_dir)["models"]
    found: dict[str, tuple[str, nn.Module]] = {}
    for kind in kinds:
        for name, entry in shipped.items():
            args = entry["arguments"]
            same_kind = args.get("att_bin") == args.get("att_res") == kind
            if entry["model"] == "edsr-proposed" and args["scale"] == scale and same_kind:
                found[kind] = (f"shipped {name}", checkpoint.pretrained(name, assets_dir))
                break
        run = None if runs_dir is None else Path(runs_dir) / f"proposed-{kind}-x{scale}" / "last.pt"
        if kind not in found and run is not None and run.is_file():
            found[kind] = (f"local run {run}", checkpoint.load_model(run, "edsr-proposed", scale))
    return found


def attention_signals(model: nn.Module, image: np.ndarray | torch.Tensor) -> dict[str, dict]:
    """One forward pass of `model` on `image` (uint8 LR HxWx3, or a (1, 3, H, W) tensor), and per attentive
    unit (12): `x` its input, `branch` the binary branch RPReLU(alpha conv(RSign x)) before Att_b, `m_b` and
    `m_r` the attention maps ((C|1, H|1, W|1); None where the kind is "none"), `a1`, `a2`, `kinds` and `out`.
    The batch dimension is dropped."""
    units = attentive_units(model)
    if not units:
        raise ValueError("model has no AttentiveBinaryUnit (eq. 12)")
    store: dict[str, dict] = {name: {} for name, _ in units}
    handles = []
    for name, unit in units:

        def unit_hook(module, inputs, out, name=name):
            store[name].update(x=inputs[0].detach()[0], out=out.detach()[0])

        def conv_hook(module, inputs, out, name=name):
            store[name]["branch"] = out.detach()[0]

        handles += [unit.register_forward_hook(unit_hook), unit.conv.register_forward_hook(conv_hook)]
    try:
        with torch.no_grad():
            model(_as_input(image))
    finally:
        for handle in handles:
            handle.remove()
    for name, unit in units:
        for key, att in (("m_b", unit.att_bin), ("m_r", unit.att_res)):
            store[name][key] = None if isinstance(att, nn.Identity) else att.last_map[0]
        store[name].update(
            a1=unit.a1.item(), a2=unit.a2.item(), kinds=(attention_kind(unit.att_bin), attention_kind(unit.att_res))
        )
    return store


def branch_share(signal: dict, attention: bool = True) -> torch.Tensor:
    """Per pixel, the binary branch's share of the unit's output (12), summed over channels:

        sum_c |a1 m_b * branch| / (sum_c |a1 m_b * branch| + sum_c |a2 m_r * x|)

    With attention=False the maps are taken as 1: the share the same a1, a2 would give without attention."""
    m_b = signal["m_b"] if attention and signal["m_b"] is not None else 1.0
    m_r = signal["m_r"] if attention and signal["m_r"] is not None else 1.0
    b = (signal["a1"] * m_b * signal["branch"]).abs().sum(dim=0)
    r = (signal["a2"] * m_r * signal["x"]).abs().sum(dim=0)
    return b / (b + r).clamp_min(1e-12)


def edge_strength(image: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of the luma (Y of `binsr.metrics`) of a uint8 HxWx3 image."""
    from skimage.filters import sobel

    from binsr.metrics import rgb_to_y

    return sobel(rgb_to_y(image))


def _spatial_mean(m: torch.Tensor | None) -> torch.Tensor | None:
    """The channel mean of a map with spatial extent (pixel, spatial); None for SE's (C, 1, 1) and for "none"."""
    if m is None or m.shape[-1] == 1 and m.shape[-2] == 1:
        return None
    return m.mean(dim=0)


def gate_summary(
    signals: dict[str, dict], image: np.ndarray | None = None, low: float = 0.1, high: float = 0.9
) -> list[dict]:
    """Per unit: a1, a2, mean maps, the fractions of map entries below `low` (branch switched off) and above
    `high` (passed on), the binary branch's mean share with and without attention (`branch_share`), and, when
    `image` (the LR input) is given and the map has spatial extent, the correlation of the channel-mean binary
    gate with the image's edge strength."""
    edges = None if image is None else torch.from_numpy(edge_strength(image)).float()
    rows = []
    for name, s in signals.items():
        row = {"unit": name, "a1": s["a1"], "a2": s["a2"], "kinds": s["kinds"]}
        for key in ("m_b", "m_r"):
            m = s[key]
            row[f"{key}_mean"] = 1.0 if m is None else float(m.mean())
            row[f"{key}_off"] = 0.0 if m is None else float((m < low).float().mean())
            row[f"{key}_on"] = 1.0 if m is None else float((m > high).float().mean())
            q = (1.0, 1.0) if m is None else torch.quantile(_sample_tensor(m), torch.tensor([0.1, 0.9])).tolist()
            row[f"{key}_p10"], row[f"{key}_p90"] = q
        row["share"] = float(branch_share(s).mean())
        row["share_without_attention"] = float(branch_share(s, attention=False).mean())
        gate = _spatial_mean(s["m_b"])
        row["edge_corr"] = None
        if edges is not None and gate is not None and gate.shape == edges.shape:
            row["edge_corr"] = correlation(gate, edges)
        rows.append(row)
    return rows


def _unit_name(signals: dict[str, dict], block: int, unit: int) -> str:
    names = list(signals)
    prefix = names[0].rsplit(".", 2)[0]  # "body"
    name = f"{prefix}.{block}.{unit}"
    if name not in signals:
        raise ValueError(f"no attentive unit {name!r}; expected one of {', '.join(names)}")
    return name


def _draw_map(ax, fig, m: torch.Tensor | None, channel: int, title: str) -> None:
    if m is None:
        ax.text(0.5, 0.5, "identity\n(no attention)", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(title)
        ax.set_axis_off()
        return
    if m.shape[-1] == 1 and m.shape[-2] == 1:  # SE: one weight per channel
        w = m.flatten().numpy()
        colors = ["tab:red" if c == channel % len(w) else "tab:gray" for c in range(len(w))]
        ax.bar(np.arange(len(w)), w, color=colors)
        ax.set_ylim(0, 1)
        ax.set_xlabel("channel")
        ax.set_title(f"{title}\nSE weights (mean {w.mean():.2f})")
        return
    c = 0 if m.shape[0] == 1 else channel % m.shape[0]
    lo, hi = (float(v) for v in torch.quantile(m[c].flatten(), torch.tensor([0.01, 0.99])))
    hi = max(hi, lo + 1e-3)
    im = ax.imshow(m[c].numpy(), cmap=_QUANTIZED["viridis"], interpolation="nearest", vmin=lo, vmax=hi)
    which = "spatial map" if m.shape[0] == 1 else f"channel {c}"
    ax.set_title(f"{title}, {which}\nmean {float(m[c].mean()):.2f}")
    ax.set_axis_off()
    fig.colorbar(im, ax=ax, shrink=0.7)


def attention_browser_figure(
    image: np.ndarray, signals: dict[str, dict], block: int = 0, unit: int = 0, channel: int = 0
) -> Figure:
    """The LR input, the binary-branch map m_b and the residual map m_r of unit `unit` of block `block` (pixel
    attention: channel `channel`; spatial: its one map; SE: its channel weights), and the binary branch's
    share of the unit's output per pixel (`branch_share`)."""
    name = _unit_name(signals, block, unit)
    s = signals[name]
    fig = new_figure(10.0, 2.9)
    ax_i, ax_b, ax_r, ax_s = fig.subplots(1, 4)
    ax_i.imshow(image)
    ax_i.set_title(f"{name}\na1={s['a1']:.2f}, a2={s['a2']:.2f}")
    ax_i.set_axis_off()
    _draw_map(ax_b, fig, s["m_b"], channel, f"m_b ({s['kinds'][0]})")
    _draw_map(ax_r, fig, s["m_r"], channel, f"m_r ({s['kinds'][1]})")
    share = branch_share(s)
    top = max(float(share.max()), 1e-6)
    im = ax_s.imshow(share.numpy(), cmap=_QUANTIZED["magma"], interpolation="nearest", vmin=0, vmax=top)
    ax_s.set_title(
        f"binary branch's share\n{float(share.mean()):.1%} (no att.: {float(branch_share(s, False).mean()):.1%})"
    )
    ax_s.set_axis_off()
    fig.colorbar(im, ax=ax_s, shrink=0.7)
    return fig


def branch_scales(model: nn.Module) -> dict[str, np.ndarray]:
    """The learned a1 (binary branch) and a2 (residual) of every attentive unit (12), in order, with their names."""
    units = attentive_units(model)
    return {
        "names": np.array([name for name, _ in units]),
        "a1": np.array([u.a1.item() for _, u in units]),
        "a2": np.array([u.a2.item() for _, u in units]),
    }


def branch_scales_figure(model: nn.Module) -> Figure:
    """a1 and a2 per unit (left) and the balance a1 / a2 (right, bars from 1); both start at 1."""
    s = branch_scales(model)
    idx = np.arange(len(s["a1"]))
    labels = [n.removeprefix("body.") for n in s["names"]]
    fig = new_figure(10.0, 3.2)
    ax_a, ax_r = fig.subplots(1, 2)
    ax_a.plot(idx, s["a1"], "o-", color="tab:red", label="a1 (binary branch)")
    ax_a.plot(idx, s["a2"], "s-", color="tab:blue", label="a2 (residual)")
    ax_a.axhline(1.0, color="grey", lw=0.8, ls=":", label="initial value")
    ax_a.set_title("learned scales of eq. (12)")
    ax_a.legend(fontsize=7)
    ratio = s["a1"] / s["a2"]
    ax_r.bar(idx, ratio - 1, bottom=1, color=np.where(ratio >= 1, "tab:red", "tab:blue"))
    ax_r.axhline(1.0, color="grey", lw=0.8)
    ax_r.set_title("a1 / a2 (> 1: the binary branch is amplified)")
    for ax in (ax_a, ax_r):
        ax.set_xticks(idx, labels, rotation=90, fontsize=7)
        ax.set_xlabel("unit (block.unit)")
    return fig


def gate_figure(rows: list[dict]) -> Figure:
    """From `gate_summary`: per unit, the mean of each attention map with its 10-90 % range (left), and the
    binary branch's share of the unit's output with vs without attention (right)."""
    idx = np.arange(len(rows))
    labels = [r["unit"].removeprefix("body.") for r in rows]
    fig = new_figure(10.0, 3.3)
    ax_g, ax_s = fig.subplots(1, 2)
    for shift, key, color, name in ((-0.15, "m_b", "tab:red", "binary branch"), (0.15, "m_r", "tab:blue", "residual")):
        mean = np.array([r[f"{key}_mean"] for r in rows])
        spread = np.array([[m - r[f"{key}_p10"], r[f"{key}_p90"] - m] for m, r in zip(mean, rows, strict=True)]).T
        ax_g.errorbar(idx + shift, mean, yerr=spread, fmt="o", ms=4, capsize=2, color=color, label=f"{key} ({name})")
    ax_g.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax_g.set_ylim(0, 1.02)
    ax_g.set_title("attention weights: mean and 10-90 % range")
    ax_g.legend(fontsize=7)
    ax_s.plot(idx, [r["share"] for r in rows], "o-", color="tab:red", label="with attention")
    ax_s.plot(idx, [r["share_without_attention"] for r in rows], "o--", color="grey", label="maps set to 1")
    ax_s.set_title("binary branch's share of the unit output")
    ax_s.set_ylim(0, None)
    ax_s.legend(fontsize=7)
    for ax in (ax_g, ax_s):
        ax.set_xticks(idx, labels, rotation=90, fontsize=7)
    return fig


# ---- 07 activation distributions ------------------------------------------------------------------------


def body_activations(model: nn.Module, image: np.ndarray | torch.Tensor, n_samples: int = 20000) -> list[dict]:
    """What flows through each body block of an EDSR (`model.body` minus its last conv) on one image.

    Per block: `input`, a sample of the full-precision features entering it divided by the model's k (14), so
    FP, BBCU (k = 65 at 32 channels) and proposed (k = 1) share one scale, and `input_std`. Per BinaryConv2d in
    it (lists, one entry per unit): `rsign_in` a sample of x - t (what sign (5) and its surrogate window
    |x - t| < 1 see), `in_window` the exact fraction inside that window, `plus` the fraction of +1 per channel,
    `pre` / `post` samples of alpha conv(...) before / after RPReLU (7), and for attentive units `gated`, a sample
    of a1 Att_b(branch). For full-precision blocks `pre` is the first conv's output and the other lists are empty.
    """
    blocks = list(model.body)[:-1]
    k = float(getattr(model, "k", 1.0))
    stats = [
        {"name": f"body.{i}", "input": None, "input_std": 0.0, "rsign_in": [], "in_window": [], "plus": [],
         "pre": [], "post": [], "gated": []}
        for i in range(len(blocks))
    ]  # fmt: skip
    handles = []

    def add(fn, module, i):
        handles.append(module.register_forward_hook(lambda m, inputs, out: fn(m, inputs[0].detach(), out.detach(), i)))

    def block_in(m, x, out, i):
        stats[i]["input"] = _sample(x / k, n_samples)
        stats[i]["input_std"] = float((x / k).std())

    def rsign(m, x, out, i):
        d = x - m.threshold.detach().view(1, -1, 1, 1)
        stats[i]["rsign_in"].append(_sample(d, n_samples))
        stats[i]["in_window"].append(float((d.abs() < 1).float().mean()))
        stats[i]["plus"].append((out > 0).float().mean(dim=(0, 2, 3)).numpy())

    def rprelu(m, x, out, i):
        stats[i]["pre"].append(_sample(x, n_samples))
        stats[i]["post"].append(_sample(out, n_samples))

    def fp_conv(m, x, out, i):
        stats[i]["pre"].append(_sample(out, n_samples))

    for i, block in enumerate(blocks):
        add(block_in, block, i)
        if isinstance(block, ResBlock):
            add(fp_conv, block.body[0], i)
        for unit in block.children() if not isinstance(block, ResBlock) else []:
            conv = unit.conv
            add(rsign, conv.rsign, i)
            if conv.rprelu is not None:
                add(rprelu, conv.rprelu, i)
            if isinstance(unit, AttentiveBinaryUnit):
                add(lambda m, x, out, i, u=unit: stats[i]["gated"].append(_sample(u.a1.detach() * out, n_samples)),
                    unit.att_bin, i)  # fmt: skip
    try:
        with torch.no_grad():
            model(_as_input(image))
    finally:
        for handle in handles:
            handle.remove()
    return stats


def plus_imbalance(stats: list[dict]) -> np.ndarray:
    """Per BinaryConv2d (blocks, then units), the mean over channels of |fraction of +1 - 1/2|: 0 when every
    channel's binary map is half +1 (most informative), 1/2 when each channel is constant."""
    return np.array([float(np.abs(p - 0.5).mean()) for s in stats for p in s["plus"]])


def dead_channels(stats: list[dict], tol: float = 0.02) -> np.ndarray:
    """Per BinaryConv2d, the number of input channels whose binary map is (almost) constant: +1 fraction < tol
    or > 1 - tol. Such a channel carries no information through the binary conv."""
    return np.array([int(((p < tol) | (p > 1 - tol)).sum()) for s in stats for p in s["plus"]])


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """H(p) = -p log2 p - (1 - p) log2 (1 - p): bits of information of a binary map that is +1 with probability p."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1 - 1e-12)
    return -(p * np.log2(p) + (1 - p) * np.log2(1 - p))


def stream_figure(stats: dict[str, list[dict]]) -> Figure:
    """The std of the full-precision features entering each block (divided by k, eq. 14), one line per model."""
    fig = new_figure(6.0, 3.0)
    ax = fig.subplots()
    for label, s in stats.items():
        ax.plot([b["input_std"] for b in s], "o-", color=_color(label), label=label)
    ax.set_yscale("log")
    ax.set_xlabel("block")
    ax.set_title("std of the full-precision features / k")
    ax.legend(fontsize=7)
    return fig


def activation_figure(stats: dict[str, list[dict]], block: int = 0, unit: int = 0) -> Figure:
    """For `block` of each model in `stats` ({label: body_activations(...)}): the full-precision features
    entering it (divided by k), the RSign inputs x - t of unit `unit` with the surrogate window, and the
    fraction of +1 per channel (sorted)."""
    fig = new_figure(10.0, 3.3)
    ax_x, ax_t, ax_p = fig.subplots(1, 3)
    for label, s in stats.items():
        color, b = _color(label), s[block]
        ax_x.hist(b["input"], bins=80, histtype="step", lw=1.5, color=color, label=f"{label}: std {b['input_std']:.3f}")
        if b["rsign_in"]:
            u = unit % len(b["rsign_in"])
            d = np.clip(b["rsign_in"][u], -6, 6)
            ax_t.hist(d, bins=np.linspace(-6, 6, 97), histtype="step", lw=1.5, color=color,
                      label=f"{label}: {b['in_window'][u]:.0%} in window")  # fmt: skip
            p = np.sort(b["plus"][u])
            ax_p.plot(np.arange(len(p)), p, "o-", ms=3, color=color, label=f"{label}: {dead_channels([b])[u]} const.")
    ax_x.set_yscale("log")
    ax_x.set_title(f"block {block} input / k (full precision)")
    ax_x.legend(fontsize=7)
    ax_t.axvspan(-1, 1, color="grey", alpha=0.15)
    ax_t.set_yscale("log")
    ax_t.set_title(f"RSign input x - t, unit {unit} (clipped to ±6)")
    ax_t.legend(fontsize=7)
    ax_p.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax_p.set_ylim(-0.02, 1.02)
    ax_p.set_xlabel("channel (sorted)")
    ax_p.set_title("fraction of +1 per channel")
    ax_p.legend(fontsize=7)
    return fig


def branch_stages_figure(stats: list[dict], block: int = 0, unit: int = 0, label: str = "") -> Figure:
    """One binary unit's branch: alpha conv(...) before RPReLU, after RPReLU (7), and after a1 Att_b (12)."""
    b = stats[block]
    if not b["post"]:
        raise ValueError(f"block {block} has no binary branch (a full-precision block?)")
    u = unit % len(b["post"])
    stages = {"before RPReLU": b["pre"][u], "after RPReLU": b["post"][u]}
    if b["gated"]:
        stages["after a1 Att_b"] = b["gated"][u]
    lo = min(float(np.quantile(v, 0.001)) for v in stages.values())
    hi = max(float(np.quantile(v, 0.999)) for v in stages.values())
    bins = np.linspace(lo, hi, 100)
    fig = new_figure(7.0, 3.0)
    ax = fig.subplots()
    for (name, v), color in zip(stages.items(), ("tab:gray", "tab:green", "tab:red"), strict=False):
        ax.hist(np.clip(v, lo, hi), bins=bins, histtype="step", lw=1.5, color=color,
                label=f"{name}: mean {v.mean():.3f}, std {v.std():.3f}")  # fmt: skip
    ax.set_yscale("log")
    ax.set_title(f"{label} block {block} unit {u}: the binary branch stage by stage")
    ax.legend(fontsize=7)
    return fig


def ablated(
    model: nn.Module, rprelu_shifts: bool = False, thresholds: bool = False, attention: bool = False
) -> nn.Module:
    """A copy of `model` with some learned parts reset, to see what they do: `rprelu_shifts` sets every RPReLU's
    gamma and zeta (7) to 0, `thresholds` every RSign threshold (5) to 0, `attention` replaces every attention
    module (9)-(11) by the identity (a1, a2 are kept)."""
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for module in clone.modules():
            if rprelu_shifts and isinstance(module, RPReLU):
                module.gamma.zero_()
                module.zeta.zero_()
            if thresholds and isinstance(module, RSign):
                module.threshold.zero_()
            if attention and isinstance(module, AttentiveBinaryUnit):
                module.att_bin, module.att_res = nn.Identity(), nn.Identity()
    return clone.eval()


def imbalance_figure(curves: dict[str, list[dict]]) -> Figure:
    """`plus_imbalance` and the in-window fraction per binary conv for each variant in {label: body_activations}."""
    fig = new_figure(10.0, 3.2)
    ax_i, ax_w = fig.subplots(1, 2)
    styles = ("o-", "s--", "^:", "d-.")
    for (label, stats), style in zip(curves.items(), styles * 4, strict=False):
        imb = plus_imbalance(stats)
        window = [w for s in stats for w in s["in_window"]]
        ax_i.plot(imb, style, ms=4, color=_color(label), label=f"{label}: mean {imb.mean():.3f}")
        ax_w.plot(window, style, ms=4, color=_color(label), label=label)
    ax_i.set_title("mean |fraction of +1 - 1/2| per binary conv")
    ax_i.set_ylim(0, 0.5)
    ax_w.set_title("fraction of RSign inputs with |x - t| < 1")
    ax_w.set_ylim(0, 1)
    for ax in (ax_i, ax_w):
        ax.set_xlabel("binary conv (block by block)")
        ax.legend(fontsize=7)
    return fig


# ---- 08 train a small model yourself --------------------------------------------------------------------

BLOCK_CHOICES: tuple[str, ...] = ("FP", "BBCU", "proposed")


def model_choice(
    block: str, att_bin: str = "pixel", att_res: str = "pixel", n_feats: int = 32, n_blocks: int = 8
) -> tuple[str, dict]:
    """(registry name, kwargs) for a block family of BLOCK_CHOICES; the attention kinds apply to "proposed"."""
    kwargs: dict = {"n_feats": n_feats, "n_blocks": n_blocks}
    if block == "FP":
        return "edsr-fp", kwargs
    if block == "BBCU":
        return "edsr-bbcu", kwargs
    if block == "proposed":
        return "edsr-proposed", {**kwargs, "att_bin": att_bin, "att_res": att_res}
    raise ValueError(f"block={block!r} is not valid; expected one of {', '.join(BLOCK_CHOICES)}")


class TrainingLog:
    """A `binsr.train` callback that records every step and calls `on_update(self)` every `every` steps (and
    at the last step, and whenever a new validation arrives) so a notebook can redraw a live plot."""

    def __init__(
        self, on_update: Callable[[TrainingLog], None] | None = None, every: int = 1, total: int | None = None
    ):
        self.on_update, self.every, self.total = on_update, max(1, int(every)), total
        self.steps: list[int] = []
        self.loss: list[float] = []
        self.lr: list[float] = []
        self.val_steps: list[int] = []
        self.val_psnr: list[float] = []
        self.started = time.perf_counter()

    def __call__(self, progress) -> None:
        self.steps.append(progress.step)
        self.loss.append(progress.loss)
        self.lr.append(progress.lr)
        new_val = progress.val_psnr is not None and (not self.val_psnr or progress.val_psnr != self.val_psnr[-1])
        if new_val:
            self.val_steps.append(progress.step)
            self.val_psnr.append(progress.val_psnr)
        last = self.total is not None and progress.step >= self.total
        if self.on_update is not None and (new_val or last or progress.step % self.every == 0):
            self.on_update(self)


def training_figure(log: TrainingLog, references: dict[str, float] | None = None, total: int | None = None) -> Figure:
    """L1 loss per step (left) and validation PSNR (right) from a `TrainingLog`, with horizontal lines for
    `references` ({label: PSNR in dB}, e.g. bicubic and the shipped checkpoint)."""
    total = total or log.total or (log.steps[-1] if log.steps else 1)
    fig = new_figure(10.0, 3.2)
    ax_l, ax_p = fig.subplots(1, 2)
    if log.steps:
        ax_l.plot(log.steps, log.loss, color="black", lw=1)
        ax_l.set_yscale("log")
    ax_l.set_xlim(0, total)
    ax_l.set_xlabel("step")
    ax_l.set_title(f"L1 training loss (step {log.steps[-1] if log.steps else 0}/{total})")
    for (label, value), ls in zip((references or {}).items(), ("--", ":", "-."), strict=False):
        ax_p.axhline(value, color=_color(label), ls=ls, label=f"{label}: {value:.2f} dB")
    if log.val_psnr:
        ax_p.plot(log.val_steps, log.val_psnr, "o-", color="tab:green", label=f"this run: {log.val_psnr[-1]:.2f} dB")
    ax_p.set_xlim(0, total)
    ax_p.set_xlabel("step")
    ax_p.set_title("validation PSNR (Y)")
    if ax_p.get_legend_handles_labels()[0]:
        ax_p.legend(fontsize=7)
    return fig


def train_small(
    block: str = "proposed",
    att_bin: str = "pixel",
    att_res: str = "pixel",
    scale: int = 2,
    steps: int = 20,
    lr: float = 2e-3,
    batch_size: int = 16,
    val_interval: int = 0,
    val_sets: tuple[str, ...] = ("photos-test",),
    train_set: str = "photos-train",
    n_feats: int = 32,
    n_blocks: int = 8,
    callback: Callable | None = None,
    out_dir: str | Path | None = None,
    seed: int = 0,
):
    """`binsr.train` of `model_choice(block, ...)` on the embedded photos (by default), in a temporary folder
    unless `out_dir` is given; returns the TrainResult. Everything else is TrainConfig's defaults."""
    from binsr.train import TrainConfig, train

    name, kwargs = model_choice(block, att_bin, att_res, n_feats, n_blocks)
    config = TrainConfig(
        scale=scale, steps=steps, lr=lr, batch_size=batch_size, train_set=train_set, val_sets=tuple(val_sets),
        val_interval=val_interval, checkpoint_interval=steps, seed=seed, device="cpu",
    )  # fmt: skip
    if out_dir is not None:
        return train(name, kwargs, config, out_dir, callback=callback)
    with tempfile.TemporaryDirectory(prefix="binsr-train-") as tmp:
        return train(name, kwargs, config, tmp, callback=callback)


def shipped_match(model_name: str, kwargs: dict, scale: int, manifest: dict) -> str | None:
    """The shipped checkpoint (a `read_manifest` key) built with exactly `create_model(model_name, scale=scale,
    **kwargs)`'s arguments, or None."""
    from binsr.models import model_arguments

    wanted = model_arguments(model_name, **{**kwargs, "scale": scale})
    for name, entry in manifest["models"].items():
        if entry["model"] == model_name and entry["arguments"] == wanted:
            return name
    return None


# ---- 09 side by side ------------------------------------------------------------------------------------


def super_resolve(models: dict[str, nn.Module | None], lr: np.ndarray, scale: int) -> dict[str, np.ndarray]:
    """{label: uint8 SR image} of each model (None: MATLAB bicubic), exactly as `binsr.evaluate` scores it."""
    from binsr.evaluate import upscale

    out = {}
    for label, model in models.items():
        if model is not None:
            model.eval()
        out[label] = upscale(model, lr, scale)
    return out


def y_error(sr: np.ndarray, hr: np.ndarray) -> np.ndarray:
    """|Y_sr - Y_hr| in grey levels (BT.601 luma, the channel PSNR is measured on)."""
    from binsr.metrics import rgb_to_y

    return np.abs(rgb_to_y(sr) - rgb_to_y(hr))


def crop_box(shape: tuple[int, ...], y_frac: float, x_frac: float, size: int) -> tuple[int, int, int]:
    """(y, x, size) of a square crop whose top-left corner sits at fractions (y_frac, x_frac) of the free range."""
    height, width = shape[:2]
    size = int(min(size, height, width))
    return int(round(y_frac * (height - size))), int(round(x_frac * (width - size))), size


def crop_compare_figure(
    hr: np.ndarray, outputs: dict[str, np.ndarray], scale: int, y_frac: float = 0.5, x_frac: float = 0.5,
    size: int = 64, max_error: float = 30.0,
) -> Figure:  # fmt: skip
    """Top: the HR crop and each output's crop, titled with the whole image's PSNR (Y, `scale` border shaved).
    Bottom: the HR image with the crop outlined, and each output's |Y error| on the crop (0..max_error)."""
    from binsr.metrics import psnr_y

    y, x, size = crop_box(hr.shape, y_frac, x_frac, size)
    n = len(outputs) + 1
    fig = new_figure(min(10.0, 2.0 * n), 4.0)
    axes = fig.subplots(2, n, squeeze=False)
    sl = (slice(y, y + size), slice(x, x + size))
    axes[0, 0].imshow(hr[sl], interpolation="nearest")
    axes[0, 0].set_title("HR")
    axes[1, 0].imshow(hr)
    axes[1, 0].plot([x, x + size, x + size, x, x], [y, y, y + size, y + size, y], color="red", lw=1)
    axes[1, 0].set_title(f"crop at ({y}, {x})")
    for col, (label, sr) in enumerate(outputs.items(), start=1):
        axes[0, col].imshow(sr[sl], interpolation="nearest")
        axes[0, col].set_title(f"{label}\n{psnr_y(sr, hr, scale):.2f} dB", fontsize=9)
        err = y_error(sr[sl], hr[sl])
        im = axes[1, col].imshow(err, cmap=_QUANTIZED["inferno"], vmin=0, vmax=max_error)
        axes[1, col].set_title(f"|Y err| mean {err.mean():.1f}", fontsize=9)
    fig.colorbar(im, ax=axes[1, -1], shrink=0.8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return fig


def side_by_side_crop(
    images: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]], image: str, scale: int,
    y_frac: float = 0.5, x_frac: float = 0.5, size: int = 64,
) -> Figure:  # fmt: skip
    """`crop_compare_figure` of one image of `images` ({name: (hr, {label: sr})}), for a dropdown + sliders."""
    hr, outputs = images[image]
    return crop_compare_figure(hr, outputs, scale, y_frac, x_frac, size)


def per_image_table(results: list[dict], metric: str = "psnr") -> str:
    """Markdown table from `binsr.evaluate` results of several methods: one row per (dataset, image), one
    column per method, `metric` ("psnr" or "ssim"), with the best in bold; the dataset means last."""
    methods = list(dict.fromkeys(r["method"] for r in results))
    fmt = "{:.2f}" if metric == "psnr" else "{:.4f}"
    table: dict[tuple[str, str], dict[str, float]] = {}
    for r in results:
        for image in r["images"]:
            table.setdefault((r["name"], image["name"]), {})[r["method"]] = image[metric]
        table.setdefault((r["name"], "**mean**"), {})[r["method"]] = r[metric]
    lines = ["| set | image | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
    order = [key for key in table if key[1] != "**mean**"] + [key for key in table if key[1] == "**mean**"]
    for key in order:
        values = table[key]
        best = max(values.values())
        cells = [fmt.format(values[m]) if m in values else "-" for m in methods]
        cells = [f"**{c}**" if m in values and values[m] == best else c for c, m in zip(cells, methods, strict=True)]
        lines.append(f"| {key[0]} | {key[1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def manifest_table(manifest: dict) -> str:
    """Markdown table of the shipped checkpoints (`read_manifest`): variant, steps, lr, and validation PSNR/SSIM."""
    entries = manifest["models"]
    sets = list(dict.fromkeys(s for e in entries.values() for s in e.get("val", {})))
    lines = ["| shipped | variant | steps | lr | " + " | ".join(f"{s} PSNR / SSIM" for s in sets) + " |",
             "|---|---|---|---|" + "---|" * len(sets)]  # fmt: skip
    for name, e in entries.items():
        val = e.get("val", {})
        cells = [f"{val[s]['psnr']:.2f} / {val[s]['ssim']:.4f}" if s in val else "-" for s in sets]
        head = f"| {name} | {e.get('label', '-')} | {e.get('steps', '-')} | {e.get('lr', '-')} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def find_results(candidates: tuple[str | Path, ...] = ()) -> Path | None:
    """The first existing `results.json` of `binsr experiment` among `candidates` (files or folders), else None."""
    for c in candidates:
        path = Path(c)
        path = path / "results.json" if path.is_dir() else path
        if path.is_file():
            return path
    return None


def error_difference_figure(hr: np.ndarray, a: np.ndarray, b: np.ndarray, labels: tuple[str, str], crop=None) -> Figure:
    """Where output `a` beats output `b`: |Y_b - Y_hr| - |Y_a - Y_hr| (blue: a is closer to HR, red: b is),
    on the whole image or on `crop` = (y, x, size), next to the HR image."""
    if crop is not None:
        y, x, size = crop
        hr, a, b = (im[y : y + size, x : x + size] for im in (hr, a, b))
    diff = y_error(b, hr) - y_error(a, hr)
    lim = max(float(np.quantile(np.abs(diff), 0.99)), 1e-6)
    fig = new_figure(8.0, 3.4)
    ax_h, ax_d = fig.subplots(1, 2)
    ax_h.imshow(hr, interpolation="nearest")
    ax_h.set_title("HR")
    im = ax_d.imshow(diff, cmap=_QUANTIZED["coolwarm"].reversed(), vmin=-lim, vmax=lim, interpolation="nearest")
    better = float((diff > 0.5).mean())
    worse = float((diff < -0.5).mean())
    ax_d.set_title(f"|err {labels[1]}| - |err {labels[0]}| (grey levels)\n{labels[0]} closer on {better:.0%}, "
                   f"{labels[1]} closer on {worse:.0%} of pixels (> 0.5)", fontsize=9)  # fmt: skip
    fig.colorbar(im, ax=ax_d, shrink=0.8)
    for ax in (ax_h, ax_d):
        ax.set_axis_off()
    return fig


def paired_difference(results: list[dict], method_a: str, method_b: str, metric: str = "psnr") -> list[dict]:
    """Per image of `binsr.evaluate` results: (set, image, metric of a - metric of b), for a paired comparison."""
    values = {(r["method"], r["name"], i["name"]): i[metric] for r in results for i in r["images"]}
    return [
        {"set": s, "image": image, "diff": values[(method_a, s, image)] - v}
        for (method, s, image), v in values.items()
        if method == method_b and (method_a, s, image) in values
    ]


def paired_difference_figure(diffs: list[dict], labels: tuple[str, str], metric: str = "PSNR (dB)") -> Figure:
    """One bar per image: metric of labels[0] minus metric of labels[1], with the mean and the win count."""
    d = np.array([x["diff"] for x in diffs])
    fig = new_figure(10.0, 3.0)
    ax = fig.subplots()
    ax.bar(np.arange(len(d)), d, color=np.where(d > 0, "tab:red", "tab:blue"))
    ax.axhline(0, color="black", lw=0.8)
    ax.axhline(d.mean(), color="grey", ls="--", lw=1, label=f"mean {d.mean():+.3f}")
    ax.set_xticks(np.arange(len(d)), [f"{x['set']}/{x['image']}" for x in diffs], rotation=60, ha="right", fontsize=7)
    ax.set_title(f"{labels[0]} - {labels[1]}, {metric}: better on {int((d > 0).sum())} of {len(d)} images")
    ax.legend(fontsize=8)
    return fig


def results_figure(rows: list[dict], baselines: dict[str, float] | None = None) -> Figure:
    """PSNR against OPs (15), one point per run of `binsr experiment` (rows as in results.json: label, scale,
    ops, val), one panel per scale; the mean over validation sets. Rows without OPs (bicubic) and `baselines`
    ({label: PSNR}, keyed "bicubic x2" etc.) are drawn as horizontal lines in the panel of their scale."""
    scales = sorted({r["scale"] for r in rows})
    baselines = dict(baselines or {})
    fig = new_figure(5.0 * len(scales), 3.4)
    axes = np.atleast_1d(fig.subplots(1, len(scales)))
    for ax, scale in zip(axes, scales, strict=True):
        for r in (r for r in rows if r["scale"] == scale):
            psnr = float(np.mean([v["psnr"] for v in r["val"].values()]))
            if not r["ops"]:
                baselines[f"{r['label']} x{scale}"] = psnr
                continue
            ax.plot(r["ops"] / 1e9, psnr, "o", color=_color(r["label"].removeprefix("EDSR-")), ms=7)
            ax.annotate(r["label"], (r["ops"] / 1e9, psnr), fontsize=7, xytext=(4, 3), textcoords="offset points")
        for label, value in baselines.items():
            if label.endswith(f"x{scale}"):
                ax.axhline(value, color="grey", ls=":", lw=1)
                ax.text(0.01, value, label, transform=ax.get_yaxis_transform(), fontsize=7, va="bottom", color="grey")
        ax.set_xlim(0, None)
        ax.set_xlabel("OPs at 320x180 (G)")
        ax.set_ylabel("mean validation PSNR (dB)")
        ax.set_title(f"x{scale}: quality vs cost")
    return fig


# ---- 10 XNOR inference ----------------------------------------------------------------------------------


def weight_bits(packed, out_channel: int) -> np.ndarray:
    """Decode the sign bits of output channel `out_channel` from a `binsr.xnor.PackedConv` as a (k*k, C) bool
    array (row = tap dy*k + dx, column = input channel), reading the layout its docstring describes: bits is
    (ceil(O/4), k, k*words, 4) uint64, word dx*words + w of kernel row dy holds channels 64w .. 64w+63 (bit b =
    channel 64w + b), for output 4*block + q."""
    from binsr import xnor

    k, channels = packed.kernel_size, packed.in_channels
    words = xnor.n_words(channels)
    block, q = divmod(out_channel, xnor.BLOCK)
    rows = []
    for dy in range(k):
        for dx in range(k):
            tap = packed.bits[block, dy, dx * words : (dx + 1) * words, q].astype("<u8")
            rows.append(np.unpackbits(tap.view(np.uint8), bitorder="little")[:channels].astype(bool))
    return np.stack(rows)


def word_bits(word: int | np.integer, channels: int = 64) -> str:
    """A uint64 word as its bits, channel 0 first (bit b = channel b), '+' for 1 (= +1) and '-' for 0 (= -1)."""
    return "".join("+" if (int(word) >> b) & 1 else "-" for b in range(channels))


def bit_layout_figure(conv: BinaryConv2d, packed, out_channel: int = 0) -> Figure:
    """Left: sign(W) of one output channel of `conv` as taps x input channels. Middle: the same bits decoded from
    the packed words (`weight_bits`). Right: where they differ (nowhere, if the packing is right)."""
    w = (conv.weight.detach()[out_channel] > 0).numpy()  # (C, k, k)
    signs = w.reshape(w.shape[0], -1).T  # (k*k, C)
    bits = weight_bits(packed, out_channel)
    fig = new_figure(10.0, 2.6)
    axes = fig.subplots(1, 3)
    k = conv.kernel_size
    for ax, image, title in (
        (axes[0], signs, f"sign W[{out_channel}] > 0 (float weights)"),
        (axes[1], bits, "bits decoded from the uint64 words"),
        (axes[2], signs != bits, f"differences: {int((signs != bits).sum())}"),
    ):
        ax.imshow(image, cmap="gray", vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_yticks(range(k * k), [f"({dy},{dx})" for dy in range(k) for dx in range(k)], fontsize=6)
        ax.set_xlabel("input channel")
        ax.set_title(title, fontsize=9)
    axes[0].set_ylabel("tap (dy, dx)")
    return fig


def accumulator_check(model: nn.Module, image: np.ndarray | torch.Tensor) -> list[dict]:
    """For every BinaryConv2d of `model` on `image`: the float simulation's accumulators conv(RSign x, sign W)
    (what `BinaryConv2d.binary_conv` computes, as float32) against the XNOR + popcount kernel's integer ones
    (`binsr.xnor.xnor_accumulators` on `pack_activations` of the same input). Returns per layer: name, shape,
    count, max_abs_diff and equal (bit-for-bit equality of the two as integers)."""
    from binsr import xnor
    from binsr.export import pack_binary_conv

    inputs: dict[str, torch.Tensor] = {}
    convs = binary_convs(model)
    handles = [
        m.register_forward_hook(lambda mod, args, out, name=name: inputs.__setitem__(name, args[0].detach()))
        for name, m in convs
    ]
    try:
        with torch.no_grad():
            model(_as_input(image))
    finally:
        for handle in handles:
            handle.remove()
    rows = []
    for name, conv in convs:
        x = inputs[name]
        with torch.no_grad():
            simulated = conv.binary_conv(conv.rsign(x)).permute(0, 2, 3, 1).numpy()  # NHWC float32
        nhwc = np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())
        threshold = conv.rsign.threshold.detach().numpy()
        accumulators = xnor.xnor_accumulators(xnor.pack_activations(nhwc, threshold), pack_binary_conv(conv))
        integral = bool((simulated == np.round(simulated)).all())
        diff = np.abs(simulated.astype(np.int64) - accumulators.astype(np.int64))
        rows.append({
            "name": name, "shape": tuple(accumulators.shape), "count": int(accumulators.size),
            "max_abs_diff": int(diff.max()), "equal": integral and bool((diff == 0).all()),
        })  # fmt: skip
    return rows


def size_figure(sizes: dict[str, dict[str, int]]) -> Figure:
    """Horizontal bars of storage in KiB for {model: {what: bytes}} (e.g. float32 checkpoint vs packed file)."""
    fig = new_figure(9.0, 2.4 + 0.25 * sum(len(v) for v in sizes.values()))
    ax = fig.subplots()
    labels, values, colors = [], [], []
    palette = ("tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:purple")
    for model, entries in sizes.items():
        for (what, size), color in zip(entries.items(), palette, strict=False):
            labels.append(f"{model}: {what}")
            values.append(size / 1024)
            colors.append(color)
    pos = np.arange(len(values))
    ax.barh(pos, values, color=colors)
    for p, v in zip(pos, values, strict=True):
        ax.text(v, p, f" {v:,.1f} KiB", va="center", fontsize=8)
    ax.set_yticks(pos, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("KiB")
    ax.set_xlim(0, max(values) * 1.25)
    ax.set_title("storage")
    return fig


def bench_figure(rows: list[dict]) -> Figure:
    """Speedups of `binsr.bench` rows (XNOR engine vs the faster torch fp32 layout), one bar per case."""
    fig = new_figure(8.0, 2.8)
    ax = fig.subplots()
    labels = [f"{r['case']}\n{r['shape']}, {r['threads']} thr." for r in rows]
    speed = np.array([r["speedup"] for r in rows])
    pos = np.arange(len(rows))
    ax.bar(pos, speed, color=np.where(speed >= 1, "tab:green", "tab:red"))
    ax.axhline(1.0, color="black", lw=0.8)
    for p, v in zip(pos, speed, strict=True):
        ax.text(p, v, f"{v:.1f}x", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(pos, labels, fontsize=7)
    ax.set_ylabel("float time / XNOR time")
    ax.set_title("XNOR engine vs torch float32 on this machine (median of repeats; noisy)")
    return fig
