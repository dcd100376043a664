"""Runs compared over the progress they share (tasknb.trajectory_geometry): unfolded progress, re-indexing
without extrapolation, common ranges, two runs and two families of seeds, against brute-force references."""
import numpy as np
import pytest
import torch

from tasknb.geometry import geodesic, interpolate_trajectory, progress, reference_points
from tasknb.trajectory_geometry import (common_range, compare_families, compare_trajectories, family_tube,
                                        reindex_trajectory, unfolded_progress)

N, C = 60, 4


def _task(seed=0):
    labels = np.random.default_rng(seed).integers(0, C, N)
    P0, Ps = reference_points(labels, C, clip=0.02)
    return labels, P0, Ps


def _run(lams, seed, noise=0.2, task_seed=0):
    """Checkpoints near the ignorance -> truth geodesic at ``lams``, each mixed with noise of its own."""
    labels, P0, Ps = _task(task_seed)
    g = np.random.default_rng(seed)
    pts = geodesic(P0, Ps, np.asarray(lams, dtype=float))
    mix = g.dirichlet(np.ones(C), size=(len(lams), N))
    return (1 - noise) * pts + noise * mix


def _bhat(a, b):
    return -np.mean(np.log(np.clip(np.sqrt(a * b).sum(-1), np.finfo(float).tiny, 1.0)), axis=-1)


def _brute_reindex(traj, u, grid):
    """Per grid value: loop over segments for a bracketing pair, then the geodesic of eq. (3)."""
    out = []
    for g in grid:
        for k in range(len(u) - 1):
            if u[k] <= g <= u[k + 1]:
                lam = 0.0 if u[k + 1] == u[k] else (g - u[k]) / (u[k + 1] - u[k])
                out.append(geodesic(traj[k], traj[k + 1], lam))
                break
        else:
            raise AssertionError(f"no segment brackets {g}")
    return np.stack(out)


# ----------------------------------------------------------------------------- unfolded progress
def test_unfolded_progress_equals_progress_for_a_monotone_run_and_unfolds_a_backward_one():
    t = np.array([0.0, 0.013, 0.2, 0.2, 0.37, 0.51])
    assert np.array_equal(unfolded_progress(t), t)
    np.testing.assert_allclose(unfolded_progress([0.0, 0.6, 0.3]), [0.0, 0.6, 0.9], atol=1e-15)
    u = unfolded_progress([0.1, 0.5, 0.2, 0.4, 0.0])
    np.testing.assert_allclose(u, [0.1, 0.5, 0.8, 1.0, 1.4], atol=1e-15)
    assert np.all(np.diff(u) >= 0)
    ut = unfolded_progress(torch.tensor([0.0, 0.6, 0.3]))
    assert torch.is_tensor(ut) and ut.dtype == torch.float64
    for bad in ([], [[0.1, 0.2]], [0.1, np.nan]):
        with pytest.raises(ValueError, match="progress_values"):
            unfolded_progress(bad)


# ----------------------------------------------------------------------------- re-indexing
def test_monotone_run_matches_interpolate_trajectory_on_the_covered_range():
    labels = _task()[0]
    traj = _run([0.0, 0.05, 0.15, 0.3, 0.45], seed=1)
    t = progress(traj, labels)
    assert np.all(np.diff(t) > 0) and t[-1] < 0.8  # the run stops well before progress 1
    grid = np.linspace(t[0], t[-1], 37)
    old = interpolate_trajectory(traj, grid, labels=labels)
    for by in ("unfolded", "progress"):
        new = reindex_trajectory(traj, grid, labels=labels, by=by)
        assert new.shape == (37, N, C)
        np.testing.assert_allclose(new, old, atol=1e-12)
    np.testing.assert_allclose(reindex_trajectory(traj, grid, progress_values=t), old, atol=1e-12)
    np.testing.assert_allclose(reindex_trajectory(traj, t, progress_values=t), traj, atol=1e-12)  # checkpoints


def test_a_run_that_goes_back_keeps_its_backward_leg():
    labels, P0, _ = _task()
    Ps = reference_points(labels, C)[1]  # exact one-hot truth: geodesic points have progress = lam
    fwd = geodesic(P0, Ps, 0.6)
    back = 0.5 * geodesic(P0, Ps, 0.3) + 0.5 * np.random.default_rng(5).dirichlet(np.ones(C), size=N)
    traj = np.stack([P0, fwd, back])  # progress 0 -> 0.6 -> about 0.3, off the forward path
    t = progress(traj, labels)
    assert abs(t[1] - 0.6) < 1e-8 and t[2] < t[1] - 0.1
    u = unfolded_progress(t)
    grid = np.linspace(u[0], u[-1], 41)
    pts = reindex_trajectory(traj, grid, progress_values=t)
    on_back_leg = (grid > u[1]) & (grid < u[2])
    assert on_back_leg.sum() >= 5
    expected = np.stack([geodesic(fwd, back, (g - u[1]) / (u[2] - u[1])) for g in grid[on_back_leg]])
    np.testing.assert_allclose(pts[on_back_leg], expected, atol=1e-12)
    np.testing.assert_allclose(pts[-1], back, atol=1e-12)  # the run ends where it ended
    np.testing.assert_allclose(pts, _brute_reindex(traj, u, grid), atol=1e-12)
    # the progress-indexed interpolation never reaches the last checkpoint: its backward leg is lost
    old = interpolate_trajectory(traj, np.linspace(0, 1, 101), progress_values=t)
    assert _bhat(old, back[None]).min() > 1e-2
    assert _bhat(pts, back[None]).min() == pytest.approx(0.0, abs=1e-14)
    with pytest.raises(ValueError, match="by='unfolded'"):
        reindex_trajectory(traj, grid[:3], progress_values=t, by="progress")


def test_grid_values_outside_the_recorded_range_raise():
    traj = _run([0.05, 0.2, 0.35], seed=2)
    t = np.array([0.1, 0.25, 0.4])
    for grid in ([0.05, 0.2], [0.2, 0.41], np.linspace(0, 1, 11)):
        with pytest.raises(ValueError, match=r"recorded range \[0.1, 0.4\]"):
            reindex_trajectory(traj, grid, progress_values=t)
    reindex_trajectory(traj, [0.1, 0.4], progress_values=t)  # the end points themselves are inside


def test_reindex_returns_torch_for_torch_and_is_deterministic():
    labels = _task()[0]
    traj = _run([0.0, 0.2, 0.4], seed=3)
    t = progress(traj, labels)
    grid = np.linspace(t[0], t[-1], 9)
    a = reindex_trajectory(traj, grid, labels=labels)
    b = reindex_trajectory(torch.tensor(traj), torch.tensor(grid), labels=torch.tensor(labels))
    assert torch.is_tensor(b)
    np.testing.assert_allclose(b.numpy(), a, atol=1e-13)
    assert np.array_equal(a, reindex_trajectory(traj, grid, labels=labels))


@pytest.mark.parametrize("kw, match", [
    (dict(by="time"), "by must be one of"),
    (dict(labels=None), "labels"),
    (dict(progress_values=[0.1, 0.2]), "progress_values"),
    (dict(progress_values=[0.1, np.nan, 0.3]), "progress_values"),
    (dict(grid=[[0.1, 0.2]]), "grid"),
    (dict(traj=np.full((3, N, C), 0.3)), "sum to 1"),
    (dict(traj=np.full((1, N, C), 1.0 / C)), "T >= 2"),
])
def test_reindex_bad_inputs_name_the_parameter(kw, match):
    labels = _task()[0]
    args = dict(traj=_run([0.0, 0.2, 0.4], seed=3), grid=[0.0], labels=labels)
    args.update(kw)
    traj, grid = args.pop("traj"), args.pop("grid")
    with pytest.raises(ValueError, match=match):
        reindex_trajectory(traj, grid, **args)


# ----------------------------------------------------------------------------- common range
def test_common_range():
    assert common_range([0.0, 0.5], [0.2, 0.8]) == (0.2, 0.5)
    assert common_range(np.array([0.0, 0.3, 0.9]), [0.1, 0.7], torch.tensor([0.05, 1.2])) == (0.1, 0.7)
    assert common_range([0.3, 0.6]) == (0.3, 0.6)
    with pytest.raises(ValueError, match=r"share no range.*\[0, 0.2\], \[0.3, 0.8\]"):
        common_range([0.0, 0.2], [0.3, 0.8])
    with pytest.raises(ValueError, match="share no range"):
        common_range([0.4, 0.4])
    with pytest.raises(ValueError, match="non-decreasing"):
        common_range([0.0, 0.6, 0.3])
    with pytest.raises(ValueError, match="at least one"):
        common_range()


# ----------------------------------------------------------------------------- two runs
def test_compare_a_run_with_itself_is_zero():
    labels = _task()[0]
    traj = _run([0.0, 0.1, 0.3, 0.5], seed=4)
    r = compare_trajectories(traj, traj, labels=labels, n_grid=50)
    assert r.distance == pytest.approx(0.0, abs=1e-14)
    assert np.all(np.abs(r.integrand) < 1e-14)
    t = progress(traj, labels)
    assert r.range == (t[0], t[-1]) and r.grid.shape == (50,)


def test_compare_two_runs_equals_a_brute_force_computation():
    labels = _task()[0]
    a = _run([0.0, 0.1, 0.25, 0.5, 0.8], seed=6)
    b = _run([0.05, 0.15, 0.3, 0.2, 0.35], seed=7, noise=0.3)  # goes back, stops early
    ta, tb = progress(a, labels), progress(b, labels)
    assert np.any(np.diff(tb) < 0)
    r = compare_trajectories(a, b, labels=labels, n_grid=64)
    ua, ub = unfolded_progress(ta), unfolded_progress(tb)
    lo, hi = max(ua[0], ub[0]), min(ua[-1], ub[-1])
    assert r.range == (lo, hi) and hi - lo < 0.9 * (ua[-1] - ua[0])
    grid = np.linspace(lo, hi, 64)
    d = _bhat(_brute_reindex(a, ua, grid), _brute_reindex(b, ub, grid))
    np.testing.assert_allclose(r.integrand, d, atol=1e-12)
    total = np.sum((d[1:] + d[:-1]) * np.diff(grid)) / 2
    assert r.distance == pytest.approx(total, rel=1e-12)
    assert r.mean_distance == pytest.approx(total / (hi - lo), rel=1e-12)
    assert r.distance > 1e-3
    r2 = compare_trajectories(a, b, progress_a=ta, progress_b=tb, n_grid=64)
    assert r2.distance == r.distance
    assert compare_trajectories(b, a, labels=labels, n_grid=64).distance == pytest.approx(r.distance, rel=1e-12)
    with pytest.raises(ValueError, match="by='unfolded'"):
        compare_trajectories(a, b, labels=labels, by="progress")


def test_compare_trajectories_validation():
    labels = _task()[0]
    a = _run([0.0, 0.2, 0.4], seed=1)
    with pytest.raises(ValueError, match="n_grid"):
        compare_trajectories(a, a, labels=labels, n_grid=1)
    with pytest.raises(ValueError, match=r"share \(N, C\)"):
        compare_trajectories(a, a[:, :10], labels=labels)
    with pytest.raises(ValueError, match="progress_b"):
        compare_trajectories(a, a, progress_a=[0, 0.1, 0.2])
    with pytest.raises(ValueError, match="share no range"):
        compare_trajectories(a, a, progress_a=[0.0, 0.1, 0.2], progress_b=[0.3, 0.4, 0.5])


# ----------------------------------------------------------------------------- families
def _family(K, lams, seed, bias=0.3, noise=0.05, jitter=0.03):
    """K seeds of one configuration: a bias towards a model of the family's own, plus a little noise per seed."""
    g = np.random.default_rng(seed)
    own = g.dirichlet(np.ones(C), size=N)
    seeds = [_run(np.clip(np.asarray(lams) + jitter * g.standard_normal(len(lams)), 0, 1), seed * 100 + k, noise=noise)
             for k in range(K)]
    return np.stack([(1 - bias) * s + bias * own for s in seeds])


def test_identical_families_have_normalized_distance_zero():
    labels = _task()[0]
    fam = _family(4, [0.0, 0.1, 0.3, 0.5], seed=1)
    r = compare_families(fam, fam.copy(), labels=labels, n_grid=30)
    assert np.all(np.abs(r.normalized_distance) < 1e-12) and abs(r.mean_normalized_distance) < 1e-12
    assert np.all(np.abs(r.between_means) < 1e-15)
    assert r.distance == pytest.approx(0.0, abs=1e-14)
    np.testing.assert_array_equal(r.mean_1, r.mean_2)
    assert np.all(r.radius_1 > 0) and np.array_equal(r.radius_1, r.radius_2)


def test_compare_families_equals_brute_force():
    labels = _task()[0]
    f1 = _family(3, [0.0, 0.1, 0.3, 0.5, 0.6], seed=2)
    f2 = _family(4, [0.02, 0.2, 0.45], seed=3, noise=0.1)  # fewer checkpoints, more seeds
    r = compare_families(f1, f2, labels=labels, n_grid=25)
    u1 = [unfolded_progress(progress(x, labels)) for x in f1]
    u2 = [unfolded_progress(progress(x, labels)) for x in f2]
    lo, hi = max(u[0] for u in u1 + u2), min(u[-1] for u in u1 + u2)
    assert r.range == (lo, hi)
    grid = np.linspace(lo, hi, 25)
    s1 = np.stack([_brute_reindex(x, u, grid) for x, u in zip(f1, u1)])
    s2 = np.stack([_brute_reindex(x, u, grid) for x, u in zip(f2, u2)])
    m1, m2 = s1.mean(0), s2.mean(0)
    np.testing.assert_allclose(r.mean_1, m1, atol=1e-12)
    np.testing.assert_allclose(r.mean_2, m2, atol=1e-12)
    r1 = np.max([_bhat(s, m1) for s in s1], axis=0)
    r2 = np.max([_bhat(s, m2) for s in s2], axis=0)
    np.testing.assert_allclose(r.radius_1, r1, atol=1e-12)
    np.testing.assert_allclose(r.radius_2, r2, atol=1e-12)
    gap = _bhat(m1, m2)
    np.testing.assert_allclose(r.between_means, gap, atol=1e-12)
    np.testing.assert_allclose(r.normalized_distance, 2 * gap / (r1 + r2), rtol=1e-9)
    ratio = 2 * gap / (r1 + r2)
    assert r.mean_normalized_distance == pytest.approx(np.sum((ratio[1:] + ratio[:-1]) * np.diff(grid)) / 2 / (hi - lo),
                                                       rel=1e-9)
    assert r.distance == pytest.approx(np.sum((gap[1:] + gap[:-1]) * np.diff(grid)) / 2, rel=1e-10)
    assert r.mean_distance == pytest.approx(r.distance / (hi - lo), rel=1e-12)
    assert r.mean_normalized_distance > 1  # the two families' tubes are apart: the comparison can tell

    tube = family_tube(f2, labels=labels, n_grid=25, keep_trajectories=True)
    lo2, hi2 = max(u[0] for u in u2), min(u[-1] for u in u2)
    assert tube.range == (lo2, hi2)
    g2 = np.linspace(lo2, hi2, 25)
    s = np.stack([_brute_reindex(x, u, g2) for x, u in zip(f2, u2)])
    np.testing.assert_allclose(tube.trajectories, s, atol=1e-12)
    np.testing.assert_allclose(tube.mean, s.mean(0), atol=1e-12)
    d = np.stack([_bhat(x, s.mean(0)) for x in s])
    np.testing.assert_allclose(tube.radius, d.max(0), atol=1e-12)
    assert tube.integrated_radius == pytest.approx(np.max(np.sum((d[:, 1:] + d[:, :-1]) * np.diff(g2), axis=1) / 2),
                                                   rel=1e-10)
    assert family_tube(f2, labels=labels, n_grid=25).trajectories is None


def test_families_with_zero_radius():
    labels = _task()[0]
    one = _family(1, [0.0, 0.2, 0.4], seed=4)
    other = _family(1, [0.0, 0.25, 0.45], seed=5)
    r = compare_families(one, other, labels=labels, n_grid=10)
    assert np.all(r.radius_1 == 0) and np.all(r.radius_2 == 0)
    assert np.all(np.isinf(r.normalized_distance[r.between_means > 0]))
    assert np.all(r.normalized_distance[r.between_means == 0] == 0)


def test_compare_families_validation():
    labels = _task()[0]
    f = _family(2, [0.0, 0.2, 0.4], seed=4)
    with pytest.raises(ValueError, match=r"progress_1 must hold one finite progress value per checkpoint, shape \(2, 3\)"):
        compare_families(f, f, progress_1=np.zeros((2, 2)), labels=labels)
    with pytest.raises(ValueError, match="trajs_2"):
        compare_families(f, f[0], labels=labels)
    with pytest.raises(ValueError, match=r"share \(N, C\)"):
        compare_families(f, f[:, :, :10], progress_1=np.zeros((2, 3)), progress_2=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="keep_trajectories"):
        family_tube(f, labels=labels, keep_trajectories=1)
    with pytest.raises(ValueError, match="share no range"):
        compare_families(f, f, progress_1=[[0, 0.1, 0.2]] * 2, progress_2=[[0.3, 0.4, 0.5]] * 2)
