"""`binsr bench`: the XNOR engine against torch fp32 on this CPU, side by side in one process; ratios only.

Each case times its candidates interleaved (so a change in machine load hits all of them alike) and keeps
the median of `repeats` runs. Speedups are quoted against the faster of torch's NCHW and channels_last.
Goals: one conv >= 8x, the binary body >= 5x, the whole x2 model >= 2.5x. Run: python -m binsr.bench
"""

from __future__ import annotations

import os

os.environ.setdefault("NUMBA_THREADING_LAYER", "workqueue")  # before numba loads; see binsr.xnor

import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numba
import numpy as np
import torch
import torch.nn.functional as F

from binsr import xnor
from binsr.export import export_model
from binsr.models import create_model
from binsr.runtime import load_packed

Clock = Callable[[], float]
GOALS = {"conv": 8.0, "binary units": 5.0, "body": 5.0, "x2 model": 2.5}  # "pack + conv" has none
CL = torch.channels_last


def median_times(
    candidates: dict[str, Callable[[], object]], repeats: int, clock: Clock = time.perf_counter
) -> dict[str, float]:
    """Median time of each candidate over `repeats` interleaved rounds, after one warm-up call each.

    `clock` is wall time by default; time.process_time (CPU seconds of all threads) is steadier for one
    thread on a machine other jobs are loading.
    """
    for run in candidates.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(repeats):
        for name, run in candidates.items():
            start = clock()
            run()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _row(threads: int, case: str, shape: str, times: dict[str, float]) -> dict:
    fastest = min(times["torch NCHW"], times["torch channels_last"])
    return {
        "threads": threads,
        "case": case,
        "shape": shape,
        "vs NCHW": times["torch NCHW"] / times["xnor"],
        "vs channels_last": times["torch channels_last"] / times["xnor"],
        "speedup": fastest / times["xnor"],
        "goal": GOALS.get(case),
    }


def conv_rows(threads: int, channels: int, size: int, repeats: int, clock: Clock = time.perf_counter) -> list[dict]:
    """One 3x3 conv channels -> channels on size x size: pre-packed input, and including the pack."""
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, size, size, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, generator=gen)
    x_cl, weight_cl = x.contiguous(memory_format=CL), weight.contiguous(memory_format=CL)
    threshold = np.zeros(channels, np.float32)
    conv = xnor.pack_conv(weight.numpy(), weight.abs().mean(dim=(1, 2, 3)).numpy())
    x_nhwc = x_cl.permute(0, 2, 3, 1).numpy()  # channels_last memory is NHWC: a view, no copy
    packed = xnor.pack_activations(x_nhwc, threshold)
    torch_runs = {
        "torch NCHW": lambda: F.conv2d(x, weight, padding=1),
        "torch channels_last": lambda: F.conv2d(x_cl, weight_cl, padding=1),
    }
    shape = f"{channels}->{channels} @{size}x{size}"
    conv_only = median_times({"xnor": lambda: xnor.xnor_conv(packed, conv), **torch_runs}, repeats, clock)
    with_pack = median_times(
        {"xnor": lambda: xnor.xnor_conv(xnor.pack_activations(x_nhwc, threshold), conv), **torch_runs}, repeats, clock
    )
    return [_row(threads, "conv", shape, conv_only), _row(threads, "pack + conv", shape, with_pack)]


def perturbed_edsr_bbcu(n_feats: int, n_blocks: int) -> torch.nn.Module:
    """A random x2 EDSR-BBCU with thresholds and RPReLU moved off zero, as a trained one would be."""
    torch.manual_seed(0)
    model = create_model("edsr-bbcu", scale=2, n_feats=n_feats, n_blocks=n_blocks)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "rsign" in name or "rprelu" in name:
                p.add_(0.2 * torch.randn_like(p))
    return model.eval()


def model_rows(
    threads: int, n_feats: int, n_blocks: int, lr_size: int, repeats: int, clock: Clock = time.perf_counter
) -> list[dict]:
    """EDSR-BBCU's binary units, its body (units + full-precision conv) and the whole x2 model."""
    model = perturbed_edsr_bbcu(n_feats, n_blocks)
    model_cl = perturbed_edsr_bbcu(n_feats, n_blocks).to(memory_format=CL)
    with tempfile.TemporaryDirectory() as tmp:
        packed = load_packed(export_model(model, Path(tmp) / "model.binsr"))
    body_ops = packed.program[packed.program.index({"op": "push"}) + 1 : packed.program.index({"op": "add_popped"})]
    lr = torch.rand(1, 3, lr_size, lr_size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features = model.head((lr - model.rgb_mean) * model.k)
    cases = {  # packed run, float NCHW module, float channels_last module, input
        "binary units": (partial(packed.run, features, body_ops[:-1]), model.body[:-1], model_cl.body[:-1], features),
        "body": (partial(packed.run, features, body_ops), model.body, model_cl.body, features),
        "x2 model": (partial(packed, lr), model, model_cl, lr),
    }
    shape = f"{n_feats}x{n_blocks} @{lr_size}x{lr_size}"
    rows = []
    with torch.no_grad():
        for case, (run_packed, float_nchw, float_cl, x) in cases.items():
            candidates = {
                "xnor": run_packed,
                "torch NCHW": partial(float_nchw, x),
                "torch channels_last": partial(float_cl, x.contiguous(memory_format=CL)),
            }
            rows.append(_row(threads, case, shape, median_times(candidates, repeats, clock)))
    return rows


def run_bench(
    threads: tuple[int, ...] = (1, 2), repeats: int = 7, lr_size: int = 128, clock: Clock = time.perf_counter
) -> list[dict]:
    """All cases at each thread count: one conv (64ch @256, 32ch @128), with pack, and EDSR-BBCU 32x8 / 64x16."""
    saved = torch.get_num_threads(), numba.get_num_threads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            numba.set_num_threads(n)
            rows += conv_rows(n, 64, 256, repeats, clock) + conv_rows(n, 32, 128, repeats, clock)
            for n_feats, n_blocks in ((32, 8), (64, 16)):
                rows += model_rows(n, n_feats, n_blocks, lr_size, repeats, clock)
    finally:
        torch.set_num_threads(saved[0])
        numba.set_num_threads(saved[1])
    return rows


def kernel_popcounts(channels: int = 64, kernel_size: int = 3) -> dict[str, int]:
    """How many popcnt / vpopcntq / vpshufb instructions the conv kernel compiles to on this machine.

    Compiles a fresh, uncached copy (numba cannot show the assembly of cached code); takes seconds.
    """
    conv = xnor.pack_conv(np.ones((xnor.BLOCK, channels, kernel_size, kernel_size), np.float32))
    kernel = numba.njit(parallel=True)(xnor._conv_kernel(xnor.n_words(channels), kernel_size, conv.paired).py_func)
    args = (
        xnor.empty_packed(1, 1, 1, channels),
        conv.kernel_words,
        conv.base,
        conv.alpha,
        xnor._NO_RPRELU,
        xnor._NO_MAP,
        np.empty((1, 1, 1, xnor.BLOCK), np.float32),
        xnor._NO_THRESHOLD,
        xnor._NO_PACKED,
    )
    kernel.compile(tuple(numba.typeof(a) for a in args))
    assembly = kernel.inspect_asm(kernel.signatures[0])
    return {name: assembly.count(f"\t{name}\t") for name in ("popcntq", "vpopcntq", "vpshufb")}


def format_bench(rows: list[dict]) -> str:
    """A plain-text table of `run_bench` rows."""
    lines = [f"{'thr':>3}  {'case':<13} {'shape':<20} {'vs NCHW':>8} {'vs CL':>7} {'speedup':>8} {'goal':>5}"]
    for r in rows:
        goal, met = "", ""
        if r["goal"] is not None:
            goal = f"{r['goal']:.1f}x"
            met = "ok" if r["speedup"] >= r["goal"] else f"{r['speedup'] / r['goal'] - 1:+.0%}"
        lines.append(
            f"{r['threads']:>3}  {r['case']:<13} {r['shape']:<20} {r['vs NCHW']:>7.1f}x {r['vs channels_last']:>6.1f}x "
            f"{r['speedup']:>7.1f}x {goal:>5}  {met}"
        )
    return "\n".join(lines)

