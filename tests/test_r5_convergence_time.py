"""R5 chapter protocol: the fits (known answers), the pairing of replicates, and validation."""
import numpy as np
import pytest

from tasknb.chapters.r5_convergence_time import (batch_sweep, fraction_sweep, line_fit, sweep_complexity,
                                                  within_slope)
from tasknb.convergence import ThresholdSpec

SPEC = ThresholdSpec(lr=0.2, batch_size=10, weight_decay=0.0, threshold=1.0, max_steps=4000, eval_every=5)


def test_line_fit_known_answer_and_se():
    x = np.arange(10.0)
    fit = line_fit(x, 2.0 + 0.5 * x)
    assert abs(fit.slope - 0.5) < 1e-12 and abs(fit.intercept - 2.0) < 1e-12 and fit.r2 > 1 - 1e-12
    rng = np.random.default_rng(0)
    slopes = [line_fit(x, rng.normal(size=10)).slope for _ in range(400)]
    se = line_fit(x, rng.normal(size=10)).slope_se
    assert 0.6 < np.std(slopes) / se < 1.5  # the SE matches the spread of slopes under the null


def test_within_slope_removes_group_effect():
    # between groups y follows x; within groups y falls with x: the within slope must see -1, the pooled +
    x = np.array([[0.0, 1.0, 2.0], [10.0, 11.0, 12.0], [20.0, 21.0, 22.0]])
    y = np.array([[0.0, -1.0, -2.0], [10.0, 9.0, 8.0], [20.0, 19.0, 18.0]]) + 0.0
    y[:, 1] += 1e-3  # not exactly collinear, so the SE is finite
    assert line_fit(x, y).slope > 0.5
    assert abs(within_slope(x, y).slope + 1.0) < 1e-2


def test_fraction_sweep_pairs_replicates_and_noise_slows():
    sw = fraction_sweep([0.0, 1.0], n_seeds=2, n=30, hidden=16, spec=SPEC, seed=0, size=7, device="cpu")
    assert sw.steps.shape == (2, 2) and sw.n_not_converged == 0
    X0, y0 = sw.data[0]
    X1, y1 = sw.data[1]
    assert np.array_equal(X0.numpy(), X1.numpy())          # same images at every fraction
    assert not np.array_equal(y0.numpy(), y1.numpy())      # only the labels change
    assert not np.array_equal(X0[0].numpy(), X0[1].numpy())  # replicates differ
    assert np.all(sw.steps[1] > sw.steps[0])               # random labels take longer (large effect at n=30)
    cx = sweep_complexity(sw, beta=1.0, lam=1.0, seed=0)
    assert np.all(np.isfinite(cx.total))
    assert np.allclose(cx.total, cx.loss + cx.norm_term + cx.logdet_term)
    assert np.allclose(cx.at_beta(1.0), cx.total)
    assert np.all(cx.loss <= SPEC.threshold * 30 + 1e-6)  # frozen at the threshold (summed loss)


def test_batch_sweep_same_start():
    sw = batch_sweep([5, 15], n_seeds=2, n=30, hidden=16, spec=SPEC, seed=0, size=7, device="cpu")
    assert sw.steps.shape == (2, 2) and sw.values == [5, 15]
    assert sw.data[0][0] is sw.data[1][0]


def test_validation():
    with pytest.raises(ValueError, match="fractions must be increasing and start at 0"):
        fraction_sweep([0.5, 1.0], 2, 30, 16, SPEC, size=7)
    with pytest.raises(ValueError, match="fractions"):
        fraction_sweep([0.0, 1.5], 2, 30, 16, SPEC, size=7)
    with pytest.raises(ValueError, match="batch_sizes must be <= n"):
        batch_sweep([5, 50], 2, 30, 16, SPEC, size=7)
    with pytest.raises(ValueError, match="n_seeds"):
        batch_sweep([5, 10], 1, 30, 16, SPEC, size=7)
    with pytest.raises(ValueError, match="task must be one of"):
        fraction_sweep([0.0, 1.0], 2, 30, 16, SPEC, task="cifar")
