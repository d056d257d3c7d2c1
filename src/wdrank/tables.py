"""Paper-ready tables: Table 1 (test perplexity over the λ_SA x λ_MLP grid) as CSV, Markdown and LaTeX, the ViT's
rank and accuracy per λ, the audit summary (Fig. 4) per model and product (or per module kind of an adapter), and the
LoRA sweep's regime per (r, lr, λ_LoRA)."""

from __future__ import annotations

import pandas as pd

from wdrank.spectra import HEAD_PRODUCTS
from wdrank.statistics import (ADAPTER_MEANS, adapter_run_means, beats_all, best_beyond_intervals, better_beyond,
                               metric_summary, run_ranks)


def perplexity_grid(runs: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Table 1 as a long table (`metric_summary` of test perplexity per (wd_attn, wd_mlp), each λ_SA against λ_SA = 0
    in its λ_MLP column) with `best` marked only on a cell whose mean beats every other cell beyond its paired 95%
    interval, and a sentence that says which cell that is, or why none is marked."""
    grid = metric_summary(runs, ["test_perplexity"], "wd_attn", ["wd_mlp"]).drop(columns="metric")
    best, comparisons = best_beyond_intervals(runs, "test_perplexity", ["wd_attn", "wd_mlp"])
    cell = f"λ_SA = {best[0]:g}, λ_MLP = {best[1]:g}"
    is_best = beats_all(comparisons)
    grid["best"] = is_best & (grid["wd_attn"] == best[0]) & (grid["wd_mlp"] == best[1])
    if comparisons.empty:
        verdict = f"One cell only ({cell}): nothing to compare it with."
    elif is_best:
        verdict = (f"Best cell (bold): {cell}, lower than each of the other {len(comparisons)} cells beyond its paired "
                   "95% interval.")
    else:
        ties = comparisons[~better_beyond(comparisons)]
        closest = ties.loc[ties["difference"].idxmax()] if ties["difference"].notna().any() else ties.iloc[0]
        difference = _interval(closest["difference"], closest["ci_low"], closest["ci_high"])
        verdict = (f"No cell is marked best: the lowest mean, {cell}, is not below {len(ties)} of the other "
                   f"{len(comparisons)} cells beyond its paired 95% interval (e.g. λ_SA = {closest['wd_attn']:g}, "
                   f"λ_MLP = {closest['wd_mlp']:g}: difference {difference}).")
    return grid, verdict


def _signed(value: float, spec: str = "+.2f") -> str:
    return "n/a" if pd.isna(value) else format(value, spec).replace("-", "−")


def _interval(difference: float, low: float, high: float, spec: str = "+.2f") -> str:
    """'+0.95 [−1.20, +3.10]': a difference with its interval (none shown for a single pair)."""
    bounds = "" if pd.isna(low) else f" [{_signed(low, spec)}, {_signed(high, spec)}]"
    return _signed(difference, spec) + bounds


def _p(value: float) -> str:
    return "n/a" if pd.isna(value) else f"{value:.2f}" if value >= 0.01 else f"{value:.1g}"


def _pivot(grid: pd.DataFrame, text: pd.Series) -> pd.DataFrame:
    return grid.assign(cell=text).pivot(index="wd_attn", columns="wd_mlp", values="cell")


def _perplexity_cells(grid: pd.DataFrame, bold: tuple[str, str], with_n: bool) -> pd.DataFrame:
    text = grid.apply(lambda r: f"{r['mean']:.2f} ± {r['std']:.2f}" + (f" (n={r['n_seeds']})" if with_n else ""),
                      axis=1)
    return _pivot(grid, text.where(~grid["best"], bold[0] + text + bold[1]))


def _difference_cells(grid: pd.DataFrame) -> pd.DataFrame:
    compared = grid[grid["n_pairs"].notna()]
    text = compared.apply(lambda r: _interval(*r[["difference", "difference_ci_low", "difference_ci_high"]])
                          + f", p = {_p(r['p_value'])} ({_p(r['p_holm'])})",
                          axis=1)
    return _pivot(compared, text)


def _caption(grid: pd.DataFrame, verdict: str) -> tuple[str, bool]:
    seeds = grid["n_seeds"].unique()
    with_n = len(seeds) > 1
    counted = "n seeds per cell" if with_n else f"{seeds[0]} seed" + ("s" if seeds[0] != 1 else "")
    baseline = grid["wd_attn"].min()
    return (f"Test perplexity, mean ± std over {counted}. Below: each λ_SA minus λ_SA = {baseline:g} in the same "
            "λ_MLP column, paired by seed (same initial weights and batches): mean difference [95% interval], "
            "two-sided p of a paired t-test (Holm-adjusted within the column). " + verdict), with_n


def table1_lm_perplexity(runs: pd.DataFrame) -> dict[str, str]:
    """Table 1 as CSV (long: `perplexity_grid`), Markdown and LaTeX (rows λ_SA, columns λ_MLP; a second block of
    paired differences from λ_SA = 0; a best cell in bold only where it is one beyond its intervals)."""
    grid, verdict = perplexity_grid(runs)
    caption, with_n = _caption(grid, verdict)
    baseline = grid["wd_attn"].min()

    cells, differences = _perplexity_cells(grid, ("**", "**"), with_n), _difference_cells(grid)
    columns = " | ".join(f"{c:g}" for c in cells.columns)
    rule = "|" + "---|" * (len(cells.columns) + 1)
    lines = [f"| λ_SA \\ λ_MLP | {columns} |", rule]
    lines += [f"| {i:g} | " + " | ".join(row) + " |" for i, row in zip(cells.index, cells.values, strict=True)]
    lines += ["", f"| λ_SA − {baseline:g} \\ λ_MLP | {columns} |", rule]
    lines += [f"| {i:g} | " + " | ".join(row) + " |"
              for i, row in zip(differences.index, differences.values, strict=True)]

    def tex(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.map(lambda c: c.replace("±", r"$\pm$").replace("−", "$-$").replace("+", "$+$"))

    width = len(cells.columns) + 1
    body = [r"\begin{tabular}{l" + "c" * len(cells.columns) + "}", r"\toprule",
            r"$\lambda_{SA}$ \textbackslash{} $\lambda_{MLP}$ & " + " & ".join(f"{c:g}" for c in cells.columns)
            + r" \\", r"\midrule"]
    body += [f"{i:g} & " + " & ".join(row) + r" \\"
             for i, row in zip(cells.index, tex(_perplexity_cells(grid, (r"\textbf{", "}"), with_n)).values,
                               strict=True)]
    body += [r"\midrule", rf"\multicolumn{{{width}}}{{l}}{{Paired difference from $\lambda_{{SA}} = {baseline:g}$, "
             r"95\% interval, $p$ (Holm)} \\", r"\midrule"]
    body += [f"{i:g} & " + " & ".join(row) + r" \\"
             for i, row in zip(differences.index, tex(differences).values, strict=True)]
    body += [r"\bottomrule", r"\end{tabular}"]
    return {"csv": grid.to_csv(index=False, float_format="%.6g"),
            "md": caption + "\n\n" + "\n".join(lines) + "\n",
            "tex": "% " + caption + " Requires \\usepackage{booktabs}.\n" + "\n".join(body) + "\n"}


def summary_markdown(table: pd.DataFrame, axis: str = "wd_attn", labels: dict[str, str] | None = None) -> str:
    """A `metric_summary` table as Markdown: rows `axis`, a column per metric (and group), cells 'mean ± std' and,
    below the baseline row, the paired difference [95% interval] and p-value (Holm-adjusted in parentheses)."""
    labels = labels or {}
    groups = [c for c in table.columns if c not in {axis, "metric", *SUMMARY_COLUMNS}]
    table = table.assign(column=table.apply(
        lambda r: labels.get(r["metric"], r["metric"]) + "".join(f", {NAMES.get(g, g)} {r[g]:g}" for g in groups),
        axis=1))

    def cell(r: pd.Series) -> str:
        text = f"{r['mean']:.3g} ± {r['std']:.2g}"
        if pd.isna(r["n_pairs"]):
            return text
        difference = _interval(r["difference"], r["difference_ci_low"], r["difference_ci_high"], "+.3g")
        return f"{text}; Δ {difference}, p = {_p(r['p_value'])} ({_p(r['p_holm'])})"

    cells = table.assign(cell=table.apply(cell, axis=1)).pivot(index=axis, columns="column", values="cell")
    cells = cells[list(dict.fromkeys(table["column"]))]
    lines = [f"| {NAMES.get(axis, axis)} | " + " | ".join(cells.columns) + " |", "|" + "---|" * (len(cells.columns) + 1)]
    lines += [f"| {i:g} | " + " | ".join(row) + " |" for i, row in zip(cells.index, cells.values, strict=True)]
    seeds = ", ".join(str(n) for n in sorted(table["n_seeds"].unique()))
    baseline = table[axis].min()
    return (f"Mean ± std over seeds ({seeds} per cell); Δ: minus {NAMES.get(axis, axis)} = {baseline:g}, paired by seed, "
            "[95% interval], two-sided p of a paired t-test (Holm-adjusted over the other values).\n\n"
            + "\n".join(lines) + "\n")


NAMES = {"wd_attn": "λ_SA", "wd_mlp": "λ_MLP", "wd_lora": "λ_LoRA", "lora_r": "r", "lora_lr": "lr"}  # sweep columns as the paper writes them
SUMMARY_COLUMNS = ["mean", "std", "n_seeds", "ci_low", "ci_high", "n_pairs", "difference", "difference_ci_low",
                   "difference_ci_high", "p_value", "p_holm"]


def _summary_tables(table: pd.DataFrame, metric: str) -> dict[str, str]:
    """A `metric_summary` table as CSV (long) and Markdown (`summary_markdown`), its rank columns labelled."""
    labels = {f"{product}_{metric}": f"{product} rank" for product in HEAD_PRODUCTS}
    labels["test_accuracy"] = "test accuracy"
    return {"csv": table.to_csv(index=False, float_format="%.10g"), "md": summary_markdown(table, labels=labels)}


def audit_summary(table: pd.DataFrame, model: str) -> pd.DataFrame:
    """Per product: median and interquartile range of the nuclear/Frobenius ratio, median relative balance and
    mean rank as a fraction of the head dimension (first rank column); an adapter's table (`wdrank.lora`) per module
    kind, the rank as a fraction of r."""
    rank_column = next(c for c in table.columns if c.startswith("rank_tol_"))
    group, unit, size = ("kind", "module", "r") if "module" in table.columns else ("product", "head", "head_dim")
    grouped = table.assign(rank_fraction=table[rank_column] / table[size]).groupby(group)
    summary = grouped.agg(
        **{f"{unit}s": (unit, "size")},
        median_nuclear_to_frobenius=("nuclear_to_frobenius", "median"),
        q25_nuclear_to_frobenius=("nuclear_to_frobenius", lambda s: s.quantile(0.25)),
        q75_nuclear_to_frobenius=("nuclear_to_frobenius", lambda s: s.quantile(0.75)),
        median_balance_relative=("balance_relative", "median"),
        mean_rank_fraction=("rank_fraction", "mean"),
    ).reset_index()
    summary.insert(0, "model", model)
    return summary


def lm_rank(spectra: pd.DataFrame, rank_metric: str) -> dict[str, str]:
    """Language models: `metric_summary` of the per-run mean QK and OV rank (every head and layer, final step) per
    (λ_SA, λ_MLP), each λ_SA against λ_SA = 0 in its λ_MLP column."""
    table = metric_summary(run_ranks(spectra, rank_metric), [f"{p}_{rank_metric}" for p in HEAD_PRODUCTS], "wd_attn",
                           ["wd_mlp"])
    return _summary_tables(table, rank_metric)


def vit_rank(spectra: pd.DataFrame, runs: pd.DataFrame, rank_metric: str) -> dict[str, str]:
    """ViT: `metric_summary` per λ of the per-run mean QK and OV rank (`spectra`: the ViT head spectra) and of test
    accuracy (`runs`: one row per run), each λ against λ = 0."""
    merged = run_ranks(spectra, rank_metric).merge(runs[["wd_attn", "seed", "test_accuracy"]], on=["wd_attn", "seed"])
    table = metric_summary(merged, [*(f"{p}_{rank_metric}" for p in HEAD_PRODUCTS), "test_accuracy"], "wd_attn")
    return _summary_tables(table, rank_metric)


def fig4_audit_summary(tables: list[pd.DataFrame]) -> dict[str, str]:
    """`audit_summary` of each audited model, one after the other."""
    summary = pd.concat([audit_summary(table, table["model"].iloc[0]) for table in tables], ignore_index=True)
    return {"csv": summary.to_csv(index=False, float_format="%.10g")}


LORA_LABELS = {"decay_clock": "λΣη", "rank_used": "rank used / r", "effective_rank_used": "effective rank / r",
               "nuclear_to_frobenius": "nuclear / Frobenius", "balance_relative": "balance / Frobenius",
               "test_perplexity": "test perplexity"}
LORA_COMPARED = ("rank_used", "test_perplexity")  # cells that also show the paired difference from λ_LoRA = 0


def lora_rank(spectra: pd.DataFrame, runs: pd.DataFrame, rank_metric: str, steps: int, warmup_steps: int,
              min_lr_ratio: float) -> dict[str, str]:
    """The LoRA sweep's regime per (r, lr, λ_LoRA) at the final step: the decay clock λΣη (how far AdamW's decay has
    acted), rank of B A used out of r and effective rank out of r (means over modules), nuclear / Frobenius (1: the
    nuclear-norm regime), relative balance, test perplexity; `metric_summary` over seeds, each λ_LoRA against 0."""
    from wdrank.schedule import Schedule

    final = spectra[spectra["step"] == spectra["step"].max()]
    per_run = adapter_run_means(final, rank_metric).merge(
        runs[["lora_r", "lora_lr", "wd_lora", "seed", "test_perplexity"]],
        on=["lora_r", "lora_lr", "wd_lora", "seed"])
    schedule = Schedule(steps=steps, batch_size=1, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio)
    per_run["decay_clock"] = [lam * schedule.cumulative_lr(lr)[-1]
                              for lam, lr in zip(per_run["wd_lora"], per_run["lora_lr"], strict=True)]
    table = metric_summary(per_run, ["decay_clock", *ADAPTER_MEANS, "test_perplexity"], "wd_lora",
                           ["lora_r", "lora_lr"])

    def cell(row: pd.Series) -> str:
        text = f"{row['mean']:.3g}" if row["metric"] == "decay_clock" else f"{row['mean']:.3g} ± {row['std']:.2g}"
        if row["metric"] in LORA_COMPARED and not pd.isna(row["n_pairs"]):
            text += " (Δ " + _interval(row["difference"], row["difference_ci_low"], row["difference_ci_high"],
                                       "+.2g") + ")"
        return text

    cells = table.assign(cell=table.apply(cell, axis=1)).pivot(index=["lora_r", "lora_lr", "wd_lora"], columns="metric",
                                                              values="cell")[list(LORA_LABELS)]
    lines = ["| r | lr | λ_LoRA | " + " | ".join(LORA_LABELS.values()) + " |", "|" + "---|" * (len(LORA_LABELS) + 3)]
    lines += [f"| {r} | {lr:g} | {lam:g} | " + " | ".join(row) + " |"
              for (r, lr, lam), row in zip(cells.index, cells.values, strict=True)]
    seeds = ", ".join(str(n) for n in sorted(table["n_seeds"].unique()))
    caption = (f"LoRA at step {int(final['step'].max())}, means over adapted modules, mean ± std over seeds ({seeds} "
               f"per cell); {metric_label_text(rank_metric)}. Δ: minus λ_LoRA = 0 in the same (r, lr), paired by "
               "seed [95% interval]. λΣη is the decay clock: AdamW has shrunk the factors by e^{−λΣη}; "
               "nuclear / Frobenius reaches 1 only in the nuclear-norm regime.")
    return {"csv": table.to_csv(index=False, float_format="%.10g"), "md": caption + "\n\n" + "\n".join(lines) + "\n"}


def metric_label_text(metric: str) -> str:
    """'rank: σ_i > 0.01 σ_max' for rank_tol_0.01, in plain text."""
    return f"rank: σ_i > {metric.removeprefix('rank_tol_')} σ_max" if metric.startswith("rank_tol_") else metric
