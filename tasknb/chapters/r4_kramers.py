"""Kramers escape times (Achille, Mbeng & Soatto 2019, "R", section 6, eq. 16).

Particles start in the left minimum x = -a of the double well U = dU ((x/a)^2 - 1)^2 and run overdamped Langevin
dynamics dx = -U'(x) dt + sqrt(2D) dW until they first reach the other minimum x >= +a.  Their mean first-passage
time is compared with the exact 1-D quadrature (``tasknb.langevin.mean_first_passage_1d``) and with Kramers' law
1/k, k = sqrt(U''_min |U''_saddle|) / (2 pi) exp(-dU / D).

``escape_sweep``       one ``first_passage_times`` call for all D of a sweep at once (one diffusion constant per
                       particle), particles split into ``n_groups`` independent groups -> :class:`EscapeSweep`
                       (per-group mean times, their grand means and standard errors, exact and Kramers times)
``barrier_sweep``      the same over barrier heights at one D (one call per landscape)
``fit_log_tau``        per-group least-squares slope and intercept of log tau against 1 / D (or dU)
``survival_frame``     one slider frame: the landscape with its Boltzmann density at D, and the simulated survival
                       probability of the escape against exp(-t / tau_exact) and exp(-k t)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from tasknb.device import derived_seed
from tasknb.langevin import DoubleWell, first_passage_times, kramers_rate, mean_first_passage_1d
from tasknb.validation import check_increasing_positive_reals, check_positive_int, check_positive_real

__all__ = ["EscapeSweep", "escape_sweep", "barrier_sweep", "fit_log_tau", "survival_frame", "horizon_steps"]


@dataclass
class EscapeSweep:
    """Escape times over a sweep.  ``x`` the swept value (D or barrier), ``ratio`` = dU / D per point;
    ``group_tau`` (n_points, n_groups) the mean escape time of each independent group of particles,
    ``tau``/``se`` their grand mean and standard error, ``exact`` the quadrature, ``kramers`` = 1/k;
    ``times`` (n_points, n_per_point) every particle's time; ``n_not_arrived`` the censored count."""
    name: str
    x: np.ndarray
    ratio: np.ndarray
    barrier: np.ndarray
    D: np.ndarray
    width: float
    dt: float
    group_tau: np.ndarray
    tau: np.ndarray
    se: np.ndarray
    exact: np.ndarray
    kramers: np.ndarray
    times: np.ndarray
    n_not_arrived: int

    @property
    def group_kramers_ratio(self) -> np.ndarray:
        """tau_sim * k per group (n_points, n_groups)."""
        return self.group_tau / self.kramers[:, None]

    @property
    def group_exact_ratio(self) -> np.ndarray:
        return self.group_tau / self.exact[:, None]


def horizon_steps(exact_tau: float, dt: float, factor: float = 12.0) -> int:
    """max_steps of a run: ``factor`` mean escape times (the exponential tail leaves ~e^-12 behind)."""
    return int(math.ceil(factor * exact_tau / dt))


def _groups(times: np.ndarray, n_groups: int) -> np.ndarray:
    t = np.asarray(times, dtype=float)
    if not np.all(np.isfinite(t)):
        # a censored group mean would be biased low: the caller raises max_steps instead
        raise RuntimeError(f"{int((~np.isfinite(t)).sum())} particles never escaped; raise horizon_factor")
    return t.reshape(n_groups, -1).mean(1)


def _summarise(name, x, barrier, D, width, dt, times, n_groups, n_not):
    n_points = len(x)
    per = times.shape[1]
    if per % n_groups:
        raise ValueError(f"n_particles ({per}) must be a multiple of n_groups ({n_groups})")
    group_tau = np.stack([_groups(times[i], n_groups) for i in range(n_points)])
    exact, kr = [], []
    for b, d in zip(barrier, D):
        dw = DoubleWell(b, width)
        exact.append(mean_first_passage_1d(dw, -width, width, d))
        kr.append(1.0 / kramers_rate(b, dw.curvature_min, dw.curvature_saddle, d))
    tau = group_tau.mean(1)
    se = group_tau.std(1, ddof=1) / math.sqrt(n_groups)
    return EscapeSweep(name, np.asarray(x, float), np.asarray(barrier) / np.asarray(D), np.asarray(barrier, float),
                       np.asarray(D, float), float(width), float(dt), group_tau, tau, se, np.array(exact),
                       np.array(kr), times, n_not)


def escape_sweep(D_values, barrier: float = 1.0, width: float = 1.0, dt: float = 0.01, n_particles: int = 2000,
                 n_groups: int = 10, seed: int = 0, purpose: str = "r4.escape", device="auto",
                 horizon_factor: float = 12.0, progress: bool = False) -> EscapeSweep:
    """Escape times from -width to +width for every D of ``D_values`` in ONE ensemble (``n_particles`` per D,
    one diffusion constant per particle).  The noise stream is ``derived_seed(seed, purpose)``."""
    D_values = check_increasing_positive_reals("D_values", D_values)
    barrier = check_positive_real("barrier", barrier)
    width = check_positive_real("width", width)
    dt = check_positive_real("dt", dt)
    n_particles = check_positive_int("n_particles", n_particles, minimum=2)
    n_groups = check_positive_int("n_groups", n_groups, minimum=2)
    dw = DoubleWell(barrier, width)
    slowest = mean_first_passage_1d(dw, -width, width, float(D_values.min()))
    Dp = np.repeat(D_values, n_particles)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # non-arrivals are counted below and refused
        t = first_passage_times(dw, [-width], lambda x: x[:, 0] >= width, Dp, dt, len(Dp),
                                horizon_steps(slowest, dt, horizon_factor), derived_seed(seed, purpose),
                                device=device, progress=progress)
    times = np.asarray(t).reshape(len(D_values), n_particles)
    return _summarise("D", D_values, np.full(len(D_values), barrier), D_values, width, dt, times, n_groups,
                      t.n_not_arrived)


def barrier_sweep(barriers, D: float = 0.25, width: float = 1.0, dt: float = 0.01, n_particles: int = 2000,
                  n_groups: int = 10, seed: int = 0, purpose: str = "r4.barrier", device="auto",
                  horizon_factor: float = 12.0, progress: bool = False) -> EscapeSweep:
    """Escape times at one D for every barrier height (one ensemble per landscape, stream (purpose, i))."""
    barriers = check_increasing_positive_reals("barriers", barriers)
    D = check_positive_real("D", D)
    times, n_not = [], 0
    for i, b in enumerate(barriers):
        dw = DoubleWell(float(b), width)
        tau = mean_first_passage_1d(dw, -width, width, D)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            t = first_passage_times(dw, [-width], lambda x: x[:, 0] >= width, D, dt, n_particles,
                                    horizon_steps(tau, dt, horizon_factor), derived_seed(seed, purpose, i),
                                    device=device, progress=progress)
        times.append(np.asarray(t))
        n_not += t.n_not_arrived
    return _summarise("barrier", barriers, barriers, np.full(len(barriers), D), width, dt, np.stack(times),
                      n_groups, n_not)


@dataclass
class LogTauFit:
    """log tau = intercept + slope * z per group (z = 1/D or dU); mean and SE over groups; ``exact_slope`` the
    same fit to the quadrature times."""
    slope: float
    slope_se: float
    intercept: float
    intercept_se: float
    group_slopes: np.ndarray
    exact_slope: float
    exact_intercept: float


def fit_log_tau(sweep: EscapeSweep, against: str = "inverse_D") -> LogTauFit:
    """Least-squares line of log tau against 1/D (``"inverse_D"``) or the barrier (``"barrier"``), one line per
    group of particles (standard errors over groups)."""
    z = 1.0 / sweep.D if against == "inverse_D" else sweep.barrier
    if against not in ("inverse_D", "barrier"):
        raise ValueError(f"against must be 'inverse_D' or 'barrier', got {against!r}")
    A = np.stack([np.ones_like(z), z], 1)
    coef = np.linalg.lstsq(A, np.log(sweep.group_tau), rcond=None)[0]   # (2, n_groups)
    ex = np.linalg.lstsq(A, np.log(sweep.exact), rcond=None)[0]
    k = coef.shape[1]
    return LogTauFit(float(coef[1].mean()), float(coef[1].std(ddof=1) / math.sqrt(k)), float(coef[0].mean()),
                     float(coef[0].std(ddof=1) / math.sqrt(k)), coef[1], float(ex[1]), float(ex[0]))


def survival_frame(sweep: EscapeSweep, i: int, t_max_factor: float = 4.0):
    """Figure for point ``i`` of a sweep: U and exp(-U/D) (left); simulated survival P(tau > t) against
    exp(-t/tau_exact) and exp(-k t) (right, log scale)."""
    b, D, a = sweep.barrier[i], sweep.D[i], sweep.width
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.0, 3.4))
    x = np.linspace(-1.8 * a, 1.8 * a, 400)
    U = b * ((x / a) ** 2 - 1) ** 2
    ax0.plot(x, U, color="k", label="U(x)")
    p = np.exp(-U / D)
    ax0.fill_between(x, 0, p / p.max() * b, alpha=0.3, label=r"$e^{-U/D}$ (scaled)")
    ax0.set_ylim(0, 2.2 * b)
    ax0.set_xlabel("x")
    ax0.set_ylabel("U")
    ax0.set_title(f"ΔU = {b:g}, D = {D:.3g}  (ΔU/D = {b / D:.2f})")
    ax0.legend(fontsize=8, loc="upper center")
    t = np.sort(sweep.times[i])
    surv = 1.0 - np.arange(1, len(t) + 1) / len(t)
    tt = np.linspace(0, t_max_factor * sweep.exact[i], 200)
    ax1.step(t, np.maximum(surv, 1e-4), where="post", label="simulation")
    ax1.plot(tt, np.exp(-tt / sweep.exact[i]), "--", label=r"$e^{-t/\tau_{\rm exact}}$")
    ax1.plot(tt, np.exp(-tt / sweep.kramers[i]), ":", label=r"$e^{-k t}$ (Kramers)")
    ax1.set_yscale("log")
    ax1.set_ylim(1e-3, 1.2)
    ax1.set_xlim(0, tt[-1])
    ax1.set_xlabel("t")
    ax1.set_ylabel("P(not yet escaped)")
    ax1.set_title(f"τ_sim = {sweep.tau[i]:.3g} ± {sweep.se[i]:.2g}, exact {sweep.exact[i]:.3g}, 1/k "
                  f"{sweep.kramers[i]:.3g}", fontsize=9)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    return fig
