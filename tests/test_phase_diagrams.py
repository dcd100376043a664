"""Phase-diagram plumbing: shared Monte-Carlo moments across teachers, shapes, validation."""
import numpy as np
import pytest
import torch

from tasknb.chmm import CHMM
from tasknb.chapters.c4_phase_diagrams import phase_diagram
from tasknb.gaussian_equivalence import theory_over_targets
from tasknb.networks.stacks import init_two_layer
from tasknb.chapters.c4_phase_diagrams import PhaseDiagram


def test_theory_over_targets_shares_moments_across_q():
    K, D, H, L = 2, 60, 30, 15
    W1 = init_two_layer(K, H, D, seed=0).W1
    qs = [0.0, 0.5, 1.0]
    targets = [[CHMM(D, L, L, q=q, seed=k) for k in range(K)] for q in qs]
    eps, conv = theory_over_targets(W1, targets, [0.5, 2.0], 1e-2, n_samples=5000)
    assert eps.shape == (3, 2, 2) and conv.all()
    # one teacher solved alone gives the same number as inside the stacked call
    alone, _ = theory_over_targets(W1, [targets[1]], [0.5, 2.0], 1e-2, n_samples=5000)
    np.testing.assert_allclose(alone[0], eps[1], atol=1e-10)


def test_phase_diagram_shapes_and_validation():
    K, D, H, L = 2, 60, 30, 15
    src = init_two_layer(K, H, D, seed=0)
    rf = init_two_layer(K, H, D, seed=1).W1
    base = dict(D=D, L_source=L, L_target=L, eta=1.0, rho=0.0, q=1.0)
    d = phase_diagram("eta", [0.0, 1.0], base, [0.5, 2.0], 1e-2, src, rf, n_samples=4000)
    assert d.theory["TF"].shape == (2, 2) and d.gain("TF", "RF").shape == (2, 2)
    with pytest.raises(ValueError, match="knob must be one of 'q', 'eta', 'rho'"):
        phase_diagram("gamma", [0.0], base, [1.0], 1e-2, src, rf)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        phase_diagram("eta", [1.5], base, [1.0], 1e-2, src, rf)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        phase_diagram("q", [0.5], base, [1.0], 0.0, src, rf)
    with pytest.raises(ValueError, match="targets must be a list"):
        theory_over_targets(rf, [[CHMM(D, L, L)]], [1.0], 1e-2)


def test_gain_is_positive_when_the_transfer_learner_is_better():
    # toy diagram, 2 knob values x 3 realizations x 2 alphas: TF's error is below RF's and 2L's
    rng = np.random.default_rng(0)
    per_rf = 0.4 + 0.05 * rng.random((2, 3, 2))
    per_tf = per_rf - 0.1 - 0.02 * rng.random((2, 3, 2))
    num_2l = 0.45 + 0.05 * rng.random((2, 3, 1))
    num_tf = num_2l - 0.05 - 0.01 * rng.random((2, 3, 1))
    d = PhaseDiagram("q", np.array([0.0, 1.0]), np.array([0.5, 2.0]),
                     {"TF": per_tf.mean(1), "RF": per_rf.mean(1)}, np.array([1.0]),
                     {"TF": num_tf.mean(1), "2L": num_2l.mean(1)}, np.ones((2, 2), dtype=bool),
                     theory_realizations={"TF": per_tf, "RF": per_rf},
                     numerics_realizations={"TF": num_tf, "2L": num_2l})
    g = d.gain("TF", "RF")
    assert np.all(g > 0)
    np.testing.assert_array_equal(g, d.theory["RF"] - d.theory["TF"])      # err(baseline) - err(transfer)
    np.testing.assert_array_equal(d.gain("RF", "TF"), -g)
    assert np.all(d.gain("TF", "2L", numerics=True) > 0)
    np.testing.assert_allclose(d.gain_sem("TF", "RF"), (per_rf - per_tf).std(1, ddof=1) / np.sqrt(3))
    np.testing.assert_allclose(d.gain_sem("TF", "2L", numerics=True), (num_2l - num_tf).std(1, ddof=1) / np.sqrt(3))
    assert d.gain_sem("TF", "RF").shape == (2, 2) and d.gain_sem("TF", "2L", numerics=True).shape == (2, 1)
