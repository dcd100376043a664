"""R1 protocol: prior scale, fraction checks, fits, beta sweeps, the paired design, determinism."""
import numpy as np
import pytest
import torch

from tasknb.chapters.r1_task_complexity import (
    beta_sweep,
    check_fractions,
    fit_linear,
    measure_spectra,
    prior_scale,
    slq_check,
    train_networks,
)
from tasknb.complexity import complexity_from_eigenvalues
from tasknb.convergence import ThresholdSpec


def test_prior_scale_is_the_weight_decay_map():
    assert np.isclose(prior_scale(200, 5e-4), np.sqrt(10.0))
    assert np.isclose(prior_scale(100, 1e-3, beta=2.0), np.sqrt(20.0))
    with pytest.raises(ValueError, match="weight_decay"):
        prior_scale(10, 0.0)


def test_check_fractions():
    assert np.allclose(check_fractions([0, 0.5, 1]), [0, 0.5, 1])
    with pytest.raises(ValueError, match="start at 0.0"):
        check_fractions([0.1, 0.5, 1.0])
    with pytest.raises(ValueError, match="increasing"):
        check_fractions([0.0, 0.5, 0.5])
    with pytest.raises(ValueError, match="fractions"):
        check_fractions([0.0, 0.5, 1.5])


def test_fit_linear_recovers_slope_and_curvature():
    fr = np.array([0, 0.25, 0.5, 0.75, 1.0])
    lin = np.stack([3 + 2 * fr, 1 + 2 * fr], 1)
    f = fit_linear(fr, lin)
    assert np.allclose(f.slope, 2) and np.allclose(f.curvature, 0, atol=1e-9) and np.allclose(f.r2, 1)
    quad = np.stack([fr - fr ** 2, 2 * fr - fr ** 2], 1)
    assert np.allclose(fit_linear(fr, quad).curvature, -1)      # control: a concave curve is seen as such


def test_beta_sweep_matches_complexity():
    ev = np.array([50.0, 5.0, 0.5])
    betas = [0.1, 1.0, 10.0]
    s = beta_sweep(4.0, 2.0, ev, betas, lam=2.0)
    for i, b in enumerate(betas):
        c = complexity_from_eigenvalues(4.0, 2.0, ev, b, 2.0)
        assert np.isclose(s["total"][i], c.total)
        assert np.isclose(s["total"][i], s["loss"][i] + s["norm_term"][i] + s["logdet_term"][i])
        assert np.isclose(s["expected_loss"][i] + b * s["kl"][i], s["total"][i])


@pytest.fixture(scope="module")
def tiny_nets():
    spec = ThresholdSpec(lr=0.1, batch_size=10, threshold=1.5, max_steps=200, eval_every=5)
    return train_networks([0.0, 0.5, 1.0], 2, 20, 4, spec, size=4, seed=0, device="cpu")


def test_paired_design(tiny_nets):
    t = tiny_nets.tasks
    for k in range(2):
        assert torch.equal(t[0][k].X, t[2][k].X)                 # same images at every fraction
        changed_half = t[1][k].y != t[0][k].y
        changed_full = t[2][k].y != t[0][k].y
        assert changed_full.sum() >= changed_half.sum()
    assert not torch.equal(t[0][0].X, t[0][1].X)                 # seeds draw different images
    assert tiny_nets.steps.shape == (3, 2) and tiny_nets.runs.params["W1"].shape[0] == 6


def test_deterministic_and_spectra(tiny_nets):
    spec = ThresholdSpec(lr=0.1, batch_size=10, threshold=1.5, max_steps=200, eval_every=5)
    again = train_networks([0.0, 0.5, 1.0], 2, 20, 4, spec, size=4, seed=0, device="cpu")
    assert np.array_equal(again.steps, tiny_nets.steps)
    sp = measure_spectra(tiny_nets, "expected")
    assert sp.loss.shape == (3, 2) and len(sp.eigenvalues[0][0]) == min(200, 4 * 16 + 4 + 40 + 10)
    parts = sp.parts(1.0, 1.0)
    assert np.allclose(parts["total"], parts["loss"] + parts["norm_term"] + parts["logdet_term"])
    t = tiny_nets.tasks[0][0]
    s = slq_check(tiny_nets.model(0, 0), t.X, t.y, 1.0, 1.0, n_probes=100, n_steps=40)
    assert abs(s["z"]) < 3
