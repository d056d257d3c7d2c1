"""The factored spectral core against dense SVD of the formed product, and the metrics' closed forms."""

import numpy as np
import pytest

from wdrank import spectra


def dense_reference(a, b):
    return spectra.dense_product_singular_values(a, b)


@pytest.mark.parametrize("shape", [(7, 3), (5, 5), (3, 6), (4, 16, 4), (2, 3, 20, 8)])
def test_random_factors_match_dense_svd(shape):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(shape), rng.standard_normal(shape)
    np.testing.assert_allclose(spectra.product_singular_values(a, b), dense_reference(a, b), rtol=1e-12, atol=1e-12)


def test_exactly_low_rank_product_has_zero_tail():
    rng = np.random.default_rng(1)
    d, r, true_rank = 32, 8, 3
    # A = U X, B = V Y with inner dimension 3: rank(A Bᵀ) = 3 although the factors are d x 8.
    a = rng.standard_normal((d, true_rank)) @ rng.standard_normal((true_rank, r))
    b = rng.standard_normal((d, r))
    sv = spectra.product_singular_values(a, b)
    np.testing.assert_allclose(sv, dense_reference(a, b), atol=1e-10 * sv[0])
    assert np.all(sv[true_rank:] < 1e-12 * sv[0])
    assert spectra.numerical_rank(sv, 1e-6) == true_rank


def test_zero_factors_give_zero_everything():
    a = np.zeros((6, 3))
    stats = spectra.summarize(a, a, (1e-2, 1e-3))
    for name in ("nuclear_norm", "frobenius_side", "gap", "balance_discrepancy", "effective_rank", "stable_rank"):
        assert stats[name] == 0, name
    assert stats["rank_tol_0.01"] == 0 and stats["rank_tol_0.001"] == 0


@pytest.mark.parametrize("scale", [1e-150, 1e-8, 1e8, 1e150])
def test_badly_scaled_factors(scale):
    """One factor huge, the other tiny (the product is O(1)); and both tiny or huge."""
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 24, 6))
    reference = dense_reference(a, b)
    np.testing.assert_allclose(spectra.product_singular_values(a * scale, b / scale), reference, rtol=1e-10)
    if 1e-8 <= scale <= 1e8:  # the dense product itself stays representable
        np.testing.assert_allclose(
            spectra.product_singular_values(a * scale, b * scale), reference * scale**2, rtol=1e-10
        )


def test_ill_conditioned_spectrum_keeps_small_singular_values():
    """Singular values spanning 12 decades are all recovered in float64."""
    rng = np.random.default_rng(3)
    d, r = 40, 6
    u, _ = np.linalg.qr(rng.standard_normal((d, r)))
    v, _ = np.linalg.qr(rng.standard_normal((d, r)))
    sigma = np.logspace(0, -12, r)
    sv = spectra.product_singular_values(u * sigma, v)
    np.testing.assert_allclose(sv, sigma, rtol=1e-6)


def test_rank_metrics_closed_forms():
    flat = np.array([[2.0, 2.0, 2.0, 2.0]])
    assert spectra.effective_rank(flat)[0] == pytest.approx(4)
    assert spectra.stable_rank(flat)[0] == pytest.approx(4)
    spiky = np.array([[3.0, 1.0, 0.0]])
    p = np.array([0.75, 0.25])
    assert spectra.effective_rank(spiky)[0] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert spectra.stable_rank(spiky)[0] == pytest.approx(10 / 9)
    assert spectra.numerical_rank(np.array([1.0, 0.02, 0.005, 0.0]), 1e-2) == 2
    assert spectra.numerical_rank(np.array([1.0, 0.02, 0.005, 0.0]), 1e-3) == 3
    with pytest.raises(ValueError, match="threshold"):
        spectra.numerical_rank(flat, 1.5)


def test_gap_is_nonnegative_and_vanishes_exactly_for_balanced_factors():
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 50, 16, 4))
    stats = spectra.summarize(a, b, (1e-2,))
    assert np.all(stats["gap"] >= -1e-12)
    # Balanced factors of any W = U S Vᵀ: A = U S^½ Q, B = V S^½ Q for orthogonal Q.
    u, s, vt = np.linalg.svd(a[0] @ b[0].T)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    balanced_a, balanced_b = u[:, :4] * np.sqrt(s[:4]) @ q, vt[:4].T * np.sqrt(s[:4]) @ q
    balanced = spectra.summarize(balanced_a, balanced_b, (1e-2,))
    assert balanced["balance_discrepancy"] == pytest.approx(0, abs=1e-10)
    assert balanced["gap"] == pytest.approx(0, abs=1e-10)
    assert balanced["nuclear_norm"] == pytest.approx(s.sum())


def test_summary_of_unbalanced_factors_matches_the_definitions():
    """summarize computes balance, Frobenius side, norms and ranks from the QR factors: check each against its
    definition on the factors themselves and on the dense product, for random unbalanced heads (b ≠ a in scale)."""
    rng = np.random.default_rng(5)
    a, b = rng.standard_normal((4, 9, 3)), 3.0 * rng.standard_normal((4, 9, 3))
    stats = spectra.summarize(a, b, (1e-2, 1e-3))
    gram_difference = np.swapaxes(a, -1, -2) @ a - np.swapaxes(b, -1, -2) @ b
    np.testing.assert_allclose(stats["balance_discrepancy"], np.linalg.norm(gram_difference, "fro", axis=(-2, -1)),
                               rtol=1e-12)
    assert np.all(stats["balance_discrepancy"] > 1)  # genuinely unbalanced
    np.testing.assert_allclose(stats["frobenius_side"], 0.5 * (np.square(a).sum((1, 2)) + np.square(b).sum((1, 2))),
                               rtol=1e-12)
    products = a @ np.swapaxes(b, -1, -2)  # (4, 9, 9)
    dense = np.linalg.svd(products, compute_uv=False)
    np.testing.assert_allclose(stats["nuclear_norm"], dense.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(stats["spectral_norm"], dense[:, 0], rtol=1e-12)
    np.testing.assert_allclose(stats["gap"], stats["frobenius_side"] - dense.sum(-1), rtol=1e-10)
    np.testing.assert_allclose(stats["stable_rank"], np.square(products).sum((1, 2)) / dense[:, 0] ** 2, rtol=1e-10)
    np.testing.assert_array_equal(stats["rank_tol_0.01"], (dense > 1e-2 * dense[:, :1]).sum(-1))


def test_accepts_torch_tensors():
    torch = pytest.importorskip("torch")
    a, b = torch.randn(3, 10, 4, generator=torch.Generator().manual_seed(0)).double(), torch.ones(3, 10, 4).double()
    np.testing.assert_allclose(spectra.product_singular_values(a, b), dense_reference(a.numpy(), b.numpy()), atol=1e-12)


def test_mismatched_shapes_name_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 2\) and \(4, 3\)"):
        spectra.product_singular_values(np.ones((4, 2)), np.ones((4, 3)))
    with pytest.raises(ValueError, match="matrices"):
        spectra.product_singular_values(np.ones(4), np.ones(4))


def test_torch_qr_path_for_large_stacks_gives_the_same_statistics(monkeypatch):
    rng = np.random.default_rng(6)
    a, b = rng.standard_normal((2, 3, 64, 8))
    numpy_path = spectra.summarize(a, b, (1e-2,))
    monkeypatch.setattr(spectra, "TORCH_QR_MIN_ELEMENTS", 0)
    torch_path = spectra.summarize(a, b, (1e-2,))
    for name, value in numpy_path.items():
        np.testing.assert_allclose(torch_path[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def dense_statistics(a, b, thresholds):
    """Every statistic from the formed d x d product and the factors themselves, in float64: the reference."""
    sv = dense_reference(a, b)
    frobenius = 0.5 * ((a**2).sum((-1, -2)) + (b**2).sum((-1, -2)))
    gram_diff = np.swapaxes(a, -1, -2) @ a - np.swapaxes(b, -1, -2) @ b
    return {"nuclear_norm": sv.sum(-1), "frobenius_side": frobenius, "gap": frobenius - sv.sum(-1),
            "balance_discrepancy": np.sqrt((gram_diff**2).sum((-1, -2))), "spectral_norm": sv[..., 0],
            "effective_rank": spectra.effective_rank(sv), "stable_rank": spectra.stable_rank(sv),
            **{spectra.rank_column(t): spectra.numerical_rank(sv, t) for t in thresholds}}


def factor_pair(kind, rng, heads=4, d=96, r=16):
    if kind == "random":
        return rng.standard_normal((2, heads, d, r))
    if kind == "low-rank":  # rank 5 < r: singular Gram matrices (the eigendecomposition path)
        return rng.standard_normal((2, heads, d, 5)) @ rng.standard_normal((5, r))
    if kind == "zero":
        return np.zeros((2, heads, d, r))
    if kind == "ill-conditioned":  # singular values of each factor from 1 to 1e-6
        u = np.linalg.qr(rng.standard_normal((2, heads, d, r)))[0]
        return u * np.logspace(0, -6, r)
    # badly scaled: one factor tiny, the other huge, the product O(1) (Gram matrices square the scale, so weights
    # up to ~1e150 in magnitude are representable: any trained network's are far inside)
    return rng.standard_normal((2, heads, d, r)) * np.array([1e-60, 1e60])[:, None, None, None]


@pytest.mark.parametrize("kind", ["random", "low-rank", "zero", "ill-conditioned", "badly scaled"])
def test_statistics_from_gram_matrices_match_the_dense_reference(kind):
    """The audit's route (Gram matrices, Cholesky or eigendecomposition, the core's SVD): every statistic within
    1e-9 relative of the dense float64 reference (relative to the Frobenius side where the reference is ~0: the gap
    and balance of balanced or zero factors), rank columns exactly."""
    a, b = factor_pair(kind, np.random.default_rng(3))
    thresholds = (1e-2, 1e-3)
    grams = [np.swapaxes(f, -1, -2) @ f for f in (a, b)]
    ours = spectra.summarize_grams(*grams, thresholds)
    reference = dense_statistics(a, b, thresholds)
    scale = reference["frobenius_side"]
    for name, expected in reference.items():
        if name.startswith("rank_tol_"):
            np.testing.assert_array_equal(ours[name], expected, err_msg=name)
        elif name in ("gap", "balance_discrepancy"):
            assert np.all(np.abs(ours[name] - expected) <= 1e-9 * scale), name
        else:
            np.testing.assert_allclose(ours[name], expected, rtol=1e-9, atol=0, err_msg=name)
