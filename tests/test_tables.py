"""Table 1 and the rank tables: mean ± std over seeds, each λ_SA against λ_SA = 0 paired by seed, a best cell only
where it is one beyond its intervals; CSV, Markdown and LaTeX."""

import io

import pandas as pd
import pytest

from wdrank.tables import lm_rank, perplexity_grid, table1_lm_perplexity, vit_rank

# Two λ_MLP columns x two λ_SA rows x 3 seeds. Seed s adds 3s to every cell (its luck): paired by seed, λ_SA = 1
# is 1.0 ± 0.1 below λ_SA = 0 at λ_MLP 0.1, and indistinguishable from it at λ_MLP 1.
LUCK = {0: 0.0, 1: 3.0, 2: 6.0}
CELLS = {(0, 0.1): [20.0, 20.1, 19.9], (1, 0.1): [19.0, 19.0, 19.0],
         (0, 1): [26.0, 27.0, 25.0], (1, 1): [27.0, 25.0, 26.5]}
RUNS = pd.DataFrame([{"wd_attn": a, "wd_mlp": m, "seed": s, "test_perplexity": v + LUCK[s]}
                     for (a, m), values in CELLS.items() for s, v in enumerate(values)])


def test_grid_has_paired_differences_from_lambda_sa_zero():
    grid, _ = perplexity_grid(RUNS)
    grid = grid.set_index(["wd_attn", "wd_mlp"])
    assert grid["n_seeds"].eq(3).all() and grid.loc[(0, 0.1), "mean"] == pytest.approx(23.0)
    clear, tied = grid.loc[(1, 0.1)], grid.loc[(1, 1)]
    assert clear["difference"] == pytest.approx(-1.0) and clear["difference_ci_high"] < 0 < clear["p_value"] < 0.01
    assert tied["difference_ci_low"] < 0 < tied["difference_ci_high"] and tied["p_value"] > 0.5
    assert grid.loc[(0, 0.1), ["difference", "p_value"]].isna().all()  # the baseline row is not compared with itself
    # the unpaired spread (std over seeds, 3) is 30 times the paired one: only pairing resolves the difference
    assert grid.loc[(1, 0.1), "std"] == pytest.approx(3.0)


def test_best_cell_marked_only_beyond_every_interval():
    grid, verdict = perplexity_grid(RUNS)
    assert grid["best"].sum() == 1 and grid.set_index(["wd_attn", "wd_mlp"]).loc[(1, 0.1), "best"]
    assert verdict.startswith("Best cell (bold): λ_SA = 1, λ_MLP = 0.1")
    noisy = RUNS.assign(test_perplexity=RUNS["test_perplexity"] + RUNS["seed"].map({0: 0, 1: 2, 2: -2})
                        * (RUNS["wd_attn"] == 1))
    grid, verdict = perplexity_grid(noisy)
    assert not grid["best"].any() and verdict.startswith("No cell is marked best: the lowest mean, λ_SA = 1, "
                                                         "λ_MLP = 0.1")


def test_a_grid_of_one_cell_says_there_is_nothing_to_compare():
    grid, verdict = perplexity_grid(RUNS[(RUNS["wd_attn"] == 0) & (RUNS["wd_mlp"] == 0.1)])
    assert not grid["best"].any() and verdict == "One cell only (λ_SA = 0, λ_MLP = 0.1): nothing to compare it with."


def test_table1_as_csv_markdown_and_latex():
    texts = table1_lm_perplexity(RUNS)
    assert len(pd.read_csv(io.StringIO(texts["csv"]))) == 4
    markdown = texts["md"]
    assert "**22.00 ± 3.00**" in markdown and "| 0 | 23.00 ± 2.95 | 29.00 ± 2.65 |" in markdown
    assert "| λ_SA − 0 \\ λ_MLP | 0.1 | 1 |" in markdown and "| 1 | −1.00 [−1.25, −0.75], p = 0.003 (0.003) |" \
        in markdown
    assert "3 seeds" in markdown and "paired t-test" in markdown
    latex = texts["tex"]
    assert r"\toprule" in latex and r"\textbf{22.00 $\pm$ 3.00}" in latex and latex.count(r"\\") == 5
    assert r"\multicolumn{3}{l}{Paired difference from $\lambda_{SA} = 0$, 95\% interval, $p$ (Holm)} \\" in latex


def _spectra(rank_of) -> pd.DataFrame:
    """Final-step head spectra: 2 layers x 2 heads per run, ranks given by rank_of(wd_attn, seed, product)."""
    return pd.DataFrame([{"wd_attn": a, "wd_mlp": 0.1, "seed": s, "step": 100, "layer": layer, "head": head,
                          "product": p, "head_dim": 8, "rank_tol_0.01": rank_of(a, s, p) + (layer - 0.5)}
                         for a in (0, 3) for s in (0, 1, 2) for layer in (0, 1) for head in (0, 1)
                         for p in ("QK", "OV")])


def test_rank_tables_pair_runs_by_seed():
    spectra = _spectra(lambda a, s, p: (8 if a == 0 else 3 + s) - (p == "OV"))
    lm = pd.read_csv(io.StringIO(lm_rank(spectra, "rank_tol_0.01")["csv"])).set_index(["metric", "wd_attn"])
    assert lm.loc[("QK_rank_tol_0.01", 0), "mean"] == 8 and lm.loc[("OV_rank_tol_0.01", 3), "mean"] == 3
    assert lm.loc[("QK_rank_tol_0.01", 3), "difference"] == -4 and lm.loc[("QK_rank_tol_0.01", 3), "n_pairs"] == 3

    runs = pd.DataFrame({"wd_attn": [0, 0, 0, 3, 3, 3], "seed": [0, 1, 2] * 2,
                         "test_accuracy": [0.9, 0.8, 0.85, 0.8, 0.7, 0.75]})
    vit = pd.read_csv(io.StringIO(vit_rank(spectra.drop(columns="wd_mlp"), runs, "rank_tol_0.01")["csv"]))
    vit = vit.set_index(["metric", "wd_attn"])
    accuracy = vit.loc[("test_accuracy", 3)]
    assert accuracy["difference"] == pytest.approx(-0.1) and accuracy["difference_ci_high"] == pytest.approx(-0.1)
    assert set(vit.index.get_level_values("metric")) == {"QK_rank_tol_0.01", "OV_rank_tol_0.01", "test_accuracy"}
