"""The headline experiment: full precision vs BBCU vs attentive binary blocks, at one small, equal budget.

Every run uses the same EDSR backbone (32 channels x 8 blocks), LR patch 48, batch 16, L1 loss, Adam
(0.9, 0.99), cosine schedule, step budget and learning rate; trains on T91 (the scikit-image photos when T91
is absent) and is validated once, after its last step, on Set5 and Set14 (photos-test when absent).

    x2: EDSR-FP, EDSR-BBCU (k = 130 * 32 / 64 = 65), proposed with se / spatial / pixel attention on both
        branches, and the two single-branch ablations of pixel attention
    x4: EDSR-FP, EDSR-BBCU and the attention kind (se, spatial or pixel, both branches) with the best mean
        x2 PSNR

With a distillation weight W, EDSR-BBCU, SE and pixel attention (and at x4 BBCU and the best kind) are also
trained with a teacher, by default the shipped full-precision model of their scale (`binsr.training.distill`), as
"<label>-distilled"; these rows are never shipped by `ship` nor candidates for the best kind.

The learning rate is given, or tuned once by short EDSR-BBCU runs scored on the first validation set: tuning
on the baseline favours none of the proposed variants. At x4 a 48 px LR patch is a 192 px HR patch, so the
T91 images smaller than that (51 of 91) sit out and x4 trains on the other 40.

The table and chart start each scale with bicubic upsampling as the reference. Every run resumes from its
own checkpoint, so an interrupted grid continues where it stopped and a finished
one is read back without training. `jobs` runs go side by side, one thread each. Writes to out_dir:
runs/<label>-x<s>/last.pt, results.json, results.md, results.png (`binsr.training.report`) and tune.json when it tuned.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import torch

from binsr.data.images import dataset_names
from binsr.evaluation.evaluate import evaluate
from binsr.nn import checkpoint
from binsr.nn.config import VERSION
from binsr.nn.summary import summary
from binsr.training.distill import check_settings
from binsr.training.report import write_results
from binsr.training.train import TrainConfig, mean_psnr, train

BACKBONE = {"n_feats": 32, "n_blocks": 8}
TEACHER = "edsr-fp-x{scale}"  # the teacher of a distilled run, {scale} filled in: the shipped FP model of its scale


@dataclass(frozen=True)
class Variant:
    label: str
    model: str
    kwargs: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)  # TrainConfig fields of this variant; {scale} in a teacher filled in


def _proposed(label: str, att_bin: str, att_res: str) -> Variant:
    return Variant(label, "edsr-proposed", {"att_bin": att_bin, "att_res": att_res})


VARIANTS = (
    Variant("EDSR-FP", "edsr-fp"),
    Variant("EDSR-BBCU", "edsr-bbcu"),
    _proposed("proposed-se", "se", "se"),
    _proposed("proposed-spatial", "spatial", "spatial"),
    _proposed("proposed-pixel", "pixel", "pixel"),
    _proposed("proposed-pixel-bin-only", "pixel", "none"),
    _proposed("proposed-pixel-res-only", "none", "pixel"),
)
TUNE_LRS = (5e-4, 1e-3, 2e-3)
DISTILLED = ("EDSR-BBCU", "proposed-se", "proposed-pixel")  # trained with a teacher too when asked (issue 29)


def distilled(variant: Variant, weight: float, features: str | None = None, teacher: str = TEACHER) -> Variant:
    """`variant` trained with `teacher` as well, with distill_weight `weight` and `features` (`distill`)."""
    settings = {"teacher": teacher, "distill_weight": weight, "distill_features": features}
    return Variant(f"{variant.label}-distilled", variant.model, variant.kwargs, {**variant.settings, **settings})


def default_sets(data_root: str | None = None) -> tuple[str, tuple[str, ...]]:
    """(training set, validation sets): T91 and Set5 + Set14 where the data root has them, else the photos."""
    names = dataset_names(data_root)
    val = tuple(name for name in ("Set5", "Set14") if name in names)
    return ("T91" if "T91" in names else "photos-train"), (val or ("photos-test",))


def _by_set(evaluation: list[dict]) -> dict:
    """binsr.evaluation.evaluate rows -> {set name: {"psnr", "ssim"}}."""
    return {row["name"]: {"psnr": row["psnr"], "ssim": row["ssim"]} for row in evaluation}


def run_variant(variant: Variant, scale: int, steps: int, lr: float, out_dir: Path, data_root: str | None) -> dict:
    """Train (or resume, or just read back) one run of the grid; one row of the results."""
    train_set, val_sets = default_sets(data_root)
    settings = dict(variant.settings)
    if settings.get("teacher") is not None:
        settings["teacher"] = settings["teacher"].format(scale=scale)
    config = TrainConfig(
        scale=scale, steps=steps, lr=lr, train_set=train_set, val_sets=val_sets,
        checkpoint_interval=max(1, steps // 4), data_root=data_root, **settings,
    )  # fmt: skip
    run_dir = out_dir / "runs" / f"{variant.label}-x{scale}"
    result = train(variant.model, {**BACKBONE, **variant.kwargs}, config, run_dir, resume=True)
    return run_row(variant.label, result.checkpoint)


def run_row(label: str, run_checkpoint: str | Path) -> dict:
    """One row of the results from a finished run's checkpoint (as `binsr train` writes it): what was trained,
    how, its cost (15), (16) and its final validation."""
    state = checkpoint.load(run_checkpoint)
    config, metrics = state.get("config"), state.get("metrics", {})
    if config is None or state["step"] != config["steps"] or not metrics.get("val"):
        raise ValueError(f"{run_checkpoint} is not a finished, validated run (step {state['step']})")
    model = checkpoint.load_model(run_checkpoint)
    stats = summary(model)
    return {
        "label": label, "model": model.config["name"], "arguments": model.config["kwargs"],
        "scale": config["scale"], "steps": config["steps"], "lr": config["lr"], "seed": config["seed"],
        "train_set": config["train_set"], "init_from": config.get("init_from"), "distill": _distill(config),
        "train_seconds": metrics["train_seconds"], "params": stats.params, "ops": stats.ops,
        "packed_bytes": stats.packed_bytes,
        "val": _by_set(metrics["val"]),
        "checkpoint": str(run_checkpoint),
    }  # fmt: skip


def score_sets(row: dict, sets: list[str], data_root: str | None = None) -> dict:
    """The row (of `run_row`) with `sets` scored too, from its checkpoint, each image in one pass (`--tile 0`,
    as the tables report them): the larger benchmarks (B100, Urban100) are too slow to validate on in training."""
    model = checkpoint.load_model(row["checkpoint"])
    scored = evaluate(model, sets, row["scale"], data_root=data_root, tile=0, progress=True)
    return {**row, "val": {**row["val"], **_by_set(scored)}}


def _distill(config: dict) -> dict | None:
    """A run's teacher, weight and feature distance (binsr.training.distill), or None when it had no teacher."""
    if config.get("teacher") is None:
        return None
    return {"teacher": config["teacher"], "weight": config["distill_weight"], "features": config["distill_features"]}


def bicubic_row(scale: int, data_root: str | None) -> dict:
    """The reference row: MATLAB bicubic upsampling, no parameters, nothing trained."""
    val = evaluate(None, default_sets(data_root)[1], scale, data_root=data_root)
    return {
        "label": "Bicubic", "model": "bicubic", "arguments": {}, "scale": scale, "steps": 0, "lr": 0.0,
        "train_set": None, "init_from": None, "distill": None, "train_seconds": 0.0, "params": 0.0, "ops": 0.0,
        "packed_bytes": 0, "val": _by_set(val), "checkpoint": None,
    }  # fmt: skip


def _parallel(fn: Callable, calls: list[tuple], jobs: int) -> Iterator:
    """fn(*args) for each args in `calls`, in order, in `jobs` one-thread worker processes (jobs=1: here).

    On a few shared cores, single-thread runs side by side get more done than one run on every thread.
    """
    if jobs == 1:
        yield from (fn(*args) for args in calls)
        return
    context = get_context("spawn")
    with ProcessPoolExecutor(jobs, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        yield from pool.map(fn, *zip(*calls, strict=True))


def _tune_run(lr: float, steps: int, out_dir: Path, data_root: str | None) -> float | None:
    train_set, val_sets = default_sets(data_root)
    config = TrainConfig(
        scale=2, steps=steps, lr=lr, train_set=train_set, val_sets=val_sets[:1],
        checkpoint_interval=steps, data_root=data_root,
    )  # fmt: skip
    return mean_psnr(train("edsr-bbcu", BACKBONE, config, out_dir / "tune" / f"lr-{lr:g}", resume=True).val)


def tune_learning_rate(
    candidates: tuple[float, ...], steps: int, out_dir: Path, data_root: str | None, jobs: int = 1
) -> dict:
    """{lr: PSNR on the first validation set} after `steps` steps of EDSR-BBCU x2 at each candidate."""
    calls = [(lr, steps, out_dir, data_root) for lr in candidates]
    return dict(zip(candidates, _parallel(_tune_run, calls, jobs), strict=True))


def _mean_val_psnr(row: dict) -> float:
    return sum(v["psnr"] for v in row["val"].values()) / len(row["val"])


def best_proposed(rows: list[dict]) -> str:
    """Label of the attention kind (se, spatial or pixel on both branches) with the highest mean x2 validation
    PSNR; the single-branch ablations explain the pixel variant and are not candidates."""
    candidates = [
        row for row in rows
        if row["model"] == "edsr-proposed" and row["scale"] == 2 and not row.get("distill")
        and row["arguments"]["att_bin"] == row["arguments"]["att_res"]
    ]  # fmt: skip
    if not candidates:
        raise ValueError("no x2 proposed run with attention on both branches; expected one to pick the best")
    return max(candidates, key=_mean_val_psnr)["label"]


def run_experiment(
    out_dir: str | Path = "runs/experiment",
    steps: int = 300,
    lr: float | None = None,
    tune_steps: int = 30,
    data_root: str | None = None,
    jobs: int = 1,
    distill_weight: float | None = None,
    distill_features: str | None = None,
    teacher: str = TEACHER,
) -> list[dict]:
    """Run the grid (tuning the learning rate first when `lr` is None), `jobs` runs at a time; the results
    are rewritten after every run. With a `distill_weight`, the DISTILLED variants (at x4: BBCU and the best
    kind) run a second time with `teacher` (`distill`)."""
    if distill_weight is not None:
        check_settings(teacher, distill_weight, distill_features)  # now, not after the runs without a teacher
    elif distill_features is not None:
        raise ValueError(f"distill_features={distill_features!r} without a distill_weight; expected both")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if lr is None:
        scores = tune_learning_rate(TUNE_LRS, tune_steps, out_dir, data_root, jobs)
        lr = max(scores, key=scores.get)
        (out_dir / "tune.json").write_text(json.dumps({"steps": tune_steps, "psnr": scores, "chosen": lr}, indent=2))

    def with_distilled(variants: list[Variant], labels: tuple[str, ...]) -> list[Variant]:
        """`variants`, then, given a distillation weight, those named in `labels` again with the teacher."""
        if distill_weight is None:
            return variants
        twins = [distilled(v, distill_weight, distill_features, teacher) for v in variants if v.label in labels]
        return variants + twins

    rows = [bicubic_row(2, data_root)]
    x2 = with_distilled(list(VARIANTS), DISTILLED)
    for row in _parallel(run_variant, [(v, 2, steps, lr, out_dir, data_root) for v in x2], jobs):
        rows.append(row)
        write_results(rows, out_dir)
    best = best_proposed(rows)
    x4 = with_distilled([v for v in VARIANTS if v.label in ("EDSR-FP", "EDSR-BBCU", best)], ("EDSR-BBCU", best))
    rows.append(bicubic_row(4, data_root))
    for row in _parallel(run_variant, [(v, 4, steps, lr, out_dir, data_root) for v in x4], jobs):
        rows.append(row)
        write_results(rows, out_dir)
    return rows


# ---- shipped checkpoints -----------------------------------------------------------------------------


def _shipped_name(row: dict, best: str) -> str | None:
    """The asset name of a run worth shipping, else None: FP, BBCU and the best proposed variant under the
    model's name; every other attention kind used on both branches with its kind added, so that notebook 06 can
    show spatial and pixel maps from a clean clone. A distilled run is shipped by hand, if it beats its twin."""
    if row.get("distill"):
        return None
    if row["label"] in ("EDSR-FP", "EDSR-BBCU", best):
        return f"{row['model']}-x{row['scale']}"
    args = row["arguments"]
    if row["model"] == "edsr-proposed" and args["att_bin"] == args["att_res"] != "none":
        return f"{row['model']}-{args['att_bin']}-x{row['scale']}"
    return None


def ship(rows: list[dict], assets_dir: str | Path = checkpoint.ASSETS) -> dict:
    """Copy the checkpoints worth shipping (see `_shipped_name`) into `assets_dir`, without optimizer state, with
    `manifest.json` (for `binsr.nn.checkpoint.pretrained`) and the experiment's `results.json` (for notebook 09)."""
    best = best_proposed(rows)
    named = {name: row for row in rows if (name := _shipped_name(row, best)) is not None}
    return ship_rows(named, rows, assets_dir, replace=True)


def ship_rows(named: dict[str, dict], results: list[dict], assets_dir: str | Path, replace: bool = False) -> dict:
    """Copy each run of `named` ({asset name: row}) into `assets_dir` without optimizer state and enter it in
    `manifest.json` (all entries replaced, or only these updated); write `results` as `results.json`."""
    assets_dir = Path(assets_dir)
    manifest = {"models": {}} if replace else checkpoint.read_manifest(assets_dir)
    for name, row in named.items():
        path = assets_dir / f"{name}.pt"
        info = {key: row[key] for key in ("label", "train_set", "steps", "lr", "train_seconds", "val")}
        checkpoint.save(path, checkpoint.load_model(row["checkpoint"]), row["steps"], metrics=info)
        manifest["models"][name] = {
            "file": path.name, "model": row["model"], "version": VERSION, "arguments": row["arguments"], **info,
            "sha256": checkpoint.sha256(path),
        }  # fmt: skip
    (assets_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    # local run paths mean nothing in a clone: a warm start is named by its run folder
    results = [{**{key: value for key, value in row.items() if key != "checkpoint"},
                "init_from": Path(row["init_from"]).parent.name if row.get("init_from") else None}
               for row in results]  # fmt: skip
    (assets_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return manifest


def enter_benchmarks(evaluations: list[str | Path], assets_dir: str | Path = checkpoint.ASSETS) -> list[dict]:
    """Enter the sets scored by `binsr eval --json FILE` runs into the shipped results: each row of
    `results.json` and each manifest entry gains (or has replaced) the PSNR / SSIM of every set evaluated.

    The eval rows name their model as `binsr eval --model` did: `bicubic` or a shipped name (edsr-bbcu-x2, ...),
    so the larger benchmark sets (B100, Urban100), too slow to validate on during training, join Set5 and Set14
    without touching the shipped checkpoints. Returns the updated results rows."""
    assets_dir = Path(assets_dir)
    manifest = checkpoint.read_manifest(assets_dir)
    results = json.loads((assets_dir / "results.json").read_text())
    rows = {(row["label"], row["scale"]): row for row in results}
    for path in evaluations:
        for scored in json.loads(Path(path).read_text()):
            method, scale = scored["method"], scored["scale"]
            entry = manifest["models"].get(method)
            if method != "Bicubic" and entry is None:
                raise ValueError(f"{path}: model {method!r} is not shipped in {assets_dir}; expected bicubic or one "
                                 f"of {', '.join(manifest['models'])}")  # fmt: skip
            label = "Bicubic" if entry is None else entry["label"]
            if (label, scale) not in rows:
                raise ValueError(f"{path}: no results row {label!r} at x{scale} in {assets_dir / 'results.json'}")
            measured = {"psnr": scored["psnr"], "ssim": scored["ssim"]}
            rows[label, scale]["val"][scored["name"]] = measured
            if entry is not None:
                entry["val"][scored["name"]] = measured
    (assets_dir / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    (assets_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results
