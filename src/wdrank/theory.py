"""The paper's closed forms, in NumPy alone (no torch, no experiment code): what the simulations and the trained runs
are checked against, and what the figures draw beside them.

Two factor matrices (Fig. 1), with D = diag(d_1..d_n):

    F(A, B) = ‖A Bᵀ − D‖²_F + λ/2 (‖A‖²_F + ‖B‖²_F)

Predictions (the paper, Sec. 3 and Fig. 1; each follows in a few lines from the gradients):
- balance: under gradient flow d/dt (AᵀA − BᵀB) = −2λ (AᵀA − BᵀB), so ‖AᵀA − BᵀB‖ ∝ e^{−2λt}, t = η · step.
  Gradient descent of step η has exact per-step factors of its own (`balance_factors`): one step maps
  Δ = AᵀA − BᵀB to (1 − ηλ)²Δ + 4η²(BᵀEᵀEB − AᵀEEᵀA), E = ABᵀ − D. Linearised at the minimiser, in the basis where
  ABᵀ is diagonal, a direction whose singular value survives (d_i > λ/2) has its balance mode (δa = −δb) multiplied
  by exactly 1 − 2ηλ per step; a direction whose value dies (d_i < λ/2) has a → 0, b → 0 with modes a ± b
  multiplied by 1 − ηλ ± 2ηd_i, so its balance a² − b² by (1 − ηλ)² − 4η²d_i². These factors lie in
  [1 − 2ηλ, e^{−2ηλ}): gradient descent balances faster than the flow, at the default η = 0.05 by 0.5–11%. (Dropping
  the gradient terms of the one-step map instead gives 1 − 2ηλ + 2η²λ², which is wrong: they are first order in the
  distance to the minimiser, as Δ is.)
- minimiser: the nuclear-norm problem ‖W − D‖² + λ‖W‖_* is solved by soft thresholding, so the singular
  values of A Bᵀ converge to max(d_i − λ/2, 0).

Under AdamW (decoupled decay, LoRA's optimiser) the balance law changes: one step is θ ← (1 − ηλ)θ − η m̂/√v̂.
For a pair (a, b) with loss ℓ(ab), g_a = ℓ'·b and g_b = ℓ'·a, and the ratio m̂/√v̂ does not see a gradient's scale:
while a and b change little over Adam's memory (1/(1 − β₂) steps), a and b take the same step ±η·u. So the gradient
never moves |a| − |b|; only the decay does: |a| − |b| = (|a₀| − |b₀|)(1 − ηλ)^t ≈ e^{−λ·η·t} (`adamw_balance`),
half of gradient flow's rate 2λ on the same clock λ·η·t, and a² − b² = (|a| − |b|)(|a| + |b|) follows it once
|a| + |b| settles. Adam's per-coordinate steps make no such statement for matrices; the LoRA experiment measures them.

Two scalar weights (appendix): on ½‖w − w*‖², L2 on w itself shrinks w* to w*/(1 + λ); on factorised weights
w_i = a_i b_i it acts, once balanced, as λ|w_i| and soft-thresholds (`l2_optimum`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from wdrank.recording import fitted_decay_rate


def predicted_singular_values(targets: tuple[float, ...], lam: float) -> np.ndarray:
    """Soft thresholding: max(d_i − λ/2, 0), in descending order."""
    return np.maximum(np.sort(np.asarray(targets, dtype=np.float64))[::-1] - lam / 2, 0.0)


def rate_per_step_prediction(lam: float, lr: float) -> float:
    """2ηλ, the gradient-flow rate per step of size η (first order in η)."""
    return 2 * lr * lam


def gradient_flow_balance(initial: float, lam: float, lr: float, steps: float) -> float:
    """The balance after `steps` of gradient flow on the clock t = lr · step: initial · e^{−2λ·lr·step}."""
    return initial * float(np.exp(-2 * lam * lr * steps))


def adamw_balance(initial: float, lam: float, lr: float, steps: float) -> float:
    """|a| − |b| of a factor pair after `steps` of AdamW (module docstring): initial · (1 − lr·λ)^steps."""
    return initial * (1 - lr * lam) ** steps


def balance_factors(targets: tuple[float, ...], lam: float, lr: float) -> tuple[float, float]:
    """The smallest and largest exact per-step factor of the balance AᵀA − BᵀB under gradient descent of step η = lr
    near the minimiser (module docstring): 1 − 2ηλ for the directions whose singular value survives (d_i ≥ λ/2),
    (1 − ηλ)² − 4η²d_i² for those whose value dies (d_i < λ/2; larger than 1 − 2ηλ). How a run mixes them depends on
    its start, so its fitted rate lies between −log of the two; with no value dying there is one factor."""
    targets = np.asarray(targets, dtype=np.float64)
    factors = [(1 - lr * lam) ** 2 - 4 * lr**2 * d**2 for d in targets[targets < lam / 2]]
    if (targets >= lam / 2).any():
        factors.append(1 - 2 * lr * lam)
    return min(factors), max(factors)


def fitted_balance_rate(table: pd.DataFrame, floor: float = 1e-9) -> float:
    """Per-step exponential decay rate of the balance discrepancy of one run's table."""
    per_step = table.drop_duplicates("step")
    return fitted_decay_rate(per_step["step"].to_numpy(), per_step["balance_discrepancy"].to_numpy(), floor)


def l2_optimum(target: tuple[float, float], lam: float, parametrisation: str) -> np.ndarray:
    """Minimiser of ½‖w − w*‖² + λ/2·(penalty): plain w*/(1 + λ); factorised (= λ|w| once balanced) the soft
    threshold sign(w*)·max(|w*| − λ, 0). Gradient descent and Adam + L2 converge here; AdamW need not."""
    target = np.asarray(target, dtype=np.float64)
    if parametrisation == "plain":
        return target / (1 + lam)
    return np.sign(target) * np.maximum(np.abs(target) - lam, 0.0)
