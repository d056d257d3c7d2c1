"""Figures at print size: whole-number ticks where an axis counts layers, labels that never overlap, widths that fit
the layout asked for."""

import itertools

import matplotlib
import numpy as np
import pandas as pd
import pytest

from wdrank.plots.audit import plot_audit
from wdrank.plots.ranks import rank_all_layers
from wdrank.plots.style import WIDTHS, set_width

matplotlib.use("Agg")


def small_audit(layers=2, heads=3, low=0.33, high=0.345):
    """An audit table of a small model whose norms span less than a decade (the case that used to crowd labels)."""
    rng = np.random.default_rng(0)
    rows = []
    for layer, head, product in itertools.product(range(layers), range(heads), ("QK", "OV")):
        nuclear = rng.uniform(low, high)
        frobenius = nuclear * rng.uniform(1.0, 1.05)
        rows.append({"layer": layer, "head": head, "product": product, "head_dim": 8, "nuclear_norm": nuclear,
                     "frobenius_side": frobenius, "nuclear_to_frobenius": nuclear / frobenius,
                     "effective_rank": rng.uniform(3, 8), "rank_tol_0.01": int(rng.integers(3, 9))})
    return pd.DataFrame(rows)


def visible_labels(ax, axis):
    """The tick labels drawn: visible, non-empty, and at a tick inside the axis limits."""
    ax.figure.canvas.draw()
    target, (low, high) = (ax.xaxis, ax.get_xlim()) if axis == "x" else (ax.yaxis, ax.get_ylim())
    labels = [*target.get_ticklabels(), *target.get_ticklabels(minor=True)]
    position = 0 if axis == "x" else 1
    return [label for label in labels if label.get_visible() and label.get_text()
            and min(low, high) <= label.get_position()[position] <= max(low, high)]


def assert_no_overlap(fig, ax, axis):
    boxes = [label.get_window_extent() for label in visible_labels(ax, axis)]
    for first, second in itertools.combinations(boxes, 2):
        assert not first.overlaps(second), f"{axis} tick labels overlap: {[l.get_text() for l in visible_labels(ax, axis)]}"


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_audit_of_a_two_layer_model_reads_at_print_size(width):
    set_width(width)
    fig = plot_audit(small_audit().assign(model="tiny"))
    scatter, _, ranks = fig.axes[:3]
    for axis in ("x", "y"):
        assert_no_overlap(fig, scatter, axis)
        assert len(visible_labels(scatter, axis)) >= 2  # a narrow range still gets labelled ticks
    layers = [float(label.get_text().replace("−", "-")) for label in visible_labels(ranks, "x")]
    assert layers and all(value.is_integer() for value in layers) and set(layers) <= {0, 1}
    assert fig.get_size_inches()[0] == pytest.approx(WIDTHS[width])


def test_a_legend_of_layers_names_whole_layers():
    set_width("one_column")
    spectra = pd.DataFrame([{"wd_attn": wd, "layer": layer, "product": product, "rank_tol_0.01": 8 - wd}
                            for wd in (0.0, 1.0, 3.0) for layer in (0, 1) for product in ("QK", "OV")])
    fig = rank_all_layers(spectra, "wd_attn", "rank_tol_0.01", "two layers")
    legend = [text.get_text() for text in fig.axes[1].get_legend().get_texts()]
    assert legend == ["0", "1"]
