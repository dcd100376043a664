"""tasknb.chapters.r3_path_integral: the bumped well (analytic vs autograd, equal U at the targets), the two-target
protocol at tiny size, marginal densities (normalised, c = 1/2 equals the exact v-integral), critical D scaling,
stationary sampler shapes and determinism."""
import math

import matplotlib
import numpy as np
import pytest
import torch

from tasknb.chapters.r3_path_integral import (BumpedWell, critical_D, effective_frame, group_log_likelihood,
                                              group_occupancy, marginal_density, predicted_occupancy, stationary_u,
                                              two_targets)
from tasknb.langevin import AutogradLandscape, SharpFlatWells

matplotlib.use("Agg")


def test_bumped_well_analytic_vs_autograd_and_equal_targets():
    bw = BumpedWell(k=1.0, bump=0.7, centre=0.5, half_width=0.3)

    def U(p):
        s = (p[0] - 0.5) / 0.3
        return 0.5 * p[0] ** 2 + 0.7 * torch.clamp(1 - s * s, min=0) ** 3
    ag = AutogradLandscape(U, 1)
    x = torch.linspace(-1.5, 1.5, 301, dtype=torch.float64)[:, None]
    for f in ("U", "grad", "hessian"):
        assert torch.allclose(getattr(bw, f)(x), getattr(ag, f)(x), atol=1e-9), f
    assert float(bw.U([[1.0]])) == float(bw.U([[-1.0]])) == 0.5


def test_two_targets_tiny():
    tt = two_targets(BumpedWell(bump=1.0), 0.3, 3.0, dt=0.01, n_particles=200, n_groups=4, path_steps=30, seed=0,
                     device="cpu")
    assert tt.p_left.shape == (4,) and np.all((0 <= tt.p_left) & (tt.p_left <= 1))
    assert tt.fw_right.action > tt.fw_left.action           # the bump costs small-noise action
    assert tt.fw_left.static == pytest.approx(tt.fw_right.static)


def test_marginal_density_is_the_exact_v_integral():
    sf = SharpFlatWells(0.3, 0.1, 30.0, 1.0, 1.0)
    grid = np.linspace(-3, 3, 601)
    D = 0.4
    d = marginal_density(sf, D, 0.5, grid)
    assert np.trapezoid(d, grid) == pytest.approx(1.0)
    # brute-force integral over v of exp(-U/D)
    v = np.linspace(-6, 6, 2001)
    uu, vv = np.meshgrid(grid, v, indexing="ij")
    pts = torch.as_tensor(np.stack([uu.ravel(), vv.ravel()], 1))
    w = np.exp(-sf.U(pts).numpy().reshape(uu.shape) / D)
    m = np.trapezoid(w, v, axis=1)
    m /= np.trapezoid(m, grid)
    assert np.max(np.abs(m - d)) < 1e-6 * d.max() + 1e-8
    assert np.max(np.abs(marginal_density(sf, D, 1.0, grid) - m)) > 0.05   # the c = 1 version differs


def test_critical_D_scales_with_the_coefficient():
    sf = SharpFlatWells(0.3, 0.1, 30.0, 1.0, 1.0)
    D_grid = np.linspace(0.01, 2.0, 400)
    d1, dh = critical_D(sf, 1.0, D_grid), critical_D(sf, 0.5, D_grid)
    assert 0 < d1 < dh and dh == pytest.approx(2 * d1, abs=0.02)
    assert critical_D(SharpFlatWells(0.3, 0.1, 1.0, 1.0, 1.0), 1.0, D_grid) == math.inf   # no curvature contrast


def test_stationary_sampler_and_group_statistics():
    sf = SharpFlatWells(0.3, 0.1, 30.0, 1.0, 1.0)
    a = stationary_u(sf, [0.3, 0.6], n_particles=40, n_groups=4, dt=0.004, burn_in=1.0, duration=1.0,
                     record_every=50, seed=0, device="cpu")
    b = stationary_u(sf, [0.3, 0.6], n_particles=40, n_groups=4, dt=0.004, burn_in=1.0, duration=1.0,
                     record_every=50, seed=0, device="cpu")
    assert a.samples.shape == (2, 4, 50) and np.array_equal(a.samples, b.samples)
    grid = np.linspace(-3, 3, 601)
    ll = group_log_likelihood(a.samples[0], marginal_density(sf, 0.3, 0.5, grid), grid)
    assert ll.shape == (4,) and np.all(np.isfinite(ll))
    occ = group_occupancy(a.samples[0], sf.saddle)
    assert np.all((0 <= occ) & (occ <= 1))
    assert predicted_occupancy(np.ones_like(grid), grid, 0.0) == pytest.approx(0.5, abs=0.01)
    assert len(effective_frame(sf, 0.3, a.samples[0], grid).axes) == 2
    with pytest.raises(ValueError, match="n_groups"):
        stationary_u(sf, [0.3], n_particles=10, n_groups=3)
