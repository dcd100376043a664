"""The path integral of SGD-as-Langevin (Achille, Mbeng & Soatto 2019, "R", section 5, eqs. 5-14).

``BumpedWell``          U(x) = k x^2 / 2 + B (1 - ((x - c)/w)^2)^3 on |x - c| < w (a compact C^2 bump), so the two
                        targets x = -1 and x = +1 have EXACTLY the same U (equal static factor of eq. 10) while the
                        right one sits behind the bump
``two_targets``         the probability of reaching x <= -1 and x >= +1 within a time T from x = 0 (one
                        first-passage ensemble per target, groups of particles for standard errors), and the
                        Freidlin-Wentzell and Onsager-Machlup most probable paths with their eq. (10) split
``stationary_u``        one long ensemble on ``SharpFlatWells`` for several D at once (one D per particle): samples of
                        u after burn-in, split into groups
``marginal_density``    normalised exp(-[a + c D log b] / D) on a grid (c = 1/2 exact marginal, c = 1 the paper's U_eff)
``critical_D``          the D beyond which U + c D log b has no local minimum on the sharp side
``effective_frame``     one slider frame: a, U_eff (c = 1/2, 1) and the simulated histogram of u at one D
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from tasknb.device import derived_seed
from tasknb.langevin import (DTYPE, Landscape, SharpFlatWells, effective_potential, first_passage_times,
                             most_probable_path, simulate)
from tasknb.validation import check_increasing_positive_reals, check_positive_int, check_positive_real

__all__ = ["BumpedWell", "TwoTargets", "two_targets", "StationaryU", "stationary_u", "marginal_density",
           "critical_D", "group_log_likelihood", "group_occupancy", "predicted_occupancy", "effective_frame"]


class BumpedWell(Landscape):
    """U(x) = k x^2 / 2 + B (1 - s^2)^3 for |s| < 1, s = (x - c)/w; the bump vanishes with two derivatives at its
    edges, so U(-x_t) = U(x_t) whenever the bump lies inside (0, x_t)."""

    dim = 1

    def __init__(self, k: float = 1.0, bump: float = 1.0, centre: float = 0.5, half_width: float = 0.3):
        self.k = check_positive_real("k", k)
        self.bump = check_positive_real("bump", bump, allow_zero=True)
        self.centre = float(centre)
        self.half_width = check_positive_real("half_width", half_width)

    def _s(self, x):
        return (x[:, 0] - self.centre) / self.half_width

    def U(self, x):
        x = torch.as_tensor(x, dtype=DTYPE).reshape(-1, 1)
        s = self._s(x)
        q = torch.clamp(1 - s * s, min=0)
        return 0.5 * self.k * x[:, 0] ** 2 + self.bump * q**3

    def grad(self, x):
        x = torch.as_tensor(x, dtype=DTYPE).reshape(-1, 1)
        s = self._s(x)
        q = torch.clamp(1 - s * s, min=0)
        return (self.k * x[:, 0] + self.bump * 3 * q**2 * (-2 * s) / self.half_width)[:, None]

    def hessian(self, x):
        x = torch.as_tensor(x, dtype=DTYPE).reshape(-1, 1)
        s = self._s(x)
        q = torch.clamp(1 - s * s, min=0)
        inside = (q > 0).to(DTYPE)
        h = self.k + self.bump * inside * (-6 * q**2 + 24 * s * s * q) / self.half_width**2
        return h[:, None, None]


@dataclass
class TwoTargets:
    """P(reach within T) per group for the left (x <= -x_t) and right (x >= x_t) targets, and the most probable
    paths (``fw_*``: Freidlin-Wentzell, ``om_*``: Onsager-Machlup at this D) with their eq. (10) split."""
    D: float
    T: float
    p_left: np.ndarray
    p_right: np.ndarray
    fw_left: object
    fw_right: object
    om_left: object
    om_right: object


def two_targets(landscape: BumpedWell, D: float, T: float, dt: float = 0.005, n_particles: int = 4000,
                n_groups: int = 10, target: float = 1.0, path_steps: int = 400, seed: int = 0, device="auto",
                purpose: str = "r3.targets") -> TwoTargets:
    """Simulate both targets (independent streams) and find the most probable paths from 0 to -+``target``."""
    D = check_positive_real("D", D)
    T = check_positive_real("T", T)
    n_particles = check_positive_int("n_particles", n_particles, minimum=2)
    n_groups = check_positive_int("n_groups", n_groups, minimum=2)
    if n_particles % n_groups:
        raise ValueError(f"n_particles ({n_particles}) must be a multiple of n_groups ({n_groups})")
    steps = int(round(T / dt))
    out = {}
    for side, tgt in (("left", lambda x: x[:, 0] <= -target), ("right", lambda x: x[:, 0] >= target)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # non-arrivals are the point here: counted as "not within T"
            t = first_passage_times(landscape, [0.0], tgt, D, dt, n_particles, steps,
                                    derived_seed(seed, purpose, 0 if side == "left" else 1), device=device)
        out[side] = np.isfinite(np.asarray(t)).reshape(n_groups, -1).mean(1)
    paths = {}
    for side, end in (("left", -target), ("right", target)):
        for kind, div in (("fw", False), ("om", True)):
            paths[f"{kind}_{side}"] = most_probable_path(landscape, [0.0], [end], T, path_steps, D,
                                                         include_divergence=div)
    return TwoTargets(D, T, out["left"], out["right"], **paths)


@dataclass
class StationaryU:
    """Samples of u (n_D, n_groups, n_samples_per_group) from an ensemble after burn-in, for each D."""
    D: np.ndarray
    samples: np.ndarray
    dt: float
    burn_in: float


def stationary_u(landscape: SharpFlatWells, D_values, n_particles: int = 2000, n_groups: int = 10,
                 dt: float = 0.004, burn_in: float = 40.0, duration: float = 40.0, record_every: int = 250,
                 seed: int = 0, device="auto") -> StationaryU:
    """One ensemble holding ``n_particles`` per D (one D per particle), started at u uniform on [-1.5, 1.5], v = 0;
    u is recorded every ``record_every`` steps after ``burn_in`` for ``duration``."""
    D_values = check_increasing_positive_reals("D_values", D_values)
    n_particles = check_positive_int("n_particles", n_particles, minimum=2)
    n_groups = check_positive_int("n_groups", n_groups, minimum=2)
    if n_particles % n_groups:
        raise ValueError(f"n_particles ({n_particles}) must be a multiple of n_groups ({n_groups})")
    g = torch.Generator().manual_seed(derived_seed(seed, "r3.stationary.start"))
    n = n_particles * len(D_values)
    x0 = torch.zeros(n, 2, dtype=DTYPE)
    x0[:, 0] = -1.5 + 3.0 * torch.rand(n, generator=g, dtype=DTYPE)
    Dp = np.repeat(D_values, n_particles)
    n_burn = int(round(burn_in / dt))
    warm = simulate(landscape, x0, Dp, dt, n_burn, seed=derived_seed(seed, "r3.stationary.burn"), record_every=n_burn,
                    device=device)[-1]
    traj = simulate(landscape, warm, Dp, dt, int(round(duration / dt)), seed=derived_seed(seed, "r3.stationary.run"),
                    record_every=record_every, device=device)[1:, :, 0].cpu().numpy()   # (n_rec, n)
    s = traj.T.reshape(len(D_values), n_groups, -1)   # particles of one D in n_groups blocks, all records
    return StationaryU(D_values, s, dt, burn_in)


def marginal_density(landscape: SharpFlatWells, D: float, coefficient: float, grid: np.ndarray) -> np.ndarray:
    """exp(-[a(u) + coefficient D log b(u)] / D), normalised on ``grid`` (trapezoid)."""
    u = torch.as_tensor(grid, dtype=DTYPE)
    f = effective_potential(landscape.a(u), landscape.log_b(u), D, coefficient).numpy()
    w = np.exp(-(f - f.min()) / D)
    return w / np.trapezoid(w, grid)


def group_log_likelihood(samples: np.ndarray, density: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Mean log density (interpolated on the grid) of each group's samples: (n_groups,)."""
    return np.array([np.log(np.interp(s, grid, density) + 1e-300).mean() for s in samples])


def group_occupancy(samples: np.ndarray, u_split: float) -> np.ndarray:
    """Fraction of each group's samples on the sharp side u < u_split."""
    return (samples < u_split).mean(-1)


def predicted_occupancy(density: np.ndarray, grid: np.ndarray, u_split: float) -> float:
    m = grid < u_split
    return float(np.trapezoid(density[m], grid[m]) / np.trapezoid(density, grid))


def critical_D(landscape: SharpFlatWells, coefficient: float, D_grid=None, u_grid=None) -> float:
    """Smallest D of ``D_grid`` at which a(u) + coefficient D log b(u) has no local minimum left of the saddle of a
    (the sharp minimum has merged with the barrier); inf if it never disappears on the grid."""
    D_grid = np.linspace(0.002, 3.0, 1500) if D_grid is None else np.asarray(D_grid)
    u = torch.linspace(-2.5, 2.5, 5001, dtype=DTYPE) if u_grid is None else torch.as_tensor(u_grid, dtype=DTYPE)
    uu = u[1:-1].numpy()
    for D in D_grid:
        f = effective_potential(landscape.a(u), landscape.log_b(u), float(D), coefficient).numpy()
        m = (f[1:-1] < f[:-2]) & (f[1:-1] < f[2:])
        if not np.any(uu[m] < landscape.saddle):
            return float(D)
    return math.inf


def effective_frame(landscape: SharpFlatWells, D: float, samples: np.ndarray, grid: np.ndarray):
    """Left: a(u) and U_eff with c = 1/2 and c = 1; right: histogram of simulated u against both densities."""
    u = torch.as_tensor(grid, dtype=DTYPE)
    a = landscape.a(u).numpy()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(9.5, 3.4))
    ax0.plot(grid, a, "k", label="U on the valley floor, a(u)")
    for c, st in ((0.5, "-"), (1.0, "--")):
        f = effective_potential(landscape.a(u), landscape.log_b(u), D, c).numpy()
        ax0.plot(grid, f - f.min() + a.min(), st, label=f"a + {c:g}·D·log b (shifted)")
    ax0.set_ylim(a.min() - 0.1, a.min() + 1.2)
    ax0.set_xlabel("u (sharp minimum at -1, flat at +1)")
    ax0.set_title(f"D = {D:.3g}")
    ax0.legend(fontsize=7)
    ax1.hist(samples.ravel(), bins=80, range=(grid[0], grid[-1]), density=True, alpha=0.4, label="simulation")
    for c, st in ((0.5, "-"), (1.0, "--")):
        ax1.plot(grid, marginal_density(landscape, D, c, grid), st, label=f"exp(-[a + {c:g} D log b]/D)")
    ax1.plot(grid, marginal_density(landscape, D, 0.0, grid), ":", label="exp(-a/D) (U only)")
    ax1.set_xlabel("u")
    ax1.set_ylabel("density")
    ax1.legend(fontsize=7)
    fig.tight_layout()
    return fig
