"""Command line: `binsr {summary,eval,upscale,train,experiment,export,download,bench,demo} ...` (also
`python -m binsr ...`).

All argument wiring lives here, so the library never depends on the command line; each command imports its
modules only when it runs, so `binsr summary` does not load matplotlib or the training code. Nothing heavy is
imported before `main` starts (not even torch, which takes seconds), so that a Ctrl-C at any time is one line.
Numbers are checked where they are parsed. Every error prints one line and exits with status 2; an interrupt
exits with 130.
"""

from __future__ import annotations

import argparse
import sys
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path

from binsr.base.intervals import COUNT, POSITIVE_COUNT, Interval
from binsr.training.config import LEARNING_RATE, TrainConfig

# ---- parsing -------------------------------------------------------------------------------------------


class UsageError(ValueError):
    """An option argparse refused; `prog` is the command that refused it, e.g. "binsr train"."""

    def __init__(self, prog: str, message: str):
        super().__init__(message)
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors one line like every other error (not the usage: `binsr COMMAND --help` has it)."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(self.prog, message)


def _number(kind: type, valid: Interval) -> Callable[[str], int | float]:
    """An argparse type: the `kind` (int or float) that `text` spells, when it lies in `valid`."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value not in valid:
            raise argparse.ArgumentTypeError(f"{text} is not valid; expected {valid}")
        return value

    return parse


def _tile(text: str) -> int:
    """--tile: 0, or a side of at least binsr.engine.tiling.MIN_TILE pixels."""
    from binsr.engine.tiling import MIN_TILE

    side = _number(int, COUNT)(text)
    if 0 < side < MIN_TILE:
        raise argparse.ArgumentTypeError(f"{text} is too small (the tiles' overlap would cost more than the tiles); "
                                         f"expected 0 for one pass or at least {MIN_TILE} pixels")  # fmt: skip
    return side


# ---- model and training options ------------------------------------------------------------------------


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per model argument, made from its field in `binsr.nn.config` (help, type, accepted values); only
    those given are passed on, so each model's defaults are its registry entry's."""
    from binsr.nn.config import argument_fields
    from binsr.nn.models import MODELS

    for name, setting in argument_fields().items():
        meta, flag = setting.metadata, "--" + name.replace("_", "-")
        takers = [model for model, entry in MODELS.items() if name in entry.defaults]
        text = meta["help"] + (f"; none: {meta['none']}" if meta.get("none") else "")
        text += "" if len(takers) == len(MODELS) else f" ({', '.join(takers)})"
        if "choices" in meta:  # of the choices' type: --scale 4 is the int 4
            parser.add_argument(flag, type=type(meta["choices"][0]), choices=meta["choices"], help=text)
        else:
            parse = _number(int if meta["valid"].integer else float, meta["valid"])
            parser.add_argument(flag, type=_or_none(parse) if meta.get("none") else parse, help=text)
    parser.add_argument(
        "--preprint-literal",
        action="store_true",
        help="edsr-proposed as the preprint reads: k=1, a1=a2=1, sigmoid gates, default init",
    )


NONE = "none"  # what an option whose argument may be None is given for it


def _or_none(parse: Callable[[str], int | float]) -> Callable[[str], int | float | str]:
    """An argparse type: NONE, or what `parse` reads."""
    return lambda text: NONE if text.lower() == NONE else parse(text)


def model_kwargs(args: argparse.Namespace) -> dict:
    """The registry arguments given on the command line (--preprint-literal first, explicit options over it)."""
    from binsr.nn.config import argument_fields
    from binsr.nn.models import PREPRINT_LITERAL

    kwargs = dict(PREPRINT_LITERAL) if getattr(args, "preprint_literal", False) else {}
    for name, setting in argument_fields().items():
        value = getattr(args, name, None)
        if value is not None:
            kwargs[name] = None if setting.metadata.get("none") and value == NONE else value
    return kwargs


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `binsr train`: the model (as for `binsr summary`), then one per TrainConfig field, which
    accepts the numbers the field does."""
    from binsr.nn.models import MODELS

    parser.add_argument("--model", required=True, choices=list(MODELS), help="registry name")
    add_model_arguments(parser)
    parser.add_argument("--out", default=None, help="output directory (default runs/train/<model>-x<scale>)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from <out>/last.pt if it exists")
    start.add_argument("--overwrite", action="store_true", help="start afresh in an --out that holds a run")
    types = typing.get_type_hints(TrainConfig)
    for setting in fields(TrainConfig):
        if setting.name == "scale":  # --scale is a model option
            continue
        flags = ["--" + setting.name.replace("_", "-"), *setting.metadata["aliases"]]
        value, text, valid = setting.default, setting.metadata["help"], setting.metadata["valid"]
        kind = str if value is None else type(value[0] if isinstance(value, tuple) else value)
        parse = kind if valid is None else _number(kind, valid)
        if isinstance(value, bool):
            parser.add_argument(
                *flags, action=argparse.BooleanOptionalAction, default=value, help=f"{text} (default: {value})"
            )
        elif isinstance(value, tuple):
            count = "*" if ... in typing.get_args(types[setting.name]) else len(value)  # tuple[str, ...] or fixed
            parser.add_argument(
                *flags,
                type=parse,
                nargs=count,
                default=list(value),
                help=f"{text} (default: {' '.join(map(str, value))})",
            )
        else:
            parser.add_argument(*flags, type=parse, default=value, help=f"{text} (default: {value})")


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The TrainConfig that parsed `binsr train` options describe (lists become the tuples of the fields; the
    run's scale is --scale, else the model's registry default)."""
    from binsr.nn.models import MODELS

    names = {setting.name for setting in fields(TrainConfig)}
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in vars(args).items() if k in names}
    if values["scale"] is None:  # --scale not given: the model's own (BBCU-L and BBCU-M are x4 nets)
        values["scale"] = MODELS[args.model].defaults["scale"]
    return TrainConfig(**values)


# ---- commands ------------------------------------------------------------------------------------------


def cmd_summary(args: argparse.Namespace) -> None:
    from binsr.nn.models import create_model
    from binsr.nn.summary import summary

    if Path(args.model).suffix in (".pt", ".pth"):
        from binsr.nn.checkpoint import load_model

        model = load_model(args.model)
    else:
        model = create_model(args.model, **model_kwargs(args))
    print(f"{model.config['name']}  {model.config['kwargs']}  LR input {args.lr_size[1]}x{args.lr_size[0]}")
    print(summary(model, lr_size=tuple(args.lr_size)))


def _writable(path: str | None) -> None:
    """Fail now, not after the work, when `path`'s folder cannot be made."""
    if path is not None:
        from binsr.base.files import ensure_dir

        ensure_dir(Path(path).parent)


def _process_settings(args: argparse.Namespace) -> None:
    """torch's thread count, which the XNOR engine shares, from --threads (default: torch's, the machine's cores);
    and freed memory kept for the next tile (`binsr.engine.inference.reuse_freed_memory`)."""
    import torch

    from binsr.engine.inference import reuse_freed_memory

    reuse_freed_memory()
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads {args.threads} is not valid; expected 1 or more")
        torch.set_num_threads(args.threads)


def cmd_eval(args: argparse.Namespace) -> None:
    from binsr.engine.inference import load
    from binsr.evaluation.evaluate import evaluate, format_table, write_csv, write_json

    _writable(args.csv)
    _writable(args.json)
    _process_settings(args)
    rows = []
    for spec in args.model:
        if spec == "bicubic":
            model, method = None, "Bicubic"
        else:
            model, line = load(spec, args.engine, "cpu", args.kernel, expect_scale=args.scale)
            method = Path(spec).stem
            print(f"{method}: {line}", file=sys.stderr)
        label = f"{method} (x8 self-ensemble)" if args.self_ensemble and model is not None else method
        rows += evaluate(model, args.data, args.scale, args.data_root, args.self_ensemble, method=label, tile=args.tile,
                         progress=True)  # fmt: skip
    print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv)
    if args.json:
        write_json(rows, args.json)


def cmd_upscale(args: argparse.Namespace) -> None:
    from binsr.evaluation.photos import upscale_photos

    _process_settings(args)
    written = upscale_photos(args.inputs, args.model, args.out, args.compare, args.tile, args.device, args.engine,
                             args.kernel, overwrite=args.overwrite)  # fmt: skip
    for path in written:
        print(path)


def cmd_train(args: argparse.Namespace) -> int:
    """`binsr train` (also under torchrun); 130 after a Ctrl-C or SIGTERM, with the steps so far saved."""
    from binsr.nn.models import model_arguments
    from binsr.training.train import TrainingInterrupted, train

    config = train_config(args)
    kwargs = model_kwargs(args)
    model_arguments(args.model, **kwargs)  # fail on a bad argument before loading any data
    out = args.out or f"runs/train/{args.model}-x{config.scale}"
    try:
        result = train(args.model, kwargs, config, out, resume=args.resume, overwrite=args.overwrite)
    except TrainingInterrupted as stop:
        if stop.checkpoint is not None:  # rank 0
            print(f"binsr train: interrupted; step {stop.step} saved to {stop.checkpoint}; "
                  "run the same command with --resume to continue", file=sys.stderr)  # fmt: skip
        return 130
    if result.checkpoint is not None:
        print(f"checkpoint: {result.checkpoint}  ({result.step} steps, {result.train_seconds:.0f} s)")
    return 0


def cmd_experiment(args: argparse.Namespace) -> None:
    from binsr.nn.checkpoint import ASSETS
    from binsr.training.experiment import TEACHER, run_experiment, ship
    from binsr.training.report import format_markdown

    rows = run_experiment(args.out, args.steps, args.lr, args.tune_steps, args.data_root, args.jobs,
                          args.distill_weight, args.distill_features, args.teacher or TEACHER)  # fmt: skip
    print(format_markdown(rows))
    print(f"results: {Path(args.out) / 'results.md'}, results.json, results.png")
    if args.ship:
        manifest = ship(rows)
        print(f"shipped to {ASSETS}: {', '.join(manifest['models'])}")


def cmd_download(args: argparse.Namespace) -> None:
    from binsr.data.download import download
    from binsr.data.images import resolve_data_root

    root = args.data_root or resolve_data_root() or "data"
    print(f"downloaded to {download(args.name, root, progress=True, verify=not args.insecure)}")


def cmd_export(args: argparse.Namespace) -> None:
    from binsr.engine.export import export_model
    from binsr.nn.checkpoint import load_model

    _writable(args.out)
    out = export_model(load_model(args.checkpoint), args.out)
    before, after = Path(args.checkpoint).stat().st_size, out.stat().st_size
    print(f"{out}: {after / 1024:,.0f} KiB packed vs {before / 1024:,.0f} KiB checkpoint ({before / after:.1f}x)")


def cmd_bench(args: argparse.Namespace) -> None:
    import time

    repeats = args.repeats or (3 if args.upscale else 7)
    clock = time.process_time if args.cpu_time else time.perf_counter
    if args.train:
        from binsr.training.train_bench import format_train_speed, train_speed_rows

        print(format_train_speed(train_speed_rows(repeats)))
        return
    if args.distill:
        from binsr.training.train_bench import distill_overhead_rows, format_distill_overhead

        print(format_distill_overhead(distill_overhead_rows(repeats, clock=clock)))
        return
    from binsr.engine import xnor
    from binsr.evaluation.bench import (
        THREAD_GOAL,
        format_bench,
        format_upscale,
        run_bench,
        thread_scaling,
        upscale_rows,
    )

    print(xnor.setup(args.kernel))
    if args.upscale:
        from binsr.engine.inference import reuse_freed_memory

        reuse_freed_memory()  # as binsr upscale runs
        print(format_upscale(upscale_rows(args.upscale, args.model, tuple(args.threads), repeats, args.tile, clock)))
        if args.split:
            print_split(args.upscale, args.model, args.threads[0], args.tile)
        return
    print(format_bench(run_bench(threads=tuple(args.threads), repeats=repeats, clock=clock)))
    for n in (n for n in args.threads if n > 1):
        scaling = thread_scaling(n, repeats=repeats)
        print(f"XNOR conv 64->64 @256x256 on {n} threads: {scaling:.2f}x its 1-thread speed (goal {THREAD_GOAL}x)")


def print_split(image: str, model: str, threads: int, tile: int | None) -> None:
    """`binsr bench --upscale IMAGE --split`: where one tile's time goes on each engine, in CPU seconds."""
    import time

    import torch

    from binsr.data.images import open_image, to_rgb8
    from binsr.evaluation.bench import format_stages, stage_times

    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        times = stage_times(model, to_rgb8(open_image(image)), tile, clock=time.process_time)
    finally:
        torch.set_num_threads(saved)
    print(format_stages(times, f"{model}, {threads} thread{'s' if threads > 1 else ''}, CPU time"))


def cmd_demo(args: argparse.Namespace) -> None:
    from binsr.demo import run_demo

    run_demo(args.out)


# ---- the parser ----------------------------------------------------------------------------------------

TILE_HELP = "LR tile side for large images (default: 256-pixel tiles above 512x512, same pixels); 0: one pass"
KERNEL_HELP = "XNOR kernel: auto (the fastest this CPU runs), avx512, avx2 or portable (default auto)"


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    """--engine, --kernel and --threads of the commands that run models (`binsr.engine.inference`)."""
    parser.add_argument(
        "--engine",
        default="auto",
        choices=["auto", "xnor", "torch"],
        help="xnor: binary models on the 1-bit XNOR runtime, same pixels; torch: as trained; auto "
        "(default): xnor for a binary model where a native kernel runs, else torch",
    )
    parser.add_argument("--kernel", default="auto", help=KERNEL_HELP)
    parser.add_argument("--threads", type=int, default=None, help="threads (default: torch's, the machine's cores)")


def build_parser() -> argparse.ArgumentParser:
    """The `binsr` parser (it imports torch, for the registry's names and limits)."""
    from binsr.nn.models import MODELS

    parser = _Parser(
        prog="binsr",
        description="Binary neural networks for image super-resolution: models, training, evaluation, XNOR engine.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("summary", help="per-layer params, FLOPs, BOPs and OPs of a model (BBCU's convention)")
    p.add_argument("model", help=f"registry name ({', '.join(MODELS)}) or a checkpoint .pt")
    add_model_arguments(p)
    p.add_argument(
        "--lr-size",
        type=_number(int, POSITIVE_COUNT),
        nargs=2,
        default=[180, 320],
        metavar=("H", "W"),
        help="LR input size (default 180 320, as in BBCU's Table 1)",
    )
    p.set_defaults(func=cmd_summary)

    p = commands.add_parser("eval", help="PSNR/SSIM on the Y channel (MATLAB protocol) of bicubic or checkpoints")
    p.add_argument(
        "--model",
        nargs="+",
        default=["bicubic"],
        metavar="MODEL",
        help="'bicubic', shipped models (edsr-bbcu-x2, ...), checkpoints, .binsr files (default: bicubic)",
    )
    p.add_argument(
        "--data",
        nargs="+",
        default=["Set5", "Set14"],
        metavar="SET",
        help="dataset names (Set5, Set14, B100, Urban100, Manga109, T91, photos-test, ...) or folders",
    )
    p.add_argument(
        "--scale", type=_number(int, Interval(2, integer=True)), default=2, help="upscaling factor (default 2)"
    )
    p.add_argument("--data-root", help="folder holding the benchmark sets (default: $BINSR_DATA, then ../shared/data)")
    p.add_argument("--self-ensemble", action="store_true", help="average the x8 flips and rotations")
    p.add_argument("--tile", type=_tile, default=None, help=TILE_HELP)
    add_engine_arguments(p)
    p.add_argument("--csv", help="write per-image results to this CSV file")
    p.add_argument("--json", help="write the results to this JSON file")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("upscale", help="super-resolve your own images (PNG, JPEG, any mode and size)")
    p.add_argument("inputs", nargs="+", metavar="IN", help="image files and/or folders of images")
    p.add_argument(
        "--model",
        required=True,
        help="a shipped model (edsr-bbcu-x2, edsr-fp-x4, ...), a checkpoint .pt or a packed .binsr",
    )
    p.add_argument("-o", "--out", required=True, help="output folder: <name>-x<scale>.png for each input")
    p.add_argument("--compare", action="store_true", help="also write <name>-x<scale>-compare.png: bicubic | model")
    p.add_argument("--tile", type=_tile, default=None, help=TILE_HELP)
    p.add_argument("--device", default="auto", help="auto (cuda, then mps, then cpu), cpu, cuda, ...")
    add_engine_arguments(p)
    p.add_argument("--overwrite", action="store_true", help="replace outputs that exist (never an input)")
    p.set_defaults(func=cmd_upscale)

    p = commands.add_parser("train", help="train a registry model (DDP under torchrun)")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = commands.add_parser("experiment", help="the headline grid: FP vs BBCU vs attentive blocks at one budget")
    p.add_argument("--steps", type=_number(int, POSITIVE_COUNT), required=True, help="training steps of every run")
    p.add_argument(
        "--lr", type=_number(float, LEARNING_RATE), default=None, help="learning rate of every run (default: tune it)"
    )
    p.add_argument(
        "--tune-steps", type=_number(int, POSITIVE_COUNT), default=30, help="steps of each tuning run (default 30)"
    )
    p.add_argument("--out", default="runs/experiment", help="output directory (default runs/experiment)")
    p.add_argument("--data-root", default=None, help="benchmark data folder (default: as binsr.data.images)")
    p.add_argument(
        "--jobs",
        type=_number(int, POSITIVE_COUNT),
        default=1,
        help="runs trained side by side, one thread each (default 1)",
    )
    p.add_argument("--ship", action="store_true", help="copy FP, BBCU and the proposed variants into assets/")
    p.add_argument(
        "--distill-weight",
        type=float,
        default=None,
        metavar="W",
        help="also train BBCU, SE and pixel (x4: BBCU and the best kind) with the teacher, weight W",
    )
    p.add_argument(
        "--distill-features",
        default=None,
        choices=["l1", "cosine"],
        help="the distilled runs learn the teacher's block outputs instead of its output (binsr.training.distill)",
    )
    p.add_argument(
        "--teacher",
        default=None,
        help="teacher of the distilled runs, {scale} filled in (default: edsr-fp-x{scale}, the shipped FP)",
    )
    p.set_defaults(func=cmd_experiment)

    p = commands.add_parser("export", help="write a bit-packed model (.binsr) that runs on the XNOR engine")
    p.add_argument("checkpoint", help="a checkpoint .pt of a binary model (edsr-bbcu, edsr-proposed, bbcu-l, bbcu-m)")
    p.add_argument("out", help="output file, e.g. model.binsr")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("download", help="fetch a public benchmark set (sha256-verified; never runs implicitly)")
    p.add_argument("name", help="benchmark (EDSR's Set5, Set14, B100, Urban100 with LR), DIV2K or DIV2K-valid")
    p.add_argument("--data-root", help="where to put it (default: $BINSR_DATA, then ./data)")
    p.add_argument("--insecure", action="store_true", help="accept an archive whose sha256 is not on record")
    p.set_defaults(func=cmd_download)

    p = commands.add_parser("bench", help="XNOR-popcount vs torch fp32 speed ratios (median of several runs)")
    p.add_argument(
        "--threads",
        type=_number(int, POSITIVE_COUNT),
        nargs="+",
        default=[1, 2],
        help="thread counts to measure (default 1 2)",
    )
    p.add_argument(
        "--repeats",
        type=_number(int, POSITIVE_COUNT),
        default=None,
        help="runs per case; the median is reported (default 7, with --upscale 3)",
    )
    p.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU seconds instead of wall clock (for a machine other jobs load)",
    )
    p.add_argument("--kernel", default="auto", help=KERNEL_HELP)
    p.add_argument(
        "--train",
        action="store_true",
        help="training-step speed instead: eager vs torch.compile, FP vs binary (ratios)",
    )
    p.add_argument(
        "--upscale",
        metavar="IMAGE",
        help="instead: `binsr upscale`'s work on IMAGE (no file written), torch engine vs xnor engine",
    )
    p.add_argument("--model", default="edsr-bbcu-x2", help="the model --upscale runs (default edsr-bbcu-x2)")
    p.add_argument("--tile", type=int, default=None, help=f"with --upscale: {TILE_HELP}")
    p.add_argument(
        "--split",
        action="store_true",
        help="with --upscale: also where one tile's time goes, stage by stage, on each engine",
    )
    p.add_argument(
        "--distill",
        action="store_true",
        help="training-step time with the shipped FP model as teacher over without (BBCU, SE; compiled)",
    )
    p.set_defaults(func=cmd_bench)

    p = commands.add_parser("demo", help="shipped models: costs, scores and a side-by-side figure")
    p.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `binsr` command: its exit status (0, 2 after a one-line error, 130 when interrupted)."""
    command = "binsr"
    try:
        args = build_parser().parse_args(argv)
        command = f"binsr {args.command}"
        return args.func(args) or 0
    except KeyboardInterrupt:  # `binsr train` saves its step and says so itself (TrainingInterrupted)
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, OSError, FloatingPointError, MemoryError) as error:
        print(f"{getattr(error, 'prog', command)}: error: {error or type(error).__name__}", file=sys.stderr)
        return 2
