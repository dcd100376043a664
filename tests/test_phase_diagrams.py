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


def test_paired_gain_per_cell_and_over_a_region():
    rng = np.random.default_rng(1)
    per_rf = 0.4 + 0.05 * rng.random((2, 4, 3))                # (n_values, K, n_alpha)
    per_tf = per_rf - 0.1 + 0.01 * rng.standard_normal((2, 4, 3))
    d = PhaseDiagram("q", np.array([0.0, 1.0]), np.array([0.5, 1.0, 2.0]),
                     {"TF": per_tf.mean(1), "RF": per_rf.mean(1)}, np.array([1.0]),
                     theory_realizations={"TF": per_tf, "RF": per_rf})
    p = d.paired_gain("TF", "RF")
    np.testing.assert_allclose(p.mean, d.gain("TF", "RF"))
    np.testing.assert_allclose(p.sem, d.gain_sem("TF", "RF"))
    assert p.resolved(+1).all() and not p.resolved(-1).any()
    region = np.array([[True, True, False], [False, False, False]])
    r = d.paired_gain("TF", "RF", region=region, label="corner")
    per_k = (per_rf - per_tf)[0, :, :2].mean(-1)                # one region mean per realization
    np.testing.assert_allclose(r.mean, per_k.mean())
    np.testing.assert_allclose(r.sem, per_k.std(ddof=1) / 2)
    assert r.describe().startswith("corner: +")
    with pytest.raises(ValueError, match="region must be a boolean mask of shape"):
        d.paired_gain("TF", "RF", region=np.ones((2, 2), dtype=bool))
    with pytest.raises(ValueError, match="region must select at least one cell"):
        d.paired_gain("TF", "RF", region=np.zeros((2, 3), dtype=bool))


def test_interpolation_cut_places_one_size_at_the_threshold_and_validates():
    from tasknb.chapters.c4_phase_diagrams import interpolation_cut
    from tasknb.training import TrainingConfig

    K, D, H, L = 2, 40, 20, 10
    src = init_two_layer(K, H, D, seed=0)
    targets = [CHMM(D, L, L, seed=0, realization=k) for k in range(K)]
    cut = interpolation_cut(targets, src, 1e-3, [0.5, 2.0], threshold_factors=(0.5, 1.0),
                            scratch=TrainingConfig(2, 0.1, 1000), n_samples=3000, M_test=200)
    assert cut.alpha_star.shape == (K,) and np.all(cut.alpha_star >= 2.0 - 1e-9)   # Cover: alpha* >= 2 (r >= 0)
    np.testing.assert_allclose(cut.alpha_numerics[1], round(cut.alpha_star.mean() * H) / H)
    assert cut.theory_TF.shape == (K, 2) and cut.errors["TF"].shape == (K, 2) == cut.errors["2L"].shape
    g = cut.paired_gain()
    np.testing.assert_allclose(g.mean, (cut.errors["2L"] - cut.errors["TF"]).mean(0))
    dip = cut.dip(1, 0)
    gk = cut.errors["2L"] - cut.errors["TF"]
    np.testing.assert_allclose(dip.mean, (gk[:, 0] - gk[:, 1]).mean())
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        interpolation_cut(targets, src, 0.0, [1.0])
    with pytest.raises(ValueError, match="threshold_factors must be strictly increasing"):
        interpolation_cut(targets, src, 1e-3, [1.0], threshold_factors=(1.0, 0.5))
    with pytest.raises(ValueError, match="targets must hold one CHMM per realization"):
        interpolation_cut(targets[:1], src, 1e-3, [1.0])
