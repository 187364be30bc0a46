"""The teacher's guide, the glossary and the docs pages against what they quote: every number is read from
assets/results.json, a notebook's checked output, the saved notebooks or the code, or derived from the docs'
own tables, so that none can go stale unnoticed. A decimal number in the guide or the glossary that none of
these sources vouches for fails `test_every_decimal_in_the_guide_has_a_source`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from binsr import viz
from binsr.data.metrics import _Y_WEIGHTS
from binsr.nn.binary import RPReLU
from binsr.nn.models import bbcu_k

REPO = Path(__file__).resolve().parents[1]
GUIDE = (REPO / "notebooks" / "README.md").read_text()
GLOSSARY = (REPO / "notebooks" / "glossary.md").read_text()
RESULTS_PAGE = (REPO / "docs" / "results.md").read_text()
ABLATION_PAGE = (REPO / "docs" / "ablation.md").read_text()
README = (REPO / "README.md").read_text()
RESULTS = json.loads((REPO / "assets" / "results.json").read_text())
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.])")


def _table(text: str, header_start: str) -> list[list[str]]:
    """The rows (cells stripped) of the Markdown table whose header line starts with `header_start`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip().strip("|"))])
    return rows


def _checked_outputs() -> str:
    """The saved text of every notebook cell marked NBVAL_CHECK_OUTPUT (nbval compares it on every run)."""
    texts = []
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code" and "NBVAL_CHECK_OUTPUT" in "".join(cell["source"]):
                texts += ["".join(o.get("text", "")) for o in cell.get("outputs", [])]
    return "\n".join(texts)


def _result_row(model: str, scale: int, **arguments) -> dict:
    rows = [
        r
        for r in RESULTS
        if r["model"] == model and r["scale"] == scale and all(r["arguments"].get(k) == v for k, v in arguments.items())
    ]
    assert len(rows) == 1, f"{len(rows)} rows of results.json for {model} x{scale} {arguments}"
    return rows[0]


def _psnr(row: dict, data: str) -> float:
    return row["val"][data]["psnr"]


def _results_strings() -> set[str]:
    """Every value of results.json as the tables print it."""
    out = set()
    for r in RESULTS:
        out |= {f"{r['params'] / 1e3:.1f}", f"{r['ops'] / 1e9:.2f}"}
        for v in r["val"].values():
            out |= {f"{v['psnr']:.2f}", f"{v['ssim']:.4f}"}
    return out


def _two_seeds() -> dict[str, tuple[float, float, float, float]]:
    """docs/results.md's two-seed table: {model: (Set5 mean, Set14 mean, Set5 seed 0, Set14 seed 0)}."""
    table = {}
    for model, seed0, seed1, _ in _table(RESULTS_PAGE, "| model | seed 0 | seed 1 |"):
        s0 = [float(v) for v in seed0.split(" / ")]
        s1 = [float(v) for v in seed1.split(" / ")]
        table[model] = ((s0[0] + s1[0]) / 2, (s0[1] + s1[1]) / 2, *s0)
    return table


def test_run_times_are_those_of_the_saved_notebooks():
    rows = {r[0]: r[1] for r in _table(GUIDE, "| # | Run All, full mode")}
    expected = {p.name[:2]: f"{viz.run_seconds(p):.0f} s" for p in NOTEBOOKS}
    assert rows == expected, "re-executed a notebook? copy its Run All time into the guide's table"


def test_classroom_step_counts_are_the_notebooks():
    sources = "".join("".join(c["source"]) for p in NOTEBOOKS for c in json.loads(p.read_text())["cells"])
    for full, classroom in ((150, 60), (40, 10), (9, 3)):
        assert re.search(rf"RUN\.pick\(full={full}, classroom={classroom}\b", sources), (full, classroom)
    assert "60 steps instead of 150" in GUIDE and "10 steps instead of 40" in GUIDE and "3 repeats" in GUIDE


def test_the_headline_table_is_results_json():
    """Every row of docs/results.md's headline table whose model is shipped equals its results.json row, and every
    results.json row is in the table."""
    printed = set()
    for row in _table(RESULTS_PAGE, "| model | scale | Params (K)"):
        scale, params, ops, set5, set14 = int(row[1][1:]), row[2], row[3], row[4], row[5]
        printed.add((scale, params, ops, set5.replace("**", ""), set14.replace("**", "")))
    for r in RESULTS:
        v = r["val"]
        key = (
            r["scale"],
            f"{r['params'] / 1e3:.1f}",
            f"{r['ops'] / 1e9:.2f}",
            f"{v['Set5']['psnr']:.2f} / {v['Set5']['ssim']:.4f}",
            f"{v['Set14']['psnr']:.2f} / {v['Set14']['ssim']:.4f}",
        )
        assert key in printed, f"results.json's {r['label']} x{r['scale']} is not in docs/results.md: {key}"


def test_the_standard_benchmark_table_is_results_json():
    """docs/results.md's four-set table is `report.format_benchmarks` of results.json, to the letter."""
    from binsr.training.report import format_benchmarks

    assert format_benchmarks(RESULTS) in RESULTS_PAGE
    assert all(set(r["val"]) >= {"Set5", "Set14", "B100", "Urban100"} for r in RESULTS)


def test_the_readme_headline_table_is_results_json():
    rows = _table(README, "| model | OPs (G) | Set5 PSNR | Set14 PSNR | B100 PSNR | Urban100 PSNR |")
    strings = _results_strings()
    assert len(rows) == 5
    for row in rows:
        assert all(cell in strings for cell in row[1:]), row


def test_two_seed_table_seed_0_is_the_shipped_model_and_means_add_up():
    shipped = {
        "EDSR-BBCU": _result_row("edsr-bbcu", 2),
        "attentive, SE on both branches": _result_row("edsr-proposed", 2, att_bin="se", gate_input="amplified"),
        "attentive, pixel on both branches, gates see x / k": _result_row(
            "edsr-proposed", 2, att_bin="pixel", gate_input="unit"
        ),
    }
    rows = _table(RESULTS_PAGE, "| model | seed 0 | seed 1 |")
    assert {r[0] for r in rows} >= set(shipped)
    for model, seed0, seed1, mean in rows:
        s0, s1 = ([float(v) for v in s.split(" / ")] for s in (seed0, seed1))
        if model in shipped:
            assert s0 == [round(_psnr(shipped[model], d), 3) for d in ("Set5", "Set14")], model
        _check_mean_half_range(mean, s0, s1, model)


def _check_mean_half_range(cell: str, s0: list[float], s1: list[float], what: str) -> None:
    for part, a, b in zip(cell.replace("**", "").split(" / "), s0, s1, strict=True):
        mean, half = (float(v) for v in part.split(" ± "))
        assert mean == pytest.approx((a + b) / 2, abs=0.0011), what
        assert half == pytest.approx(abs(a - b) / 2, abs=0.0011), what


def test_ablation_means_add_up():
    for row in _table(ABLATION_PAGE, "| variant | flags"):
        s0, s1 = ([float(v) for v in s.split(" / ")] for s in (row[2], row[3]))
        _check_mean_half_range(row[4], s0, s1, row[0])


def _quoted(text: str, before: str) -> float:
    """The number in `text` right after `before`."""
    match = re.search(re.escape(before) + r"\s*([+−-]?\d+\.\d+)", text)
    assert match, f"no number after {before!r}"
    return float(match.group(1).replace("−", "-"))


def _literal_gap() -> float:
    """Set5 PSNR of EDSR-BBCU x2 minus that of the preprint read literally, from docs/results.md's headline table."""
    rows = _table(RESULTS_PAGE, "| model | scale | Params (K)")
    set5 = {r[0]: float(r[4].replace("**", "").split(" / ")[0]) for r in rows if r[1] == "x2"}
    literal = next(v for k, v in set5.items() if "read literally" in k)
    return next(v for k, v in set5.items() if k.startswith("EDSR-BBCU")) - literal


def test_the_guides_answers_agree_with_the_results():
    seeds = _two_seeds()
    bbcu, se = seeds["EDSR-BBCU"], seeds["attentive, SE on both branches"]
    pixel = seeds["attentive, pixel on both branches, gates see x / k"]
    # quoted to 0.01 dB from seeds printed to 0.001: agree within rounding
    assert _quoted(GUIDE, "SE on both branches is") == pytest.approx(se[0] - bbcu[0], abs=0.006)
    assert _quoted(GUIDE, "on Set5 (") == pytest.approx(se[1] - bbcu[1], abs=0.006)
    assert _quoted(GUIDE, "pixel attention on both branches") == pytest.approx(pixel[0] - bbcu[0], abs=0.006)
    assert _quoted(GUIDE, "pixel attention on both branches +0.10 dB (") == pytest.approx(pixel[1] - bbcu[1], abs=0.006)
    fp, bb, bicubic = _result_row("edsr-fp", 2), _result_row("edsr-bbcu", 2), _result_row("bicubic", 2)
    # the literal reading is not shipped: its row of docs/results.md's headline table, printed to 0.01 dB
    assert _quoted(GUIDE, "same SE block ends") == pytest.approx(_literal_gap(), abs=0.0101)
    assert _quoted(GUIDE, "EDSR-FP reaches") == round(_psnr(fp, "Set5"), 2)
    assert _quoted(GUIDE, "EDSR-BBCU") == round(_psnr(bb, "Set5"), 2)
    assert _quoted(GUIDE, "and bicubic") == round(_psnr(bicubic, "Set5"), 2)
    pixel_ops = _result_row("edsr-proposed", 2, att_bin="pixel", gate_input="unit")["ops"]
    assert _quoted(GUIDE, "pixel attention on both branches +0.10 dB (+0.09) at") == round(pixel_ops / bb["ops"], 1)


def test_the_rsign_instruction_matches_notebook_03():
    """Channel 9, the widget's default, is +1 on 4 % of its pixels at the initial threshold 0."""
    nb = json.loads((REPO / "notebooks" / "03_rsign_rprelu.ipynb").read_text())
    source = "".join("".join(c["source"]) for c in nb["cells"])
    assert "channel=widgets.IntSlider(value=9" in source
    fractions = re.search(r"fraction of \+1 per channel at t = 0: \[([^\]]*)\]", _checked_outputs()).group(1)
    assert f"{float(fractions.split(',')[9]):.0%}".replace("%", " %") in GUIDE  # "4 %"
    assert "default channel (9)" in GUIDE


def test_the_glossarys_constants_are_the_codes():
    assert bbcu_k(32) == 65 and bbcu_k(64) == 130 and "65 at 32 channels" in GLOSSARY
    assert all(f"{w:g}" in GLOSSARY for w in _Y_WEIGHTS)
    assert "below 0.02 or above 0.98" in GLOSSARY
    assert viz.dead_channels([{"plus": [np.array([0.019, 0.5, 0.981])]}]).tolist() == [2]
    assert RPReLU(4).beta.detach().tolist() == [0.25] * 4 and "starts at 0.25" in GLOSSARY


def _prose(text: str) -> str:
    """Without code spans and blocks (commands, not claims) and without the name BT.601."""
    text = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    return re.sub(r"`[^`]*`", "", text).replace("BT.601", "")


def test_every_decimal_in_the_guide_has_a_source():
    seeds = _two_seeds()
    bbcu = seeds["EDSR-BBCU"]
    derived = {f"{m[i] - bbcu[i]:.2f}" for m in seeds.values() for i in (0, 1)}
    derived |= {f"{m[i] - bbcu[i] + d:.2f}" for m in seeds.values() for i in (0, 1) for d in (-0.005, 0.005)}
    bb = _result_row("edsr-bbcu", 2)
    derived |= {f"{r['ops'] / bb['ops']:.1f}" for r in RESULTS} | {
        f"{_psnr(bb, 'Set5') - _psnr(r, 'Set5'):.2f}" for r in RESULTS
    }
    derived |= {f"{_literal_gap() + d:.2f}" for d in (-0.01, 0, 0.01)}  # printed to 0.01 dB, quoted from unrounded
    sources = set(DECIMAL.findall(_checked_outputs())) | _results_strings() | derived
    sources |= {f"{w:g}" for w in _Y_WEIGHTS} | {"0.02", "0.98", "0.25"}  # test_the_glossarys_constants_are_the_codes
    sources.add("0.5")  # notebook 01's noise slider starts at σ = 0.5 (checked below)
    nb01 = "".join("".join(c["source"]) for c in json.loads(NOTEBOOKS[0].read_text())["cells"])
    assert "FloatSlider(value=3.0, min=0.5, max=16.0" in nb01
    unsourced = {
        name: sorted(set(DECIMAL.findall(_prose(text))) - sources)
        for name, text in (("notebooks/README.md", GUIDE), ("notebooks/glossary.md", GLOSSARY))
    }
    assert not any(unsourced.values()), f"numbers without a source: {unsourced}"
