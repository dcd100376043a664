"""Separability threshold and double-descent curves: closed form vs LP separability, invariance, determinism, bad inputs."""
import math

import numpy as np
import pytest
from scipy.optimize import linprog

from tasknb.chapters.c6_double_descent import (double_descent_curves, excess_error, interior_maxima,
                                               threshold_from_training_loss)
from tasknb.separability import candes_sur_threshold, separability_threshold


def _isotropic(H=30, kappa=0.8):
    return np.eye(H), kappa * np.eye(H), np.ones(H)


def _separable(A):
    res = linprog(np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(A.shape[0]),
                  bounds=[(None, None)] * A.shape[1], method="highs")
    return res.status == 0


def test_cover_limit_and_monotone_in_r():
    assert abs(candes_sur_threshold(0.0) - 2.0) < 0.01
    vals = [candes_sur_threshold(r, n_nodes=301) for r in (0.0, 0.5, 0.8, 0.9)]
    assert all(b > a for a, b in zip(vals, vals[1:]))


def test_threshold_matches_linear_programming_separability():
    """v = kappa c + noise, y = sign(c_1): separable below alpha*, not above (H = 80, LP feasibility)."""
    kappa, H = 0.8, 80
    a_star, r = separability_threshold(np.eye(H), kappa * np.eye(H), np.eye(H)[0] * math.sqrt(H))
    assert abs(r - kappa) < 1e-9 and 3.0 < a_star < 3.3
    g = np.random.default_rng(0)
    frac = {}
    for f in (0.75, 1.35):
        M, hits = int(f * a_star * H), []
        for _ in range(6):
            c = g.standard_normal((M, H))
            v = kappa * c + math.sqrt(1 - kappa**2) * g.standard_normal((M, H))
            hits.append(_separable(np.sign(c[:, :1]) * v))
        frac[f] = np.mean(hits)
    assert frac[0.75] == 1.0 and frac[1.35] == 0.0, frac


def test_threshold_is_invariant_under_linear_maps_of_the_features():
    g = np.random.default_rng(1)
    L, H = 20, 40
    W = g.standard_normal((L, H)) / math.sqrt(L)
    Om = W.T @ W + np.diag(g.uniform(0.2, 1.0, H))
    th = g.standard_normal(L)
    A = g.standard_normal((H, H)) + 3 * np.eye(H)
    a1, r1 = separability_threshold(Om, W, th)
    a2, r2 = separability_threshold(A @ Om @ A.T, W @ A.T, th)
    assert abs(r1 - r2) < 1e-8 and abs(a1 - a2) < 1e-8


def test_curves_deterministic_and_consistent():
    Om, Ph, th = _isotropic()
    alphas = np.arange(2.0, 4.01, 0.5)
    d1 = double_descent_curves(Om, Ph, th, alphas, [1e-2, 1e-3])
    d2 = double_descent_curves(Om, Ph, th, alphas, [1e-3, 1e-2])
    np.testing.assert_array_equal(d1.eps, d2.eps)
    assert d1.lam.tolist() == [1e-2, 1e-3] and d1.converged.all() and d1.non_converged() == []
    assert d1.eps.shape == (alphas.size, 2)
    assert np.all(d1.excess()[:, 0] == 0)
    # the training loss falls with the ridge much faster below the threshold than above it
    ratio = d1.train_loss[:, 1] / d1.train_loss[:, 0]
    assert ratio[0] < 0.5 < ratio[-1]


def test_threshold_from_training_loss_on_a_synthetic_table():
    alpha = np.array([1.0, 2.0, 3.0, 4.0])
    lam = np.array([1e-3, 1e-4])
    # exponents 1, 1, 0, 0 -> crossing of 1/2 half-way between 2 and 3
    tl = np.array([[1e-2, 1e-3], [2e-2, 2e-3], [0.1, 0.1], [0.2, 0.2]])
    assert abs(threshold_from_training_loss(alpha, lam, tl) - 2.5) < 1e-12
    with pytest.raises(ValueError, match="does not cross"):
        threshold_from_training_loss(alpha, lam, np.full((4, 2), 0.1))
    with pytest.raises(ValueError, match="did not converge"):
        threshold_from_training_loss(alpha, lam, tl, np.zeros((4, 2), dtype=bool))


def test_interior_maxima_and_excess():
    assert interior_maxima([1, 2, 3, 4], [0.3, 0.4, 0.2, 0.1]) == [(2.0, 0.4)]
    assert interior_maxima([1, 2, 3], [0.3, 0.2, 0.1]) == []
    ex = excess_error(np.array([[0.3, 0.4], [0.2, 0.25]]), [1e-2, 1e-4])
    np.testing.assert_allclose(ex, [[0, 0.1], [0, 0.05]])


@pytest.mark.parametrize("kwargs, match", [
    (dict(alphas=[1.0, 2.0]), "alphas"),
    (dict(alphas=[3.0, 2.0, 1.0]), "increasing"),
    (dict(alphas=[-1.0, 1.0, 2.0]), "alphas"),
    (dict(lams=[1e-3]), "lams"),
    (dict(lams=[1e-3, -1.0]), "lams"),
    (dict(lams=[1e-3, 1e-3]), "lams"),
])
def test_bad_inputs(kwargs, match):
    Om, Ph, th = _isotropic(10)
    args = dict(alphas=[1.0, 2.0, 3.0], lams=[1e-2, 1e-3]) | kwargs
    with pytest.raises(ValueError, match=match):
        double_descent_curves(Om, Ph, th, **args)


def test_bad_moments_and_r():
    with pytest.raises(ValueError, match="r must be"):
        candes_sur_threshold(1.0)
    with pytest.raises(ValueError, match="r must be"):
        candes_sur_threshold(-0.1)
    with pytest.raises(ValueError, match="Phi"):
        separability_threshold(np.eye(5), np.eye(4), np.ones(4))
    with pytest.raises(ValueError, match="not the moments"):
        separability_threshold(0.01 * np.eye(5), np.eye(5), np.ones(5))


def test_peak_prominence():
    from tasknb.chapters.c6_double_descent import peak_prominence

    assert peak_prominence([0.5, 0.4, 0.3, 0.2]) == 0.0                        # monotone
    assert peak_prominence([0.3, 0.3, 0.3, 0.2]) == 0.0                        # plateau then drop
    assert abs(peak_prominence([0.30, 0.32, 0.35, 0.25, 0.2]) - 0.05) < 1e-12  # rises 0.05 above its left minimum
    assert abs(peak_prominence([0.40, 0.35, 0.37, 0.30]) - 0.02) < 1e-12       # a bump on a descent
    with pytest.raises(ValueError, match="at least 3"):
        peak_prominence([0.1, 0.2])


def test_peak_scan_shapes_determinism_and_bad_inputs():
    from tasknb.chapters.c6_double_descent import peak_scan
    from tasknb.training import TrainingConfig

    kw = dict(D=40, L=10, M_source=200, source=TrainingConfig(2, 1e-2, 50), realizations=2, n_samples=2000,
              lam=1e-4, device="cpu")
    a = peak_scan([0.5, 1.0], [1.0, 2.0, 3.0], **kw)
    assert a.eps["TF"].shape == (2, 2, 3) and a.prominence["RF"].shape == (2, 2) and a.H.tolist() == [5, 10]
    assert a.converged.all() and np.all(a.threshold["RF"] >= 2.0 - 0.05)
    b = peak_scan([0.5, 1.0], [1.0, 2.0, 3.0], **kw)
    np.testing.assert_array_equal(a.eps["TF"], b.eps["TF"])
    with pytest.raises(ValueError, match="H_over_L"):
        peak_scan([1.0, 0.5], [1.0, 2.0, 3.0], **kw)
    with pytest.raises(ValueError, match="lam"):
        peak_scan([0.5], [1.0, 2.0, 3.0], **{**kw, "lam": 0.0})
