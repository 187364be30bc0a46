"""`binsr bench`: the XNOR engine against torch fp32 on this CPU, side by side in one process; ratios only.

Each case times its candidates interleaved (so a change in machine load hits all of them alike) and keeps
the median of `repeats` runs. Speedups are quoted against the faster of torch's NCHW and channels_last.
`GOALS` are issue 13's, per kernel. Run: python -m binsr bench (or `run_bench` here).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from binsr.engine import xnor
from binsr.engine.export import export_model
from binsr.engine.runtime import (
    AddPopped,
    AttentiveUnit,
    BBCUUnits,
    PackedModel,
    PixelShuffle,
    Push,
    State,
    load_packed,
)
from binsr.nn.models import create_model

Clock = Callable[[], float]
CL = torch.channels_last
# (case, shape) -> the speedup asked for, per kernel; the portable kernel has none
GOALS: dict[str, dict[tuple[str, str], float]] = {
    kernel: dict(zip(
        [("conv", "64->64 @256x256"), ("conv", "32->32 @128x128"), ("pack + conv", "64->64 @256x256"),
         ("body", "32x8 @128x128"), ("x2 model", "32x8 @128x128")],
        goals, strict=True,
    ))
    for kernel, goals in (("avx512", (12.0, 10.0, 8.0, 8.0, 3.0)), ("avx2", (8.0, 6.0, 6.0, 5.0, 2.5)))
}  # fmt: skip
THREAD_GOAL = 1.7  # 2 threads over 1 on the 64-channel conv


def median_times(
    candidates: dict[str, Callable[[], object]], repeats: int, clock: Clock = time.perf_counter, warm: bool = True
) -> dict[str, float]:
    """Median time of each candidate over `repeats` interleaved rounds (a change in machine load hits all alike).

    In each round every candidate runs twice in a row and only the second call is timed, so each is measured in
    its own steady state, as in a loop over images, and not in the state the previous candidate left (right after
    torch's conv, the 32-channel XNOR conv ran 1.6x slower than after itself); `warm=False` drops the untimed
    call, for candidates that run for seconds. The order rotates from round to round. `clock` is wall time by
    default; time.process_time (CPU seconds of all threads) is steadier for one thread on a machine other jobs
    are loading.
    """
    names = list(candidates)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeats):
        shift = round_ % len(names)
        for name in names[shift:] + names[:shift]:
            if warm:
                candidates[name]()
            start = clock()
            candidates[name]()
            times[name].append(clock() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def _row(threads: int, case: str, shape: str, times: dict[str, float]) -> dict:
    fastest = min(times["torch NCHW"], times["torch channels_last"])
    kernel = xnor.current_kernel()
    return {
        "threads": threads,
        "kernel": kernel,
        "case": case,
        "shape": shape,
        "vs NCHW": times["torch NCHW"] / times["xnor"],
        "vs channels_last": times["torch channels_last"] / times["xnor"],
        "speedup": fastest / times["xnor"],
        "goal": GOALS.get(kernel, {}).get((case, shape)) if threads == 1 else None,  # the goals are for 1 thread
    }


def _conv_case(channels: int, size: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray, np.ndarray, xnor.PackedConv]:
    """A 3x3 conv channels -> channels on size x size: NCHW input and weights, NHWC input, threshold, packed conv."""
    gen = torch.Generator().manual_seed(channels)
    x = torch.randn(1, channels, size, size, generator=gen)
    weight = torch.randn(channels, channels, 3, 3, generator=gen)
    conv = xnor.pack_conv(weight.numpy(), weight.abs().mean(dim=(1, 2, 3)).numpy())
    x_nhwc = x.contiguous(memory_format=CL).permute(0, 2, 3, 1).numpy()  # channels_last memory is NHWC: a view
    return x, weight, x_nhwc, np.zeros(channels, np.float32), conv


def conv_rows(
    threads: int, channels: int, size: int, repeats: int, clock: Clock = time.perf_counter, into_out: bool = False
) -> list[dict]:
    """One 3x3 conv channels -> channels on size x size: pre-packed input, and including the pack. With
    `into_out`, also "conv, out=": the XNOR conv writing into the same array in every call, as the packed model's
    units write in place. A fresh output of this size is new memory from the OS, faulted in and zeroed page by page
    while the conv writes it (torch's conv allocates its output too)."""
    x, weight, x_nhwc, threshold, conv = _conv_case(channels, size)
    x_cl, weight_cl = x.contiguous(memory_format=CL), weight.contiguous(memory_format=CL)
    packed = xnor.pack_activations(x_nhwc, threshold)
    xnor_runs = {"xnor": lambda: xnor.xnor_conv(packed, conv)}
    if into_out:
        out = xnor.xnor_conv(packed, conv)[0]
        xnor_runs["xnor into out"] = lambda: xnor.xnor_conv(packed, conv, out=out)
    xnor_runs["xnor with pack"] = lambda: xnor.xnor_conv(xnor.pack_activations(x_nhwc, threshold), conv)
    torch_runs = {
        "torch NCHW": lambda: F.conv2d(x, weight, padding=1),
        "torch channels_last": lambda: F.conv2d(x_cl, weight_cl, padding=1),
    }
    shape = f"{channels}->{channels} @{size}x{size}"
    # One interleaved round for all: the rows share torch's times, so only the XNOR side differs between them
    times = median_times({**xnor_runs, **torch_runs}, repeats, clock)
    cases = {"conv": "xnor", "conv, out=": "xnor into out", "pack + conv": "xnor with pack"}
    return [_row(threads, case, shape, {**times, "xnor": times[run]}) for case, run in cases.items() if run in times]


def thread_scaling(threads: int, channels: int = 64, size: int = 256, repeats: int = 7) -> float:
    """How much faster the XNOR conv runs on `threads` threads than on one (wall clock, interleaved)."""
    _, _, x_nhwc, threshold, conv = _conv_case(channels, size)
    packed = xnor.pack_activations(x_nhwc, threshold)
    saved = torch.get_num_threads()

    def on(n: int) -> Callable[[], object]:
        def run():
            torch.set_num_threads(n)
            return xnor.xnor_conv(packed, conv)

        return run

    try:
        times = median_times({"1": on(1), "n": on(threads)}, repeats)
    finally:
        torch.set_num_threads(saved)
    return times["1"] / times["n"]


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
    body_ops = packed.program[packed.program.index(Push()) + 1 : packed.program.index(AddPopped())]
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
    """All cases at each thread count, on the kernel `xnor.setup` chose: one conv (64ch @256, 32ch @128), into a
    given output, with pack, and EDSR-BBCU 32x8 / 64x16 (binary units, body, whole x2 model)."""
    saved = torch.get_num_threads()
    rows = []
    try:
        for n in threads:
            torch.set_num_threads(n)
            for channels, size in ((64, 256), (32, 128)):
                rows += conv_rows(n, channels, size, repeats, clock, into_out=True)
            for n_feats, n_blocks in ((32, 8), (64, 16)):
                rows += model_rows(n, n_feats, n_blocks, lr_size, repeats, clock)
    finally:
        torch.set_num_threads(saved)
    return rows


def format_bench(rows: list[dict], goals: bool = True) -> str:
    """A plain-text table of `run_bench` rows, each with its kernel and (if `goals`) the goal for that kernel
    with how far the speedup is from it."""
    lines = [f"{'thr':>3}  {'kernel':<8} {'case':<13} {'shape':<20} {'vs NCHW':>8} {'vs CL':>7} {'speedup':>8}"]
    lines[0] += " goal" if goals else ""
    for r in rows:
        line = (
            f"{r['threads']:>3}  {r['kernel']:<8} {r['case']:<13} {r['shape']:<20} {r['vs NCHW']:>7.1f}x "
            f"{r['vs channels_last']:>6.1f}x {r['speedup']:>7.1f}x"
        )
        if goals and r["goal"] is not None:
            met = "ok" if r["speedup"] >= r["goal"] else f"{r['speedup'] / r['goal'] - 1:+.0%}"
            line += f" {r['goal']:>4.1f}x  {met}"
        lines.append(line)
    return "\n".join(lines)


def upscale_rows(
    image: str | Path | np.ndarray, model: str = "edsr-bbcu-x2", threads: tuple[int, ...] = (1, 2),
    repeats: int = 3, tile: int | None = None, clock: Clock = time.perf_counter,
) -> list[dict]:  # fmt: skip
    """`binsr upscale`'s work on `image` (a file, read as the command reads it, or a uint8 HxWx3 array), tiled as
    the command tiles it and rounded to 8 bits, without writing a file, on the torch engine and on the xnor
    engine at each thread count: medians of `repeats` interleaved runs (each run takes seconds, so none is
    warmed up). One row per thread count, as `run_bench`'s (case, shape, threads, kernel, speedup) with both
    times and xnor's speed over its own on the first thread count ("scaling")."""
    from binsr.data.images import open_image, to_rgb8
    from binsr.engine.export import pack_model
    from binsr.evaluation.evaluate import upscale
    from binsr.nn.checkpoint import load_any

    float_model = load_any(model)
    engines = {"torch": float_model, "xnor": pack_model(float_model)}
    rgb = image if isinstance(image, np.ndarray) else to_rgb8(open_image(image))

    def run(net, n: int) -> Callable[[], object]:
        def upscale_on_n_threads():
            torch.set_num_threads(n)
            return upscale(net, rgb, float_model.scale, tile=tile)

        return upscale_on_n_threads

    saved = torch.get_num_threads()
    try:
        candidates = {(name, n): run(net, n) for n in threads for name, net in engines.items()}
        times = median_times(candidates, repeats, clock, warm=False)
    finally:
        torch.set_num_threads(saved)
    return [
        {"case": "whole upscale", "shape": f"{model} @{rgb.shape[1]}x{rgb.shape[0]}", "threads": n,
         "kernel": xnor.current_kernel(),
         "torch": times["torch", n], "xnor": times["xnor", n], "speedup": times["torch", n] / times["xnor", n],
         "scaling": times["xnor", threads[0]] / times["xnor", n]}
        for n in threads
    ]  # fmt: skip


def format_upscale(rows: list[dict]) -> str:
    """A plain-text table of `upscale_rows`, naming torch's own vector ISA (ATen's CPU capability, which
    ATEN_CPU_CAPABILITY lowers) and, where set, oneDNN's ISA limit (ONEDNN_MAX_CPU_ISA)."""
    first = rows[0]
    isa = torch.backends.cpu.get_cpu_capability()
    limit = os.environ.get("ONEDNN_MAX_CPU_ISA")
    torch_isa = f"{isa}, oneDNN up to {limit}" if limit else isa
    lines = [f"upscale with {first['shape']}: torch ({torch_isa}) vs xnor ({first['kernel']} kernel), medians of "
             "interleaved runs",
             f"{'thr':>3}  {'torch s':>8} {'xnor s':>7} {'speedup':>8}  xnor vs {first['threads']} thr"]  # fmt: skip
    for r in rows:
        times = f"{r['torch']:>8.2f} {r['xnor']:>7.2f}"
        lines.append(f"{r['threads']:>3}  {times} {r['speedup']:>7.2f}x  {r['scaling']:>13.2f}x")
    return "\n".join(lines)


STAGES = ("head", "binary units", "body conv", "upsampler", "tail", "rest")  # EDSR's, in order


def _stage(op: object) -> str:
    """The EDSR stage of a packed op, from the module it came from (head, body.N, upsampler.N, tail)."""
    if isinstance(op, (BBCUUnits, AttentiveUnit)):
        return "binary units"
    if isinstance(op, PixelShuffle):
        return "upsampler"
    module = getattr(op, "name", "").split(".")[0]
    return {"head": "head", "body": "body conv", "upsampler": "upsampler", "tail": "tail"}.get(module, "rest")


def _packed_stages(packed: PackedModel, x: torch.Tensor, clock: Clock) -> dict[str, float]:
    times = dict.fromkeys(STAGES, 0.0)
    state = State()
    with torch.no_grad():
        for op in packed.program:
            start = clock()
            x = op(x, state)
            times[_stage(op)] += clock() - start
    return times


def _float_stages(model: torch.nn.Module, x: torch.Tensor, clock: Clock) -> dict[str, float]:
    times, started = dict.fromkeys(STAGES, 0.0), {}
    modules = {"head": [model.head], "binary units": list(model.body)[:-1], "body conv": [model.body[-1]],
               "upsampler": [model.upsampler], "tail": [model.tail]}  # fmt: skip
    handles = []
    for stage, parts in modules.items():
        for part in parts:
            handles.append(part.register_forward_pre_hook(lambda m, a, stage=stage: started.update({stage: clock()})))
            handles.append(part.register_forward_hook(
                lambda m, a, out, stage=stage: times.update({stage: times[stage] + clock() - started[stage]})
            ))  # fmt: skip
    try:
        with torch.no_grad():
            start = clock()
            model(x)
            total = clock() - start
    finally:
        for handle in handles:
            handle.remove()
    times["rest"] = total - sum(times.values())
    return times


def stage_times(
    model: str, image: np.ndarray, tile: int | None = None, repeats: int = 5, clock: Clock = time.process_time
) -> dict:
    """Where one call of the EDSR `model` spends its time on an inner tile of `image` (uint8 HxWx3, cut as
    `binsr.evaluation.evaluate.upscale` cuts it, overlap and all; the whole image when it runs untiled), on each engine:
    {"piece": "WxH", engine: {stage: median seconds}} over `repeats` alternating runs, on torch's current threads.
    The stages are STAGES: the head conv, the binary units (on xnor with their NHWC copies and packing), the body
    conv, the upsampler (convs and pixel shuffles), the tail conv, and the rest (input and output scaling, the
    long skip)."""
    from binsr.data.images import to_tensor
    from binsr.engine.export import pack_model
    from binsr.engine.tiling import GLOBAL_PAD, auto_tile, context
    from binsr.nn.checkpoint import load_any

    float_model = load_any(model)
    packed = pack_model(float_model)
    tile = auto_tile(*image.shape[:2], tile)
    side = tile + 2 * (context(float_model) or GLOBAL_PAD)
    piece = image if tile == 0 else image[:side, :side]
    x = to_tensor(piece[None])
    runs: dict[str, list[dict[str, float]]] = {"torch": [], "xnor": []}
    for _ in range(repeats + 1):  # the first round warms up
        runs["torch"].append(_float_stages(float_model, x, clock))
        runs["xnor"].append(_packed_stages(packed, x, clock))
    medians = {
        engine: {stage: statistics.median(run[stage] for run in timed[1:]) for stage in STAGES}
        for engine, timed in runs.items()
    }
    return {"piece": f"{piece.shape[1]}x{piece.shape[0]}", **medians}


def format_stages(times: dict, what: str) -> str:
    """`stage_times` as a table of milliseconds, with each engine's total; `what` heads it."""
    lines = [f"{what}, on a {times['piece']} piece: ms per stage (medians)",
             f"{'':<6}" + "".join(f"{s:>14}" for s in (*STAGES, "total"))]  # fmt: skip
    for engine in ("torch", "xnor"):
        cells = [*times[engine].values(), sum(times[engine].values())]
        lines.append(f"{engine:<6}" + "".join(f"{1e3 * t:>14.1f}" for t in cells))
    return "\n".join(lines)
