"""R6 chapter: correlations (overall vs within a target's column), censoring, the heatmap frame, a tiny run."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from tasknb.chapters.r6_reachability import (censored, rank_correlations, run, scatter_figure, time_heatmap,
                                             within_target_correlations)


def test_within_target_correlation_separates_source_from_target_effects():
    # columns: target difficulty 0, 100, 200; inside a column the source order of steps is 0 < 1 < 2
    steps = (np.arange(3)[None, :] * 100 + np.arange(3)[:, None] * 10).astype(float)[..., None].repeat(2, -1)
    same = steps.copy()
    reversed_within = (np.arange(3)[None, :] * 100 - np.arange(3)[:, None] * 10).astype(float)[..., None].repeat(2, -1)
    assert np.all(rank_correlations(steps, same) == pytest.approx(1.0))
    np.testing.assert_allclose(within_target_correlations(steps, same), 1.0)
    # the control: a distance that agrees only through the targets' difficulty
    assert np.all(rank_correlations(steps, reversed_within) > 0.5)
    np.testing.assert_allclose(within_target_correlations(steps, reversed_within), -1.0)


def test_censored_and_heatmap_marks_non_converged():
    s = np.array([[[10.0, np.inf], [np.inf, np.inf]]])
    np.testing.assert_array_equal(censored(s, 50), [[[10.0, 50.0], [50.0, 50.0]]])
    fig = time_heatmap(s, ["a"], ["x", "y"], 50)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert "2/2 > 50" in texts and any("1/2 > 50" in t for t in texts)
    matplotlib.pyplot.close(fig)


def test_tiny_run():
    res = run(["fashion", "fashion_0_4"], 40, 2, 6, lr=0.2, threshold=0.5, pretrain_max_steps=300,
              max_steps=300, seed=0)
    ft = res.times
    assert ft.sources == ("fashion", "fashion_0_4", "random init") and ft.targets == ("fashion", "fashion_0_4")
    assert ft.steps.shape == (3, 2, 2)
    fig = scatter_figure(ft.steps[:2], res.family.distances(1.0), ["fashion", "fashion_0_4"], 1.0, 300,
                         rank_correlations(ft.steps[:2], res.family.distances(1.0)))
    matplotlib.pyplot.close(fig)
    with pytest.raises(ValueError, match="fashion_0_4"):
        run(["fashion", "digits"], 30, 2, 6, 0.2, 0.5, 100, 100)
