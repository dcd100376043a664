"""The replica solver: ridge against its closed form, logistic against simulations, bad inputs."""
import math

import numpy as np
import pytest
import torch

from tasknb.training import fit_logistic_head
from tasknb.replica import solve_saddle_point


def _isotropic(H=200, kappa=0.8, seed=0):
    """Omega = I, Phi = kappa I (v = kappa c + noise): the textbook case with a closed form."""
    g = np.random.default_rng(seed)
    theta = g.standard_normal(H)
    return np.eye(H), kappa * np.eye(H), theta


def _ridge_closed_form(alpha, lam, rho, b2):
    V = (-(lam + alpha - 1) + math.sqrt((lam + alpha - 1) ** 2 + 4 * lam)) / (2 * lam)
    c = math.sqrt(2 / (math.pi * rho))
    mh = alpha * c / (1 + V)
    m = mh * b2 * V
    k = alpha / (1 + V) ** 2
    q = V**2 * (mh**2 * b2 + k * (1 - 2 * c * m)) / (1 - V**2 * k)
    return V, m, q


@pytest.mark.parametrize("alpha, lam", [(0.3, 0.1), (1.0, 0.01), (2.5, 1.0), (5.0, 1e-3)])
def test_ridge_theory_equals_closed_form(alpha, lam):
    Om, Ph, th = _isotropic()
    sp = solve_saddle_point(Om, Ph, th, alpha, lam, loss="square", tol=1e-12)
    rho = float(th @ th) / len(th)
    b2 = float(((Ph.T @ th) ** 2).sum()) / len(th)
    V, m, q = _ridge_closed_form(alpha, lam, rho, b2)
    assert bool(sp.converged)
    np.testing.assert_allclose([sp.V, sp.m, sp.q], [V, m, q], rtol=1e-8)
    assert abs(sp.eps_g - math.acos(m / math.sqrt(rho * q)) / math.pi) < 1e-9


def _gaussian_covariates(L=150, H=300, seed=0):
    """A random non-isotropic Gaussian covariate model: v = W^T c / sqrt(L) + noise."""
    g = np.random.default_rng(seed)
    W = g.standard_normal((L, H))
    noise = 0.5 * np.diag(g.uniform(0.2, 2.0, H))
    Phi = W / math.sqrt(L)                      # E[c v^T]
    Omega = W.T @ W / L + noise                  # E[v v^T]
    theta = g.standard_normal(L)
    return Omega, Phi, theta, W, noise


def _simulate_logistic(Omega, Phi, theta, W, noise, alpha, lam, K=12, seed=1):
    L, H = Phi.shape
    M = int(round(alpha * H))
    g = torch.Generator().manual_seed(seed)
    c = torch.randn(K, M, L, generator=g, dtype=torch.float64)
    eps = torch.randn(K, M, H, generator=g, dtype=torch.float64) * torch.sqrt(torch.tensor(np.diag(noise)))
    V = c @ torch.tensor(W) / math.sqrt(L) + eps
    y = torch.where(c @ torch.tensor(theta) >= 0, 1.0, -1.0).double()
    w = fit_logistic_head(V, y, lam, max_iter=500, tol=1e-9).w.numpy()        # (K, H)
    m = w @ Phi.T @ theta / math.sqrt(L * H)
    q = np.einsum("kh,hj,kj->k", w, Omega, w) / H
    rho = theta @ theta / L
    return np.arccos(m / np.sqrt(rho * q)) / np.pi


@pytest.mark.parametrize("alpha", [0.5, 2.0, 4.0])
def test_logistic_theory_matches_simulation(alpha):
    Om, Ph, th, W, noise = _gaussian_covariates()
    lam = 0.05
    sp = solve_saddle_point(Om, Ph, th, alpha, lam)
    sim = _simulate_logistic(Om, Ph, th, W, noise, alpha, lam)
    assert bool(sp.converged)
    # finite H = 300: the gap stays within a percent of error (3 standard errors allowed)
    sem = sim.std(ddof=1) / math.sqrt(len(sim))
    assert abs(sim.mean() - float(sp.eps_g)) < max(0.01, 3 * sem), (sim.mean(), float(sp.eps_g))


def test_grid_and_several_teachers_in_one_call():
    Om, Ph, th, *_ = _gaussian_covariates(L=60, H=120)
    g = np.random.default_rng(3)
    th2 = np.stack([th, 0.5 * th + math.sqrt(0.75) * g.standard_normal(len(th))])
    alphas, lams = np.array([0.5, 1.0, 3.0]), np.array([0.01, 0.1])
    sp = solve_saddle_point(Om, Ph, th2, alphas, lams)
    assert sp.eps_g.shape == (2, 3, 2) and bool(sp.converged.all())
    one = solve_saddle_point(Om, Ph, th2[1], alphas[2], lams[0])
    assert abs(float(one.eps_g) - sp.eps_g[1, 2, 0]) < 1e-6
    # more data -> lower error; torch input gives the same numbers as NumPy input
    assert np.all(np.diff(sp.eps_g[0, :, 1]) < 0)
    tsp = solve_saddle_point(torch.tensor(Om), torch.tensor(Ph), torch.tensor(th2[1]), alphas[2], lams[0])
    assert abs(float(tsp.eps_g) - float(one.eps_g)) < 1e-12


def test_non_convergence_is_reported_not_hidden():
    Om, Ph, th, *_ = _gaussian_covariates(L=60, H=120)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        sp = solve_saddle_point(Om, Ph, th, [0.5, 2.0], 1e-4, max_iter=3)
    assert not sp.converged.any() and np.all(np.isfinite(sp.eps_g))


@pytest.mark.parametrize("mutate, message", [
    (lambda O, P, t: (-O, P, t), "positive semi-definite"),
    (lambda O, P, t: (O[:, :-1], P, t), "Omega must be a square"),
    (lambda O, P, t: (O, P[:, :-1], t), r"Phi must have shape \(L, H\)"),
    (lambda O, P, t: (O, P, t[:-1]), r"theta must have shape \(L,\) or \(T, L\)"),
    (lambda O, P, t: (O + np.triu(np.ones_like(O), 1), P, t), "Omega must be symmetric"),
    (lambda O, P, t: (O, 10 * P, t), "not the second moments of one Gaussian vector"),
])
def test_bad_matrices(mutate, message):
    Om, Ph, th, *_ = _gaussian_covariates(L=20, H=40)
    O, P, t = mutate(Om, Ph, th)
    with pytest.raises(ValueError, match=message):
        solve_saddle_point(O, P, t, 1.0, 0.1)


@pytest.mark.parametrize("alpha, lam, loss, message", [
    (0.0, 0.1, "logistic", "alpha must be > 0"),
    ([1.0, -2.0], 0.1, "logistic", "alpha must be > 0"),
    (1.0, 0.0, "logistic", "lam must be > 0"),
    (1.0, [[0.1]], "logistic", "lam must be a positive scalar or a 1-D array"),
    (1.0, 0.1, "hinge", "loss must be one of 'logistic', 'square'"),
])
def test_bad_grid(alpha, lam, loss, message):
    Om, Ph, th, *_ = _gaussian_covariates(L=20, H=40)
    with pytest.raises(ValueError, match=message):
        solve_saddle_point(Om, Ph, th, alpha, lam, loss=loss)


def test_newton_phase_converges_at_the_separability_threshold():
    Om, Ph, th, *_ = _gaussian_covariates(L=100, H=200)
    alphas = np.logspace(-0.5, 1, 16)
    sp = solve_saddle_point(Om, Ph, th, alphas, 1e-4)
    assert sp.converged.all(), sp.iterations
    assert (sp.iterations > 300).any()                      # some points needed the Newton phase
    # below the threshold the data are separable (zero training error), above it they are not
    sep = sp.train_error < 1e-6
    assert sep[0] and not sep[-1] and np.all(np.diff(sep.astype(int)) <= 0)
    assert np.all(np.isfinite(sp.eps_g)) and np.all((sp.eps_g > 0) & (sp.eps_g < 0.5))
