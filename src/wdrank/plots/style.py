"""Shared look of every figure, and saving a figure as PDF + PNG atomically."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files: never open a window, work on headless nodes

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

from wdrank.io import atomic_path  # noqa: E402

PNG_DPI = 200


def apply_theme() -> None:
    """Readable at a glance in a paper column: white grid, large enough labels, colour-blind palette."""
    sns.set_theme(context="paper", style="whitegrid", palette="colorblind", font_scale=1.25)
    plt.rcParams.update({"figure.constrained_layout.use": True, "savefig.bbox": "tight", "pdf.fonttype": 42})


def count(n: int, noun: str) -> str:
    """'1 seed', '3 seeds': a count for a title."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def save_figure(fig: plt.Figure, pdf: str | Path, png: str | Path) -> None:
    """Write the figure as vector PDF and raster PNG; each file appears only once complete."""
    for path, kwargs in ((pdf, {}), (png, {"dpi": PNG_DPI})):
        with atomic_path(path) as tmp:
            fig.savefig(tmp, **kwargs)
    plt.close(fig)
