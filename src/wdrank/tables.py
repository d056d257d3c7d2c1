"""Paper-ready tables: Table 1 (test perplexity over the λ_SA x λ_MLP grid) as CSV, Markdown and LaTeX, the ViT's
rank and accuracy per λ, and the audit summary (Fig. 4) per model and product."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wdrank.io import atomic_path


def perplexity_grid(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and number of seeds of test perplexity per (wd_attn, wd_mlp); `best` marks the lowest mean."""
    grid = (runs.groupby(["wd_attn", "wd_mlp"])["test_perplexity"]
            .agg(mean="mean", std="std", n_seeds="count").reset_index())
    grid["std"] = grid["std"].fillna(0.0)  # one seed: no spread
    grid["best"] = grid["mean"] == grid["mean"].min()
    return grid


def _cells(grid: pd.DataFrame, bold: tuple[str, str]) -> pd.DataFrame:
    text = grid.apply(lambda r: f"{r['mean']:.2f} ± {r['std']:.2f} (n={r['n_seeds']})", axis=1)
    text = text.where(~grid["best"], bold[0] + text + bold[1])
    return grid.assign(cell=text).pivot(index="wd_attn", columns="wd_mlp", values="cell")


def write_perplexity_tables(runs: pd.DataFrame, csv: str | Path, markdown_path: str | Path, latex_path: str | Path
                            ) -> None:
    """Table 1 as CSV (long), Markdown and LaTeX (rows λ_SA, columns λ_MLP, best cell in bold)."""
    grid = perplexity_grid(runs)
    with atomic_path(csv) as tmp:
        grid.to_csv(tmp, index=False, float_format="%.6g")

    markdown = _cells(grid, ("**", "**"))
    header = "| λ_SA \\ λ_MLP | " + " | ".join(f"{c:g}" for c in markdown.columns) + " |"
    lines = [header, "|" + "---|" * (len(markdown.columns) + 1)]
    lines += [f"| {i:g} | " + " | ".join(row) + " |" for i, row in zip(markdown.index, markdown.values, strict=True)]
    caption = "Test perplexity (mean ± std over seeds, n seeds); best cell in bold."
    with atomic_path(markdown_path) as tmp:
        tmp.write_text(caption + "\n\n" + "\n".join(lines) + "\n")

    latex = _cells(grid, (r"\textbf{", "}")).map(lambda c: c.replace("±", r"$\pm$"))
    body = [r"\begin{tabular}{l" + "c" * len(latex.columns) + "}", r"\toprule",
            r"$\lambda_{SA}$ \textbackslash{} $\lambda_{MLP}$ & " + " & ".join(f"{c:g}" for c in latex.columns)
            + r" \\", r"\midrule"]
    body += [f"{i:g} & " + " & ".join(row) + r" \\" for i, row in zip(latex.index, latex.values, strict=True)]
    body += [r"\bottomrule", r"\end{tabular}"]
    with atomic_path(latex_path) as tmp:
        tmp.write_text("% " + caption + " Requires \\usepackage{booktabs}.\n" + "\n".join(body) + "\n")


def audit_summary(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per product: median and interquartile range of the nuclear/Frobenius ratio, median relative balance and
    mean rank as a fraction of the head dimension (first rank column)."""
    rank_column = next(c for c in table.columns if c.startswith("rank_tol_"))
    grouped = table.assign(rank_fraction=table[rank_column] / table["head_dim"]).groupby("product")
    summary = grouped.agg(
        heads=("head", "size"),
        median_nuclear_to_frobenius=("nuclear_to_frobenius", "median"),
        q25_nuclear_to_frobenius=("nuclear_to_frobenius", lambda s: s.quantile(0.25)),
        q75_nuclear_to_frobenius=("nuclear_to_frobenius", lambda s: s.quantile(0.75)),
        median_balance_relative=("balance_relative", "median"),
        mean_rank_fraction=("rank_fraction", "mean"),
    ).reset_index()
    summary.insert(0, "model", model)
    return summary


def run_means(spectra: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (run, product): `metric` averaged over every head and layer at the final checkpoint."""
    final = spectra[spectra["step"] == spectra["step"].max()]
    return final.groupby(["wd_attn", "seed", "product"], as_index=False)[metric].mean()


def rank_accuracy_table(spectra: pd.DataFrame, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per λ: mean and std over seeds of the per-run mean QK and OV rank (`spectra`: the ViT head spectra) and of
    test accuracy (`runs`: one row per run)."""
    wide = run_means(spectra, metric).pivot_table(index=["wd_attn", "seed"], columns="product", values=metric).reset_index()
    wide = wide.rename(columns={"QK": f"QK_{metric}", "OV": f"OV_{metric}"})
    merged = wide.merge(runs[["wd_attn", "seed", "test_accuracy"]], on=["wd_attn", "seed"])
    columns = [f"QK_{metric}", f"OV_{metric}", "test_accuracy"]
    table = merged.groupby("wd_attn")[columns].agg(["mean", "std"])
    table.columns = [f"{column}_{stat}" for column, stat in table.columns]
    return table.fillna(0.0).assign(n_seeds=merged.groupby("wd_attn").size()).reset_index()
