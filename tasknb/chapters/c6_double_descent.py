"""Separability threshold and double descent of frozen-feature classifiers: section 4.3 and
figure 6 of Gerace et al. (2022).

A frozen first layer (TF: transferred from the source task; RF: random) followed by an
L2-logistic head is a linear classifier on fixed features.  In the Gaussian covariate model
of :mod:`tasknb.replica` its test error eps_g(alpha, lam) (eq. 15) is a function of the sample
ratio alpha = M / H and the ridge lam.  As lam -> 0 the minimiser tends to the max-margin
separator while the training set is linearly separable, and to a finite-norm solution with a
positive training loss once it is not; the error curve bends (and, in some models, peaks) at
the boundary between the two regimes, the *linear separability threshold* alpha*.

**The threshold in closed form.**  Whitening the features reduces every Gaussian covariate model
to an isotropic one with a single informative direction of correlation r with the teacher
field; Candes and Sur (2020) give its threshold alpha*(r), Cover's 2 at r = 0.  That
computation is the kernel :func:`tasknb.separability.separability_threshold` (eqs. (1)-(2)
of :mod:`tasknb.separability`), which :func:`double_descent_curves` calls.

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

from ..chmm import CHMM
from ..device import derived_seed, get_device
from ..feature_transfer import train_source
from ..frozen_heads import simulate_heads  # re-exported: the simulated points of figure 6
from ..gaussian_equivalence import estimate_covariances
from ..networks.stacks import init_two_layer
from ..replica import solve_saddle_point
from ..separability import separability_threshold
from ..training import SOURCE_DEFAULT, TrainingConfig
from ..validation import (check_finite_array, check_increasing_positive_reals, check_positive_int,
                          check_positive_real, check_real_in, check_seed)

__all__ = ["DoubleDescent", "threshold_from_training_loss", "interior_maxima", "peak_prominence",
           "excess_error", "double_descent_curves", "simulate_heads", "PeakScan", "peak_scan"]


def _grid(x, name, minimum_size=1):
    a = check_finite_array(name, x)
    a = np.atleast_1d(a)
    if a.ndim != 1 or a.size < minimum_size:
        raise ValueError(f"{name} must be a 1-D array of at least {minimum_size} positive values, got shape {a.shape}")
    if np.any(a <= 0):
        raise ValueError(f"{name} must contain values > 0, got {a.tolist()}")
    if np.any(np.diff(a) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {a.tolist()}")
    return a


def threshold_from_training_loss(alpha, lam, train_loss, converged=None) -> float:
    """Finite-lam estimate of alpha* from the replica training loss (module docstring).

    alpha (A,) increasing, lam (R,) with R >= 2, train_loss (A, R) [the solver's
    ``train_loss`` for one teacher], converged (A, R) booleans (default: all).  Uses the two
    smallest ridges: s = log(l_small / l_big) / log(lam_small / lam_big) and returns the first
    alpha where s crosses 1/2, linearly interpolated.  Raises ValueError if a point used is not
    converged or s never crosses 1/2 on the grid (the threshold is outside it).
    """
    alpha = _grid(alpha, "alpha", 2)
    lam_a = check_finite_array("lam", lam).ravel()
    if lam_a.size < 2 or np.any(lam_a <= 0):
        raise ValueError(f"lam must hold at least two ridges > 0, got {lam_a.tolist()}")
    tl = check_finite_array("train_loss", train_loss)
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


def peak_prominence(eps) -> float:
    """Height of the tallest strict interior local maximum of a curve above the higher of the two
    minima around it (the lowest point to its left and the lowest point to its right): 0 when the
    curve has no interior maximum.  A plateau that ends in a drop has prominence 0; a peak of the
    error of double descent has prominence > 0."""
    e = check_finite_array("eps", eps).ravel()
    if e.size < 3:
        raise ValueError(f"eps must hold at least 3 values, got {e.size}")
    best = 0.0
    for k in np.nonzero((e[1:-1] > e[:-2]) & (e[1:-1] > e[2:]))[0] + 1:
        best = max(best, float(e[k] - max(e[:k].min(), e[k + 1:].min())))
    return best


def interior_maxima(alpha, eps) -> list[tuple[float, float]]:
    """Strict interior local maxima (alpha, eps) of a curve eps(alpha): the interpolation peaks; [] if none."""
    alpha, eps = _grid(alpha, "alpha", 3), check_finite_array("eps", eps).ravel()
    if eps.size != alpha.size:
        raise ValueError(f"eps must have one value per alpha ({alpha.size}), got {eps.size}")
    i = np.nonzero((eps[1:-1] > eps[:-2]) & (eps[1:-1] > eps[2:]))[0] + 1
    return [(float(alpha[k]), float(eps[k])) for k in i]


def excess_error(eps, lam, lam_ref=None) -> np.ndarray:
    """eps(alpha; lam) - eps(alpha; lam_ref) for every lam, shape (A, R) like ``eps``.

    lam_ref defaults to the largest ridge of ``lam`` (which must be one of them).
    """
    eps = check_finite_array("eps", eps)
    lam = check_finite_array("lam", lam).ravel()
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
    ``train_loss``, ``train_error``, ``converged``, ``iterations`` of shape (A, R), and the
    overlaps ``q`` (the head's norm in the feature metric, w^T Omega w / H) and ``m`` of the
    saddle point, (A, R);
    ``threshold`` alpha* (lam -> 0) and ``r`` the teacher-feature correlation, both from
    :func:`tasknb.separability.separability_threshold`,
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
    q: np.ndarray | None = None
    m: np.ndarray | None = None

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
    point (``solver_kwargs`` go to the solver, whose defaults converge at lam = 1e-7); alpha* from
    :func:`tasknb.separability.separability_threshold`.

    Parameters
    ----------
    Omega (H, H), Phi (L, H), theta (L,) : the Gaussian-equivalent moments (one teacher).
    alphas : increasing 1-D array of M / H values (at least 3).
    lams : 1-D array of at least 2 distinct ridges > 0 (any order; stored largest first).

    Non-converged points are kept (flagged in ``converged``, listed by ``non_converged()``)
    and a RuntimeWarning names them; nothing is silently NaN.
    """
    alphas = _grid(alphas, "alphas", 3)
    lams = check_finite_array("lams", lams).ravel()
    if lams.size < 2 or np.any(lams <= 0) or np.unique(lams).size != lams.size:
        raise ValueError(f"lams must hold at least two distinct ridges > 0, got {lams.tolist()}")
    lams = np.sort(lams)[::-1].copy()
    th = check_finite_array("theta", theta)
    if th.ndim != 1:
        raise ValueError(f"theta must be one teacher of shape (L,), got shape {th.shape}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                        # reported below, by point
        sp = solve_saddle_point(Omega, Phi, th, alphas, lams, loss="logistic", **solver_kwargs)
    threshold, r = separability_threshold(Omega, Phi, th)
    try:
        thr_rep, note = threshold_from_training_loss(alphas, lams, sp.train_loss, sp.converged), ""
    except ValueError as err:
        thr_rep, note = None, str(err)
    dd = DoubleDescent(alphas, lams, sp.eps_g, sp.train_loss, sp.train_error, sp.converged, sp.iterations,
                       threshold, r, thr_rep, note, q=sp.q, m=sp.m)
    bad = dd.non_converged()
    if bad:
        warnings.warn(f"double_descent_curves: the solver did not converge at (alpha, lam) = {bad}",
                      RuntimeWarning, stacklevel=2)
    return dd


@dataclass
class PeakScan:
    """Where the test error itself peaks: replica curves at one ridge for TF and RF features over
    several widths H / L and K realizations.

    ``H_over_L`` (n_w,), ``H`` (n_w,) int, ``alpha`` (A,), ``lam`` the ridge; for each learner
    name in ("TF", "RF"): ``eps[name]`` and ``q[name]`` (n_w, K, A) test error and norm overlap,
    ``threshold[name]`` and ``r[name]`` (n_w, K) the closed-form alpha* and teacher-feature
    correlation, ``prominence[name]`` (n_w, K) the :func:`peak_prominence` of each curve,
    ``converged`` (n_w, K, A) every TF and RF point converged.
    """

    H_over_L: np.ndarray
    H: np.ndarray
    alpha: np.ndarray
    lam: float
    eps: dict
    q: dict
    threshold: dict
    r: dict
    prominence: dict
    converged: np.ndarray


def peak_scan(H_over_L, alphas, lam: float = 1e-7, D: int = 200, L: int = 50, eta: float = 1.0, rho: float = 0.3,
              q: float = 1.0, M_source: int = 2000, source: TrainingConfig = SOURCE_DEFAULT, realizations: int = 3,
              n_samples: int = 20_000, seed: int = 0, device="auto") -> PeakScan:
    """Replica test error of TF and RF heads at one small ridge, for several widths H = H_over_L * L.

    For each width, K source nets are trained on K CHMMs (``CHMM(D, L, L, eta, rho, q, seed,
    realization=k)``, :func:`tasknb.feature_transfer.train_source`), RF first layers are drawn
    independently (``derived_seed(seed, "init.rf")``), the Monte-Carlo moments of both on the target
    task are estimated (``derived_seed(seed, "monte-carlo", k)``) and the saddle point is solved on
    the ``alphas`` grid.  Returns a :class:`PeakScan`.
    """
    ratios = check_increasing_positive_reals("H_over_L", H_over_L)
    alphas = _grid(alphas, "alphas", 3)
    lam = check_positive_real("lam", lam)
    D, L = check_positive_int("D", D), check_positive_int("L", L)
    eta, rho, q = check_real_in("eta", eta, 0.0, 1.0), check_real_in("rho", rho, 0.0, 1.0), check_real_in("q", q, -1.0, 1.0)
    M_source = check_positive_int("M_source", M_source)
    K = check_positive_int("realizations", realizations)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    seed = check_seed("seed", seed)
    if not isinstance(source, TrainingConfig):
        raise ValueError(f"source must be a tasknb.training.TrainingConfig, got {type(source).__name__}")
    Hs = [max(1, int(round(x * L))) for x in ratios]
    if len(set(Hs)) != len(Hs):
        raise ValueError(f"H_over_L gives repeated widths H = round(H_over_L * L) = {Hs} at L = {L}")
    dev = get_device(device)
    chmms = [CHMM(D, L, L, eta, rho, q, seed=seed, realization=k, device=dev) for k in range(K)]
    shape = (len(Hs), K, alphas.size)
    eps = {n: np.zeros(shape) for n in ("TF", "RF")}
    qq = {n: np.zeros(shape) for n in ("TF", "RF")}
    thr = {n: np.zeros(shape[:2]) for n in ("TF", "RF")}
    rr = {n: np.zeros(shape[:2]) for n in ("TF", "RF")}
    prom = {n: np.zeros(shape[:2]) for n in ("TF", "RF")}
    conv = np.ones(shape, dtype=bool)
    for i, H in enumerate(Hs):
        res, _ = train_source(chmms, H, M_source, source, seed=seed, progress=False)
        W = {"TF": res.params.W1, "RF": init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1}
        for name, W1 in W.items():
            for k, chmm in enumerate(chmms):
                mom = estimate_covariances(W1[k], chmm, n_samples=n_samples, seed=derived_seed(seed, "monte-carlo", k))
                sp = solve_saddle_point(mom.Omega, mom.Phi, mom.theta, alphas, lam, device=dev)
                eps[name][i, k], qq[name][i, k] = np.ravel(sp.eps_g), np.ravel(sp.q)
                conv[i, k] &= np.ravel(sp.converged)
                thr[name][i, k], rr[name][i, k] = separability_threshold(mom.Omega, mom.Phi, mom.theta)
                prom[name][i, k] = peak_prominence(eps[name][i, k])
    return PeakScan(ratios, np.asarray(Hs), alphas, lam, eps, qq, thr, rr, prom, conv)
