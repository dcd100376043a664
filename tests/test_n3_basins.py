"""N3's protocol on tiny sizes: the lambda grid, how the pairs are built, the per-pair barrier and
midpoint gain, the two-domain mean."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tasknb.chapters.n3_basins import (CROSS_KINDS, PAIR_KINDS, PairCurves, lambda_grid, mean_curves,
                                       pair_curves, train_basin_models)
from tasknb.landscape import InterpolationCurve
from tasknb.networks.resnet import init_resnet
from tasknb.pretraining import TaskImages, TrainSpec, get_state, start_state


def test_lambda_grid_holds_endpoints_and_midpoint():
    g = lambda_grid(4, -1.0, 2.0)
    assert g[0] == -1.0 and g[-1] == 2.0
    for v in (0.0, 0.5, 1.0):
        assert np.any(np.abs(g - v) < 1e-12)
    assert np.all(np.diff(g) > 0)
    with pytest.raises(ValueError, match="low"):
        lambda_grid(5, 0.5, 2.0)
    with pytest.raises(ValueError, match="high"):
        lambda_grid(5, -1.0, 0.5)
    with pytest.raises(ValueError, match="n_lambdas"):
        lambda_grid(2)


def _curve(acc):
    lam = np.array([-1.0, 0.0, 0.5, 1.0, 2.0])
    return InterpolationCurve(lam, 1.0 - np.asarray(acc, float), np.asarray(acc, float), 10)


def test_barriers_and_midpoint_gain_by_hand():
    pc = PairCurves(np.array([-1.0, 0.0, 0.5, 1.0, 2.0]),
                    [_curve([0.1, 0.8, 0.3, 0.6, 0.1]), _curve([0.5, 0.8, 0.9, 0.6, 0.5])])
    # chord at 1/2 is 0.7: the first dips 0.4 below it; the second lies above it (barrier 0)
    assert np.allclose(pc.barriers("accuracy"), [0.4, 0.0])
    # midpoint minus the better endpoint (0.8)
    assert np.allclose(pc.midpoint_gain(), [-0.5, 0.1])
    # values outside [0, 1] do not enter the barrier
    assert np.allclose(pc.at(2.0), [0.1, 0.5])
    with pytest.raises(ValueError, match="grid"):
        pc.at(0.25)
    m = mean_curves([pc, PairCurves(pc.lambdas, [_curve([0.1, 0.6, 0.3, 0.8, 0.1]), _curve([0.5] * 5)])])
    assert np.allclose(m.accuracy[0], [0.1, 0.7, 0.3, 0.7, 0.1])
    assert np.allclose(m.barriers(), [0.4, 0.0], atol=1e-12)


def _tiny_task(name, n=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.arange(n) % 3
    return TaskImages(X, y, 3, name)


def test_train_basin_models_pairs_and_starts(tmp_path):
    task_a, task_b = _tiny_task("a"), _tiny_task("b", seed=1)
    source = get_state(init_resnet(3, 2, 123, "cpu"))
    spec = TrainSpec(steps=2, batch_size=8, lr=0.01, eval_every=2)
    bm = train_basin_models(task_a, task_b, spec, 2, 0, source=source, width=2, device="cpu")
    assert set(bm.pairs) == set(PAIR_KINDS) and set(bm.cross) == set(CROSS_KINDS)
    assert bm.n_pairs == 2
    # a same-start pair shares its model A with the different-start pair of its kind
    for j in range(2):
        for a, b in (("P-T", "P-T same start"), ("RI-T", "RI-T same init")):
            sa, sb = bm.pairs[a][j][0], bm.pairs[b][j][0]
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
            # ... but not its model B (another start)
            assert not all(torch.equal(bm.pairs[a][j][1][k], bm.pairs[b][j][1][k]) for k in sa)
    # P-T models keep close to the source body; RI-T models do not (2 tiny steps)
    p_a = bm.pairs["P-T"][0][0]
    body = [k for k in source if not k.startswith("fc.")]
    d_p = sum(float((p_a[k] - source[k]).norm()) for k in body)
    d_ri = sum(float((bm.pairs["RI-T"][0][0][k] - source[k]).norm()) for k in body)
    assert d_p < 0.1 * d_ri
    # a same-init RI-T pair starts from one random network: after 2 small steps its models are closer
    # than the two models of the different-init pair
    def dist(s, t):
        return sum(float((s[k] - t[k]).norm() ** 2) for k in s) ** 0.5
    assert dist(*bm.pairs["RI-T same init"][0]) < 0.5 * dist(*bm.pairs["RI-T"][0])
    # cross pairs: model on A is A's run 2j + 1
    for j in range(2):
        assert all(torch.equal(bm.cross["P-T"][j][0][k], bm.pairs["P-T"][j][1][k]) for k in source)
    with pytest.raises(ValueError, match="same classes"):
        train_basin_models(task_a, TaskImages(task_b.X, task_b.y % 2, 2, "c"), spec, 2, 0, source=source, width=2)
    with pytest.raises(ValueError, match="n_pairs"):
        train_basin_models(task_a, task_b, spec, 1, 0, source=source, width=2)


def test_pair_curves_endpoints_are_the_models():
    task = _tiny_task("a", n=30)
    s0 = start_state("RI", 3, 2, 0, 0)
    s1 = start_state("RI", 3, 2, 0, 1)
    pc = pair_curves([(s0, s1), (s1, s0)], lambda_grid(4), task.X, task.y, 3, width=2, device="cpu")
    assert pc.accuracy.shape == (2, len(pc.lambdas))
    # swapping the pair mirrors the curve about lambda = 1/2
    g = pc.lambdas
    i0, i1 = np.flatnonzero(g == 0.0)[0], np.flatnonzero(g == 1.0)[0]
    assert pc.accuracy[0, i0] == pytest.approx(pc.accuracy[1, i1])
    assert pc.loss[0, i1] == pytest.approx(pc.loss[1, i0])
