"""Statistics of the CHMM generator against the construction of eqs. (1)-(5)."""
import math

import numpy as np
import pytest
import torch

from tasknb.chapters.c1_chmm_generator import expected_label_agreement, relatedness_sweep
from tasknb.chmm import CHMM, hmm_inputs, hmm_labels


def test_shapes_and_label_values():
    c = CHMM(D=120, L_source=30, L_target=20, eta=0.5, rho=0.2, q=0.3, seed=1)
    X, y = c.sample_source(64)
    Xt, yt = c.sample_target(32)
    assert X.shape == (64, 120) and y.shape == (64,)
    assert Xt.shape == (32, 120) and yt.shape == (32,)
    assert set(torch.unique(y).tolist()) <= {-1.0, 1.0} and set(torch.unique(yt).tolist()) <= {-1.0, 1.0}
    assert c.F_source.shape == (30, 120) and c.F_target.shape == (20, 120)
    assert c.theta_source.shape == (30,) and c.theta_target.shape == (20,)
    assert bool((X >= 0).all())  # ReLU inputs


def test_samples_follow_eq1():
    c = CHMM(D=50, L_source=10, L_target=10, eta=0.7, rho=0.0, q=0.5, seed=2)
    s = c.sample_target(100, seed=5)
    assert torch.allclose(s.X, torch.relu(s.c @ c.F_target / math.sqrt(10)))
    assert torch.equal(s.y, torch.where(s.c @ c.theta_target >= 0, 1.0, -1.0))


def test_feature_cosine_tracks_eta_when_nothing_substituted():
    for eta in (0.0, 0.3, 0.7, 0.95):
        c = CHMM(D=2000, L_source=100, L_target=100, eta=eta, rho=0.0, q=1.0, seed=3)
        assert abs(c.feature_cosine() - eta) < 0.03, (eta, c.feature_cosine())


def test_eta1_rho0_q1_is_the_same_task():
    c = CHMM(D=200, L_source=40, L_target=40, eta=1.0, rho=0.0, q=1.0, seed=4)
    assert torch.equal(c.F_source, c.F_target) and torch.equal(c.theta_source, c.theta_target)
    src, tgt = c.sample_paired(500, seed=0)
    assert torch.equal(src.y, tgt.y) and torch.equal(src.X, tgt.X)
    # same seed -> independent source and target examples (shared latents come only from sample_paired)
    assert not torch.equal(c.sample_source(50, seed=9).X, c.sample_target(50, seed=9).X)


def test_q_only_changes_the_labelling_rule():
    c = CHMM(D=200, L_source=40, L_target=40, eta=1.0, rho=0.0, q=0.2, seed=5)
    assert torch.equal(c.F_source, c.F_target)
    src, tgt = c.sample_paired(20_000, seed=1)
    assert torch.equal(src.X, tgt.X)
    agree = float((src.y == tgt.y).double().mean())
    assert abs(agree - expected_label_agreement(c.teacher_overlap())) < 0.015
    assert agree < 0.9


def test_q_one_and_minus_one():
    same = CHMM(D=50, L_source=10, L_target=10, q=1.0, seed=6)
    flip = CHMM(D=50, L_source=10, L_target=10, q=-1.0, seed=6)
    assert torch.equal(same.theta_target, same.theta_source)
    assert torch.equal(flip.theta_target, -flip.theta_source)


def test_rho1_gives_independent_features():
    c = CHMM(D=2000, L_source=100, L_target=100, eta=1.0, rho=1.0, q=1.0, seed=7)
    assert c.n_substituted == 100
    assert abs(c.feature_cosine()) < 0.02
    r = c.relatedness(M=20_000, seed=0)
    assert abs(r["input_correlation"]) < 0.03
    # rows are genuinely fresh: F_t is not a rescaled copy of F_s
    assert not torch.allclose(c.F_target, c.F_source)


def test_rho_substitutes_the_first_rows():
    c = CHMM(D=3000, L_source=50, L_target=50, eta=1.0, rho=0.3, q=1.0, seed=8)
    assert c.n_substituted == 15
    cos = torch.nn.functional.cosine_similarity(c.F_source, c.F_target, dim=1)
    assert bool((cos[:15].abs() < 0.1).all())
    assert torch.equal(c.F_target[15:], c.F_source[15:])
    assert abs(c.feature_cosine() - 0.7) < 0.02


def test_feature_deletion():
    c = CHMM(D=100, L_source=40, L_target=25, eta=1.0, rho=0.0, q=1.0, seed=9)
    assert torch.equal(c.F_target, c.F_source[:25])
    assert torch.equal(c.theta_target, c.theta_source[:25])


def test_feature_addition():
    c = CHMM(D=3000, L_source=25, L_target=40, eta=1.0, rho=0.0, q=1.0, seed=10)
    assert torch.equal(c.F_target[:25], c.F_source)
    assert torch.equal(c.theta_target[:25], c.theta_source)
    # the 15 added rows are fresh Gaussian features, nearly orthogonal to every source row
    a = torch.nn.functional.normalize(c.F_target[25:], dim=1)
    b = torch.nn.functional.normalize(c.F_source, dim=1)
    assert float((a @ b.T).abs().max()) < 0.1
    assert abs(float(c.F_target[25:].std()) - 1.0) < 0.05


def test_seed_reproducibility_and_stream():
    a = CHMM(D=80, L_source=12, L_target=12, eta=0.4, rho=0.25, q=0.1, seed=11)
    b = CHMM(D=80, L_source=12, L_target=12, eta=0.4, rho=0.25, q=0.1, seed=11)
    assert torch.equal(a.F_target, b.F_target) and torch.equal(a.theta_target, b.theta_target)
    assert torch.equal(a.sample_target(20).X, b.sample_target(20).X)
    # successive draws of the default stream differ
    assert not torch.equal(a.sample_target(20).X, a.sample_target(20).X)
    other = CHMM(D=80, L_source=12, L_target=12, eta=0.4, rho=0.25, q=0.1, seed=12)
    assert not torch.equal(a.F_source, other.F_source)


def test_relatedness_sweep_is_monotone_in_eta():
    base = dict(D=300, L_source=30, L_target=30, eta=1.0, rho=0.0, q=1.0, seed=0)
    s = relatedness_sweep("eta", [0.0, 0.5, 1.0], base, M=5000)
    assert np.all(np.diff(s["input_correlation"]) > 0)
    with pytest.raises(ValueError, match="param must be one of"):
        relatedness_sweep("gamma", [1], base)


def test_helpers_shapes():
    c = torch.randn(7, 5)
    F = torch.randn(5, 9)
    assert hmm_inputs(c, F).shape == (7, 9)
    assert hmm_labels(c, torch.randn(5)).shape == (7,)


@pytest.mark.parametrize("kwargs, message", [
    (dict(rho=1.5), r"rho must be in \[0, 1\]"),
    (dict(rho=-0.1), r"rho must be in \[0, 1\]"),
    (dict(q=1.2), r"q must be in \[-1, 1\]"),
    (dict(q=-2), r"q must be in \[-1, 1\]"),
    (dict(eta=-0.5), r"eta must be in \[0, 1\]"),
    (dict(eta=float("nan")), r"eta must be a finite number"),
    (dict(D=0), r"D must be an integer >= 1"),
    (dict(D=-5), r"D must be an integer >= 1"),
    (dict(L_source=0), r"L_source must be an integer >= 1"),
    (dict(L_target=2.5), r"L_target must be an integer >= 1"),
    (dict(seed=-1), r"seed must be an integer >= 0"),
    (dict(device="tpu"), r"device must be one of"),
])
def test_bad_parameters_name_themselves(kwargs, message):
    args = dict(D=10, L_source=4, L_target=4, eta=1.0, rho=0.0, q=1.0, seed=0)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        CHMM(**args)


def test_bad_sample_size():
    c = CHMM(D=10, L_source=4, L_target=4)
    for M in (0, -3, 1.5):
        with pytest.raises(ValueError, match="M must be an integer >= 1"):
            c.sample_source(M)
