"""Separability threshold and double descent of frozen-feature classifiers: section 4.3 and
figure 6 of Gerace et al. (2022).

A frozen first layer (TF: transferred from the source task; RF: random) followed by an
L2-logistic head is a linear classifier on fixed features.  In the Gaussian covariate model
of :mod:`tasknb.replica` its test error eps_g(alpha, lam) (eq. 15) is a function of the sample
ratio alpha = M / H and the ridge lam.  As lam -> 0 the minimiser tends to the max-margin
separator while the training set is linearly separable, and to a finite-norm solution with a
positive training loss once it is not; the error curve bends (and, in some models, peaks) at
the boundary between the two regimes, the *linear separability threshold* alpha*.

**The threshold in closed form.**  Separability of {y_mu v_mu} is unchanged by any invertible
linear map of the features, so whitening v by Omega^(-1/2) reduces every Gaussian covariate
model (c, v) ~ N(0, [[I, Phi], [Phi^T, Omega]]), y = sign(c . theta / sqrt(L)), to the isotropic
one in which a single feature direction has correlation

    r = sqrt(b^T Omega^+ b / rho),     b = Phi^T theta / sqrt(L),  rho = ||theta||^2 / L      (1)

with the teacher field tau = c . theta / sqrt(L) (r is the correlation of tau with its best
linear predictor from the features) and the other H - 1 directions are pure noise.  For that
model, Candes and Sur (2020, Ann. Statist. 48, 27-42) show that the data are separable with
high probability iff H / M > h(r), i.e. alpha < alpha*, with

    alpha* = 1 / h(r),      h(r) = min_t E[(Z - t S)_+^2],      S = y . (V),                  (2)

where Z ~ N(0, 1) is independent of S = r |tau| + sqrt(1 - r^2) E (tau, E ~ N(0, 1)): S is the
label times the informative feature.  h(0) = 1/2 gives Cover's alpha* = 2; alpha* grows
with r.  The inner expectation over Z is explicit, E[(Z - s)_+^2] = (1 + s^2) Phi(-s) - s phi(s),
and the outer one is a 2-D quadrature over (|tau|, E).

**The threshold from the replica solver.**  Below alpha* the training loss of the minimiser
vanishes as lam -> 0 (roughly like lam), above it tends to a positive limit.  The
exponent s(alpha) = d log(train loss) / d log(lam) between the two smallest ridges is ~1 in
the separable phase and ~0 beyond; :func:`threshold_from_training_loss` returns the alpha
where s crosses 1/2 (linear interpolation on the grid), a finite-lam estimate of alpha*.

**The peak.**  The ridge penalty only matters where it cannot be replaced by the data, so
the damage done by a vanishing ridge, the *excess error*
eps_g(alpha; lam) - eps_g(alpha; lam_ref) over a well-regularised curve lam_ref, peaks at the
threshold and grows as lam decreases.  Whether eps_g itself has an interior local maximum
(a true interpolation peak) depends on the model; :func:`interior_maxima` reports it.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from ..replica import solve_saddle_point
from ..validation import check_positive_int, check_positive_real, check_real_in, check_seed

__all__ = ["SOLVER_DEFAULTS", "DoubleDescent", "teacher_feature_correlation", "candes_sur_threshold",
           "separability_threshold", "threshold_from_training_loss", "interior_maxima", "excess_error",
           "double_descent_curves", "simulate_heads"]

#: solver settings for small ridges: near the threshold at lam <= 1e-7 the default Newton phase
#: (after 300 damped steps) can fail; 800 damped steps put Newton close enough to converge.
SOLVER_DEFAULTS = {"newton_after": 800, "max_iter": 4000}


def _as_numpy(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from None
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return a


def _grid(x, name, minimum_size=1):
    a = _as_numpy(x, name)
    a = np.atleast_1d(a)
    if a.ndim != 1 or a.size < minimum_size:
        raise ValueError(f"{name} must be a 1-D array of at least {minimum_size} positive values, got shape {a.shape}")
    if np.any(a <= 0):
        raise ValueError(f"{name} must contain values > 0, got {a.tolist()}")
    if np.any(np.diff(a) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {a.tolist()}")
    return a


def teacher_feature_correlation(Omega, Phi, theta) -> float:
    """Correlation r of eq. (1) between the teacher field and its best linear predictor from the features.

    Omega (H, H) feature covariance, Phi (L, H) = E[c v^T], theta (L,) teacher.  Returns r in [0, 1]
    (the pseudo-inverse of Omega is used; r > 1 by more than 1e-6, impossible for moments of one
    Gaussian vector, raises ValueError).
    """
    Om, Ph, th = _as_numpy(Omega, "Omega"), _as_numpy(Phi, "Phi"), _as_numpy(theta, "theta")
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
    Om = _as_numpy(Omega, "Omega")
    r = teacher_feature_correlation(Om, Phi, theta)
    ev = np.linalg.eigvalsh(0.5 * (Om + Om.T))
    rank = int((ev > 1e-12 * max(float(ev.max()), 1e-300)).sum())
    return candes_sur_threshold(r) * rank / Om.shape[0], r


def threshold_from_training_loss(alpha, lam, train_loss, converged=None) -> float:
    """Finite-lam estimate of alpha* from the replica training loss (module docstring).

    alpha (A,) increasing, lam (R,) with R >= 2, train_loss (A, R) [the solver's
    ``train_loss`` for one teacher], converged (A, R) booleans (default: all).  Uses the two
    smallest ridges: s = log(l_small / l_big) / log(lam_small / lam_big) and returns the first
    alpha where s crosses 1/2, linearly interpolated.  Raises ValueError if a point used is not
    converged or s never crosses 1/2 on the grid (the threshold is outside it).
    """
    alpha = _grid(alpha, "alpha", 2)
    lam_a = _as_numpy(lam, "lam").ravel()
    if lam_a.size < 2 or np.any(lam_a <= 0):
        raise ValueError(f"lam must hold at least two ridges > 0, got {lam_a.tolist()}")
    tl = _as_numpy(train_loss, "train_loss")
    if tl.shape != (alpha.size, lam_a.size):
        raise ValueError(f"train_loss must have shape (len(alpha), len(lam)) = {(alpha.size, lam_a.size)}, got {tl.shape}")
    i1, i0 = np.argsort(lam_a)[:2]                                            # smallest, second smallest
    if converged is not None:
        conv = np.asarray(converged, dtype=bool)
        if conv.shape != tl.shape:
            raise ValueError(f"converged must have shape {tl.shape}, got {conv.shape}")
        bad = ~(conv[:, i0] & conv[:, i1])
        if bad.any():
            raise ValueError(f"the solver did not converge at alpha = {alpha[bad].tolist()} for the two smallest lam")
    s = np.log(np.maximum(tl[:, i1], 1e-300) / np.maximum(tl[:, i0], 1e-300)) / math.log(lam_a[i1] / lam_a[i0])
    below = s < 0.5
    if not below.any() or below[0]:
        raise ValueError(f"the training-loss exponent does not cross 1/2 inside the alpha grid "
                         f"[{alpha[0]:g}, {alpha[-1]:g}] (exponents {np.round(s, 3).tolist()}); widen the grid")
    j = int(np.argmax(below))
    return float(alpha[j - 1] + (s[j - 1] - 0.5) / (s[j - 1] - s[j]) * (alpha[j] - alpha[j - 1]))


def interior_maxima(alpha, eps) -> list[tuple[float, float]]:
    """Strict interior local maxima (alpha, eps) of a curve eps(alpha): the interpolation peaks; [] if none."""
    alpha, eps = _grid(alpha, "alpha", 3), _as_numpy(eps, "eps").ravel()
    if eps.size != alpha.size:
        raise ValueError(f"eps must have one value per alpha ({alpha.size}), got {eps.size}")
    i = np.nonzero((eps[1:-1] > eps[:-2]) & (eps[1:-1] > eps[2:]))[0] + 1
    return [(float(alpha[k]), float(eps[k])) for k in i]


def excess_error(eps, lam, lam_ref=None) -> np.ndarray:
    """eps(alpha; lam) - eps(alpha; lam_ref) for every lam, shape (A, R) like ``eps``.

    lam_ref defaults to the largest ridge of ``lam`` (which must be one of them).
    """
    eps = _as_numpy(eps, "eps")
    lam = _as_numpy(lam, "lam").ravel()
    if eps.ndim != 2 or eps.shape[1] != lam.size:
        raise ValueError(f"eps must have shape (A, len(lam) = {lam.size}), got {eps.shape}")
    j = int(np.argmax(lam)) if lam_ref is None else int(np.argmin(np.abs(lam - lam_ref)))
    if lam_ref is not None and not np.isclose(lam[j], lam_ref, rtol=1e-9):
        raise ValueError(f"lam_ref must be one of lam = {lam.tolist()}, got {lam_ref}")
    return eps - eps[:, j:j + 1]


@dataclass
class DoubleDescent:
    """Replica error curves of one feature map over (alpha, lam), and its threshold.

    ``alpha`` (A,), ``lam`` (R,) in decreasing order (largest ridge first); ``eps``,
    ``train_loss``, ``train_error``, ``converged``, ``iterations`` of shape (A, R);
    ``threshold`` alpha* of eqs. (1)-(2) (lam -> 0), ``r`` the correlation of eq. (1),
    ``threshold_replica`` the finite-lam estimate of :func:`threshold_from_training_loss`
    (``None`` when it cannot be formed, with ``note`` saying why).
    """

    alpha: np.ndarray
    lam: np.ndarray
    eps: np.ndarray
    train_loss: np.ndarray
    train_error: np.ndarray
    converged: np.ndarray
    iterations: np.ndarray
    threshold: float
    r: float
    threshold_replica: float | None
    note: str = ""

    def excess(self) -> np.ndarray:
        """eps minus the curve of the largest ridge, (A, R)."""
        return excess_error(self.eps, self.lam)

    def excess_peak(self, j: int) -> tuple[float, float]:
        """(alpha, height) of the largest excess error at ridge index j (the peak of the bump)."""
        ex = self.excess()[:, j]
        k = int(np.argmax(ex))
        return float(self.alpha[k]), float(ex[k])

    def replica_thresholds(self) -> list[float | None]:
        """Finite-lam estimates of alpha* from each adjacent pair of ridges (lam[j], lam[j+1]),
        largest ridges first; ``None`` where the exponent does not cross 1/2 on the grid.
        They approach ``threshold`` from below as the ridges shrink."""
        out = []
        for j in range(len(self.lam) - 1):
            sl = slice(j, j + 2)
            try:
                out.append(threshold_from_training_loss(self.alpha, self.lam[sl], self.train_loss[:, sl],
                                                        self.converged[:, sl]))
            except ValueError:
                out.append(None)
        return out

    def non_converged(self) -> list[tuple[float, float]]:
        """(alpha, lam) of every point where the solver did not converge; [] when all did."""
        return [(float(self.alpha[i]), float(self.lam[j])) for i, j in np.argwhere(~self.converged)]


def double_descent_curves(Omega, Phi, theta, alphas, lams, **solver_kwargs) -> DoubleDescent:
    """Test error of an L2-logistic head on one feature map over the whole (alpha x lam) grid.

    One call to :func:`tasknb.replica.solve_saddle_point` (eqs. 9-15 of the paper) for every
    point, with :data:`SOLVER_DEFAULTS` unless overridden; alpha* from eqs. (1)-(2).

    Parameters
    ----------
    Omega (H, H), Phi (L, H), theta (L,) : the Gaussian-equivalent moments (one teacher).
    alphas : increasing 1-D array of M / H values (at least 3).
    lams : 1-D array of at least 2 distinct ridges > 0 (any order; stored largest first).

    Non-converged points are kept (flagged in ``converged``, listed by ``non_converged()``)
    and a RuntimeWarning names them; nothing is silently NaN.
    """
    alphas = _grid(alphas, "alphas", 3)
    lams = _as_numpy(lams, "lams").ravel()
    if lams.size < 2 or np.any(lams <= 0) or np.unique(lams).size != lams.size:
        raise ValueError(f"lams must hold at least two distinct ridges > 0, got {lams.tolist()}")
    lams = np.sort(lams)[::-1].copy()
    th = _as_numpy(theta, "theta")
    if th.ndim != 1:
        raise ValueError(f"theta must be one teacher of shape (L,), got shape {th.shape}")
    kw = {**SOLVER_DEFAULTS, **solver_kwargs}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                        # reported below, by point
        sp = solve_saddle_point(Omega, Phi, th, alphas, lams, loss="logistic", **kw)
    threshold, r = separability_threshold(Omega, Phi, th)
    try:
        thr_rep, note = threshold_from_training_loss(alphas, lams, sp.train_loss, sp.converged), ""
    except ValueError as err:
        thr_rep, note = None, str(err)
    dd = DoubleDescent(alphas, lams, sp.eps_g, sp.train_loss, sp.train_error, sp.converged, sp.iterations,
                       threshold, r, thr_rep, note)
    bad = dd.non_converged()
    if bad:
        warnings.warn(f"double_descent_curves: the solver did not converge at (alpha, lam) = {bad}",
                      RuntimeWarning, stacklevel=2)
    return dd


def simulate_heads(W1: torch.Tensor, chmm, means: torch.Tensor, M_grid, lam: float, repeats: int = 4,
                   M_test: int = 4000, seed: int = 0, max_iter: int = 300) -> dict[str, np.ndarray]:
    """Logistic heads on one frozen, centred first layer: training and test errors vs M.

    W1 (H, D) first layer, ``chmm`` its CHMM (target task), ``means`` (H,) the feature mean
    to subtract (from :func:`tasknb.gaussian_equivalence.estimate_covariances`), ``M_grid``
    training-set sizes, ``repeats`` independent training sets per size (fitted together by
    :func:`tasknb.learners.fit_logistic_head`).  Returns a dict of (len(M_grid), repeats)
    arrays: ``train_error``, ``test_error`` and ``converged`` (booleans).
    """
    from ..gaussian_equivalence import centred_features
    from ..learners import fit_logistic_head
    from ..feature_transfer import stack_samples
    from ..validation import check_int_sequence

    if not isinstance(W1, torch.Tensor) or W1.dim() != 2:
        raise ValueError(f"W1 must be a (H, D) tensor, got {getattr(W1, 'shape', type(W1).__name__)}")
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    lam = check_positive_real("lam", lam)
    repeats = check_positive_int("repeats", repeats)
    M_test = check_positive_int("M_test", M_test)
    seed = check_seed("seed", seed)
    H = W1.shape[0]
    W = W1.unsqueeze(0).expand(repeats, -1, -1)
    mu = means.to(W1.dtype).unsqueeze(0).expand(repeats, -1)
    Xt, yt = stack_samples([chmm], M_test, "target", seed + 50_000)
    Vt = centred_features(W1.unsqueeze(0), Xt, mu[:1])[0].double()
    out = {k: np.zeros((len(M_grid), repeats)) for k in ("train_error", "test_error")}
    out["converged"] = np.zeros((len(M_grid), repeats), dtype=bool)
    for i, M in enumerate(M_grid):
        X, y = stack_samples([chmm] * repeats, M, "target", seed + 60_000 + 1000 * i)
        fit = fit_logistic_head(centred_features(W, X, mu), y, lam, max_iter=max_iter, warn=False)
        pred = Vt @ fit.w.double().T / math.sqrt(H)                         # (M_test, repeats)
        out["test_error"][i] = (torch.sign(pred) != yt[0].double().unsqueeze(1)).double().mean(0).cpu().numpy()
        out["train_error"][i] = fit.train_error.cpu().numpy()
        out["converged"][i] = fit.converged.cpu().numpy()
    return out
