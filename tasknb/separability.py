"""The linear separability threshold of a Gaussian covariate model, in closed form (Candes & Sur).

A frozen feature map v (H features) of inputs whose labels come from a teacher,
y = sign(c . theta / sqrt(L)), with (c, v) jointly Gaussian,

    (c, v) ~ N(0, [[I_L, Phi], [Phi^T, Omega]]),       Omega (H, H),  Phi (L, H),  theta (L,),

gives M labelled points {y_mu v_mu}.  They are linearly separable (a w with y_mu v_mu . w > 0
for every mu exists) with high probability when alpha = M / H is below a threshold alpha*, and
not above it.  Separability is unchanged by any invertible linear map of the features, so
whitening by Omega^(-1/2) reduces the model to an isotropic one in which a single feature
direction has correlation

    r = sqrt(b^T Omega^+ b / rho),     b = Phi^T theta / sqrt(L),  rho = ||theta||^2 / L      (1)

with the teacher field tau = c . theta / sqrt(L) (r is the correlation of tau with its best
linear predictor from the features), the other H - 1 directions being pure noise.  For that
model Candes and Sur (2020, Ann. Statist. 48, 27-42) show that the data are separable iff
H / M > h(r), i.e.

    alpha* = 1 / h(r),      h(r) = min_t E[(Z - t S)_+^2],                                   (2)

where Z ~ N(0, 1) is independent of S = r |tau| + sqrt(1 - r^2) E (tau, E ~ N(0, 1)), the
label times the informative feature.  h(0) = 1/2 gives Cover's alpha* = 2; alpha* grows with
r and diverges as r -> 1 (noiseless labels).  This is the lam -> 0 threshold at which an
L2-logistic head on the features (eq. 6 of Gerace et al. 2022) goes from the max-margin
separator to a finite-norm solution with positive training loss (their section 4.3).

:func:`teacher_feature_correlation` computes r (eq. 1), :func:`candes_sur_threshold` alpha*(r)
(eq. 2), :func:`separability_threshold` both from (Omega, Phi, theta), counting samples per
non-degenerate feature.
"""
from __future__ import annotations

import math

import numpy as np

from .validation import check_finite_array, check_positive_int, check_real_in

__all__ = ["teacher_feature_correlation", "candes_sur_threshold", "separability_threshold"]


def teacher_feature_correlation(Omega, Phi, theta) -> float:
    """Correlation r of eq. (1) between the teacher field and its best linear predictor from the features.

    Omega (H, H) feature covariance, Phi (L, H) = E[c v^T], theta (L,) teacher.  Returns r in [0, 1]
    (the pseudo-inverse of Omega is used; r > 1 by more than 1e-6, impossible for moments of one
    Gaussian vector, raises ValueError).
    """
    Om, Ph, th = check_finite_array("Omega", Omega), check_finite_array("Phi", Phi), check_finite_array("theta", theta)
    if Om.ndim != 2 or Om.shape[0] != Om.shape[1]:
        raise ValueError(f"Omega must be a square (H, H) matrix, got shape {Om.shape}")
    if Ph.ndim != 2 or Ph.shape[1] != Om.shape[0]:
        raise ValueError(f"Phi must have shape (L, H) with H = {Om.shape[0]}, got {Ph.shape}")
    if th.shape != (Ph.shape[0],):
        raise ValueError(f"theta must have shape (L,) with L = {Ph.shape[0]}, got {th.shape}")
    L = th.size
    rho = float(th @ th) / L
    if rho <= 0:
        raise ValueError("theta must not be zero")
    b = Ph.T @ th / math.sqrt(L)
    r2 = float(b @ np.linalg.pinv(0.5 * (Om + Om.T), hermitian=True) @ b) / rho
    if r2 > 1 + 1e-6:
        raise ValueError(f"Omega, Phi, theta are not the moments of one Gaussian vector (r^2 = {r2:.4f} > 1)")
    return float(math.sqrt(min(max(r2, 0.0), 1.0)))


def candes_sur_threshold(r: float, n_nodes: int = 801) -> float:
    """Separability threshold alpha* = 1 / min_t E[(Z - t S)_+^2] of eq. (2) for correlation r in [0, 1).

    The expectation over Z is explicit; the one over S = r|tau| + sqrt(1 - r^2) E uses a tensor
    trapezoid rule with ``n_nodes`` nodes per axis (|tau| on [0, 9], E on [-9, 9]); the
    minimum over t >= 0 (the objective is convex in t) by golden-section search.
    r = 0 gives Cover's 2.  r -> 1 (noiseless labels) diverges; r must be < 1.
    """
    r = check_real_in("r", r, 0.0, 1.0)
    if r >= 1.0 - 1e-9:
        raise ValueError("r must be < 1: with noiseless labels (r = 1) the data are separable at every alpha")
    n_nodes = check_positive_int("n_nodes", n_nodes, minimum=51)
    from scipy.optimize import minimize_scalar
    from scipy.special import ndtr

    a = np.linspace(0.0, 9.0, n_nodes)
    wa = np.full(n_nodes, a[1] - a[0])
    wa[[0, -1]] *= 0.5
    wa *= 2 * np.exp(-0.5 * a**2) / math.sqrt(2 * math.pi)                   # half-normal |tau|
    e = np.linspace(-9.0, 9.0, n_nodes)
    we = np.full(n_nodes, e[1] - e[0])
    we[[0, -1]] *= 0.5
    we *= np.exp(-0.5 * e**2) / math.sqrt(2 * math.pi)
    S = (r * a[:, None] + math.sqrt(1 - r * r) * e[None, :]).ravel()
    W = (wa[:, None] * we[None, :]).ravel()
    W /= W.sum()

    def h(t):
        s = t * S
        return float(W @ ((1 + s * s) * ndtr(-s) - s * np.exp(-0.5 * s * s) / math.sqrt(2 * math.pi)))

    res = minimize_scalar(h, bounds=(0.0, 50.0), method="bounded", options={"xatol": 1e-9})
    return 1.0 / min(res.fun, h(0.0))


def separability_threshold(Omega, Phi, theta) -> tuple[float, float]:
    """(alpha*, r): the linear separability threshold of the Gaussian covariate model, eqs. (1)-(2).

    Counts samples per *non-degenerate* feature: alpha* refers to M / H with H = Omega.shape[0]
    when Omega has full rank (a rank-deficient Omega of rank R gives alpha* R / H).
    """
    Om = check_finite_array("Omega", Omega)
    r = teacher_feature_correlation(Om, Phi, theta)
    ev = np.linalg.eigvalsh(0.5 * (Om + Om.T))
    rank = int((ev > 1e-12 * max(float(ev.max()), 1e-300)).sum())
    return candes_sur_threshold(r) * rank / Om.shape[0], r
