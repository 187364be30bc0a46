"""Figures and widget callbacks for the notebooks.

Every function here is a plain function: it takes arrays, tensors or modules and returns a matplotlib
`Figure` (built without pyplot, so nothing leaks into an inline backend and tests run headless) or numbers.
The notebooks wire them to controls with `figure_widget` (module `interact`, needs ipywidgets), which
redraws the figure in place; tests call them directly. One module per notebook (`why_binarize` 01, `sign` 02,
`rsign_rprelu` 03, `weights` 04, `bbcu` 05, `attention` 06, `activations` 07, `training` 08, `side_by_side` 09
and `binsr demo`, `xnor_inference` 10; shared helpers in `common`), all re-exported here.

Imports: viz is the top library layer; it may import every layer below (base, nn, data, engine, evaluation,
training), never `binsr.cli`. A per-notebook module imports only `common` among its siblings, never another
notebook's module: what two notebooks share lives in `common`.

The course's furniture, the same in every notebook: `lesson` (the classroom switch `run_mode` and `timed`
cells), `solutions` (exercise solutions behind a button) and `self_check` (the quiz at the end).

Every figure function is decorated with `styled`: one style for the series (STYLE: FIG_DPI, fonts of at least
11 pt, sized for a projector) and one colour per model family everywhere (`model_color`, MODEL_COLORS: bicubic
grey, FP blue, BBCU orange, proposed green, HR black).

Equation numbers refer to the library docstrings: (1)-(7) `binsr.nn.binary`, (8), (12), (13) `binsr.nn.blocks`,
(14) `binsr.nn.models`, (15), (16) `binsr.nn.summary`.
"""

import importlib

from binsr.viz.activations import (
    ablated,
    activation_figure,
    binary_entropy,
    body_activations,
    branch_stages_figure,
    dead_channels,
    imbalance_figure,
    plus_imbalance,
    stream_figure,
)
from binsr.viz.attention import (
    MAP_SCALES,
    attention_browser_figure,
    attention_cost,
    attention_kind,
    attention_models,
    attention_signals,
    attentive_units,
    branch_scales,
    branch_scales_figure,
    branch_share,
    edge_strength,
    gate_figure,
    gate_summary,
    unit_cost_table,
)
from binsr.viz.bbcu import (
    amplification_curve,
    amplification_figure,
    amplitude_ratio,
    negative_energy,
    residual_placement,
    residual_placement_figure,
)
from binsr.viz.common import (
    FIG_DPI,
    MAX_FIGSIZE,
    MODEL_COLORS,
    OTHER_COLOR,
    STYLE,
    binary_convs,
    block_summary,
    capture,
    correlation,
    image_to_tensor,
    model_color,
    model_family,
    new_figure,
    quick_mode,
    run_with_hooks,
    styled,
)
from binsr.viz.lesson import MODES, RunMode, cell_seconds, run_mode, run_seconds, timed
from binsr.viz.propagation import initial_signals, initialisation_variants, propagation_figure
from binsr.viz.rsign_rprelu import (
    fraction_positive,
    rprelu_apply,
    rprelu_figure,
    rsign_apply,
    rsign_figure,
    thermometer,
    thermometer_figure,
)
from binsr.viz.side_by_side import (
    crop_box,
    crop_compare_figure,
    error_difference_figure,
    find_results,
    manifest_table,
    model_diverging_cmap,
    paired_difference,
    paired_difference_figure,
    per_image_table,
    results_figure,
    side_by_side_crop,
    side_by_side_figure,
    super_resolve,
    y_error,
)
from binsr.viz.sign import (
    autograd_sign_gradient,
    fraction_with_gradient,
    gradient_mismatch_figure,
    sign_backward_figure,
    surrogate_forward,
    threshold_descent,
    threshold_loss,
    threshold_surrogate_gradient,
    threshold_true_gradient,
)
from binsr.viz.training import (
    BLOCK_CHOICES,
    TrainingLog,
    fp_teacher,
    model_choice,
    shipped_match,
    train_small,
    training_figure,
)
from binsr.viz.weights import (
    alpha_comparison_figure,
    alpha_error_curve,
    alpha_error_figure,
    binarization_error,
    flips_figure,
    latent_walk,
    latent_walk_figure,
    train_and_track,
)
from binsr.viz.why_binarize import (
    ERROR_SCALE_MAX,
    add_noise,
    cost_figure,
    one_bit_image,
    psnr_of_noise,
    sr_vs_classification_figure,
)
from binsr.viz.xnor_inference import (
    accumulator_check,
    bench_figure,
    bit_layout_figure,
    sign_string,
    size_figure,
    weight_bits,
)

# The widget helpers need ipywidgets (the "notebooks" extra): imported on first use, so `binsr demo` and the
# figure functions work without it. No module is named like one of its names: importing a submodule binds its
# name in this package, which would hide the function of that name.
_WIDGET_MODULES = {
    "interact": ("FigureWidget", "figure_widget", "show_figure"),
    "solutions": ("Solution", "solution", "solutions_at_once"),
    "self_check": ("Question", "quiz"),
}


def __getattr__(name: str):
    for module, names in _WIDGET_MODULES.items():
        if name in names:
            return getattr(importlib.import_module(f"binsr.viz.{module}"), name)
    raise AttributeError(f"module 'binsr.viz' has no attribute {name!r}")
