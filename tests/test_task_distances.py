"""tasknb.task_distances: per-run task draws, complexity ingredients, static distances, fine-tuning times."""
import numpy as np
import pytest
import torch

from tasknb.complexity import complexity, complexity_from_eigenvalues
from tasknb.convergence import ThresholdSpec, mlp_module
from tasknb.task_distances import (FineTuneTimes, Measured, distance_matrix, fine_tuning_times, initial_params,
                                   measure_datasets, measure_family, run_data, spearman, union_data)

SPEC = ThresholdSpec(lr=0.2, batch_size=16, threshold=0.3, max_steps=400, eval_every=10)


def _measured(name, loss, sq, ev):
    K = len(loss)
    return Measured(name, 10, np.asarray(loss, float), np.asarray(sq, float), [np.asarray(e, float) for e in ev],
                    np.zeros(K), np.zeros(K), {})


def test_run_data_per_run_draws_and_fresh_split():
    a = run_data("digits", 30, 3, seed=0)
    assert a.X.shape == (3, 30, 196) and a.y.shape == (3, 30)
    assert not torch.equal(a.X[0], a.X[1])                      # run k has its own draw
    assert torch.equal(run_data("digits", 30, 3, seed=0).X, a.X)  # deterministic
    f = run_data("digits", 30, 3, seed=0, split="test")
    assert f.name == "digits'test"
    # held-out images: no image of the fresh draw equals one of the train draw
    assert torch.cdist(a.X[0], f.X[0]).min() > 0
    u = union_data(a, f)
    assert u.X.shape == (3, 60, 196) and torch.equal(u.X[:, 30:], f.X)
    with pytest.raises(ValueError, match="name"):
        run_data("cifar", 30, 3)
    with pytest.raises(ValueError, match="same runs"):
        union_data(a, run_data("digits", 30, 2))


def test_distance_matrix_known_values_and_identity():
    single = {"a": _measured("a", [1.0, 2.0], [4.0, 4.0], [[3.0], [1.0, 1.0]]),
              "b": _measured("b", [0.5, 0.5], [1.0, 9.0], [[0.0], [2.0]])}
    unions = {("a", "a"): _measured("aa", [2.0, 2.0], [5.0, 5.0], [[3.0, 3.0], [1.0]]),
              ("a", "b"): _measured("ab", [3.0, 1.0], [6.0, 7.0], [[5.0, 1.0], [4.0]]),
              ("b", "b"): _measured("bb", [1.0, 1.0], [2.0, 9.0], [[0.5], [2.0]])}
    beta, lam = 0.7, 1.3
    D = distance_matrix(single, unions, ["a", "b"], beta, lam)
    C = lambda m, k: complexity_from_eigenvalues(m.loss[k], m.sq_norm[k], m.eigenvalues[k], beta, lam).total
    for k in range(2):
        assert D[0, 1, k] == pytest.approx(C(unions[("a", "b")], k) - C(single["a"], k))
        assert D[1, 0, k] == pytest.approx(C(unions[("a", "b")], k) - C(single["b"], k))   # (b, a) looked up as (a, b)
        assert D[0, 0, k] == pytest.approx(C(unions[("a", "a")], k) - C(single["a"], k))
        # the identity that holds by construction: d(a->b) - d(b->a) = C(b) - C(a)
        assert D[0, 1, k] - D[1, 0, k] == pytest.approx(C(single["b"], k) - C(single["a"], k))
    with pytest.raises(ValueError, match="pair"):
        distance_matrix(single, {("a", "a"): unions[("a", "a")]}, ["a", "b"], beta)
    with pytest.raises(ValueError, match="beta"):
        distance_matrix(single, unions, ["a", "b"], -1.0)


def test_measured_ingredients_match_complexity_reference():
    data = {"d": run_data("digits_0_4", 40, 2, seed=1)}
    m = measure_datasets(data, hidden=8, spec=SPEC, seed=1)["d"]
    assert np.all(np.isfinite(m.steps)) and np.all(m.final_loss <= 0.3)
    from tasknb.device import derived_seed
    for k in range(2):
        ref = complexity(mlp_module(m.params, k), data["d"].X[k], data["d"].y[k], beta=0.5, lam=2.0,
                         seed=derived_seed(1, "task_distances.fisher", 0, k))
        assert m.complexity(0.5, 2.0)[k] == pytest.approx(ref.total, rel=1e-6)


def test_measure_family_layout_and_common_initialisation():
    fam = measure_family(["digits", "digits_0_4"], 20, 2, 6, SPEC, seed=0)
    assert set(fam.unions) == {("digits", "digits"), ("digits", "digits_0_4"), ("digits_0_4", "digits_0_4")}
    assert fam.unions[("digits", "digits")].n == 40 and fam.single["digits"].n == 20
    D = fam.distances(1.0)
    assert D.shape == (2, 2, 2) and np.all(np.isfinite(D))
    assert fam.complexities(1.0).shape == (2, 2)
    with pytest.raises(ValueError, match="names"):
        measure_family(["digits"], 20, 2, 6, SPEC)


def test_fine_tuning_times_pretrained_source_is_at_threshold():
    tgt = {"d": run_data("digits_0_4", 40, 2, seed=2)}
    m = measure_datasets(tgt, hidden=8, spec=SPEC, seed=2)["d"]
    src = {"trained": m.params, "random": initial_params(2, 196, 8, seed=2)}
    ft = fine_tuning_times(src, tgt, SPEC, seed=0)
    assert ft.steps.shape == (2, 1, 2)
    assert np.all(ft.steps[0, 0] == 0)                 # already at the threshold on its own data
    assert np.all(ft.steps[1, 0] > 0)                  # the control: random weights need steps
    np.testing.assert_array_equal(ft.steps_at(), ft.steps)
    assert np.all(ft.steps_at(1.0) <= ft.steps)        # a higher threshold is reached no later
    cut = ft.steps_at(budget=int(ft.steps[1, 0].min()) - 1)
    assert np.all(np.isinf(cut[1, 0])) and np.all(cut[0, 0] == 0)
    with pytest.raises(ValueError, match="threshold"):
        ft.steps_at(0.01)
    tight = fine_tuning_times({"random": src["random"]}, tgt, ThresholdSpec(lr=0.2, batch_size=16, threshold=0.3,
                                                                             max_steps=20), seed=0)
    assert np.all(np.isinf(tight.steps)) and not tight.converged.any()


def test_steps_at_reads_curves():
    curves = {(0, 0): (np.array([0, 10, 20, 30]), np.array([[2.0, 2.0], [0.8, 1.5], [0.4, 0.9], [0.4, 0.2]]))}
    ft = FineTuneTimes(("s",), ("t",), np.array([[[20.0, 30.0]]]), np.array([[[0.4, 0.2]]]), 30, 0.5, curves)
    np.testing.assert_array_equal(ft.steps_at(1.0)[0, 0], [10.0, 20.0])
    np.testing.assert_array_equal(ft.steps_at(0.5, budget=25)[0, 0], [20.0, np.inf])


def test_spearman_matches_scipy_with_ties_and_inf():
    from scipy.stats import spearmanr
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=12), rng.normal(size=12)
    assert spearman(a, b) == pytest.approx(spearmanr(a, b)[0])
    a[:3] = 1.0
    b[5:8] = np.inf
    bb = np.where(np.isinf(b), 1e9, b)
    assert spearman(a, b) == pytest.approx(spearmanr(a, bb)[0])
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
