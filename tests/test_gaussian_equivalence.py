"""Monte-Carlo moments of frozen features on the CHMM, and RF theory vs simulation on the HMM."""
import numpy as np
import pytest
import torch

from tasknb.chmm import CHMM
from tasknb.gaussian_equivalence import (centred_features, estimate_covariances, predict_frozen_heads,
                                         simulate_frozen_heads)
from tasknb.networks.stacks import init_two_layer


def test_moments_match_a_direct_estimate():
    chmm = CHMM(D=40, L_source=10, L_target=12, eta=0.5, rho=0.2, q=0.3, seed=0)
    W1 = init_two_layer(1, 15, 40, seed=1, dtype=torch.float64).W1[0]
    mom = estimate_covariances(W1, chmm, n_samples=30_000, chunk=7_000, seed=3)
    assert mom.Omega.shape == (15, 15) and mom.Phi.shape == (12, 15) and mom.theta.shape == (12,)
    s = chmm.sample_target(60_000, seed=11)
    v = torch.relu(s.X.double() @ W1.T / 40)
    ref_mean = v.mean(0)
    ref_Omega = torch.cov(v.T)
    ref_Phi = s.c.double().T @ v / v.shape[0]
    torch.testing.assert_close(mom.mean, ref_mean, rtol=0.05, atol=2e-3)
    torch.testing.assert_close(mom.Omega, ref_Omega, rtol=0.1, atol=2e-3)
    torch.testing.assert_close(mom.Phi, ref_Phi, rtol=0.2, atol=3e-3)
    assert torch.allclose(mom.Omega, mom.Omega.T)
    assert float(torch.linalg.eigvalsh(mom.Omega).min()) > -1e-12


def test_rf_theory_matches_numerical_rf_on_the_hmm():
    K, D, H, L, lam = 6, 120, 60, 30, 1e-3
    chmms = [CHMM(D, L, L, eta=1.0, rho=0.0, q=1.0, seed=0, realization=k) for k in range(K)]
    W1 = init_two_layer(K, H, D, seed=7).W1
    M_grid = [30, 90, 240]
    theory, moments, sps = predict_frozen_heads(W1, chmms, np.array(M_grid) / H, lam, n_samples=40_000)
    assert all(sp.converged.all() for sp in sps)
    means = torch.stack([m.mean for m in moments]).float()
    sim = simulate_frozen_heads(W1, chmms, M_grid, lam, means, M_test=4000)
    gap = np.abs(sim.mean(0) - theory.mean(0))
    assert gap.mean() < 0.02 and gap.max() < 0.035, (sim.mean(0), theory.mean(0))
    # and within three standard errors of the paired (simulation - theory) differences, plus 0.01 of finite size
    sem = (sim - theory).std(0, ddof=1) / np.sqrt(K)
    assert np.all(gap < 3 * sem + 0.01), (gap, sem)
    assert np.all(np.diff(theory.mean(0)) < 0)


def test_bad_inputs():
    chmm = CHMM(D=20, L_source=5, L_target=5)
    W1 = torch.randn(8, 20)
    with pytest.raises(ValueError, match="W1 must be a \\(H, D\\) tensor with D = 20"):
        estimate_covariances(torch.randn(8, 21), chmm)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 2"):
        estimate_covariances(W1, chmm, n_samples=1)
    with pytest.raises(ValueError, match="which must be one of 'source', 'target'"):
        estimate_covariances(W1, chmm, which="both")
    with pytest.raises(ValueError, match="W1 must be \\(K, H, D\\) with K = len\\(chmms\\)"):
        predict_frozen_heads(W1.unsqueeze(0).repeat(2, 1, 1), [chmm], [1.0], 1e-3)
    with pytest.raises(ValueError, match="W1 must be \\(K, H, D\\), X \\(K, M, D\\) and mean \\(K, H\\)"):
        centred_features(W1, torch.randn(3, 20), torch.zeros(1, 8))
