"""Command line: `binsr {summary,eval,train,experiment,export,bench,demo} ...` (also `python -m binsr ...`).

The summary, eval and download commands import their modules when they run; train, experiment and demo
bring their own argument definitions (`add_*_arguments`) from their modules.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that choose a registry model's architecture (only those given are passed on)."""
    parser.add_argument("--scale", type=int, default=2, help="upscaling factor: 2, 3 or 4 (default 2)")
    parser.add_argument("--n-feats", type=int, help="channels (width)")
    parser.add_argument("--n-blocks", type=int, help="residual blocks (depth)")
    parser.add_argument("--att-bin", help="attention on the binary branch: none, se, spatial, pixel (edsr-proposed)")
    parser.add_argument("--att-res", help="attention on the residual branch: none, se, spatial, pixel (edsr-proposed)")
    parser.add_argument("--k", type=float, help="amplification factor k (BBCU default 130*n_feats/64)")
    parser.add_argument("--alpha-mode", choices=["mean", "learnable"], help="weight scale alpha: mean|W| or learned")
    parser.add_argument("--weight-grad", choices=["bbcu", "scaled"], help="latent-weight gradient form (6a)")
    parser.add_argument("--a1-init", type=float, help="initial a1, binary branch scale (edsr-proposed)")
    parser.add_argument("--a2-init", type=float, help="initial a2, residual scale (edsr-proposed)")
    parser.add_argument("--gate", choices=["sigmoid", "2sigmoid"], help="attention gate form (edsr-proposed)")
    parser.add_argument("--gate-init", type=_float_or_none, help="initial gate value, or 'none' for the default init")
    parser.add_argument("--preprint-literal", action="store_true",
                        help="edsr-proposed as the preprint reads: k=1, a1=a2=1, sigmoid gates, default init")


def _float_or_none(text: str) -> float | str:
    return "none" if text.lower() == "none" else float(text)


MODEL_OPTIONS = ("scale", "n_feats", "n_blocks", "att_bin", "att_res", "k", "alpha_mode", "weight_grad",
                 "a1_init", "a2_init", "gate", "gate_init")


def model_kwargs(args: argparse.Namespace) -> dict:
    """The registry arguments given on the command line (--preprint-literal first, explicit options over it)."""
    from binsr.models import PREPRINT_LITERAL

    kwargs = dict(PREPRINT_LITERAL) if getattr(args, "preprint_literal", False) else {}
    kwargs.update({name: getattr(args, name) for name in MODEL_OPTIONS if getattr(args, name, None) is not None})
    if kwargs.get("gate_init") == "none":
        kwargs["gate_init"] = None
    return kwargs


def cmd_summary(args: argparse.Namespace) -> None:
    from binsr.models import create_model
    from binsr.summary import summary

    if Path(args.model).suffix in (".pt", ".pth"):
        from binsr.checkpoint import load_model

        model = load_model(args.model)
    else:
        model = create_model(args.model, **model_kwargs(args))
    print(f"{model.config['name']}  {model.config['kwargs']}  LR input {args.lr_size[1]}x{args.lr_size[0]}")
    print(summary(model, lr_size=tuple(args.lr_size)))


def cmd_eval(args: argparse.Namespace) -> None:
    from binsr.evaluate import evaluate, format_table, write_csv, write_json

    rows = []
    for spec in args.model:
        if spec == "bicubic":
            model, method = None, "Bicubic"
        else:
            from binsr.checkpoint import load_model

            model, method = load_model(spec, expect_scale=args.scale), Path(spec).stem
        label = f"{method} (x8 self-ensemble)" if args.self_ensemble and model is not None else method
        rows += evaluate(model, args.data, args.scale, args.data_root, args.self_ensemble, method=label)
    print(format_table(rows))
    if args.csv:
        write_csv(rows, args.csv)
    if args.json:
        write_json(rows, args.json)


def cmd_download(args: argparse.Namespace) -> None:
    from binsr.data import resolve_data_root
    from binsr.download import download

    root = args.data_root or resolve_data_root() or "data"
    print(f"downloaded to {download(args.name, root, progress=True, verify=not args.insecure)}")


def cmd_export(args: argparse.Namespace) -> None:
    from binsr.checkpoint import load_model
    from binsr.export import export_model

    out = export_model(load_model(args.checkpoint), args.out)
    before, after = Path(args.checkpoint).stat().st_size, out.stat().st_size
    print(f"{out}: {after / 1024:,.0f} KiB packed vs {before / 1024:,.0f} KiB checkpoint ({before / after:.1f}x)")


def cmd_bench(args: argparse.Namespace) -> None:
    import time

    from binsr.bench import format_bench, kernel_popcounts, run_bench

    for channels in (64, 32):
        print(f"popcount instructions in the {channels}-channel 3x3 kernel: {kernel_popcounts(channels)}")
    clock = time.process_time if args.cpu_time else time.perf_counter
    print(format_bench(run_bench(threads=tuple(args.threads), repeats=args.repeats, clock=clock)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="binsr",
        description="Binary neural networks for image super-resolution: models, training, evaluation, XNOR engine.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("summary", help="per-layer params, FLOPs, BOPs and OPs of a model (BBCU's convention)")
    p.add_argument("model", help="registry name (edsr-fp, edsr-bbcu, edsr-proposed, srresnet-fp, bbcu-l, bbcu-m) "
                   "or a checkpoint .pt")
    add_model_arguments(p)
    p.add_argument("--lr-size", type=int, nargs=2, default=[180, 320], metavar=("H", "W"),
                   help="LR input size (default 180 320, as in BBCU's Table 1)")
    p.set_defaults(func=cmd_summary)

    p = commands.add_parser("eval", help="PSNR/SSIM on the Y channel (MATLAB protocol) of bicubic or checkpoints")
    p.add_argument("--model", nargs="+", default=["bicubic"], metavar="MODEL",
                   help="'bicubic' and/or checkpoint files (default: bicubic)")
    p.add_argument("--data", nargs="+", default=["Set5", "Set14"], metavar="SET",
                   help="dataset names (Set5, Set14, B100, Urban100, Manga109, T91, photos-test, ...) or folders")
    p.add_argument("--scale", type=int, default=2, help="upscaling factor (default 2)")
    p.add_argument("--data-root", help="folder holding the benchmark sets (default: $BINSR_DATA, then ../shared/data)")
    p.add_argument("--self-ensemble", action="store_true", help="average the x8 flips and rotations")
    p.add_argument("--csv", help="write per-image results to this CSV file")
    p.add_argument("--json", help="write the results to this JSON file")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("download", help="fetch a public benchmark set (sha256-verified; never runs implicitly)")
    p.add_argument("name", help="benchmark (EDSR's Set5, Set14, B100, Urban100 with LR), DIV2K or DIV2K-valid")
    p.add_argument("--data-root", help="where to put it (default: $BINSR_DATA, then ./data)")
    p.add_argument("--insecure", action="store_true", help="accept an archive whose sha256 is not on record")
    p.set_defaults(func=cmd_download)

    p = commands.add_parser("export", help="write a bit-packed model (.binsr) that runs on the XNOR engine")
    p.add_argument("checkpoint", help="a checkpoint .pt of a binary model (edsr-bbcu, edsr-proposed, bbcu-l, bbcu-m)")
    p.add_argument("out", help="output file, e.g. model.binsr")
    p.set_defaults(func=cmd_export)

    p = commands.add_parser("bench", help="XNOR-popcount vs torch fp32 speed ratios (median of several runs)")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts to measure (default 1 2)")
    p.add_argument("--repeats", type=int, default=7, help="runs per case; the median is reported (default 7)")
    p.add_argument("--cpu-time", action="store_true",
                   help="time with process CPU seconds instead of wall clock (for a machine other jobs load)")
    p.set_defaults(func=cmd_bench)

    from binsr.demo import add_demo_arguments, demo_command
    from binsr.experiment import add_experiment_arguments, experiment_command
    from binsr.train import add_train_arguments, train_command

    for name, help_text, add_arguments, command in (
        ("train", "train a registry model (DDP under torchrun)", add_train_arguments, train_command),
        ("experiment", "the headline grid: FP vs BBCU vs attentive blocks at one budget",
         add_experiment_arguments, experiment_command),
        ("demo", "shipped models: costs, scores and a side-by-side figure", add_demo_arguments, demo_command),
    ):
        p = commands.add_parser(name, help=help_text)
        add_arguments(p)
        p.set_defaults(func=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `binsr` command; errors print one line and exit with status 2."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FloatingPointError) as error:
        print(f"binsr {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0
