"""Heads on frozen, centred features: separability of training sets (against linear programming), nesting,
determinism, bad inputs; simulate_heads is C6's."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from tasknb.chmm import CHMM, stack_samples
from tasknb.device import derived_seed
from tasknb.frozen_heads import simulate_heads, training_separability
from tasknb.gaussian_equivalence import centred_features, estimate_covariances
from tasknb.networks.stacks import init_two_layer

D, L, H, K = 40, 10, 12, 2


def _setup():
    chmms = [CHMM(D, L, L, 1.0, 0.2, 0.8, seed=3, realization=k, device="cpu") for k in range(K)]
    W1 = init_two_layer(K, H, D, seed=5, device="cpu").W1
    means = torch.stack([estimate_covariances(W1[k], chmms[k], n_samples=4000, seed=k).mean for k in range(K)])
    return chmms, W1, means.to(W1.dtype)


def _lp_separable(A):
    res = linprog(np.zeros(A.shape[1]), A_ub=-A, b_ub=-np.ones(A.shape[0]), bounds=[(None, None)] * A.shape[1],
                  method="highs")
    return res.status == 0


def test_separability_agrees_with_linear_programming_and_is_nested():
    chmms, W1, means = _setup()
    M_grid, R = [6, 20, 30, 150], 3
    out = training_separability(W1, chmms, means, M_grid, lam=1e-8, repeats=R, seed=7)
    assert out["separable"].shape == out["train_error"].shape == out["converged"].shape == (K, len(M_grid), R)
    # far below H every set is separable, far above the threshold (10 H) none is, and nested sets never become separable again
    assert out["separable"][:, 0].all() and not out["separable"][:, -1].any()
    assert np.all(np.diff(out["separable"].astype(int), axis=1) <= 0)
    # the head's verdict is exact: the same training sets, checked by LP feasibility of y v.w >= 1
    for k in range(K):
        X, y = stack_samples([chmms[k]] * R, M_grid[-1], "target", derived_seed(7, "separability.train", k))
        V = centred_features(W1[k].unsqueeze(0).expand(R, -1, -1), X, means[k].unsqueeze(0).expand(R, -1))
        for i, M in enumerate(M_grid):
            for r in range(R):
                A = (y[r, :M, None] * V[r, :M]).double().numpy() / math.sqrt(H)
                assert out["separable"][k, i, r] == _lp_separable(A), (k, M, r)
    again = training_separability(W1, chmms, means, M_grid, lam=1e-8, repeats=R, seed=7)
    np.testing.assert_array_equal(out["train_error"], again["train_error"])


def test_separability_bad_inputs():
    chmms, W1, means = _setup()
    with pytest.raises(ValueError, match="W1 must be a \\(K, H, D\\) tensor with K = len\\(chmms\\) = 2"):
        training_separability(W1[:1], chmms, means, [5])
    with pytest.raises(ValueError, match="means must be a \\(2, 12\\) tensor"):
        training_separability(W1, chmms, means[:, :3], [5])
    with pytest.raises(ValueError, match="M_grid must be strictly increasing"):
        training_separability(W1, chmms, means, [10, 5])
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        training_separability(W1, chmms, means, [5], lam=0.0)
    with pytest.raises(ValueError, match="repeats must be an integer >= 1"):
        training_separability(W1, chmms, means, [5], repeats=0)


def test_simulate_heads_is_the_one_c6_uses():
    from tasknb.chapters import c6_double_descent

    assert c6_double_descent.simulate_heads is simulate_heads
    chmms, W1, means = _setup()
    out = simulate_heads(W1[0], chmms[0], means[0], [5, 40], 1e-3, repeats=2, M_test=200, seed=1)
    assert out["test_error"].shape == out["train_error"].shape == (2, 2)
    assert np.all(out["train_error"][0] == 0.0)           # 5 examples, 12 features: always fitted
