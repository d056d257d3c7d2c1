"""Fig. 1 against its closed forms: soft thresholding of singular values, and the balance decay at gradient descent's
exact per-step factors (and its gradient-flow limit e^{-2ηλ} at small η)."""

import numpy as np
import pytest

from wdrank.experiments.factorized import FactorizedRun, objective, objective_gradients, simulate
from wdrank.theory import balance_factors, fitted_balance_rate, predicted_singular_values, rate_per_step_prediction


def default_run(section, lam, seed):
    return FactorizedRun(
        targets=tuple(section["targets"]),
        lam=lam,
        seed=seed,
        lr=section["lr"],
        steps=section["steps"],
        record_points=section["record_points"],
        init_std=section["init_std"],
    )


@pytest.fixture(scope="module")
def default_grid(default_config):
    """The default Fig. 1 grid, simulated once for the tests below: {(λ, seed): table}."""
    section = default_config["factorized"]
    return {(lam, seed): simulate(default_run(section, lam, seed), (1e-2,))
            for lam in section["lambdas"] for seed in section["seeds"]}


def test_final_singular_values_are_soft_thresholded_on_the_default_grid(default_config, default_grid):
    """Every λ of the default grid: σ_i(ABᵀ) at the last step equals max(d_i − λ/2, 0) to 1e-3."""
    section = default_config["factorized"]
    for lam in section["lambdas"]:
        table = default_grid[lam, section["seeds"][0]]
        final = table[table["step"] == table["step"].max()]
        np.testing.assert_allclose(
            final["singular_value"], predicted_singular_values(section["targets"], lam), atol=1e-3,
            err_msg=f"lambda={lam}",
        )


@pytest.mark.parametrize("lam", [0.1, 0.4, 1.0, 2.0])
def test_balance_decays_at_two_eta_lambda_per_step(lam):
    """Small η: the fitted per-step decay rate of ‖AᵀA − BᵀB‖ is within 5% of 2ηλ."""
    lr = 0.002
    steps = int(25 / rate_per_step_prediction(lam, lr))  # about e^{-25}: well above the float64 floor
    run = FactorizedRun(targets=(0.2, 0.4, 0.6, 0.8, 1.0), lam=lam, seed=7, lr=lr, steps=steps,
                        record_points=200, init_std=0.5)
    rate = fitted_balance_rate(simulate(run, (1e-2,)))
    assert rate == pytest.approx(rate_per_step_prediction(lam, lr), rel=0.05)


def test_balance_decays_at_gradient_descents_exact_factors_on_the_default_grid(default_config, default_grid):
    """Every λ > 0 and seed of the default grid, at the default η: the fitted per-step rate of ‖AᵀA − BᵀB‖ lies
    within 1% of gradient descent's exact factors (`balance_factors`): of the one factor 1 − 2ηλ where no singular
    value dies, inside the band of factors where some do; and always faster than the gradient flow's 2ηλ."""
    section = default_config["factorized"]
    for lam in section["lambdas"][1:]:
        fastest, slowest = balance_factors(tuple(section["targets"]), lam, section["lr"])
        for seed in section["seeds"]:
            rate = fitted_balance_rate(default_grid[lam, seed])
            where = f"lambda={lam}, seed={seed}"
            assert -np.log(slowest) * 0.99 <= rate <= -np.log(fastest) * 1.01, where
            if fastest == slowest:
                assert rate == pytest.approx(-np.log(fastest), rel=0.01), where
            assert rate > rate_per_step_prediction(lam, section["lr"]), where


def test_exact_balance_factors_in_closed_form():
    """1 − 2ηλ alone while every value survives; (1 − ηλ)² − 4η²d² for the smallest dying d as the slowest."""
    assert balance_factors((0.2, 1.0), 0.2, 0.05) == (1 - 2 * 0.05 * 0.2,) * 2
    fastest, slowest = balance_factors((0.2, 1.0), 1.0, 0.05)
    assert fastest == pytest.approx(0.9) and slowest == pytest.approx(0.95**2 - 4 * 0.05**2 * 0.2**2)
    fastest, slowest = balance_factors((0.2, 1.0), 2.5, 0.05)  # every value dies
    assert fastest == pytest.approx(0.875**2 - 0.01) and slowest == pytest.approx(0.875**2 - 0.0004)


def test_without_decay_the_balance_is_conserved_only_to_second_order():
    """λ = 0: gradient flow conserves AᵀA − BᵀB; gradient descent drifts by O(η²) only."""
    run = FactorizedRun(targets=(0.2, 0.4, 0.6, 0.8, 1.0), lam=0.0, seed=3, lr=0.001, steps=5000,
                        record_points=20, init_std=0.5)
    balance = simulate(run, (1e-2,)).drop_duplicates("step")["balance_discrepancy"].to_numpy()
    assert np.abs(balance / balance[0] - 1).max() < 1e-2


def test_gradients_match_autograd():
    """The closed-form gradients are those of the objective (independent check with torch autograd)."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 5))
    target = np.diag([0.2, 0.4, 0.6, 0.8, 1.0])
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    loss = (ta @ tb.T - torch.tensor(target)).square().sum() + 0.35 * (ta.square().sum() + tb.square().sum())
    loss.backward()
    grad_a, grad_b = objective_gradients(a, b, target, lam=0.7)
    np.testing.assert_allclose(grad_a, ta.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(grad_b, tb.grad.numpy(), rtol=1e-12)
    assert objective(a, b, target, 0.7) == pytest.approx(loss.item())


def test_gap_closes_and_loss_decreases():
    run = FactorizedRun(targets=(0.2, 0.4, 0.6, 0.8, 1.0), lam=0.4, seed=0, lr=0.05, steps=4000,
                        record_points=50, init_std=0.5)
    per_step = simulate(run, (1e-2,)).drop_duplicates("step")
    assert per_step["gap"].iloc[-1] < 1e-9 * per_step["gap"].iloc[0]
    assert per_step["gap"].min() >= -1e-12
    assert per_step["loss"].iloc[-1] < per_step["loss"].iloc[0]


def test_same_seed_is_bit_identical_and_seeds_differ():
    run = FactorizedRun(targets=(0.5, 1.0), lam=0.3, seed=11, lr=0.05, steps=300, record_points=10, init_std=0.5)
    first, second = simulate(run, (1e-2,)), simulate(run, (1e-2,))
    assert first.equals(second)
    other = simulate(FactorizedRun(**{**run.__dict__, "seed": 12}), (1e-2,))
    assert not first["balance_discrepancy"].equals(other["balance_discrepancy"])


def test_divergence_is_reported_not_written():
    run = FactorizedRun(targets=(1.0, 2.0), lam=0.1, seed=0, lr=5.0, steps=200, record_points=10, init_std=0.5)
    with pytest.raises(FloatingPointError, match="diverged.*lower `lr`"):
        simulate(run, (1e-2,))


def test_table_is_long_and_self_describing():
    run = FactorizedRun(targets=(0.2, 0.4, 0.6), lam=0.4, seed=0, lr=0.05, steps=100, record_points=5, init_std=0.5)
    table = simulate(run, (1e-2,))
    for column in ("lambda", "seed", "step", "time", "sv_index", "singular_value", "singular_value_predicted",
                   "balance_discrepancy", "balance_discrepancy_fastest", "balance_discrepancy_slowest", "balance_discrepancy_flow", "gap", "nuclear_norm", "frobenius_side"):
        assert column in table.columns
    assert set(table["sv_index"]) == {1, 2, 3}
    assert len(table) == 3 * table["step"].nunique()
    np.testing.assert_allclose(table["time"], table["step"] * 0.05)
