"""Notebook 02, sign and its gradient: the forward sign (1) and its surrogate gradients (2)-(4)."""

from __future__ import annotations

import math

import numpy as np
import torch
from matplotlib.figure import Figure

from binsr.nn.binary import SIGN_BACKWARDS, binary_sign, sign_derivative
from binsr.viz.common import new_figure, styled

_BACKWARD_COLORS = {"identity": "tab:green", "clipped": "tab:orange", "approx": "tab:red"}
_BACKWARD_LABELS = {"identity": "identity STE (4)", "clipped": "clipped STE (2)", "approx": "ApproxSign (3)"}


def surrogate_forward(x: torch.Tensor, sign_backward: str) -> torch.Tensor:
    """The smooth function whose derivative is the surrogate gradient of eq. (2), (3) or (4).

    identity: x; clipped: clamp(x, -1, 1) (hardtanh); approx: the piecewise quadratic of Bi-Real Net,
    2x + x^2 on [-1, 0), 2x - x^2 on [0, 1), sign(x) outside.
    """
    if sign_backward == "identity":
        return x.clone()
    if sign_backward == "clipped":
        return x.clamp(-1, 1)
    if sign_backward == "approx":
        inner = torch.where(x < 0, 2 * x + x * x, 2 * x - x * x)
        return torch.where(x.abs() < 1, inner, torch.where(x > 0, 1.0, -1.0).to(x.dtype))
    raise ValueError(f"sign_backward={sign_backward!r} is not valid; expected one of {', '.join(SIGN_BACKWARDS)}")


def autograd_sign_gradient(x: torch.Tensor, sign_backward: str) -> torch.Tensor:
    """d binary_sign(x)/dx as autograd computes it (what a training run actually uses)."""
    x = x.detach().clone().requires_grad_(True)
    binary_sign(x, sign_backward).sum().backward()
    return x.grad


@styled
def sign_backward_figure(x_max: float = 2.0, backwards: tuple[str, ...] = SIGN_BACKWARDS) -> Figure:
    """Forward sign (1) with each surrogate's smooth stand-in, and their derivatives (2)-(4) on [-x_max, x_max]."""
    x = torch.linspace(-x_max, x_max, 801)
    fig = new_figure(10.0, 4.0)
    ax_f, ax_g = fig.subplots(1, 2)
    ax_f.plot(x, binary_sign(x), color="black", lw=2.5, label="sign(x) (1)")
    for b in backwards:
        ax_f.plot(x, surrogate_forward(x, b), color=_BACKWARD_COLORS[b], ls="--", label=_BACKWARD_LABELS[b])
        ax_g.plot(x, sign_derivative(x, b), color=_BACKWARD_COLORS[b], lw=2, label=_BACKWARD_LABELS[b])
    ax_f.set_ylim(-max(1.6, min(x_max, 4.0)), max(1.6, min(x_max, 4.0)))
    ax_f.set_title("forward: sign (1) and\neach surrogate's stand-in")
    ax_f.set_ylabel("output")
    ax_g.set_title("backward: surrogate d sign/dx")
    ax_g.set_ylabel("gradient")
    ax_g.set_ylim(-0.1, 2.2)
    for ax in (ax_f, ax_g):
        ax.axvline(0, color="grey", lw=0.5)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_xlabel("input x")
    ax_f.legend(loc="upper left")  # one legend: both panels share the colours
    return fig


def fraction_with_gradient(x: torch.Tensor, sign_backward: str) -> float:
    """Fraction of the entries of `x` whose surrogate derivative is non-zero."""
    return float((sign_derivative(x, sign_backward) != 0).float().mean())


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


def threshold_surrogate_gradient(t: float, target: float, sign_backward: str, n: int = 20000, seed: int = 0) -> float:
    """The gradient autograd reports for the toy regression loss mean (binary_sign(x - t) - sign(x - t*))^2."""
    x = _threshold_data(n, seed)
    y = torch.where(x > target, 1.0, -1.0)
    tt = torch.tensor(float(t), requires_grad=True)
    loss = ((binary_sign(x - tt, sign_backward) - y) ** 2).mean()
    loss.backward()
    return float(tt.grad)


def threshold_descent(
    sign_backward: str,
    t0: float = 2.5,
    target: float = 0.0,
    steps: int = 60,
    lr: float = 0.5,
    n: int = 4000,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Gradient descent on the toy threshold regression with the surrogate `sign_backward`.

    The model is b = sign(x - t) (an RSign, eq. 5, with one threshold); the data are x ~ N(0, 1) with
    labels sign(x - t*). Returns the threshold and the population loss after each step (step 0 = start).
    """
    x = _threshold_data(n, seed)
    y = torch.where(x > target, 1.0, -1.0)
    t = torch.tensor(float(t0), requires_grad=True)
    ts, losses = [t.item()], [threshold_loss(t.item(), target)]
    for _ in range(steps):
        loss = ((binary_sign(x - t, sign_backward) - y) ** 2).mean()
        (grad,) = torch.autograd.grad(loss, t)
        with torch.no_grad():
            t -= lr * grad
        ts.append(t.item())
        losses.append(threshold_loss(t.item(), target))
    return {"t": np.array(ts), "loss": np.array(losses)}


@styled
def gradient_mismatch_figure(
    t0: float = 2.5, lr: float = 0.5, target: float = 0.0, steps: int = 60, n: int = 4000
) -> Figure:
    """Left: true vs surrogate gradient of the toy loss over t. Right: descent trajectories from t0."""
    ts = np.linspace(-3.0, 3.0, 61)
    fig = new_figure(10.0, 4.0)
    ax_g, ax_t = fig.subplots(1, 2)
    ax_g.plot(ts, [threshold_true_gradient(t, target) for t in ts], color="black", lw=2.5, label="true dL/dt")
    for b in SIGN_BACKWARDS:
        g = [threshold_surrogate_gradient(t, target, b, n=n) for t in ts]
        ax_g.plot(ts, g, color=_BACKWARD_COLORS[b], label=_BACKWARD_LABELS[b])
        run = threshold_descent(b, t0, target, steps, lr, n)
        ax_t.plot(run["t"], color=_BACKWARD_COLORS[b], label=f"{b}: t={round(run['t'][-1], 2) + 0.0:.2f}")
    ax_g.axvline(target, color="grey", lw=0.5)
    ax_g.set_xlabel("threshold t")
    ax_g.set_ylabel("dL/dt")
    ax_g.set_title(f"gradient of the loss (target t* = {target:g})")
    ax_g.legend()
    ax_t.axhline(target, color="black", lw=1, ls=":", label="t*")
    ax_t.set_xlabel("gradient-descent step")
    ax_t.set_ylabel("threshold t")
    ax_t.set_title(f"descent from t0 = {t0:g}, lr = {lr:g}")
    ax_t.legend(title="t after the last step")
    return fig
