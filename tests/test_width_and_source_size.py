"""Width (fig. A.2) and source-size (fig. A.3) diagrams: shapes, determinism, pairing of RF, validation."""
import numpy as np
import pytest

from tasknb.chapters.c7_width_and_source_size import source_size_diagram, training_error_crossover, width_diagram
from tasknb.chapters.c7_width_and_source_size import WidthDiagram
from tasknb.training import TrainingConfig

TINY = dict(D=40, L=10, lam=1e-3, realizations=2, source=TrainingConfig(3, 1e-2, 50),
            scratch=TrainingConfig(3, 0.1, 1000), n_samples=2000, M_test=200, device="cpu", progress=False)


def test_width_diagram_shapes_and_determinism():
    kw = dict(TINY, alpha_numerics=[0.5, 2.0], M_source=100)
    d = width_diagram([0.5, 2.0], [0.3, 1.0, 3.0], **kw)
    assert d.H.tolist() == [5, 20]
    for name in ("TF", "RF"):
        assert d.theory[name].shape == (2, 3) and d.train_error[name].shape == (2, 3)
        assert d.theory_realizations[name].shape == (2, 2, 3)
        assert d.threshold(name).shape == d.threshold_sem(name).shape == (2,)
        # the closed-form threshold, not the finite-ridge crossover: at or above Cover's bound of 2
        # (the crossover of the training error reads it near 1), and above that crossover
        assert np.all(d.threshold(name) >= 2.0)
        crossover = d.crossover(name, tol=1e-3)
        assert np.all(~np.isfinite(crossover) | (crossover < d.threshold(name)))
    assert d.converged.shape == (2, 3) and d.converged.all()
    assert d.separability is None                                          # none asked for
    assert d.numerics["TF"].shape == d.numerics["2L"].shape == (2, 2)
    assert d.M_numerics.tolist() == [[2, 10], [10, 40]]
    assert d.gain("TF", "RF").shape == (2, 3) and d.gain("TF", "2L", numerics=True).shape == (2, 2)
    assert d.source_error.shape == d.source_epochs.shape == (2, 2)
    assert np.all((d.theory["TF"] > 0) & (d.theory["TF"] < 0.5))
    again = width_diagram([0.5, 2.0], [0.3, 1.0, 3.0], **kw)
    for name in ("TF", "RF"):
        np.testing.assert_array_equal(d.theory[name], again.theory[name])
    for name in ("TF", "2L"):
        np.testing.assert_array_equal(d.numerics[name], again.numerics[name])


def test_source_size_diagram_shapes_shared_rows_and_determinism():
    kw = dict(TINY, H=10, M_numerics=[5, 20])
    d = source_size_diagram([20, 80], [0.5, 2.0], **kw)
    assert d.theory["TF"].shape == d.theory["RF"].shape == (2, 2)
    assert d.numerics["TF"].shape == d.numerics["2L"].shape == (2, 2)
    np.testing.assert_allclose(d.M_target, [5.0, 20.0])
    # RF and 2L do not depend on the source: one computation, shared by every row
    np.testing.assert_array_equal(d.theory["RF"][0], d.theory["RF"][1])
    np.testing.assert_array_equal(d.numerics["2L"][0], d.numerics["2L"][1])
    assert d.converged.all() and d.source_error.shape == (2, 2)
    again = source_size_diagram([20, 80], [0.5, 2.0], **kw)
    np.testing.assert_array_equal(d.theory["TF"], again.theory["TF"])
    np.testing.assert_array_equal(d.numerics["TF"], again.numerics["TF"])


def test_rf_from_the_source_init_ties_with_an_untrained_source():
    # a learning rate so small that the source nets do not move: TF is the RF of "init"
    kw = dict(TINY, H=10, source=TrainingConfig(1, 1e-9, 50))
    paired = source_size_diagram([20], [0.5, 2.0], rf_baseline="init", **kw)
    assert np.abs(paired.gain("TF", "RF")).max() < 1e-4
    indep = source_size_diagram([20], [0.5, 2.0], rf_baseline="independent", **kw)
    np.testing.assert_array_equal(indep.theory["TF"], paired.theory["TF"])
    assert np.abs(indep.gain("TF", "RF")).max() > 1e-4


def test_training_error_crossover():
    alpha = np.array([0.5, 1.0, 2.0, 4.0])
    te = np.array([[0.0, 0.0, 0.002, 0.1],      # crosses 1e-3 halfway (in log) between 1 and 2
                   [0.0, 0.0, 0.0, 0.0],        # never separable-breaking on the grid
                   [0.01, 0.02, 0.03, 0.04]])   # already above at the first alpha
    thr = training_error_crossover(alpha, te)
    assert thr[0] == pytest.approx(np.sqrt(2.0))
    assert np.isnan(thr[1]) and np.isnan(thr[2])
    with pytest.raises(ValueError, match="train_error must end with n_alpha = 4"):
        training_error_crossover(alpha, te[:, :3])


def test_bad_inputs():
    with pytest.raises(ValueError, match="H_over_L must be a finite number > 0"):
        width_diagram([-1.0, 1.0], [1.0], **TINY)
    with pytest.raises(ValueError, match="H_over_L must be strictly increasing"):
        width_diagram([2.0, 1.0], [1.0], **TINY)
    with pytest.raises(ValueError, match="H_over_L gives repeated widths"):
        width_diagram([1.0, 1.04], [1.0], **TINY)
    with pytest.raises(ValueError, match=r"rho must be in \[0, 1\]"):
        width_diagram([1.0], [1.0], rho=1.5, **TINY)
    with pytest.raises(ValueError, match="alphas must be a non-empty increasing sequence"):
        width_diagram([1.0], [], **TINY)
    with pytest.raises(ValueError, match="alpha_numerics gives repeated target sizes"):
        width_diagram([0.5], [1.0], alpha_numerics=[1.0, 1.05], **TINY)
    with pytest.raises(ValueError, match="rf_baseline must be one of 'independent', 'init'"):
        width_diagram([1.0], [1.0], rf_baseline="fresh", **TINY)
    with pytest.raises(ValueError, match="M_source must be strictly increasing"):
        source_size_diagram([100, 50], [1.0], **TINY)
    with pytest.raises(ValueError, match=r"M_source must contain integers in \[1\]"):
        source_size_diagram([0, 50], [1.0], **TINY)
    with pytest.raises(ValueError, match="q must be in"):
        source_size_diagram([50], [1.0], q=2.0, **TINY)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        source_size_diagram([50], [1.0], **{**TINY, "lam": 0.0})
    with pytest.raises(ValueError, match="H must be an integer >= 1"):
        source_size_diagram([50], [1.0], H=0, **TINY)
    d = source_size_diagram([20], [1.0], **{**TINY, "source": TrainingConfig(1, 1e-2, 50)})
    for method in (d.threshold, d.threshold_sem, d.crossover):
        with pytest.raises(ValueError, match="name must be one of 'TF', 'RF'"):
            method("2L")


def test_gain_is_positive_when_the_transfer_learner_is_better():
    # toy width diagram, 2 widths x 3 realizations: TF's error is below RF's (theory) and 2L's (trained)
    rng = np.random.default_rng(1)
    per_rf = 0.4 + 0.05 * rng.random((2, 3, 4))
    per_tf = per_rf - 0.1 - 0.02 * rng.random((2, 3, 4))
    num_2l = 0.45 + 0.05 * rng.random((2, 3, 2))
    num_tf = num_2l - 0.05 - 0.01 * rng.random((2, 3, 2))
    theory = {"TF": per_tf.mean(1), "RF": per_rf.mean(1)}
    d = WidthDiagram(np.array([0.3, 1.0, 3.0, 10.0]), theory, theory, np.ones((2, 4), dtype=bool),
                     {"TF": num_tf.mean(1), "2L": num_2l.mean(1)}, {"TF": per_tf, "RF": per_rf},
                     np.zeros((2, 3)), np.zeros((2, 3), dtype=int), {}, {"TF": num_tf, "2L": num_2l})
    g = d.gain("TF", "RF")
    assert np.all(g > 0) and np.all(d.gain("TF", "2L", numerics=True) > 0)
    np.testing.assert_array_equal(g, theory["RF"] - theory["TF"])          # err(baseline) - err(transfer)
    np.testing.assert_array_equal(d.gain("RF", "TF"), -g)
    np.testing.assert_allclose(d.gain_sem("TF", "RF"), (per_rf - per_tf).std(1, ddof=1) / np.sqrt(3))
    np.testing.assert_allclose(d.gain_sem("TF", "2L", numerics=True), (num_2l - num_tf).std(1, ddof=1) / np.sqrt(3))


def test_diagrams_keep_the_trained_errors_per_realization():
    kw = dict(TINY, H=10, M_numerics=[5, 20])
    d = source_size_diagram([20, 80], [0.5, 2.0], **kw)
    for name in ("TF", "2L"):
        assert d.numerics_realizations[name].shape == (2, 2, 2)
        np.testing.assert_array_equal(d.numerics_realizations[name].mean(1), d.numerics[name])
    assert d.gain_sem("TF", "2L", numerics=True).shape == (2, 2) and d.gain_sem("TF", "RF").shape == (2, 2)


def test_width_diagram_tests_the_threshold_on_data():
    kw = dict(TINY, M_source=100)
    d = width_diagram([0.5, 2.0], [0.3, 1.0, 3.0], separability_H_over_L=[2.0], separability_factors=[0.5, 3.0],
                      separability_repeats=3, **{**kw, "n_samples": 1000})
    sep = d.separability
    assert sep.rows.tolist() == [1] and sep.factors.tolist() == [0.5, 3.0]
    for name in ("TF", "RF"):
        # the sizes are f * alpha* * H at the tested width (H = 20), one per factor
        np.testing.assert_array_equal(sep.M[name][0], np.round(sep.factors * d.threshold(name)[1] * 20).astype(int))
        assert sep.separable[name].shape == sep.converged[name].shape == (1, 2, 2, 3)
        assert sep.fraction(name).shape == (1, 2, 2) and sep.fraction_crossover(name).shape == (1, 2)
        # half the threshold: every set separable; three times it: none
        assert sep.separable[name][:, :, 0].all() and not sep.separable[name][:, :, 1].any()
    with pytest.raises(ValueError, match="separability_H_over_L must hold values of H_over_L"):
        width_diagram([0.5], [1.0], separability_H_over_L=[1.0], **kw)
    with pytest.raises(ValueError, match="separability_factors must be"):
        width_diagram([0.5], [1.0], separability_H_over_L=[0.5], separability_factors=[2.0, 1.0], **kw)
    with pytest.raises(ValueError, match="name must be one of 'TF', 'RF'"):
        sep.fraction("2L")
