"""Information-geometry kernels of Part S (tasknb.geometry): invariants, reference formulas, bad inputs."""
import math

import numpy as np
import pytest
import torch

from tasknb.geometry import (
    bhattacharyya,
    bhattacharyya_matrix,
    geodesic,
    inpca,
    inpca_projected,
    interpolate_trajectory,
    mean_trajectory,
    normalized_distance,
    progress,
    riemann_length,
    stochastic_projection,
    trajectory_distance,
    tube_radius,
)
from tasknb.readout import imprint, imprinted_probabilities, to_union_task


def _models(m=7, N=50, C=5, seed=0, alpha=0.5):
    return np.random.default_rng(seed).dirichlet(np.full(C, alpha), size=(m, N))


def _reference(P, Q):
    """d_B of eq. (2), one pair at a time, straight from the formula."""
    D = np.zeros((len(P), len(Q)))
    for i in range(len(P)):
        for j in range(len(Q)):
            bc = np.sqrt(P[i] * Q[j]).sum(-1)
            D[i, j] = -np.mean(np.log(np.clip(bc, np.finfo(float).tiny, 1.0)))
    return D


# ----------------------------------------------------------------------------- eq. (2)
@pytest.mark.parametrize("chunk, block", [(2**24, 128), (64, 2), (1000, 3)])
def test_bhattacharyya_matches_reference_and_invariants(chunk, block):
    P = _models(m=9, N=37, C=4)
    D = bhattacharyya_matrix(P, chunk=chunk, block=block)
    np.testing.assert_allclose(D, _reference(P, P), atol=1e-13)
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.all(D >= 0)
    off = D[~np.eye(9, dtype=bool)]
    assert off.min() > 0


def test_bhattacharyya_two_stacks_and_paired():
    P, Q = _models(m=5, seed=1), _models(m=3, seed=2)
    D = bhattacharyya_matrix(P, Q, block=2, chunk=100)
    assert D.shape == (5, 3)
    np.testing.assert_allclose(D, _reference(P, Q), atol=1e-13)
    np.testing.assert_allclose(bhattacharyya(P[:, None], Q[None]), D, atol=1e-13)
    assert bhattacharyya(P[0], P[0]) == pytest.approx(0.0, abs=1e-15)
    assert np.all(bhattacharyya_matrix(P, P).diagonal() <= 1e-15)


def test_bhattacharyya_exact_zeros_and_ones_are_finite():
    C, N = 3, 10
    onehot = np.eye(C)[np.arange(N) % C]
    other = np.eye(C)[(np.arange(N) + 1) % C]  # disjoint support on every sample
    half = np.full((N, C), 1.0 / C)
    P = np.stack([onehot, other, half, onehot])
    D = bhattacharyya_matrix(P)
    assert np.all(np.isfinite(D))
    assert D[0, 3] == 0.0
    assert D[0, 1] == pytest.approx(-math.log(np.finfo(float).tiny))  # clamped, finite
    assert D[0, 2] == pytest.approx(0.5 * math.log(C))  # half the cross-entropy of the uniform model
    np.testing.assert_allclose(D, _reference(P, P), rtol=1e-12)


def test_bhattacharyya_torch_float32_and_no_mutation():
    P = _models(m=6, N=40, C=10, seed=3)
    keep = P.copy()
    D64 = bhattacharyya_matrix(P)
    assert np.array_equal(P, keep)
    Pt = torch.as_tensor(P)
    Dt = bhattacharyya_matrix(Pt, dtype=torch.float32)
    assert isinstance(Dt, torch.Tensor) and Dt.dtype == torch.float64
    assert torch.equal(Pt, torch.as_tensor(keep))
    np.testing.assert_allclose(Dt.numpy(), D64, atol=1e-5)


def _hard_models(C=10, N=1001, seed=0):
    """Float32 stacks that stress the float32 path: soft and peaked Dirichlet models, an identical and
    a near-identical pair, confident models whose overlaps reach 1e-44, and disjoint one-hots."""
    rng = np.random.default_rng(seed)
    soft = rng.dirichlet(np.full(C, 2.0), size=(3, N))
    peaked = rng.dirichlet(np.full(C, 0.02), size=(3, N))
    near = 0.999 * peaked[:1] + 0.001 / C
    lab = rng.integers(0, C, N)
    eps = 10.0 ** rng.uniform(-44, -2, size=(3, N, 1))
    confident = np.repeat(eps / (C - 1), C, axis=-1)
    for k in range(3):
        confident[k, np.arange(N), (lab + k) % C] = 1 - eps[k, :, 0]
    onehot = np.stack([np.eye(C)[lab], np.eye(C)[(lab + 1) % C]])
    return np.concatenate([soft, peaked, peaked[:1], near, confident, onehot]).astype(np.float32)


@pytest.mark.parametrize("block, chunk", [(None, 2**24), (3, 5000)])
def test_bhattacharyya_float32_input_within_stated_tolerance_of_float64(block, chunk):
    P32 = _hard_models()
    P64 = P32.astype(np.float64)  # the same numbers, computed in float64
    D64 = bhattacharyya_matrix(P64, block=block, chunk=chunk)
    # rows sum to 1 only within float32 rounding (BC of a model with itself ~ 1 - 4e-9): the reference
    # clamps each coefficient at 1, bhattacharyya_matrix each product of four, and sets the diagonal to 0
    np.testing.assert_allclose(D64, _reference(P64, P64), rtol=1e-12, atol=1e-8)
    D32 = bhattacharyya_matrix(P32, block=block, chunk=chunk)  # default dtype: float32 for float32 input
    assert D32.dtype == np.float64 and np.array_equal(D32, D32.T) and np.all(np.diag(D32) == 0)
    assert np.all(np.abs(D32 - D64) <= 1e-6 * (1 + D64))  # the bound stated in the docstring
    assert not np.array_equal(D32, D64)  # float32 arithmetic was used
    assert D32[-2, -1] == pytest.approx(-math.log(np.finfo(float).tiny), rel=1e-12)  # disjoint: as in float64
    assert torch.equal(bhattacharyya_matrix(torch.as_tensor(P32), block=block, chunk=chunk), torch.as_tensor(D32))
    np.testing.assert_array_equal(bhattacharyya_matrix(P32, dtype=torch.float64, block=block, chunk=chunk), D64)
    DQ = bhattacharyya_matrix(P32, P32[:5], block=block, chunk=chunk)  # two stacks, float32 too
    assert np.all(np.abs(DQ - D64[:, :5]) <= 1e-6 * (1 + D64[:, :5]))


def test_bhattacharyya_tiles_and_slices_agree_with_the_reference():
    P = _models(m=41, N=103, C=6, seed=21)  # 3 row blocks of 16, N not a multiple of the group
    ref = _reference(P, P)
    for kw in ({}, {"chunk": 3000}, {"block": 5, "chunk": 700}, {"block": 64}):
        D = bhattacharyya_matrix(P, **kw)
        np.testing.assert_allclose(D, ref, rtol=1e-12, atol=1e-13)
        assert np.array_equal(D, D.T) and np.all(np.diag(D) == 0)
    np.testing.assert_allclose(bhattacharyya_matrix(P, P[7:30], chunk=3000), ref[:, 7:30], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("bad, match", [(np.nan, "finite"), (-0.25, ">= 0"), (0.6, "sum to 1"), (np.inf, "finite")])
def test_bhattacharyya_checks_every_slice(dtype, bad, match):
    P = _models(m=20, N=60, C=4, seed=22).astype(dtype)
    P[13, 57, 2] = bad  # a late sample of a model in the second row block
    for kw in ({"chunk": 600}, {"chunk": 600, "block": 4}, {}):
        with pytest.raises(ValueError, match=f"P .*{match}"):
            bhattacharyya_matrix(P, **kw)
        with pytest.raises(ValueError, match=f"Q .*{match}"):
            bhattacharyya_matrix(P[:3], P, **kw)
    with pytest.raises(ValueError, match="dtype"):
        bhattacharyya_matrix(P, dtype=torch.float16)


def test_hellinger_saturates_but_bhattacharyya_does_not():
    # the motivation of eq. (2): with many samples the product coefficient vanishes
    P, Q = _models(m=2, N=2000, C=10, seed=4)
    bc = np.sqrt(P * Q).sum(-1)
    hellinger = 2 * (1 - np.prod(bc))
    assert hellinger == pytest.approx(2.0)
    d = bhattacharyya(P, Q)
    assert 0 < d < 5


# ----------------------------------------------------------------------------- eq. (3)
def test_geodesic_endpoints_sphere_and_zero_angle():
    P, Q = _models(m=2, N=30, C=6, seed=5)
    Q[:5] = P[:5]  # samples with angle 0
    Q[5] = np.eye(6)[0]
    P[5] = np.eye(6)[0]
    lam = np.linspace(0, 1, 11)
    G = geodesic(P, Q, lam)
    assert G.shape == (11, 30, 6)
    np.testing.assert_allclose(G[0], P, atol=1e-12)
    np.testing.assert_allclose(G[-1], Q, atol=1e-12)
    np.testing.assert_allclose(G.sum(-1), 1.0, atol=1e-12)  # sum_c (sqrt p)^2 = 1: on the product of spheres
    assert np.all(G >= 0)
    np.testing.assert_allclose(G[:, :5], np.broadcast_to(P[:5], (11, 5, 6)), atol=1e-12)
    mid = geodesic(P, Q, 0.5)
    assert mid.shape == (30, 6)
    np.testing.assert_allclose(mid, G[5], atol=1e-12)
    # constant speed: the per-sample angle from P grows linearly in lambda
    th = np.arccos(np.clip(np.sqrt(P * Q).sum(-1), -1, 1))
    th_mid = np.arccos(np.clip(np.sqrt(P * mid).sum(-1), -1, 1))
    np.testing.assert_allclose(th_mid, th / 2, atol=1e-7)


# ----------------------------------------------------------------------------- eq. (4)
def _truth_and_ignorance(N=40, C=4, seed=6):
    labels = np.random.default_rng(seed).integers(0, C, N)
    return labels, np.eye(C)[labels], np.full((N, C), 1.0 / C)


def test_progress_of_truth_ignorance_and_geodesic_points():
    labels, Pstar, P0 = _truth_and_ignorance()
    assert progress(Pstar, labels) == pytest.approx(1.0, abs=1e-8)
    assert progress(P0, labels) == pytest.approx(0.0, abs=1e-8)
    lam = np.linspace(0, 1, 21)
    path = geodesic(P0, Pstar, lam)
    t = progress(path, labels)
    assert t.shape == (21,)
    np.testing.assert_allclose(t, lam, atol=1e-7)
    assert np.all(np.diff(t) > 0)


def test_progress_is_the_argmin_of_eq4():
    labels, Pstar, P0 = _truth_and_ignorance(N=30, C=5, seed=7)
    P = _models(m=4, N=30, C=5, seed=8)
    P[1, 3] = np.eye(5)[(labels[3] + 1) % 5]  # zero probability on a true class
    t = progress(P, labels)
    assert np.all((0 <= t) & (t <= 1))
    lam = np.linspace(0, 1, 2001)
    path = geodesic(P0, Pstar, lam)
    for i in range(4):
        d = bhattacharyya(P[i][None], path)
        assert abs(lam[np.argmin(d)] - t[i]) <= 1.5e-3
        assert bhattacharyya(P[i], geodesic(P0, Pstar, float(t[i]))) <= d.min() + 1e-12


# ----------------------------------------------------------------------------- eqs. (5), (6), App. G
def test_interpolation_trajectory_distance_and_length():
    labels, Pstar, P0 = _truth_and_ignorance(N=25, C=4, seed=9)
    lam = np.array([0.0, 0.1, 0.45, 0.8, 1.0])
    traj = geodesic(P0, Pstar, lam)  # checkpoints at uneven progress
    grid = np.linspace(0, 1, 11)
    on_grid = interpolate_trajectory(traj, grid, labels=labels)
    np.testing.assert_allclose(on_grid, geodesic(P0, Pstar, grid), atol=1e-9)
    np.testing.assert_allclose(progress(on_grid, labels), grid, atol=1e-7)
    assert trajectory_distance(on_grid, on_grid) == pytest.approx(0.0, abs=1e-15)
    other = interpolate_trajectory(traj[::-1].copy(), grid, progress_values=lam[::-1])
    assert trajectory_distance(on_grid, other) == pytest.approx(0.0, abs=1e-9)
    total, integrand = trajectory_distance(on_grid, np.broadcast_to(P0, on_grid.shape), return_integrand=True)
    assert integrand.shape == (11,) and total > 0
    # Riemann length of a finely sampled great circle: sqrt(2) * theta (same angle on every sample)
    fine = geodesic(P0, Pstar, np.linspace(0, 1, 801))
    theta = math.acos(1 / math.sqrt(4))
    assert riemann_length(fine) == pytest.approx(math.sqrt(2) * theta, rel=1e-4)
    # -log cos x >= x^2 / 2, so coarse steps overestimate the arc and refine down to it
    assert riemann_length(traj) >= riemann_length(fine) - 1e-12
    assert riemann_length(fine) <= riemann_length(fine[::2]) + 1e-12


def test_mean_tube_and_normalized_distance():
    T = _models(m=3 * 4, N=20, C=3, seed=10).reshape(3, 4, 20, 3)
    mu = mean_trajectory(T)
    assert mu.shape == (4, 20, 3)
    r = tube_radius(T)
    assert r.shape == (4,) and np.all(r > 0)
    np.testing.assert_allclose(r, bhattacharyya(T, mu[None]).max(0), atol=1e-14)
    assert tube_radius(T, integrated=True) > 0
    nd = normalized_distance(T, T)
    np.testing.assert_allclose(nd, 0.0, atol=1e-12)
    far = normalized_distance(T, T[:, :, :, ::-1].copy())
    assert np.all(far > 0)


# ----------------------------------------------------------------------------- eqs. (7)-(8), App. E
def test_imprinting_invariant_to_orthogonal_transforms():
    g = np.random.default_rng(11)
    n, d, K = 60, 8, 3
    labels = np.arange(n) % K
    feats = g.standard_normal((n, d)) + 2 * np.eye(K, d)[labels]
    U, _ = np.linalg.qr(g.standard_normal((d, d)))
    for normalize in (False, True):
        w = imprint(feats, labels, K, normalize_features=normalize)
        np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, atol=1e-12)
        p = imprinted_probabilities(feats, w, normalize_features=normalize)
        wr = imprint(feats @ U.T, labels, K, normalize_features=normalize)
        pr = imprinted_probabilities(feats @ U.T, wr, normalize_features=normalize)
        np.testing.assert_allclose(p, pr, atol=1e-12)
        assert bhattacharyya(p, pr) == pytest.approx(0.0, abs=1e-12)
    # a batch of checkpoints at once and the union-task map
    stack = np.stack([feats, feats @ U.T])
    q = to_union_task(stack, labels, K, scale=3.0)
    assert q.shape == (2, n, K)
    np.testing.assert_allclose(q.sum(-1), 1.0, atol=1e-12)
    np.testing.assert_allclose(q[0], q[1], atol=1e-12)
    assert (q[0].argmax(-1) == labels).mean() > 0.6


# ----------------------------------------------------------------------------- eqs. (9)-(11), App. A.2
def test_inpca_all_components_is_an_isometry():
    P = _models(m=12, N=40, C=4, seed=12)
    D = bhattacharyya_matrix(P)
    emb = inpca(D, k=12)
    assert emb.method == "full"
    np.testing.assert_allclose(emb.distances(), D, atol=1e-10)
    assert emb.explained_stress == pytest.approx(1.0, abs=1e-7)
    assert np.all(np.diff(emb.stress_by_k) >= -1e-12)
    assert np.all(np.diff(np.abs(emb.eigenvalues)) <= 1e-12)
    # points along a geodesic: d_B = -log cos(angle) grows faster than a squared Euclidean
    # distance, which InPCA shows as negative (time-like) eigenvalues
    C, N = 10, 40
    line = geodesic(np.full((N, C), 1 / C), np.eye(C)[np.arange(N) % C], np.linspace(0, 1, 12))
    D = bhattacharyya_matrix(line)
    emb = inpca(D, k=12)
    assert emb.eigenvalues[1] < -0.05
    np.testing.assert_allclose(emb.distances(), D, atol=1e-10)


@pytest.mark.parametrize("method", ["eigsh", "lobpcg"])
def test_inpca_topk_agrees_with_full(method):
    P = _models(m=150, N=30, C=5, seed=13, alpha=1.0)
    D = bhattacharyya_matrix(P)
    full = inpca(D, k=4, method="full")
    top = inpca(D, k=4, method=method)
    np.testing.assert_allclose(top.eigenvalues, full.eigenvalues, rtol=1e-6)
    np.testing.assert_allclose(np.abs(top.coords), np.abs(full.coords), atol=1e-6)
    np.testing.assert_allclose(top.distances(), full.distances(), atol=1e-6)
    assert top.explained_stress == pytest.approx(full.explained_stress, abs=1e-9)


def test_projection_trick_embedding_agrees():
    # models on a 1-D family: the exact embedding is dominated by one direction; the projected
    # one (C = 40 -> 12) must recover it (correlation of the first coordinate > 0.99)
    C, N = 40, 200
    labels, Pstar, P0 = _truth_and_ignorance(N=N, C=C, seed=14)
    g = np.random.default_rng(15)
    noise = g.dirichlet(np.ones(C), size=(N,))
    lam = np.linspace(0, 0.95, 16)
    P = 0.9 * geodesic(P0, Pstar, lam) + 0.1 * noise
    exact = inpca(bhattacharyya_matrix(P), k=2)
    proj = inpca_projected(P, k=2, n_out=12, seed=3, concentration=0.2)
    Pp = stochastic_projection(P, 12, seed=3, concentration=0.2)
    np.testing.assert_allclose(Pp.sum(-1), 1.0, atol=1e-12)
    assert np.all(bhattacharyya_matrix(Pp) <= bhattacharyya_matrix(P) + 1e-12)  # data processing
    r = np.corrcoef(exact.coords[:, 0], proj.coords[:, 0])[0, 1]
    assert abs(r) > 0.99
    assert proj.explained_stress > 0.8


# ----------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize(
    "call, match",
    [
        (lambda P: bhattacharyya_matrix(P * 1.01), "sum to 1"),
        (lambda P: bhattacharyya_matrix(np.where(P == P.max(), np.nan, P)), "finite"),
        (lambda P: bhattacharyya_matrix(P - 0.5 * (np.arange(P.size).reshape(P.shape) == 0)), ">= 0|sum to 1"),
        (lambda P: bhattacharyya_matrix(P[0]), r"P must have shape \(m, N, C\)"),
        (lambda P: bhattacharyya_matrix(P, P[:, :3]), "same \\(N, C\\)"),
        (lambda P: bhattacharyya_matrix(P, chunk=0), "chunk"),
        (lambda P: geodesic(P[0], P[1], 1.5), r"lam must be in \[0, 1\]"),
        (lambda P: geodesic(P[0], P[1, :3], 0.5), "same shape"),
        (lambda P: progress(P, np.full(P.shape[1], 9)), r"labels must be integers in \[0, 3\]"),
        (lambda P: progress(P, np.zeros(3, dtype=int)), "labels must have shape"),
        (lambda P: inpca(bhattacharyya_matrix(P), k=0), r"k must be an integer in \[1, m\]"),
        (lambda P: inpca(bhattacharyya_matrix(P), k=99), r"k must be an integer in \[1, m\]"),
        (lambda P: inpca(np.ones((3, 4))), "square"),
        (lambda P: inpca(np.arange(9.0).reshape(3, 3)), "symmetric"),
        (lambda P: inpca(bhattacharyya_matrix(P), k=2, method="svd"), "method must be one of"),
        (lambda P: imprint(np.ones((4, 3)), np.array([0, 0, 1, 1]), 3), "every class"),
        (lambda P: interpolate_trajectory(P, np.linspace(0, 1, 5)), "labels"),
        (lambda P: stochastic_projection(P, 1), "n_out"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, match):
    P = _models(m=5, N=10, C=4, seed=16)
    with pytest.raises(ValueError, match=match):
        call(P)


def test_reference_points_are_the_ends_of_the_progress_geodesic():
    from tasknb.geometry import reference_points

    labels = np.array([2, 0, 1, 2])
    P0, Pstar = reference_points(labels, 3)
    assert P0.shape == Pstar.shape == (4, 3) and P0.dtype == Pstar.dtype == np.float64
    assert np.array_equal(P0, np.full((4, 3), 1.0 / 3)) and np.array_equal(Pstar, np.eye(3)[labels])
    assert progress(P0, labels) < 1e-6 and progress(Pstar, labels) > 1 - 1e-6
    _, Pt = reference_points(torch.tensor(labels), 3)
    assert np.array_equal(Pt, Pstar)
    _, Pc = reference_points(labels, 3, clip=1e-6)
    ref = np.clip(np.eye(3)[labels], 1e-6, None)
    ref /= ref.sum(-1, keepdims=True)
    assert np.array_equal(Pc, ref) and Pc.min() > 0
    for bad, name in ((lambda: reference_points(labels, 1), "n_classes"), (lambda: reference_points([0, 3], 3), "labels"),
                      (lambda: reference_points(labels, 3, clip=2.0), "clip"), (lambda: reference_points([], 3), "labels")):
        with pytest.raises(ValueError, match=name):
            bad()
