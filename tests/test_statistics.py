"""Paired comparisons by seed (wdrank.statistics) against closed forms, and the verdicts built on them."""

import numpy as np
import pandas as pd
import pytest

from wdrank.statistics import beats_all, best_beyond_intervals, differences_from, holm, paired_t, resolved

T_975 = {1: 12.706204736174698, 3: 3.182446305284263}  # Student t quantiles, e.g. from any statistics table


def test_paired_t_against_the_closed_form():
    result = paired_t(np.array([1.0, 2.0, 3.0, 4.0]))
    standard_error = np.sqrt(5 / 3) / 2  # sample std of 1..4 is sqrt(5/3), over sqrt(4)
    assert result["n_pairs"] == 4 and result["difference"] == 2.5
    assert result["ci_low"] == pytest.approx(2.5 - T_975[3] * standard_error, rel=1e-12)
    assert result["ci_high"] == pytest.approx(2.5 + T_975[3] * standard_error, rel=1e-12)
    # t = 2.5 / se = 3.873; two-sided p with 3 degrees of freedom
    assert result["p_value"] == pytest.approx(0.030466, abs=1e-6)


def test_two_pairs_use_one_degree_of_freedom_and_one_pair_gives_no_interval():
    result = paired_t(np.array([-1.0, 3.0]))
    assert result["ci_high"] - result["ci_low"] == pytest.approx(2 * T_975[1] * 2.0, rel=1e-12)  # se = sqrt(8)/sqrt(2)
    single = paired_t(np.array([0.7]))
    assert single["difference"] == 0.7 and np.isnan(single["ci_low"]) and np.isnan(single["p_value"])


@pytest.mark.parametrize("n, p_value", [(2, 0.5), (3, 0.25), (5, 0.0625), (6, 0.03125), (8, 0.0078125)])
def test_zero_spread_takes_the_exact_sign_flip_p_value(n, p_value):
    """n identical non-zero differences: of the 2ⁿ sign patterns, the two all-equal ones are as extreme: 2/2ⁿ."""
    constant = paired_t(np.full(n, -2.0))
    assert constant["ci_low"] == constant["ci_high"] == -2.0 and constant["p_value"] == p_value
    assert paired_t(np.zeros(n))["p_value"] == 1.0


def test_two_seeds_of_identical_differences_are_never_beyond_every_interval():
    """Integer ranks that fall by exactly 2 in both seeds, in every other cell: no zero-width interval decides."""
    ranks = _runs({0.0: [8.0, 9.0], 1.0: [10.0, 11.0], 3.0: [12.0, 13.0]})
    best, comparisons = best_beyond_intervals(ranks, "metric", ["wd_attn"])
    assert best == (0.0,) and (comparisons["ci_high"] < 0).all() and not beats_all(comparisons)
    summary = differences_from(ranks, "metric", "wd_attn", 0.0)
    assert not resolved(summary["ci_low"], summary["ci_high"], summary["p_value"]).any()
    six = _runs({0.0: [8.0] * 6, 1.0: [10.0] * 6}, seed_offsets=(0.0,) * 6)
    assert beats_all(best_beyond_intervals(six, "metric", ["wd_attn"])[1])  # 2/2⁶ < 0.05: six seeds do decide


def test_holm_step_down():
    adjusted = holm(pd.Series([0.01, 0.04, 0.03, np.nan], index=list("abcd")))
    assert adjusted.loc[["a", "b", "c"]].tolist() == pytest.approx([0.03, 0.06, 0.06])
    assert np.isnan(adjusted["d"])


def _runs(values: dict[float, list[float]], seed_offsets=(0.0, 0.0, 0.0, 0.0)) -> pd.DataFrame:
    """One run per (wd_attn, seed); each seed shifts every value by its own offset (its luck)."""
    return pd.DataFrame([{"wd_attn": wd, "seed": seed, "metric": value + seed_offsets[seed]}
                         for wd, seed_values in values.items() for seed, value in enumerate(seed_values)])


def test_differences_pair_by_seed_not_by_row_order():
    # seeds differ by 10 between them, λ by 1 within each seed: only pairing sees the difference at all
    runs = _runs({0.0: [0.0, 0.1, -0.1, 0.0], 1.0: [1.0, 1.1, 0.9, 1.05]}, seed_offsets=(0, 10, 20, 30))
    shuffled = runs.sample(frac=1.0, random_state=0)
    table = differences_from(shuffled, "metric", "wd_attn", 0.0)
    assert table["wd_attn"].tolist() == [1.0]
    row = table.iloc[0]
    assert row["difference"] == pytest.approx(1.0125) and row["ci_low"] > 0.8 and row["p_value"] < 1e-4
    unpaired = runs.groupby("wd_attn")["metric"].agg(["mean", "std"])
    assert unpaired["std"].min() > 10  # an unpaired comparison could not resolve a difference of 1


def test_a_seed_missing_on_one_side_is_left_out():
    runs = _runs({0.0: [0.0, 0.0, 0.0], 1.0: [1.0, 2.0, 3.0]}).query("not (wd_attn == 1.0 and seed == 2)")
    assert differences_from(runs, "metric", "wd_attn", 0.0).iloc[0]["n_pairs"] == 2


def test_two_runs_of_one_cell_and_seed_cannot_be_paired():
    runs = pd.concat([_runs({0.0: [0.0], 1.0: [1.0]})] * 2)
    with pytest.raises(ValueError, match="two runs for wd_attn=0.0, seed=0"):
        differences_from(runs, "metric", "wd_attn", 0.0)


def test_without_the_baseline_the_error_names_it():
    with pytest.raises(ValueError, match="no run with wd_attn=0 to compare with"):
        differences_from(_runs({1.0: [1.0], 3.0: [2.0]}), "metric", "wd_attn", 0.0)


def test_a_best_cell_only_beyond_its_intervals():
    clear = _runs({0.0: [5.0, 5.1, 4.9, 5.0], 1.0: [4.0, 4.1, 3.8, 4.0], 3.0: [6.0, 6.2, 5.9, 6.1]},
                  seed_offsets=(0, 3, -3, 1))
    best, comparisons = best_beyond_intervals(clear, "metric", ["wd_attn"])
    assert best == (1.0,) and len(comparisons) == 2 and beats_all(comparisons)

    noisy = _runs({0.0: [5.0, 4.0, 6.0, 5.0], 1.0: [4.0, 5.5, 4.5, 5.5]})
    best, comparisons = best_beyond_intervals(noisy, "metric", ["wd_attn"])
    assert best == (1.0,) and not beats_all(comparisons)
    best, comparisons = best_beyond_intervals(clear, "metric", ["wd_attn"], lower_is_better=False)
    assert best == (3.0,) and beats_all(comparisons, lower_is_better=False)
