"""Out-of-sample InPCA (InPCA.project), the permutation null of the explained stress and the symmetric KL
matrix of App. C (tasknb.geometry), against independent references."""
import numpy as np
import pytest
import torch

from tasknb.geometry import (InPCA, bhattacharyya_matrix, explained_stress_null, geodesic, inpca, inpca_projected,
                             reference_points, stochastic_projection, symmetric_kl_matrix)


def _dirichlet(m, N, C, seed, alpha=1.0):
    return np.random.default_rng(seed).dirichlet(np.full(C, alpha), size=(m, N))


def _curves(m, N, C, seed, n_curves=4):
    """m models on a few noisy ignorance -> truth geodesics: the models share their samples' structure."""
    g = np.random.default_rng(seed)
    labels = g.integers(0, C, N)
    P0, Ps = reference_points(labels, C)
    per = -(-m // n_curves)
    out = [0.8 * geodesic(P0, Ps, np.linspace(0.0, 0.9, per)) + 0.2 * g.dirichlet(np.ones(C), size=N)
           for _ in range(n_curves)]
    return np.concatenate(out)[:m]


# ----------------------------------------------------------------------------- InPCA.project
@pytest.mark.parametrize("method", ["full", "eigsh", "lobpcg"])
def test_projecting_the_fitted_rows_reproduces_coords(method):
    P = _curves(40, 80, 5, seed=0)
    D = bhattacharyya_matrix(P)
    emb = inpca(D, 4, method)
    np.testing.assert_allclose(emb.project(D), emb.coords, atol=1e-10)
    np.testing.assert_allclose(emb.project(D[7]), emb.coords[7], atol=1e-10)  # one row -> (k,)
    assert emb.project(torch.tensor(D[:3])).shape == (3, 4)


def test_projection_reproduces_coords_with_negative_eigenvalues():
    P = _dirichlet(30, 40, 3, seed=1, alpha=0.3)
    D = bhattacharyya_matrix(P)
    emb = inpca(D, 29, "full")  # all components but the centring's null direction (the constant vector)
    assert np.any(emb.eigenvalues < 0)  # a Minkowski embedding: the signs matter
    np.testing.assert_allclose(emb.project(D), emb.coords, atol=1e-10)
    y = emb.project(D[:5])
    reproduced = ((y[:, None, :] - emb.coords[None]) ** 2 * emb.signature).sum(-1)
    np.testing.assert_allclose(reproduced, D[:5], atol=1e-10)  # all m components: eq. (10) exactly


def test_a_copy_of_a_fitted_point_lands_on_it():
    P = _curves(30, 60, 4, seed=2)
    emb = inpca(bhattacharyya_matrix(P), 3)
    copy = P[11].copy()
    y = emb.project(bhattacharyya_matrix(copy[None], P))
    np.testing.assert_allclose(y[0], emb.coords[11], atol=1e-10)


def test_a_held_out_euclidean_point_is_placed_at_its_true_position():
    X = np.random.default_rng(3).standard_normal((26, 3)) * [3.0, 2.0, 1.0]
    D_all = ((X[:, None] - X[None]) ** 2).sum(-1)  # squared Euclidean distances: embeddable in R^3
    fit, held = np.arange(25), 25
    emb = inpca(D_all[np.ix_(fit, fit)], 3, "full")
    assert np.all(emb.eigenvalues > 0) and emb.explained_stress == pytest.approx(1.0, abs=1e-6)
    y = emb.project(D_all[held, fit])
    # up to the fitted rotation/translation: its distances to every fitted point are the true ones
    np.testing.assert_allclose(((y - emb.coords) ** 2).sum(-1), D_all[held, fit], rtol=1e-9, atol=1e-9)
    # and the fitted coordinates are the points themselves, rotated: pairwise distances agree
    np.testing.assert_allclose(emb.distances(), D_all[np.ix_(fit, fit)], atol=1e-9)
    # a control: with k = 2 the held-out point's distances are NOT reproduced
    y2 = inpca(D_all[np.ix_(fit, fit)], 2, "full")
    err2 = np.abs(((y2.project(D_all[held, fit]) - y2.coords) ** 2).sum(-1) - D_all[held, fit]).max()
    assert err2 > 1e-2


def test_ignorance_placed_into_models_alone_differs_from_fitting_with_it():
    P = _curves(24, 60, 4, seed=4)
    P0 = np.full_like(P[0], 0.25)
    emb = inpca(bhattacharyya_matrix(P), 3)
    y = emb.project(bhattacharyya_matrix(P0[None], P))
    assert y.shape == (1, 3) and np.all(np.isfinite(y))
    with_p0 = inpca(bhattacharyya_matrix(np.concatenate([P, P0[None]])), 3)
    assert not np.allclose(with_p0.coords[:-1], emb.coords, atol=1e-6)  # fitting with P0 moves the models


def test_inpca_projected_supports_projection_through_the_same_projection():
    P = _dirichlet(20, 50, 12, seed=5, alpha=0.5)
    emb = inpca_projected(P, 3, n_out=6, seed=7)
    Pp = stochastic_projection(P, 6, seed=7)
    np.testing.assert_allclose(emb.project(bhattacharyya_matrix(Pp)), emb.coords, atol=1e-10)


def test_project_bad_inputs():
    P = _dirichlet(10, 20, 3, seed=6)
    D = bhattacharyya_matrix(P)
    emb = inpca(D, 2)
    with pytest.raises(ValueError, match=r"D_new must have shape \(n_new, m\) = \(n_new, 10\)"):
        emb.project(D[:, :9])
    with pytest.raises(ValueError, match="finite"):
        emb.project(np.full((1, 10), np.nan))
    bare = InPCA(coords=emb.coords, eigenvalues=emb.eigenvalues, explained_stress=emb.explained_stress,
                 stress_by_k=emb.stress_by_k, method=emb.method)  # the old fields still construct
    with pytest.raises(ValueError, match="fit it with"):
        bare.project(D)


# ----------------------------------------------------------------------------- null of chi_k
def test_structured_models_beat_every_null_draw_and_iid_models_do_not():
    P = _curves(40, 200, 5, seed=7)
    real = inpca(bhattacharyya_matrix(P), 3).explained_stress
    null = explained_stress_null(P, 3, n_null=20, seed=0)
    assert null.shape == (20,) and null.dtype == np.float64
    assert real > null.max() + 0.1

    iid = _dirichlet(40, 200, 5, seed=8)
    real_iid = inpca(bhattacharyya_matrix(iid), 3).explained_stress
    null_iid = explained_stress_null(iid, 3, n_null=20, seed=0)
    assert null_iid.min() <= real_iid <= null_iid.max()
    # over several i.i.d. data sets the real value is one more draw of the null: rarely above all of
    # 10 draws (probability 1/11 each), whereas structured models are above them every time
    above_iid = above_curves = 0
    for s in range(6):
        X = _dirichlet(30, 100, 5, seed=100 + s)
        above_iid += inpca(bhattacharyya_matrix(X), 3).explained_stress > explained_stress_null(X, 3, 10, s).max()
        Y = _curves(30, 100, 5, seed=200 + s)
        above_curves += inpca(bhattacharyya_matrix(Y), 3).explained_stress > explained_stress_null(Y, 3, 10, s).max()
    assert above_iid <= 2 and above_curves == 6


def test_null_is_deterministic_and_each_draw_has_its_own_stream():
    P = _curves(20, 60, 4, seed=9)
    a = explained_stress_null(P, 2, n_null=6, seed=3)
    np.testing.assert_array_equal(a, explained_stress_null(P, 2, n_null=6, seed=3))
    np.testing.assert_array_equal(a[:4], explained_stress_null(P, 2, n_null=4, seed=3))
    assert len(np.unique(a)) == 6
    assert not np.array_equal(a, explained_stress_null(P, 2, n_null=6, seed=4))
    np.testing.assert_allclose(explained_stress_null(torch.tensor(P), 2, n_null=6, seed=3), a, atol=1e-12)
    np.testing.assert_allclose(explained_stress_null(P, 2, n_null=6, seed=3, dtype=torch.float32), a, atol=1e-5)


@pytest.mark.parametrize("kw, match", [
    (dict(k=0), "k must be an integer in"), (dict(k=21), "k must be an integer in"),
    (dict(n_null=0), "n_null"), (dict(seed=-1), "seed"),
])
def test_null_bad_inputs(kw, match):
    P = _dirichlet(20, 30, 3, seed=10)
    with pytest.raises(ValueError, match=match):
        explained_stress_null(P, **kw)
    with pytest.raises(ValueError, match="at least m = 2"):
        explained_stress_null(P[:1])
    with pytest.raises(ValueError, match="sum to 1"):
        explained_stress_null(P * 2)


# ----------------------------------------------------------------------------- symmetric KL
def _sym_kl_loop(P, Q, eps):
    out = np.zeros((len(P), len(Q)))
    for i in range(len(P)):
        for j in range(len(Q)):
            lp, lq = np.log(np.maximum(P[i], eps)), np.log(np.maximum(Q[j], eps))
            kl_pq = (P[i] * (lp - lq)).sum(-1)
            kl_qp = (Q[j] * (lq - lp)).sum(-1)
            out[i, j] = np.mean(kl_pq + kl_qp)
    return out


@pytest.mark.parametrize("chunk", [2**24, 50, 1])
def test_symmetric_kl_matches_a_per_pair_loop(chunk):
    P, Q = _dirichlet(9, 31, 4, seed=11, alpha=0.5), _dirichlet(5, 31, 4, seed=12, alpha=0.5)
    S = symmetric_kl_matrix(P, chunk=chunk)
    np.testing.assert_allclose(S, _sym_kl_loop(P, P, 1e-12), rtol=1e-10, atol=1e-12)
    assert np.array_equal(S, S.T) and np.all(np.diag(S) == 0) and np.all(S >= 0)
    assert S[~np.eye(9, dtype=bool)].min() > 0
    SQ = symmetric_kl_matrix(P, Q, chunk=chunk)
    assert SQ.shape == (9, 5)
    np.testing.assert_allclose(SQ, _sym_kl_loop(P, Q, 1e-12), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(symmetric_kl_matrix(Q, P, chunk=chunk), SQ.T, rtol=1e-10, atol=1e-12)
    St = symmetric_kl_matrix(torch.tensor(P), torch.tensor(Q))
    assert torch.is_tensor(St)
    np.testing.assert_allclose(St.numpy(), SQ, rtol=1e-10, atol=1e-12)


def test_zeros_are_floored_at_eps():
    P = np.array([[[1.0, 0.0], [0.5, 0.5]]])
    Q = np.array([[[0.5, 0.5], [0.5, 0.5]]])
    for eps in (1e-12, 1e-6):
        expected = _sym_kl_loop(P, Q, eps)
        got = symmetric_kl_matrix(P, Q, eps=eps)
        np.testing.assert_allclose(got, expected, rtol=1e-12)
        assert np.isfinite(got).all() and got[0, 0] > 0
    assert symmetric_kl_matrix(P, Q, eps=1e-12)[0, 0] > symmetric_kl_matrix(P, Q, eps=1e-6)[0, 0]


def test_symmetric_kl_is_eight_bhattacharyya_for_nearby_models():
    P = _dirichlet(4, 300, 5, seed=13, alpha=5.0)
    noise = np.random.default_rng(14).standard_normal(P.shape)
    errs = []
    for delta in (1e-1, 1e-2, 1e-3):
        Q = P * np.exp(delta * noise)
        Q /= Q.sum(-1, keepdims=True)
        ratio = np.diag(symmetric_kl_matrix(P, Q)) / np.diag(bhattacharyya_matrix(P, Q))
        errs.append(np.abs(ratio - 8).max())
    assert errs[2] < 1e-5  # symKL ~ sum dp^2 / p = 8 d_B to second order in dp
    assert errs[1] < errs[0] / 30 and errs[2] < errs[1] / 30  # the correction is O(dp^2): 100x per decade


def test_inpca_accepts_the_symmetric_kl_matrix():
    P = _curves(20, 60, 4, seed=15)
    S = symmetric_kl_matrix(P)
    emb = inpca(S, 20, "full")
    np.testing.assert_allclose(emb.distances(), S, atol=1e-10)  # all components: eq. (10) exactly
    assert inpca(S, 3).explained_stress > 0.5


@pytest.mark.parametrize("kw, match", [
    (dict(eps=0.0), "eps"), (dict(eps=-1e-3), "eps"), (dict(eps=0.5), "eps"), (dict(chunk=0), "chunk"),
])
def test_symmetric_kl_bad_inputs(kw, match):
    P = _dirichlet(3, 10, 3, seed=16)
    with pytest.raises(ValueError, match=match):
        symmetric_kl_matrix(P, **kw)
    with pytest.raises(ValueError, match=r"same \(N, C\)"):
        symmetric_kl_matrix(P, P[:, :5])
    with pytest.raises(ValueError, match=r"\(m, N, C\)"):
        symmetric_kl_matrix(P[0])
    with pytest.raises(ValueError, match="sum to 1"):
        symmetric_kl_matrix(P * 2)


# ----------------------------------------------------------------------------- inpca_with_placed
def test_placed_points_do_not_move_the_axes_and_copies_land_on_their_model():
    from tasknb.geometry import inpca_with_placed

    P = _curves(30, 60, 4, seed=3)
    P0, Ps = reference_points(np.argmax(P[-1], -1), 4)
    pic = inpca_with_placed(P, np.stack([P[5], P0, Ps]), k=3, n_null=4, seed=1)
    alone = inpca(bhattacharyya_matrix(P), k=3)
    np.testing.assert_allclose(pic.embedding.coords, alone.coords, atol=1e-12)
    np.testing.assert_allclose(pic.placed[0], alone.coords[5], atol=1e-8)
    np.testing.assert_array_equal(pic.stress_null, explained_stress_null(P, 3, 4, 1))
    # fitting P0 and P* WITH the models would move the axes (the reason the kernel exists)
    fitted_with = inpca(bhattacharyya_matrix(np.concatenate([P, P0[None], Ps[None]])), k=3)
    assert np.abs(np.abs(fitted_with.coords[:30]) - np.abs(alone.coords)).max() > 1e-3
    assert inpca_with_placed(P, k=2).placed.shape == (0, 2) and inpca_with_placed(P).stress_null.size == 0
    with pytest.raises(ValueError, match="placed must share"):
        inpca_with_placed(P, P[:2, :10])
    with pytest.raises(ValueError, match="n_null"):
        inpca_with_placed(P, n_null=-1)
