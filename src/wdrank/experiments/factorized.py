"""Fig. 1: gradient descent on two factor matrices, and how L2 on the factors becomes a nuclear norm.

Objective (paper, Fig. 1 caption), with D = diag(d_1..d_n):

    F(A, B) = ‖A Bᵀ − D‖²_F + λ/2 (‖A‖²_F + ‖B‖²_F)

The predictions it is checked against (balance decay, soft-thresholded singular values) are derived in
`wdrank.theory`, torch-free so that the figures import no experiment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from tqdm import tqdm

from wdrank import spectra
from wdrank.recording import recorded_steps
from wdrank.theory import balance_factors, predicted_singular_values


@dataclass(frozen=True)
class FactorizedRun:
    """One gradient-descent run of the Fig. 1 problem: everything it depends on."""

    targets: tuple[float, ...]  # diagonal of D
    lam: float  # λ in F(A, B) above (the λ/2 ↔ λ‖·‖_* form)
    seed: int
    lr: float  # step size η
    steps: int
    record_points: int  # about this many log-spaced and as many linearly spaced steps are recorded
    init_std: float  # entries of A and B start i.i.d. N(0, init_std²)

    def __post_init__(self) -> None:
        if self.lam < 0:
            raise ValueError(f"lambda must be >= 0, got {self.lam}")
        if self.lr <= 0 or self.steps < 1 or self.record_points < 2 or self.init_std <= 0:
            raise ValueError(f"lr, init_std must be > 0, steps >= 1 and record_points >= 2, got {self}")


def objective_gradients(a: np.ndarray, b: np.ndarray, target: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """∇_A F and ∇_B F for F = ‖A Bᵀ − D‖² + λ/2(‖A‖² + ‖B‖²): (2 R B + λA, 2 Rᵀ A + λB), R = A Bᵀ − D."""
    residual = a @ b.T - target
    return 2 * residual @ b + lam * a, 2 * residual.T @ a + lam * b


def objective(a: np.ndarray, b: np.ndarray, target: np.ndarray, lam: float) -> float:
    """F(A, B), the loss gradient descent minimises."""
    return float(np.square(a @ b.T - target).sum() + 0.5 * lam * (np.square(a).sum() + np.square(b).sum()))


def simulate(run: FactorizedRun, rank_thresholds: tuple[float, ...], progress: bool = False) -> pd.DataFrame:
    """Run gradient descent in float64 and return the long-format record of the run.

    One row per recorded step and singular-value index (1 = largest). Per-step quantities (loss, gap,
    balance) repeat across the singular-value rows of their step so that the table reads on its own.
    """
    rng = np.random.default_rng(run.seed)
    n = len(run.targets)
    target = np.diag(np.asarray(run.targets, dtype=np.float64))
    a = run.init_std * rng.standard_normal((n, n))
    b = run.init_std * rng.standard_normal((n, n))

    record_at = set(recorded_steps(run.steps, run.record_points).tolist())
    snapshots_a, snapshots_b, losses = [], [], []
    progress_bar = tqdm(total=run.steps, desc=f"lambda={run.lam:g} seed={run.seed}", disable=not progress)
    # Overflow or NaN raises at once, so a diverging run stops at the step it diverges instead of writing garbage.
    step = 0
    try:
        with progress_bar, np.errstate(over="raise", invalid="raise"):
            for step in range(run.steps + 1):
                if step in record_at:
                    snapshots_a.append(a)
                    snapshots_b.append(b)
                    losses.append(objective(a, b, target, run.lam))
                if step == run.steps:
                    break
                grad_a, grad_b = objective_gradients(a, b, target, run.lam)
                a, b = a - run.lr * grad_a, b - run.lr * grad_b
                progress_bar.update()
    except FloatingPointError as error:
        raise FloatingPointError(
            f"gradient descent diverged at step {step} (lambda={run.lam}, lr={run.lr}): lower `lr`"
        ) from error

    stats = spectra.summarize(np.stack(snapshots_a), np.stack(snapshots_b), rank_thresholds)
    return _long_table(run, recorded_steps(run.steps, run.record_points), np.asarray(losses), stats)


def _long_table(run: FactorizedRun, steps: np.ndarray, losses: np.ndarray, stats: dict[str, np.ndarray]) -> pd.DataFrame:
    singular_values = stats["singular_values"]  # (n_records, n)
    n_records, n = singular_values.shape
    time = steps * run.lr
    balance = stats["balance_discrepancy"]
    fastest, slowest = balance_factors(run.targets, run.lam, run.lr)
    per_step = {
        "lambda": run.lam,
        "seed": run.seed,
        "learning_rate": run.lr,
        "step": steps,
        "time": time,
        "loss": losses,
        "frobenius_side": stats["frobenius_side"],
        "nuclear_norm": stats["nuclear_norm"],
        "gap": stats["gap"],
        "balance_discrepancy": balance,
        # gradient descent's exact per-step factors from the measured start (`balance_factors`), fastest and
        # slowest; with one factor (no value dies) both columns are the same prediction
        "balance_discrepancy_fastest": balance[0] * fastest ** steps,
        "balance_discrepancy_slowest": balance[0] * slowest ** steps,
        # its gradient-flow limit: ‖AᵀA − BᵀB‖(0) · e^{−2λt}
        "balance_discrepancy_flow": balance[0] * np.exp(-2 * run.lam * time),
        "effective_rank": stats["effective_rank"],
        "stable_rank": stats["stable_rank"],
        **{name: stats[name] for name in stats if name.startswith("rank_tol_")},
    }
    table = pd.DataFrame({key: np.repeat(np.broadcast_to(value, n_records), n) for key, value in per_step.items()})
    table.insert(5, "sv_index", np.tile(np.arange(1, n + 1), n_records))
    table.insert(6, "singular_value", singular_values.reshape(-1))
    table.insert(7, "singular_value_predicted", np.tile(predicted_singular_values(run.targets, run.lam), n_records))
    return table
