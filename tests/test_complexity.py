"""tasknb.complexity: the constants of eq. (4) against a direct minimisation of eq. (3), the
structure function, exact vs SLQ on a network, the static distance."""
import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torch import nn

from tasknb.complexity import (
    complexity,
    complexity_from_eigenvalues,
    posterior_scale,
    static_distance,
    static_distance_matrix,
    structure_function,
    summed_loss,
)
from tasknb.fisher import fisher_factor


def quadratic(k=4, seed=0):
    rng = np.random.default_rng(seed)
    R = rng.normal(size=(k, k))
    A = R @ R.T + 0.3 * np.eye(k)
    return A, rng.normal(size=k), rng.normal(size=k), 1.7        # A, m, w0, L0


def lagrangian(Sigma, A, m, w0, L0, beta, lam):
    """eq. (3) for Q = N(w0, Sigma), prior N(0, lam^2 I), exact Gaussian expectation of the quadratic."""
    k = len(w0)
    EL = L0 + 0.5 * (w0 - m) @ A @ (w0 - m) + 0.5 * np.trace(A @ Sigma)
    KL = 0.5 * (w0 @ w0 / lam ** 2 + np.trace(Sigma) / lam ** 2 + k * np.log(lam ** 2)
                - np.linalg.slogdet(Sigma)[1] - k)
    return EL + beta * KL, EL, KL


def numeric_minimum(A, m, w0, L0, beta, lam):
    k = len(w0)
    tril = np.tril_indices(k)

    def unpack(theta):
        Lc = np.zeros((k, k))
        Lc[tril] = theta
        Lc[np.diag_indices(k)] = np.exp(Lc[np.diag_indices(k)])
        return Lc @ Lc.T

    theta0 = np.zeros(len(tril[0]))
    res = minimize(lambda t: lagrangian(unpack(t), A, m, w0, L0, beta, lam)[0], theta0, method="BFGS",
                   options={"gtol": 1e-11, "maxiter": 10000})
    return unpack(res.x), res.fun


@pytest.mark.parametrize("beta,lam", [(1.0, 1.0), (0.3, 2.0), (4.0, 0.5)])
def test_minimised_convention_is_the_minimum_of_eq3(beta, lam):
    A, m, w0, L0 = quadratic()
    Sigma, value = numeric_minimum(A, m, w0, L0, beta, lam)
    loss_w0 = L0 + 0.5 * (w0 - m) @ A @ (w0 - m)
    ev = np.linalg.eigvalsh(A)
    c = complexity_from_eigenvalues(loss_w0, w0 @ w0, ev, beta, lam, "minimised")
    assert abs(c.total - value) < 1e-6
    assert np.allclose(Sigma, np.linalg.inv(A / beta + np.eye(len(w0)) / lam ** 2), atol=1e-5)
    _, EL, KL = lagrangian(Sigma, A, m, w0, L0, beta, lam)
    assert abs(c.kl - KL) < 1e-5 and abs(c.expected_loss - EL) < 1e-5
    assert abs(c.expected_loss + beta * c.kl - c.total) < 1e-10
    # eq. (4) as printed (2 lam^2 / beta) is not that minimum
    p = complexity_from_eigenvalues(loss_w0, w0 @ w0, ev, beta, lam, "paper")
    assert abs(p.total - value) > 1e-2
    # ... and its Sigma* = (beta/2)(H + beta/(2 lam^2) I)^-1 gives a larger value of eq. (3)
    Sp = 0.5 * beta * np.linalg.inv(A + beta / (2 * lam ** 2) * np.eye(len(w0)))
    vp, ELp, KLp = lagrangian(Sp, A, m, w0, L0, beta, lam)
    assert vp > value + 1e-4
    assert abs(p.kl - KLp) < 1e-9 and abs(p.expected_loss - ELp) < 1e-9


def test_posterior_scale_and_validation():
    assert posterior_scale(2.0, 3.0) == 4.5 and posterior_scale(2.0, 3.0, "paper") == 9.0
    with pytest.raises(ValueError, match="beta"):
        posterior_scale(0.0, 1.0)
    with pytest.raises(ValueError, match="lam"):
        posterior_scale(1.0, -1.0)
    with pytest.raises(ValueError, match="convention"):
        posterior_scale(1.0, 1.0, "printed")
    with pytest.raises(ValueError, match="loss"):
        complexity_from_eigenvalues(float("nan"), 1.0, [1.0], 1.0)
    with pytest.raises(ValueError, match="eigenvalues"):
        complexity_from_eigenvalues(1.0, 1.0, [1.0, -2.0], 1.0)
    with pytest.raises(ValueError, match="betas"):
        structure_function(1.0, 1.0, [1.0], [2.0, 1.0])


def test_structure_function_trades_information_for_loss():
    ev = np.array([100.0, 10.0, 1.0, 0.1])
    betas = np.logspace(-2, 2, 9)
    kl, el = structure_function(5.0, 3.0, ev, betas)
    assert np.all(np.diff(kl) < 0) and np.all(np.diff(el) > 0)
    # as beta -> 0 the posterior collapses on w0 (E L -> L(w0)); KL grows like log(1/beta)
    assert el[0] - 5.0 < 0.05 * (el[-1] - 5.0)


def net_and_data(seed=0, n=25):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    g = torch.Generator().manual_seed(seed + 1)
    return model, torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)


def test_complexity_of_a_network_exact_and_slq():
    model, X, y = net_and_data()
    c = complexity(model, X, y, beta=0.5, lam=1.0, seed=3)
    ref_loss = float(nn.functional.cross_entropy(model(X).double(), y, reduction="sum"))
    assert abs(c.loss - ref_loss) < 1e-4 and abs(summed_loss(model, X, y) - c.loss) < 1e-12
    sq = sum(float((p.double() ** 2).sum()) for p in model.parameters())
    ev = fisher_factor(model, X, "true", seed=3).eigenvalues()
    assert abs(c.logdet - np.log1p(ev / 0.5).sum()) < 1e-10
    assert abs(c.total - (c.loss + 0.25 * sq + 0.25 * c.logdet)) < 1e-9
    s = complexity(model, X, y, beta=0.5, lam=1.0, method="slq", seed=3, n_probes=200, n_steps=30)
    assert abs(s.logdet - c.logdet) < 3 * s.logdet_se and abs(s.logdet - c.logdet) < 0.05 * c.logdet
    with pytest.raises(ValueError, match="method"):
        complexity(model, X, y, 1.0, method="kfac")
    with pytest.raises(ValueError, match="fisher"):
        complexity(model, X, y, 1.0, fisher="hessian")


def test_static_distance_matrix():
    single = {"a": 10.0, "b": 4.0, "c": 7.0}
    unions = {("a", "b"): 12.0, ("a", "c"): 15.0, ("c", "b"): 9.0}
    d = static_distance_matrix(single, unions, ["a", "b", "c"])
    assert np.allclose(d, [[0, 2, 5], [8, 0, 5], [8, 2, 0]])
    assert static_distance(3.0, 1.0) == 2.0
    with pytest.raises(KeyError, match="union"):
        static_distance_matrix(single, {("a", "b"): 1.0}, ["a", "b", "c"])
    with pytest.raises(ValueError, match="c_union"):
        static_distance(float("inf"), 1.0)
