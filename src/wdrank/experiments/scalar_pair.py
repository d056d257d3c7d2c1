"""Appendix figure: two scalar weights on a convex loss, plain (w1, w2) or factorised (w_i = a_i b_i).

Loss ½‖w − w*‖² plus weight decay λ, under AdamW (decoupled: w ← w − lr·λ·w) or Adam with an L2 term (coupled:
λ·w enters the gradient that Adam rescales). On plain weights L2 shrinks both towards 0 proportionally
(w_i → w*_i / (1 + λ) at the L2 optimum); on factorised weights λ/2(a² + b²) ≥ λ|ab| acts like an L1 penalty,
soft-thresholding w_i → sign(w*_i)·max(|w*_i| − λ, 0): the smaller coordinate becomes exactly zero (sparsity).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from wdrank.optim import ALGORITHMS

PARAMETRISATIONS = ("plain", "factorised")


@dataclass(frozen=True)
class ScalarPairRun:
    parametrisation: str  # plain | factorised
    algorithm: str  # adamw | adam_l2
    lam: float
    target: tuple[float, float]  # w*
    start: tuple[float, float]  # w at step 0 (factorised: a = b = sign·sqrt|w|, balanced)
    lr: float
    steps: int

    def __post_init__(self) -> None:
        if self.parametrisation not in PARAMETRISATIONS:
            raise ValueError(f"parametrisation must be one of {PARAMETRISATIONS}, got {self.parametrisation!r}")
        if self.algorithm not in ALGORITHMS[:2]:
            raise ValueError(f"algorithm must be adamw or adam_l2, got {self.algorithm!r}")


def simulate(run: ScalarPairRun) -> pd.DataFrame:
    """The trajectory of (w1, w2), one row per step, under the chosen parametrisation and optimiser."""
    start = torch.tensor(run.start, dtype=torch.float64)
    target = torch.tensor(run.target, dtype=torch.float64)
    if run.parametrisation == "plain":
        params = [start.clone().requires_grad_()]
    else:
        root = start.abs().sqrt()
        params = [(start.sign() * root).requires_grad_(), root.clone().requires_grad_()]
    optimizer_class = torch.optim.AdamW if run.algorithm == "adamw" else torch.optim.Adam
    optimizer = optimizer_class(params, lr=run.lr, weight_decay=run.lam)

    def weights() -> torch.Tensor:
        return params[0] if run.parametrisation == "plain" else params[0] * params[1]

    trajectory = np.empty((run.steps + 1, 2))
    for step in range(run.steps + 1):
        current = weights()
        trajectory[step] = current.detach().numpy()
        if step == run.steps:
            break
        optimizer.zero_grad()
        (0.5 * (current - target).square().sum()).backward()
        optimizer.step()
    return pd.DataFrame({
        "parametrisation": run.parametrisation, "optimizer": run.algorithm, "lambda": run.lam,
        "step": np.arange(run.steps + 1), "w1": trajectory[:, 0], "w2": trajectory[:, 1],
    })


def all_runs(lambdas: list[float], target: tuple[float, float], start: tuple[float, float], lr: float,
             steps: int) -> pd.DataFrame:
    """Every (parametrisation, optimiser, λ) combination, concatenated."""
    return pd.concat([simulate(ScalarPairRun(p, a, lam, target, start, lr, steps))
                      for p in PARAMETRISATIONS for a in ("adamw", "adam_l2") for lam in lambdas],
                     ignore_index=True)
