"""Shared look of every figure, drawn at the size it is printed, and saving a figure as PDF + PNG atomically.

Width. A figure is as wide as the text it goes into: `one_column` (5.5 in, the text width of a one-column paper such as
NeurIPS, where the reproduced paper appeared: the default) or `two_column` (6.75 in, the full width of a two-column
paper such as ICML, as a figure*), chosen with the config key `figure_width` (or `wdrank figure ... --width`); a
number means inches. Heights follow from each figure's aspect. Text is set in points for that size (8 pt, ticks and
legends 7 pt), so it reads the same in print in every figure. PDFs embed TrueType fonts (pdf.fonttype 42).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files: never open a window, work on headless nodes

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter  # noqa: E402

from wdrank.io import atomic_path  # noqa: E402

PNG_DPI = 300
WIDTHS = {"one_column": 5.5, "two_column": 6.75}  # inches
_width = WIDTHS["one_column"]


def set_width(width: str | float) -> None:
    """The width of the figures drawn from now on: a layout of WIDTHS or inches."""
    global _width
    _width = WIDTHS[width] if width in WIDTHS else float(width)
    if not 1 <= _width <= 20:
        raise ValueError(f"figure width {width!r}: give one of {sorted(WIDTHS)} or inches between 1 and 20")


def figure_size(aspect: float | None = None, height: float | None = None) -> tuple[float, float]:
    """(width, height) in inches: height `aspect` times the width, or `height` inches."""
    return _width, height if height is not None else _width * aspect


def apply_theme() -> None:
    """Readable at print size: white grid, colour-blind palette, 8-point text, 7-point ticks and legends."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind")
    plt.rcParams.update({
        "figure.constrained_layout.use": True, "savefig.bbox": "tight", "pdf.fonttype": 42,
        "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "figure.titlesize": 9,
        "xtick.labelsize": 7, "ytick.labelsize": 7, "legend.fontsize": 7, "legend.title_fontsize": 7,
        "lines.linewidth": 1.2, "lines.markersize": 4, "axes.linewidth": 0.6, "grid.linewidth": 0.5,
    })


def count(n: int, noun: str) -> str:
    """'1 seed', '3 seeds': a count for a title."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def integer_axis(ax: plt.Axes, axis: str = "x") -> None:
    """Ticks at whole numbers only (at most 6), for axes that count layers, heads or steps."""
    (ax.xaxis if axis == "x" else ax.yaxis).set_major_locator(MaxNLocator(nbins=5, integer=True))


def log_axis(ax: plt.Axes, axis: str, values: Iterable[float]) -> None:
    """A logarithmic axis whose labels never crowd: no labels on minor ticks; over less than two decades, at most
    four major ticks at 1-2-5, 1-3 or 1 times powers of ten (or three evenly spaced ones), labelled as plain
    numbers."""
    getattr(ax, f"set_{axis}scale")("log")
    target = ax.xaxis if axis == "x" else ax.yaxis
    target.set_minor_formatter(NullFormatter())
    positive = np.asarray([v for v in values if v > 0], dtype=float)
    if positive.size == 0 or positive.max() >= 100 * positive.min():
        return
    low, high = positive.min(), positive.max()
    decades = np.arange(np.floor(np.log10(low)), np.ceil(np.log10(high)) + 1)
    for subs in ((1.0, 2.0, 5.0), (1.0, 3.0), (1.0,)):
        ticks = [m * 10.0**d for d in decades for m in subs if low <= m * 10.0**d <= high]
        if 2 <= len(ticks) <= 4:
            target.set_major_locator(LogLocator(base=10, subs=subs))
            break
    else:
        target.set_major_locator(MaxNLocator(3))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:.3g}"))


def save_figure(fig: plt.Figure, pdf: str | Path, png: str | Path) -> None:
    """Write the figure as vector PDF and raster PNG; each file appears only once complete."""
    for path, kwargs in ((pdf, {}), (png, {"dpi": PNG_DPI})):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **kwargs)
    plt.close(fig)
