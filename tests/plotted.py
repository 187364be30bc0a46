"""What a matplotlib figure shows, read back, so that the figure tests compare the plotted data with their own."""

import numpy as np


def step_counts(patch) -> np.ndarray:
    """The counts of a `hist(..., histtype="step")` outline: its vertices go (edge_0, 0), (edge_0, c_0),
    (edge_1, c_0), (edge_1, c_1), ..., (edge_n, 0)."""
    return patch.get_xy()[1:-1:2, 1]


def bar_heights(ax) -> np.ndarray:
    """Heights of every bar of `ax` (bars, and `hist` with its default bar style), in drawing order."""
    return np.array([bar.get_height() for bar in ax.patches])


def image_data(ax, index: int = 0) -> np.ndarray:
    """The array behind `ax.images[index]`, as plotted."""
    return np.asarray(ax.images[index].get_array())
