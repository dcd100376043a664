"""tasknb.fisher: per-sample gradients, the three Fishers, exact Gram spectra, matrix-free products, SLQ."""
import numpy as np
import pytest
import torch
from torch import nn

from tasknb.fisher import (
    fisher_factor,
    fisher_matvec,
    logdet_identity_plus,
    n_parameters,
    per_sample_gradients,
    sample_model_labels,
    slq_logdet,
)


def tiny(d_in=5, hidden=4, C=3, seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, C))


def data(n=12, d_in=5, C=3, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d_in, generator=g), torch.randint(0, C, (n,), generator=g)


def test_per_sample_gradients_match_autograd_loop():
    model, (X, y) = tiny(), data()
    G = per_sample_gradients(model, X, y, chunk_size=5)
    assert G.shape == (12, n_parameters(model)) and G.dtype == torch.float64
    m64 = tiny().double()
    for i in range(12):
        out = torch.log_softmax(m64(X[i:i + 1].double()), -1)[0, y[i]]
        ref = torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, list(m64.parameters()))])
        assert torch.allclose(G[i], ref, atol=1e-12)


def test_gram_eigenvalues_are_the_dense_spectrum():
    model, (X, y) = tiny(), data(n=6)                      # M = 6 < P = 39: Gram side
    for kind in ("true", "expected", "empirical"):
        F = fisher_factor(model, X, kind, y=y, seed=3)
        dense = np.sort(np.linalg.eigvalsh(F.dense().numpy()))[::-1]
        ev = F.eigenvalues()
        k = len(ev)
        assert k == min(F.G.shape)
        assert np.allclose(ev, dense[:k], atol=1e-10)
        assert np.allclose(dense[k:], 0.0, atol=1e-10)
        assert np.isclose(ev.sum(), F.trace())


def test_matrix_free_product_matches_factor():
    model, (X, y) = tiny(), data()
    v = torch.randn(n_parameters(model), dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    for kind in ("true", "expected", "empirical"):
        F = fisher_factor(model, X, kind, y=y, n_label_samples=3, seed=7)
        mv = fisher_matvec(model, X, kind, y=y, n_label_samples=3, seed=7)
        assert torch.allclose(mv(v), F.matvec(v), rtol=1e-10, atol=1e-12)


def test_sampled_labels_fisher_approaches_expected():
    model, (X, y) = tiny(), data(n=8)
    E = fisher_factor(model, X, "expected").dense()
    errs = []
    for S in (10, 1000):
        T = fisher_factor(model, X, "true", n_label_samples=S, seed=0).dense()
        errs.append(float(torch.linalg.norm(T - E) / torch.linalg.norm(E)))
    assert errs[1] < 0.1 and errs[1] < errs[0] / 3     # Monte-Carlo error ~ 1/sqrt(S)
    # the empirical Fisher (training labels) is a different matrix: control
    Emp = fisher_factor(model, X, "empirical", y=y).dense()
    assert float(torch.linalg.norm(Emp - E) / torch.linalg.norm(E)) > 3 * errs[1]


def test_true_fisher_ignores_training_labels():
    model, (X, y) = tiny(), data()
    a = fisher_factor(model, X, "true", y=y, seed=2).G
    b = fisher_factor(model, X, "true", y=(y + 1) % 3, seed=2).G
    assert torch.equal(a, b)
    assert torch.equal(sample_model_labels(model, X, 4, seed=9), sample_model_labels(model, X, 4, seed=9))
    assert not torch.equal(sample_model_labels(model, X, 4, seed=9), sample_model_labels(model, X, 4, seed=10))


def test_squared_minibatch_gradients_estimate_fisher_over_B():
    """E[g_B g_B^T] for a size-B mini-batch gradient (model labels, zero-mean terms) is F/B, not F."""
    model, (X, _) = tiny(), data(n=40)
    N, B, R = 40, 8, 4000
    Fmean = fisher_factor(model, X, "expected").dense() / N          # per-sample Fisher F
    rng = np.random.default_rng(0)
    idx = torch.as_tensor(rng.integers(0, N, size=(R, B)))
    labels = sample_model_labels(model, X[idx.reshape(-1)], 1, seed=1)[:, 0]
    G = per_sample_gradients(model, X[idx.reshape(-1)], labels).reshape(R, B, -1).mean(1)
    est = G.T @ G / R
    ratio = float(torch.trace(est) / torch.trace(Fmean))
    assert abs(ratio - 1 / B) < 0.15 / B                             # ~ 1/B ...
    assert ratio < 0.5                                               # ... and nowhere near 1


def test_slq_matches_exact_logdet():
    model, (X, _) = tiny(d_in=6, hidden=8, C=4), data(n=30, d_in=6, C=4)
    F = fisher_factor(model, X, "true", seed=0)
    for scale in (0.1, 10.0):
        exact = logdet_identity_plus(F.eigenvalues(), scale)
        est, se = slq_logdet(fisher_matvec(model, X, "true", seed=0), n_parameters(model), scale,
                             n_probes=300, n_steps=30, seed=0)
        assert se > 0 and abs(est - exact) < 3 * se
        assert abs(est - exact) < 0.05 * exact
    # control: a wrong scale is far off in SE units
    wrong = logdet_identity_plus(F.eigenvalues(), 20.0)
    assert abs(est - wrong) > 3 * se


def test_logdet_identity_plus_known_values():
    assert np.isclose(logdet_identity_plus([0.0, 1.0, 3.0], 1.0), np.log(2) + np.log(4))
    with pytest.raises(ValueError, match="eigenvalues"):
        logdet_identity_plus([1.0, -1.0], 1.0)
    with pytest.raises(ValueError, match="scale"):
        logdet_identity_plus([1.0], 0.0)


def test_validation_messages():
    model, (X, y) = tiny(), data()
    with pytest.raises(ValueError, match="kind"):
        fisher_factor(model, X, "hessian")
    with pytest.raises(ValueError, match="y"):
        fisher_factor(model, X, "empirical")
    with pytest.raises(ValueError, match="y must lie"):
        per_sample_gradients(model, X, y + 5)
    with pytest.raises(ValueError, match="n_label_samples"):
        fisher_factor(model, X, "true", n_label_samples=0)
    with pytest.raises(ValueError, match="X must be finite"):
        per_sample_gradients(model, X * float("nan"), y)
    with pytest.raises(TypeError, match="model"):
        per_sample_gradients("net", X, y)
    with pytest.raises(ValueError, match="n_probes"):
        slq_logdet(lambda v: v, 4, 1.0, n_probes=1)


def test_matrix_free_block_product():
    model, (X, y) = tiny(), data()
    V = torch.randn(n_parameters(model), 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    F = fisher_factor(model, X, "expected")
    mv = fisher_matvec(model, X, "expected")
    assert torch.allclose(mv(V), F.matvec(V), rtol=1e-10, atol=1e-12)
    assert torch.allclose(mv(V)[:, 1], mv(V[:, 1]), rtol=1e-12, atol=1e-14)


def test_slq_survives_lanczos_breakdown():
    """A rank-3 matrix: the Krylov space is exhausted after 3-4 steps; 20 steps must not blow up."""
    d = torch.zeros(50, dtype=torch.float64)
    d[:3] = torch.tensor([5.0, 2.0, 0.5], dtype=torch.float64)
    est, se = slq_logdet(lambda V: d[:, None] * V if V.ndim == 2 else d * V, 50, 1.0, n_probes=400,
                         n_steps=20, seed=1)
    exact = float(np.log1p(d.numpy()).sum())
    assert np.isfinite(est) and abs(est - exact) < 3 * se + 1e-9


def test_expected_rows_equal_weighted_per_class_gradients():
    model, (X, _) = tiny(), data(n=7)
    F = fisher_factor(model, X, "expected", chunk_size=20)                  # 2 samples per chunk
    C = 3
    p = torch.softmax(model(X).double(), -1)
    G = per_sample_gradients(model, X.repeat_interleave(C, 0), torch.arange(C).repeat(7))
    assert torch.allclose(F.G, G * p.reshape(-1, 1).sqrt(), atol=1e-12)
