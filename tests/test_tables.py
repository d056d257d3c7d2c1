"""Table 1: mean ± std over seeds per (λ_SA, λ_MLP) cell, best cell marked, in CSV, Markdown and LaTeX."""

import pandas as pd

from wdrank.tables import perplexity_grid, write_perplexity_tables

RUNS = pd.DataFrame({
    "wd_attn": [0, 0, 1, 1, 0, 0, 1, 1],
    "wd_mlp": [0.1, 0.1, 0.1, 0.1, 1, 1, 1, 1],
    "seed": [0, 1] * 4,
    "test_perplexity": [10.0, 12.0, 9.0, 9.5, 11.0, 11.0, 14.0, 16.0],
})


def test_grid_statistics_and_best_cell():
    grid = perplexity_grid(RUNS).set_index(["wd_attn", "wd_mlp"])
    assert grid.loc[(0, 0.1), "mean"] == 11.0 and grid.loc[(0, 0.1), "std"] == pd.Series([10.0, 12.0]).std()
    assert grid["n_seeds"].eq(2).all()
    assert grid["best"].sum() == 1 and grid.loc[(1, 0.1), "best"]


def test_written_tables(tmp_path):
    write_perplexity_tables(RUNS, tmp_path / "t1.csv", tmp_path / "t1.md", tmp_path / "t1.tex")
    assert len(pd.read_csv(tmp_path / "t1.csv")) == 4
    markdown = (tmp_path / "t1.md").read_text()
    assert "**9.25 ± 0.35 (n=2)**" in markdown and "| 0 | 11.00 ± 1.41 (n=2) | 11.00 ± 0.00 (n=2) |" in markdown
    latex = (tmp_path / "t1.tex").read_text()
    assert r"\toprule" in latex and r"\textbf{9.25 $\pm$ 0.35 (n=2)}" in latex and latex.count(r"\\") == 3
