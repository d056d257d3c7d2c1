"""Paired comparisons across weight decays, seed by seed.

Runs that share a seed share their initial weights and their batches (whatever the weight decay), so the difference
of a metric between two decays, taken seed by seed, cancels each seed's own luck. The test is the paired t-test:
exact when the per-seed differences are normal, and the standard choice for the 2–20 seeds a sweep has. A bootstrap
would not do here: with 2 seeds it has 3 distinct resamples, and its percentile interval undercovers badly below
about 10.

Differences without spread (every seed differs by the same amount, as integer ranks often do) leave the t statistic
undefined, not infinite: there the p-value is the exact sign-flip test's, which assumes only that under no effect
each difference's sign is as likely + as −, and is 2/2ⁿ for n identical non-zero differences (0.5 for 2 seeds). A
difference is *resolved* when its interval excludes 0 and its p-value is below 1 − confidence; for a t interval the
two say the same, and with zero spread only the exact test decides, so 2 to 5 seeds never do.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from wdrank.sweeps import SWEEPS, TRAINED
from wdrank.spectra import HEAD_PRODUCTS

CONFIDENCE = 0.95
COLUMNS = ["n_pairs", "difference", "ci_low", "ci_high", "p_value"]


def paired_t(differences: np.ndarray, confidence: float = CONFIDENCE) -> dict[str, float]:
    """Mean of paired differences, its two-sided `confidence` interval (Student t, n − 1 degrees of freedom) and
    the two-sided p-value of 'mean 0'. One pair gives no interval (nan); identical differences give a zero-width
    interval and the exact sign-flip p-value 2/2ⁿ (1 when they are all 0)."""
    differences = np.asarray(differences, dtype=float)
    n = len(differences)
    mean = float(differences.mean()) if n else float("nan")
    if n < 2:
        return dict(n_pairs=n, difference=mean, ci_low=float("nan"), ci_high=float("nan"), p_value=float("nan"))
    standard_error = float(differences.std(ddof=1)) / np.sqrt(n)
    if standard_error == 0:
        p_value = 1.0 if mean == 0 else 2.0 ** (1 - n)  # of the 2ⁿ sign flips, the two all-equal ones are as extreme
        return dict(n_pairs=n, difference=mean, ci_low=mean, ci_high=mean, p_value=p_value)
    half_width = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * standard_error
    p_value = float(2 * stats.t.sf(abs(mean) / standard_error, n - 1))
    return dict(n_pairs=n, difference=mean, ci_low=mean - half_width, ci_high=mean + half_width, p_value=p_value)


def mean_interval(values: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Student-t `confidence` interval of the mean of independent values (nan with fewer than 2)."""
    result = paired_t(values, confidence)
    return result["ci_low"], result["ci_high"]


def holm(p_values: pd.Series) -> pd.Series:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate; nan stays nan)."""
    valid = p_values.dropna().sort_values()
    m = len(valid)
    adjusted = np.maximum.accumulate([(m - rank) * p for rank, p in enumerate(valid)]) if m else []
    return pd.Series(np.minimum(adjusted, 1.0), index=valid.index).reindex(p_values.index)


def _per_seed(runs: pd.DataFrame, metric: str, keys: list[str]) -> pd.Series:
    duplicated = runs.duplicated(keys + ["seed"])
    if duplicated.any():
        row = runs[duplicated].iloc[0]
        raise ValueError(f"two runs for {', '.join(f'{k}={row[k]}' for k in keys + ['seed'])}: cannot pair by seed")
    return runs.set_index(keys + ["seed"])[metric].sort_index()


def differences_from(runs: pd.DataFrame, metric: str, axis: str, baseline: float, by: list[str] | tuple = ()
                     ) -> pd.DataFrame:
    """For each group of `by` and each value of `axis` other than `baseline`: `metric` minus its value at `baseline`,
    paired by seed (seeds missing on either side are left out), as `paired_t` columns plus `p_holm`, Holm-adjusted
    within the group (the family: every value compared with the same baseline)."""
    by = list(by)
    if baseline not in set(runs[axis]):
        raise ValueError(f"no run with {axis}={baseline:g} to compare with; the runs have {sorted(set(runs[axis]))}")
    values = _per_seed(runs, metric, by + [axis])
    rows = []
    for group, frame in (runs.groupby(by, sort=True) if by else [((), runs)]):
        group = group if isinstance(group, tuple) else (group,)
        base = values.loc[group + (baseline,)] if by else values.loc[baseline]
        for value in sorted(set(frame[axis]) - {baseline}):
            other = values.loc[group + (value,)] if by else values.loc[value]
            paired = (other - base).dropna()
            rows.append({**dict(zip(by, group, strict=True)), axis: value, **paired_t(paired.to_numpy())})
    table = pd.DataFrame(rows, columns=by + [axis] + COLUMNS)
    table["p_holm"] = (table.groupby(by, group_keys=False)["p_value"].apply(holm) if by else holm(table["p_value"]))
    return table


def best_beyond_intervals(runs: pd.DataFrame, metric: str, keys: list[str], lower_is_better: bool = True
                          ) -> tuple[tuple, pd.DataFrame]:
    """The cell (a value of `keys`) with the best mean `metric`, and its paired differences (best − other, by seed)
    with every other cell. It is *the* best only if every interval lies on its side of 0: requiring each comparison
    at level α is a level-α test of 'better than all' (an intersection–union test), so no multiplicity correction."""
    means = runs.groupby(keys)[metric].mean()
    best = means.idxmin() if lower_is_better else means.idxmax()
    best = best if isinstance(best, tuple) else (best,)
    values = _per_seed(runs, metric, keys)
    rows = []
    for cell in means.index:
        cell = cell if isinstance(cell, tuple) else (cell,)
        if cell != best:
            paired = (values.loc[best] - values.loc[cell]).dropna()
            rows.append({**dict(zip(keys, cell, strict=True)), **paired_t(paired.to_numpy())})
    return best, pd.DataFrame(rows, columns=keys + COLUMNS)


def resolved(low: pd.Series, high: pd.Series, p_value: pd.Series, side: int = 0) -> pd.Series:
    """Whether each difference is resolved: its interval excludes 0 (below it for side −1, above for +1, either
    for 0) and its p-value is below 1 − confidence (see the module's note on zero spread)."""
    below, above = high < 0, low > 0
    excludes = below if side < 0 else above if side > 0 else below | above
    return excludes & (p_value < 1 - CONFIDENCE)


def beats_all(comparisons: pd.DataFrame, lower_is_better: bool = True) -> bool:
    """Whether every comparison of `best_beyond_intervals` is resolved on the better side."""
    if comparisons.empty:
        return False
    return bool(better_beyond(comparisons, lower_is_better).all())


def better_beyond(comparisons: pd.DataFrame, lower_is_better: bool = True) -> pd.Series:
    """Per comparison of `best_beyond_intervals`: the best cell is resolved as better than that cell."""
    return resolved(comparisons["ci_low"], comparisons["ci_high"], comparisons["p_value"],
                    -1 if lower_is_better else 1)


# The sweep axes of the trained experiments (wd_attn, wd_mlp, seed): the columns that identify a run.
SWEEP_KEYS = tuple(dict.fromkeys(axis for section in TRAINED for axis in SWEEPS[section]))


def run_means(spectra: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per (run, product): `metric` averaged over every head and layer at the final checkpoint."""
    final = spectra[spectra["step"] == spectra["step"].max()]
    keys = [key for key in SWEEP_KEYS if key in final.columns]
    return final.groupby(keys + ["product"], as_index=False)[metric].mean()


def run_ranks(spectra: pd.DataFrame, metric: str) -> pd.DataFrame:
    """One row per run, columns QK_<metric> and OV_<metric>: `run_means` side by side."""
    means = run_means(spectra, metric)
    keys = [key for key in SWEEP_KEYS if key in means.columns]
    wide = means.pivot_table(index=keys, columns="product", values=metric).reset_index()
    return wide.rename(columns={product: f"{product}_{metric}" for product in HEAD_PRODUCTS})


# Per-run means of a LoRA run's adapter (wdrank.lora columns): rank used out of r, effective rank out of r, and the
# nuclear-norm regime's two measures
ADAPTER_MEANS = ("rank_used", "effective_rank_used", "nuclear_to_frobenius", "balance_relative")


def adapter_run_means(spectra: pd.DataFrame, rank_metric: str) -> pd.DataFrame:
    """One row per (run, step) of a LoRA sweep's spectra (one row per module): the mean over modules of
    `rank_used` (`rank_metric` / r), `effective_rank_used` (effective rank / r), `nuclear_to_frobenius` and
    `balance_relative`."""
    keys = [key for key in SWEEP_KEYS if key in spectra.columns] + ["step"]
    modules = spectra.assign(rank_used=spectra[rank_metric] / spectra["r"],
                             effective_rank_used=spectra["effective_rank"] / spectra["r"])
    return modules.groupby(keys, as_index=False)[list(ADAPTER_MEANS)].mean()


DIFFERENCE_COLUMNS = {"ci_low": "difference_ci_low", "ci_high": "difference_ci_high"}  # beside the mean's own


def metric_summary(per_run: pd.DataFrame, metrics: list[str], axis: str = "wd_attn", by: list[str] | tuple = ()
                   ) -> pd.DataFrame:
    """Long table, one row per cell (`by` + `axis`) and metric: mean, std and seeds, the 95% t interval of the mean,
    and the paired difference from the smallest `axis` value (λ = 0 in every sweep here), seed by seed, with its
    interval, p-value and Holm-adjusted p-value (`differences_from`)."""
    by = list(by)
    baseline = per_run[axis].min()
    frames = []
    for metric in metrics:
        cells = per_run.groupby(by + [axis])[metric]
        summary = cells.agg(mean="mean", std="std", n_seeds="count").reset_index()
        intervals = cells.apply(lambda values: pd.Series(mean_interval(values.to_numpy()), index=["ci_low", "ci_high"]))
        summary = summary.merge(intervals.unstack().reset_index(), on=by + [axis])
        differences = differences_from(per_run, metric, axis, baseline, by).rename(columns=DIFFERENCE_COLUMNS)
        summary = summary.merge(differences, on=by + [axis], how="left")
        frames.append(summary.assign(metric=metric))
    table = pd.concat(frames, ignore_index=True)
    table["std"] = table["std"].fillna(0.0)  # one seed: no spread
    return table[by + [axis, "metric"] + [c for c in table.columns if c not in [*by, axis, "metric"]]]
