"""R2 chapter: the family measurement, the claims' bookkeeping, the heatmap frame (tiny sizes)."""
import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from tasknb.chapters.r2_static_distance import claims, complexity_parts, distance_summary, heatmap_figure, measure

TASKS = ["fashion", "fashion_0_4", "digits"]


@pytest.fixture(scope="module")
def fam():
    return measure(TASKS, 40, 2, 6, lr=0.2, threshold=0.5, max_steps=300, seed=0)


def test_parts_sum_and_claims_match_the_matrix(fam):
    parts = complexity_parts(fam, 0.5)
    for a in TASKS:
        p = parts[a]
        np.testing.assert_allclose(p["loss"] + p["norm"] + p["logdet"], p["total"])
        np.testing.assert_allclose(p["total"], fam.single[a].complexity(0.5))
    D = fam.distances(0.5)
    cl = claims(fam, 0.5)
    f, f4, dg = 0, 1, 2
    assert float(cl["asymmetry"].mean) == pytest.approx(np.mean(D[f4, f] - D[f, f4]))
    # the identity: the asymmetry equals the difference of the single-task complexities
    assert float(cl["asymmetry"].mean) == pytest.approx(np.mean(parts["fashion"]["total"] - parts["fashion_0_4"]["total"]))
    assert float(cl["source_null"].mean) == pytest.approx(np.mean(D[dg, f] - D[f, f]))
    assert cl["null_smallest"].mean.shape == (3,)
    assert "source_ifashion" not in cl            # ifashion not in the family


def test_summary_and_heatmap(fam):
    s = distance_summary(fam, [0.1, 1.0])
    m, se, D = s[1.0]
    assert m.shape == (3, 3) and se.shape == (3, 3) and D.shape == (3, 3, 2)
    fig = heatmap_figure(m, se, TASKS, 1.0)
    assert len(fig.axes) == 2
    matplotlib.pyplot.close(fig)


def test_measure_needs_the_claimed_tasks():
    with pytest.raises(ValueError, match="fashion_0_4"):
        measure(["fashion", "digits"], 40, 2, 6, 0.2, 0.5, 100)
