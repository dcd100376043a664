"""Comparing training trajectories over the progress both runs cover (Ramesh et al. 2023, "S").

A recorded run is T checkpoints (T, N, C) in training order, each with its progress t_k (eq. 4 of
S).  ``geometry.interpolate_trajectory`` re-indexes a run on a grid of progress by the first pair
of checkpoints that brackets each value and fills the grid outside the recorded range with the end
points; a run that goes back in progress (episodic training, fine-tuning) then loses its later
parts, and a run that stops at progress 0.4 is compared on [0, 1] mostly through its frozen end
point.  This module re-indexes without either loss:

``unfolded_progress``     u_0 = t_0, u_k = u_{k-1} + |t_k - t_{k-1}|: progress travelled, never decreasing
``reindex_trajectory``    checkpoints -> points at grid values of (unfolded) progress inside the run's range,
                          on the geodesic (eq. 3) between the two checkpoints that bracket each value
``common_range``          the largest interval of (unfolded) progress that every given run covers
``compare_trajectories``  d_traj of eq. (5) restricted to the common range of two runs -> ``TrajectoryComparison``
``family_tube``           the mean trajectory and tube radius of K seeds on their common range (App. G)
``compare_families``      two families of seeds on one grid: means, tube radii, Remark 5's normalised
                          distance, d_traj between the means -> ``FamilyComparison``

Inputs are NumPy arrays or torch tensors; the work runs in torch on ``tasknb.device.get_device()``
(CUDA when present) unless ``device`` says otherwise.  ``unfolded_progress`` and
``reindex_trajectory`` return NumPy for NumPy input and torch for torch input; the comparison
dataclasses always hold float64 NumPy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .device import like_input, resolve_device
from .geometry import bhattacharyya, check_probabilities, geodesic_pairs, progress
from .validation import check_choice, check_positive_int

__all__ = [
    "unfolded_progress",
    "reindex_trajectory",
    "common_range",
    "TrajectoryComparison",
    "compare_trajectories",
    "FamilyTube",
    "family_tube",
    "FamilyComparison",
    "compare_families",
]

_BY = ("unfolded", "progress")
#: numbers of one batch of re-indexed points (grid points x N x C) built at once
_POINTS_PER_BATCH = 2**22


# ----------------------------------------------------------------------------- progress coordinates
def _as_float_array(name: str, x) -> np.ndarray:
    a = x.detach().cpu().numpy() if torch.is_tensor(x) else x
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a numeric array, got {type(x).__name__}") from None


def _unfold(t: np.ndarray) -> np.ndarray:
    """Unfolded progress along the last axis of ``t`` (..., T); exactly ``t`` where t never decreases."""
    back = np.maximum(-np.diff(t, axis=-1), 0.0)
    travelled_back = np.concatenate([np.zeros(t.shape[:-1] + (1,)), np.cumsum(back, axis=-1)], axis=-1)
    # u_k = t_k + 2 * (progress lost so far) = t_0 + sum_j |t_j - t_{j-1}|; the running maximum only
    # removes last-bit rounding (a no-op for a run that never goes back, whose u equals t exactly)
    return np.maximum.accumulate(t + 2.0 * travelled_back, axis=-1)


def unfolded_progress(progress_values):
    """Unfolded progress of one run: ``u_0 = t_0``, ``u_k = u_{k-1} + |t_k - t_{k-1}|``.

    ``progress_values`` (T,): the progress t_k of eq. (4) of S of T checkpoints in training order
    (NumPy, list or torch).  Returns (T,) float64, non-decreasing (NumPy; torch for torch input).
    For a run whose progress never decreases u equals t exactly; a run that goes back (e.g.
    0 -> 0.6 -> 0.3 gives u = 0, 0.6, 0.9) keeps every checkpoint in training order, so re-indexing
    by u (``reindex_trajectory``) loses no leg of it.  Computed as u_k = t_k + 2 * (total decrease of
    progress up to checkpoint k), the same number.
    """
    t = _as_float_array("progress_values", progress_values)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"progress_values must be a non-empty 1-D array of finite numbers (T,), "
                         f"got shape {t.shape}" + ("" if t.ndim != 1 or t.size == 0 else " with NaN or inf"))
    u = _unfold(t)
    return torch.as_tensor(u) if torch.is_tensor(progress_values) else u


def _run_coordinate(t: np.ndarray, by: str, name: str) -> np.ndarray:
    """The coordinate a run (..., T) is re-indexed by: unfolded progress, or progress itself."""
    if by == "unfolded":
        return _unfold(t)
    drops = np.diff(t, axis=-1) < 0
    if np.any(drops):
        where = np.argwhere(drops)[0]
        k = int(where[-1]) + 1
        run = "" if t.ndim == 1 else f" (run {tuple(int(i) for i in where[:-1])})"
        prev, cur = t[tuple(where[:-1]) + (k - 1,)], t[tuple(where[:-1]) + (k,)]
        raise ValueError(f"by='progress' needs progress that never decreases, but {name}{run} goes back from "
                         f"{prev:.4g} to {cur:.4g} at checkpoint {k}; use by='unfolded' to keep every checkpoint")
    return t


def _checkpoint_progress(tr: torch.Tensor, labels, progress_values, name: str, pname: str) -> np.ndarray:
    """Progress (eq. 4) of the checkpoints of ``tr`` (..., T, N, C) -> float64 (..., T)."""
    lead = tuple(tr.shape[:-2])
    if progress_values is None:
        if labels is None:
            raise ValueError(f"{name} needs labels (N,) to compute progress (eq. 4), or {pname} {lead}")
        N, C = tr.shape[-2:]
        t = progress(tr.reshape(-1, N, C), labels, device=tr.device)
        return t.detach().cpu().numpy().astype(np.float64).reshape(lead)
    t = _as_float_array(pname, progress_values)
    if t.shape != lead or not np.all(np.isfinite(t)):
        raise ValueError(f"{pname} must hold one finite progress value per checkpoint, shape {lead}, got shape {t.shape}"
                         + (" with NaN or inf" if t.shape == lead else ""))
    return t


def _check_grid(grid, lo: float, hi: float, name: str = "grid") -> np.ndarray:
    g = _as_float_array(name, grid)
    if g.ndim != 1 or g.size == 0 or not np.all(np.isfinite(g)):
        raise ValueError(f"{name} must be a non-empty 1-D array of finite numbers, got shape {g.shape}")
    if g.min() < lo or g.max() > hi:
        raise ValueError(f"{name} must lie within the run's recorded range [{lo:.6g}, {hi:.6g}] of (unfolded) "
                         f"progress, got values from {g.min():.6g} to {g.max():.6g}; nothing is extrapolated: "
                         f"use common_range(...) for a grid every run covers")
    return g


def _reindex(tr: torch.Tensor, u: np.ndarray, grid: np.ndarray) -> torch.Tensor:
    """Points of the run ``tr`` (T, N, C) with coordinates ``u`` (T,), non-decreasing, at ``grid`` (G,)
    inside [u_0, u_{T-1}]: one searchsorted and batched slerps (eq. 3) -> (G, N, C)."""
    T = tr.shape[0]
    # k: the last checkpoint with u_k <= g (so at a value shared by several checkpoints, the latest),
    # kept in [0, T - 2] so that (k, k + 1) is a segment of the run
    k = np.clip(np.searchsorted(u, grid, side="right") - 1, 0, T - 2)
    span = u[k + 1] - u[k]
    lam = np.where(span > 0, (grid - u[k]) / np.where(span > 0, span, 1.0), 1.0)
    lam = np.clip(lam, 0.0, 1.0)  # rounding only: grid values lie in [u_k, u_{k+1}]
    N, C = tr.shape[1:]
    out = torch.empty((len(grid), N, C), dtype=torch.float64, device=tr.device)
    step = max(1, _POINTS_PER_BATCH // (N * C))
    k_t = torch.as_tensor(k, device=tr.device)
    for s in range(0, len(grid), step):
        e = min(len(grid), s + step)
        out[s:e] = geodesic_pairs(tr[k_t[s:e]], tr[k_t[s:e] + 1], lam[s:e], device=tr.device)
    return out


def reindex_trajectory(traj, grid, *, labels=None, progress_values=None, by: str = "unfolded", device=None):
    """Re-index one recorded run at ``grid`` values of (unfolded) progress, eqs. (3)-(4) of S.

    Parameters
    ----------
    traj : (T, N, C)
        T >= 2 checkpoints of one model in training order (probabilities).
    grid : (G,)
        Values of the run's coordinate, each within [u_0, u_{T-1}]; a value outside raises
        ValueError (no extrapolation; ``common_range`` gives a range every run covers).
    labels : (N,), optional
        Classes of the N samples, to compute the progress t_k (eq. 4) of each checkpoint.
    progress_values : (T,), optional
        The progress t_k, when already known (one of ``labels`` / ``progress_values`` is needed).
    by : ``"unfolded"`` (default) or ``"progress"``
        The coordinate: unfolded progress u (``unfolded_progress``), which keeps every checkpoint of
        a run that goes back in progress, or progress t itself, which needs a run whose progress
        never decreases (raises otherwise).  For such a run the two are identical.
    device : default ``get_device()``.

    For each grid value u the point is on the geodesic (eq. 3) between the consecutive checkpoints
    k, k + 1 with u_k <= u <= u_{k+1}, at lam = (u - u_k) / (u_{k+1} - u_k): linear in u.  Where
    several consecutive checkpoints share u, the latest of them is used.  One searchsorted and one
    batched great-circle step for all grid values.

    Returns (G, N, C) float64 probabilities (NumPy, or torch for torch input).
    """
    check_choice("by", by, _BY)
    dev = resolve_device(device, traj)
    tr = check_probabilities("traj", traj, shape="(T, N, C)", device=dev)
    if tr.shape[0] < 2:
        raise ValueError(f"traj must hold at least 2 checkpoints (T >= 2), got T = {tr.shape[0]}")
    t = _checkpoint_progress(tr, labels, progress_values, "reindex_trajectory", "progress_values")
    u = _run_coordinate(t, by, "the run")
    g = _check_grid(grid, float(u[0]), float(u[-1]))
    return like_input(_reindex(tr, u, g), torch.is_tensor(traj))


def common_range(*unfolded) -> tuple[float, float]:
    """The largest interval of (unfolded) progress all given runs cover: (max of starts, min of ends).

    Each argument is the (T_i,) coordinate of one run (``unfolded_progress`` of its progress, or
    progress itself for runs that never go back): non-decreasing, so it covers [u_0, u_{T-1}].
    Returns floats (lo, hi), exact values of the inputs; raises ValueError when lo >= hi (the runs
    share no interval), listing every run's range.
    """
    if not unfolded:
        raise ValueError("common_range needs at least one run's unfolded progress (T,)")
    ranges = []
    for i, x in enumerate(unfolded):
        u = _as_float_array(f"unfolded[{i}]", x)
        if u.ndim != 1 or u.size == 0 or not np.all(np.isfinite(u)):
            raise ValueError(f"unfolded[{i}] must be a non-empty 1-D array of finite numbers, got shape {u.shape}")
        if np.any(np.diff(u) < 0):
            raise ValueError(f"unfolded[{i}] must be non-decreasing (pass unfolded_progress(t), not progress t itself)")
        ranges.append((float(u[0]), float(u[-1])))
    lo = max(r[0] for r in ranges)
    hi = min(r[1] for r in ranges)
    if not lo < hi:
        shown = ", ".join(f"[{a:.4g}, {b:.4g}]" for a, b in ranges)
        raise ValueError(f"the runs share no range of progress: the latest start is {lo:.4g} and the earliest end "
                         f"is {hi:.4g} (ranges {shown})")
    return lo, hi


def _trapezoid(y: np.ndarray, x: np.ndarray):
    """Trapezoid integral over the last axis of ``y`` (..., G) on ``x`` (G,): a float for 1-D ``y``."""
    out = np.sum((y[..., 1:] + y[..., :-1]) * np.diff(x), axis=-1) / 2
    return float(out) if y.ndim == 1 else out


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float64)


# ----------------------------------------------------------------------------- two runs
@dataclass
class TrajectoryComparison:
    """Two runs compared over the progress both cover (eq. 5 of S restricted to that range).

    ``distance`` the trapezoid integral of d_B(P_a(u), P_b(u)) over ``grid``; ``mean_distance`` =
    distance / (hi - lo), the average d_B per unit of progress; ``range`` (lo, hi) the common range;
    ``grid`` (n_grid,) = linspace(lo, hi, n_grid); ``integrand`` (n_grid,) d_B at each grid value.
    """

    distance: float
    mean_distance: float
    range: tuple[float, float]
    grid: np.ndarray
    integrand: np.ndarray


def compare_trajectories(traj_a, traj_b, *, labels=None, progress_a=None, progress_b=None, n_grid: int = 100,
                         by: str = "unfolded", device=None) -> TrajectoryComparison:
    """d_traj of eq. (5) of S between two runs, over the range of (unfolded) progress both cover.

    ``traj_a`` (T_a, N, C), ``traj_b`` (T_b, N, C): checkpoints of two runs mapped to one task
    (eq. 8), T_a, T_b >= 2 (they may differ).  Progress of each checkpoint from ``progress_a``
    (T_a,) / ``progress_b`` (T_b,) or from ``labels`` (N,).  ``by`` as in ``reindex_trajectory``
    (default ``"unfolded"``).  Both runs are re-indexed on ``linspace(lo, hi, n_grid)`` (n_grid >= 2,
    default 100) of ``common_range`` and d_B (eq. 2) is integrated over it by the trapezoid rule.
    Unlike ``geometry.trajectory_distance`` on [0, 1], no end point is held frozen.
    """
    n_grid = check_positive_int("n_grid", n_grid, minimum=2)
    check_choice("by", by, _BY)
    dev = resolve_device(device, traj_a, traj_b)
    a = check_probabilities("traj_a", traj_a, shape="(T_a, N, C)", device=dev)
    b = check_probabilities("traj_b", traj_b, shape="(T_b, N, C)", device=dev)
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"traj_a and traj_b must share (N, C), got {tuple(a.shape)} and {tuple(b.shape)}")
    for name, x in (("traj_a", a), ("traj_b", b)):
        if x.shape[0] < 2:
            raise ValueError(f"{name} must hold at least 2 checkpoints (T >= 2), got T = {x.shape[0]}")
    ua = _run_coordinate(_checkpoint_progress(a, labels, progress_a, "compare_trajectories", "progress_a"), by, "traj_a")
    ub = _run_coordinate(_checkpoint_progress(b, labels, progress_b, "compare_trajectories", "progress_b"), by, "traj_b")
    lo, hi = common_range(ua, ub)
    grid = np.linspace(lo, hi, n_grid)
    d = _np(bhattacharyya(_reindex(a, ua, grid), _reindex(b, ub, grid), device=dev))
    distance = _trapezoid(d, grid)
    return TrajectoryComparison(distance=distance, mean_distance=distance / (hi - lo), range=(lo, hi), grid=grid,
                                integrand=d)


# ----------------------------------------------------------------------------- families of seeds
@dataclass
class FamilyTube:
    """K seeds of one run configuration re-indexed on one grid (App. G of S).

    ``grid`` (G,) and ``range`` (lo, hi) of (unfolded) progress; ``mean`` (G, N, C) the arithmetic
    mean of the seeds' probabilities at each grid value (App. G); ``radius`` (G,) the tube radius
    r(u) = max_k d_B(P_k(u), P_mean(u)) (exactly 0 for a single seed); ``integrated_radius`` App. G's scalar
    max_k integral d_B(P_k(u), P_mean(u)) du over the range; ``trajectories`` (K, G, N, C) the
    re-indexed seeds when asked for (``keep_trajectories=True``), else None.
    """

    grid: np.ndarray
    range: tuple[float, float]
    mean: np.ndarray
    radius: np.ndarray
    integrated_radius: float
    trajectories: np.ndarray | None = None


@dataclass
class FamilyComparison:
    """Two families of seeds compared on one grid over the range all their seeds cover (Remark 5, App. G).

    ``grid`` (G,), ``range`` (lo, hi); ``mean_1``, ``mean_2`` (G, N, C) the mean trajectories;
    ``radius_1``, ``radius_2`` (G,) the tube radii; ``between_means`` (G,) d_B(mean_1(u), mean_2(u));
    ``normalized_distance`` (G,) = 2 d_B(mean_1, mean_2) / (r_1 + r_2) (Remark 5: below 1 the tubes
    intersect; where r_1 + r_2 = 0 it is +inf if the means differ and 0 if they coincide);
    ``mean_normalized_distance`` its trapezoid average over the range; ``distance`` d_traj (eq. 5)
    between the means over the range and ``mean_distance`` = distance / (hi - lo).
    """

    grid: np.ndarray
    range: tuple[float, float]
    mean_1: np.ndarray
    mean_2: np.ndarray
    radius_1: np.ndarray
    radius_2: np.ndarray
    between_means: np.ndarray
    normalized_distance: np.ndarray
    mean_normalized_distance: float
    distance: float
    mean_distance: float


def _family(name: str, pname: str, trajs, labels, progress_values, by: str, dev):
    """Checked family (K, T, N, C) tensor and its coordinates (K, T)."""
    t = check_probabilities(name, trajs, shape="(K, T, N, C)", device=dev)
    if t.shape[1] < 2:
        raise ValueError(f"{name} must hold at least 2 checkpoints per seed (T >= 2), got T = {t.shape[1]}")
    u = _run_coordinate(_checkpoint_progress(t, labels, progress_values, name, pname), by, name)
    return t, u


def _tube(t: torch.Tensor, u: np.ndarray, grid: np.ndarray):
    """Re-indexed seeds (K, G, N, C), their mean (G, N, C) and d_B of each seed to it (K, G)."""
    seeds = torch.stack([_reindex(t[k], u[k], grid) for k in range(t.shape[0])])
    mean = seeds.mean(0)
    if t.shape[0] == 1:  # one seed is its own mean: radius exactly 0 (not the rounding of d_B(x, x))
        return seeds, mean, torch.zeros((1, len(grid)), dtype=torch.float64, device=t.device)
    to_mean = bhattacharyya(seeds, mean[None], device=t.device)
    return seeds, mean, to_mean


def family_tube(trajs, *, labels=None, progress_values=None, n_grid: int = 100, by: str = "unfolded",
                keep_trajectories: bool = False, device=None) -> FamilyTube:
    """Mean trajectory and tube radius of K seeds over the range all of them cover (App. G of S).

    ``trajs`` (K, T, N, C): K seeds with T >= 2 shared checkpoints each (their progress may differ);
    progress from ``progress_values`` (K, T) or ``labels`` (N,); ``by`` as in ``reindex_trajectory``.
    Every seed is re-indexed on ``linspace(lo, hi, n_grid)`` of their ``common_range``; the mean is
    the arithmetic mean of probabilities (App. G).  Returns a ``FamilyTube``.
    """
    n_grid = check_positive_int("n_grid", n_grid, minimum=2)
    check_choice("by", by, _BY)
    if not isinstance(keep_trajectories, bool):
        raise ValueError(f"keep_trajectories must be True or False, got {keep_trajectories!r}")
    dev = resolve_device(device, trajs)
    t, u = _family("trajs", "progress_values", trajs, labels, progress_values, by, dev)
    lo, hi = common_range(*u)
    grid = np.linspace(lo, hi, n_grid)
    seeds, mean, to_mean = _tube(t, u, grid)
    d = _np(to_mean)
    return FamilyTube(grid=grid, range=(lo, hi), mean=_np(mean), radius=d.max(0),
                      integrated_radius=float(_trapezoid(d, grid).max()),
                      trajectories=_np(seeds) if keep_trajectories else None)


def compare_families(trajs_1, trajs_2, *, labels=None, progress_1=None, progress_2=None, n_grid: int = 100,
                     by: str = "unfolded", device=None) -> FamilyComparison:
    """Two families of seeds on one grid: mean trajectories, tubes and Remark 5's normalised distance.

    ``trajs_1`` (K1, T1, N, C), ``trajs_2`` (K2, T2, N, C): seeds of two run configurations mapped
    to one task (eq. 8); T1 and T2 may differ, seeds of one family share checkpoints but not their
    progress.  Progress from ``progress_1`` (K1, T1) / ``progress_2`` (K2, T2) or ``labels`` (N,);
    ``by`` as in ``reindex_trajectory``.  The grid is ``linspace(lo, hi, n_grid)`` of the
    ``common_range`` of ALL K1 + K2 seeds, so no seed is extrapolated.  Per grid value:
    means (arithmetic, App. G), tube radii r_i(u) = max_k d_B(P_k(u), mean_i(u)) and
    ``2 d_B(mean_1, mean_2) / (r_1 + r_2)`` (Remark 5).  Returns a ``FamilyComparison``.
    """
    n_grid = check_positive_int("n_grid", n_grid, minimum=2)
    check_choice("by", by, _BY)
    dev = resolve_device(device, trajs_1, trajs_2)
    t1, u1 = _family("trajs_1", "progress_1", trajs_1, labels, progress_1, by, dev)
    t2, u2 = _family("trajs_2", "progress_2", trajs_2, labels, progress_2, by, dev)
    if t1.shape[2:] != t2.shape[2:]:
        raise ValueError(f"trajs_1 and trajs_2 must share (N, C), got {tuple(t1.shape)} and {tuple(t2.shape)}")
    lo, hi = common_range(*u1, *u2)
    grid = np.linspace(lo, hi, n_grid)
    _, mean_1, d1 = _tube(t1, u1, grid)
    _, mean_2, d2 = _tube(t2, u2, grid)
    r1, r2 = _np(d1).max(0), _np(d2).max(0)
    gap = _np(bhattacharyya(mean_1, mean_2, device=dev))
    den = r1 + r2
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(den > 0, 2 * gap / np.where(den > 0, den, 1.0), np.where(gap > 0, np.inf, 0.0))
    distance = _trapezoid(gap, grid)
    return FamilyComparison(grid=grid, range=(lo, hi), mean_1=_np(mean_1), mean_2=_np(mean_2), radius_1=r1, radius_2=r2,
                            between_means=gap, normalized_distance=ratio,
                            mean_normalized_distance=_trapezoid(ratio, grid) / (hi - lo),
                            distance=distance, mean_distance=distance / (hi - lo))
