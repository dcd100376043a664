"""tasknb.chapters.r4_kramers: sweeps at tiny sizes against the exact quadrature, the log-tau fit on known data,
frames, validation."""
import matplotlib
import numpy as np
import pytest

from tasknb.chapters.r4_kramers import barrier_sweep, escape_sweep, fit_log_tau, survival_frame

matplotlib.use("Agg")


def test_escape_sweep_matches_quadrature_and_is_deterministic():
    s = escape_sweep([0.5, 1.0], dt=0.01, n_particles=400, n_groups=4, seed=0, device="cpu")
    assert s.group_tau.shape == (2, 4) and s.times.shape == (2, 400) and s.n_not_arrived == 0
    assert np.all(s.tau[0] > s.tau[1])                 # smaller D escapes more slowly
    assert np.all(np.abs(s.tau - s.exact) < 4 * s.se + 0.1 * s.exact)
    assert np.all(s.exact > s.kramers)                 # Kramers is the asymptote from below
    s2 = escape_sweep([0.5, 1.0], dt=0.01, n_particles=400, n_groups=4, seed=0, device="cpu")
    s3 = escape_sweep([0.5, 1.0], dt=0.01, n_particles=400, n_groups=4, seed=1, device="cpu")
    assert np.array_equal(s.times, s2.times) and not np.array_equal(s.times, s3.times)


def test_barrier_sweep_and_fit():
    b = barrier_sweep([0.25, 0.5], D=0.5, dt=0.01, n_particles=200, n_groups=4, seed=0, device="cpu")
    assert b.tau[1] > b.tau[0] and np.allclose(b.ratio, [0.5, 1.0])
    fig = survival_frame(b, 1)
    assert len(fig.axes) == 2


def test_fit_log_tau_recovers_a_known_slope():
    s = escape_sweep([0.5, 1.0], dt=0.01, n_particles=40, n_groups=2, seed=0, device="cpu")
    s.D = np.array([0.25, 0.5, 1.0])
    s.barrier = np.ones(3)
    s.group_tau = np.exp(0.3 + 1.7 / s.D)[:, None] * np.array([1.0, 1.1])[None, :]
    s.exact = np.exp(0.3 + 1.7 / s.D)
    f = fit_log_tau(s)
    assert f.slope == pytest.approx(1.7) and f.exact_slope == pytest.approx(1.7)
    assert f.intercept == pytest.approx(0.3 + 0.5 * np.log(1.1))
    with pytest.raises(ValueError, match="against"):
        fit_log_tau(s, against="time")


def test_validation():
    with pytest.raises(ValueError, match="D_values"):
        escape_sweep([1.0, 0.5])
    with pytest.raises(ValueError, match="n_groups"):
        escape_sweep([0.5], n_particles=10, n_groups=3)
    with pytest.raises(ValueError, match="barriers"):
        barrier_sweep([-1.0])
