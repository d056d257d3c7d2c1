"""Spectra of factorised products M = A Bᵀ, batched over heads, without forming M.

The paper (Kobayashi et al. 2024, Thm. 1 and Sec. 3) compares the L2 penalty on the two factors,
the *Frobenius side* ½(‖A‖²_F + ‖B‖²_F), with the nuclear norm ‖A Bᵀ‖_* of their product: the
first is always >= the second, with equality iff the factors are balanced (AᵀA = BᵀB). Attention
heads are exactly such products (M_QK = W_Q W_Kᵀ, M_OV = W_V W_O), with A, B of shape d x r, r = d_head.

Singular values of A Bᵀ come from a thin QR of each factor and an SVD of the small core:
A = Q_A R_A, B = Q_B R_B  =>  A Bᵀ = Q_A (R_A R_Bᵀ) Q_Bᵀ, and Q_A, Q_B have orthonormal columns, so
σ(A Bᵀ) = σ(R_A R_Bᵀ). Cost O(d r²) per head instead of O(d³) for the dense d x d SVD.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

# NumPy, not torch: this module is pure linear algebra, imports in a fraction of a second (short Snakemake
# jobs), and takes weights from any framework (np.asarray of a CPU torch tensor shares its memory).

# Factor stacks at least this large go through torch's QR (MKL in the x86 wheels: 2.7x NumPy's on a 32 x 4096 x 128
# stack, measured on the development machine); smaller ones stay in NumPy so that short jobs never import torch.
# (The audit of stored models takes the Gram route, `summarize_grams`, instead.)
TORCH_QR_MIN_ELEMENTS = 1 << 22
# The two products of an attention head, in the order every table and figure shows them: W_Q W_Kᵀ and W_V W_O.
HEAD_PRODUCTS = ("QK", "OV")


def _as_factors(a: ArrayLike, b: ArrayLike, dtype: DTypeLike) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a, dtype=dtype), np.asarray(b, dtype=dtype)
    if a.ndim < 2 or b.ndim < 2:
        raise ValueError(f"factors must be (..., d, r) matrices, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape != b.shape:
        raise ValueError(
            f"factors A and B must have the same shape (..., d, r) for M = A Bᵀ, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    return a, b


def _r_factors(a: ArrayLike, b: ArrayLike, dtype: DTypeLike) -> tuple[np.ndarray, np.ndarray]:
    """R of the thin QR of each factor, (..., k, r) with k = min(d, r). Q has orthonormal columns, so R carries
    everything the statistics need: AᵀA = R_AᵀR_A and ‖A‖_F = ‖R_A‖_F."""
    a, b = _as_factors(a, b, dtype)
    return _qr_r(a), _qr_r(b)


def _qr_r(x: np.ndarray) -> np.ndarray:
    if x.size >= TORCH_QR_MIN_ELEMENTS:
        import torch

        return torch.linalg.qr(torch.from_numpy(x), mode="r")[1].numpy()
    return np.linalg.qr(x, mode="r")


def _singular_values_from_r(r_a: np.ndarray, r_b: np.ndarray) -> np.ndarray:
    return np.linalg.svd(r_a @ np.swapaxes(r_b, -1, -2), compute_uv=False)  # SVD of the (..., k, k) core


def product_singular_values(a: ArrayLike, b: ArrayLike, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Singular values of A Bᵀ, descending, for A, B of shape (..., d, r); returns (..., min(d, r)).

    Computed in `dtype` (float64 by default, so that ranks at tight thresholds are not rounding noise).
    """
    return _singular_values_from_r(*_r_factors(a, b, dtype))


def numerical_rank(singular_values: np.ndarray, threshold: float) -> np.ndarray:
    """Number of σ_i > threshold · σ_max (0 for the zero matrix); integer array of shape (...)."""
    if not 0 < threshold < 1:
        raise ValueError(f"relative rank threshold must lie in (0, 1), got {threshold}")
    sigma_max = singular_values[..., :1]
    return ((singular_values > threshold * sigma_max) & (sigma_max > 0)).sum(-1)


def effective_rank(singular_values: np.ndarray) -> np.ndarray:
    """exp of the entropy of σ/Σσ (Roy & Vetterli 2007); 0 for the zero matrix."""
    total = singular_values.sum(-1, keepdims=True)
    p = singular_values / np.maximum(total, np.finfo(singular_values.dtype).tiny)
    entropy = -(p * np.log(np.maximum(p, np.finfo(p.dtype).tiny))).sum(-1)
    return np.where(total[..., 0] > 0, np.exp(entropy), np.zeros_like(entropy))


def stable_rank(singular_values: np.ndarray) -> np.ndarray:
    """‖M‖²_F / ‖M‖²_2 = Σσ² / σ_max²; 0 for the zero matrix."""
    sigma_max_sq = singular_values[..., 0] ** 2
    ratio = (singular_values**2).sum(-1) / np.maximum(sigma_max_sq, np.finfo(singular_values.dtype).tiny)
    return np.where(sigma_max_sq > 0, ratio, np.zeros_like(ratio))


def rank_column(threshold: float) -> str:
    """Column name of the numerical rank at a relative threshold, e.g. 'rank_tol_0.01'."""
    return f"rank_tol_{threshold:g}"


def summarize(
    a: np.ndarray,
    b: np.ndarray,
    rank_thresholds: Sequence[float],
    dtype: DTypeLike = np.float64,
) -> dict[str, np.ndarray]:
    """Every per-product statistic the pipeline reports, each an array of shape (...).

    Keys: nuclear_norm, frobenius_side ½(‖A‖²_F + ‖B‖²_F) (the weight-decay penalty per unit λ), gap
    (= frobenius_side − nuclear_norm >= 0), balance_discrepancy ‖AᵀA − BᵀB‖_F (zero iff balanced; decays as
    e^{−2λt} under gradient flow), spectral_norm, effective_rank, stable_rank, and one `rank_tol_<τ>` per threshold.
    The singular values themselves are under 'singular_values' with shape (..., k).
    """
    return _statistics(*_r_factors(a, b, dtype), rank_thresholds)  # one QR per factor serves every statistic


def gram_root(gram: np.ndarray) -> np.ndarray:
    """R with RᵀR = G for a stack of symmetric positive semi-definite (..., r, r) Gram matrices G = AᵀA: the
    Cholesky factor where G is positive definite, else √Λ Uᵀ from G = U Λ Uᵀ (rank-deficient and zero factors).

    A = Q R for some Q with orthonormal columns on A's range, so R stands in for A in every statistic of
    `summarize`: ‖A‖_F = ‖R‖_F, AᵀA = RᵀR and σ(A Bᵀ) = σ(R_A R_Bᵀ)."""
    try:
        return np.swapaxes(np.linalg.cholesky(gram), -1, -2)
    except np.linalg.LinAlgError:
        if gram.ndim > 2:
            return np.stack([gram_root(g) for g in gram])
        eigenvalues, vectors = np.linalg.eigh(gram)
        return np.sqrt(np.clip(eigenvalues, 0, None))[:, None] * vectors.T


def summarize_grams(gram_a: np.ndarray, gram_b: np.ndarray, rank_thresholds: Sequence[float]
                    ) -> dict[str, np.ndarray]:
    """`summarize` from the factors' Gram matrices AᵀA and BᵀB (..., r, r), float64: what the audit computes, since
    a Gram matrix is one symmetric product of the stored weights (no QR, no copy into LAPACK's layout). Squaring
    the condition number costs nothing the statistics see: they agree with dense SVD of the formed product to
    1e-9 relative (tests/test_spectra.py), rank columns exactly."""
    return _statistics(gram_root(gram_a), gram_root(gram_b), rank_thresholds)


def _statistics(r_a: np.ndarray, r_b: np.ndarray, rank_thresholds: Sequence[float]) -> dict[str, np.ndarray]:
    """Every statistic of `summarize` from R_A, R_B with R_AᵀR_A = AᵀA, R_BᵀR_B = BᵀB."""
    sv = _singular_values_from_r(r_a, r_b)
    nuclear = sv.sum(-1)
    frob = 0.5 * (np.square(r_a).sum((-1, -2)) + np.square(r_b).sum((-1, -2)))
    gram_diff = np.swapaxes(r_a, -1, -2) @ r_a - np.swapaxes(r_b, -1, -2) @ r_b  # AᵀA − BᵀB, (..., r, r)
    stats = {
        "singular_values": sv,
        "nuclear_norm": nuclear,
        "frobenius_side": frob,
        "gap": frob - nuclear,
        "balance_discrepancy": np.sqrt(np.square(gram_diff).sum((-1, -2))),
        "spectral_norm": sv[..., 0],
        "effective_rank": effective_rank(sv),
        "stable_rank": stable_rank(sv),
    }
    for tau in rank_thresholds:
        stats[rank_column(tau)] = numerical_rank(sv, tau)
    return stats


def dense_product_singular_values(a: ArrayLike, b: ArrayLike, dtype: DTypeLike = np.float64) -> np.ndarray:
    """Reference: singular values of the formed d x d product (O(d³)); used by tests and benchmarks."""
    a, b = _as_factors(a, b, dtype)
    sv = np.linalg.svd(a @ np.swapaxes(b, -1, -2), compute_uv=False)
    return sv[..., : min(a.shape[-1], a.shape[-2])]

