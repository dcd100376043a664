"""The public entry points other code and the README rely on keep their names and signatures."""
from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import torch

import tasknb
from tasknb import chmm, data, geometry, landscape, langevin, replica


def _params(fn) -> list[str]:
    return list(inspect.signature(fn).parameters)


def test_chmm_entry_point():
    assert _params(chmm.CHMM)[:7] == ["D", "L_source", "L_target", "eta", "rho", "q", "seed"]
    model = chmm.CHMM(40, 10, 12, 0.8, 0.2, 0.9, seed=3)
    for draw in (model.sample_source, model.sample_target):
        assert _params(draw)[:2] == ["M", "seed"]
        sample = draw(7, seed=11)
        X, y = sample
        assert X.shape == (7, 40) and y.shape == (7,)
        assert sample.c.shape[0] == 7


def test_block_shuffle_entry_point():
    assert _params(data.block_shuffle)[:3] == ["x", "block_size", "seed"]
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 1, 4, 4)
    out = data.block_shuffle(x, 2, seed=0)
    assert out.shape == x.shape and torch.equal(out.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_linear_cka_entry_point():
    assert _params(landscape.linear_cka) == ["X", "Y", "debiased"]
    assert inspect.signature(landscape.linear_cka).parameters["debiased"].default is False
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(30, 5)), rng.normal(size=(30, 7))
    assert abs(landscape.linear_cka(X, X) - 1.0) < 1e-12
    assert 0.0 <= landscape.linear_cka(X, Y) <= 1.0


def test_solver_entry_point():
    assert _params(replica.solve_saddle_point)[:6] == ["Omega", "Phi", "theta", "alpha", "lam", "loss"]


def test_geometry_entry_points():
    assert _params(geometry.bhattacharyya_matrix)[:2] == ["P", "Q"]
    assert _params(geometry.geodesic)[:3] == ["P", "Q", "lam"]
    assert _params(geometry.progress)[:2] == ["P", "labels"]
    assert _params(geometry.riemann_length)[:1] == ["traj"]
    assert _params(geometry.inpca)[:3] == ["D", "k", "method"]
    for name in ("bhattacharyya_matrix", "geodesic", "progress", "riemann_length", "inpca"):
        assert getattr(tasknb, name) is getattr(geometry, name)
    rng = np.random.default_rng(0)
    P = rng.dirichlet(np.ones(3), size=(4, 5))
    assert geometry.bhattacharyya_matrix(P).shape == (4, 4)


def test_runner_command_line_alias():
    out = subprocess.run([sys.executable, "-m", "tasknb.runner", "--list"], capture_output=True, text=True,
                         check=True).stdout
    assert "c1" in out and "s1" in out


def test_first_passage_times_entry_point():
    """The issue's signature: one time per particle, any dimension, a boolean-mask target, inf and a
    warning (with the count) for particles that never arrive."""
    import warnings

    assert _params(langevin.first_passage_times)[:8] == [
        "grad_U", "x0", "target", "D", "dt", "n_particles", "max_steps", "seed"]

    def grad(x):  # U = |x|^2 / 2 in 2-D
        return x

    far = lambda x: x[:, 0] > 50.0          # practically unreachable in 200 steps
    near = lambda x: x.norm(dim=1) > 0.3    # reached quickly from the origin
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t = langevin.first_passage_times(grad, np.zeros(2), far, 0.5, 0.01, 64, 200, 0)
    assert t.shape == (64,) and np.isinf(t).all() and t.n_not_arrived == 64
    assert any("64" in str(w.message) for w in caught)
    t = langevin.first_passage_times(grad, np.zeros(2), near, 0.5, 0.01, 64, 5000, 0)
    assert np.isfinite(t).all() and t.n_not_arrived == 0 and (t > 0).all()
    again = langevin.first_passage_times(grad, np.zeros(2), near, 0.5, 0.01, 64, 5000, 0)
    other = langevin.first_passage_times(grad, np.zeros(2), near, 0.5, 0.01, 64, 5000, 1)
    assert np.array_equal(np.asarray(t), np.asarray(again)) and not np.array_equal(np.asarray(t), np.asarray(other))
