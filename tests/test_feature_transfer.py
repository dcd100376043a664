"""The TF / RF / 2L / ft-TF transfer protocol on the binary CHMM."""
import numpy as np
import pytest

from tasknb.chmm import CHMM, stack_samples
from tasknb.feature_transfer import train_source, transfer_learning_curves
from tasknb.networks.stacks import TwoLayerStack, classification_error, features
from tasknb.training import TrainingConfig, fit_logistic_head


def test_rf_and_tf_beat_chance_and_source_transfers():
    K, D, H, L = 3, 120, 60, 30
    chmms = [CHMM(D, L, L, eta=1.0, rho=0.0, q=1.0, seed=k) for k in range(K)]
    src, init = train_source(chmms, H, 3000, TrainingConfig(30, 1e-2, 50), seed=0, progress=False)
    Xt, yt = stack_samples(chmms, 2000, "target", seed=7)
    assert float(classification_error(src.params, Xt, yt).mean()) < 0.2
    X, y = stack_samples(chmms, 60, "target", seed=8)
    err = {}
    for name, W1 in (("TF", src.params.W1), ("RF", init.W1)):
        fit = fit_logistic_head(features(W1, X), y, 1e-4)
        err[name] = float(classification_error(TwoLayerStack(W1, fit.w), Xt, yt).mean())
    assert err["RF"] < 0.45 and err["TF"] < 0.45          # both beat chance (0.5)
    assert err["TF"] < err["RF"] - 0.05                   # the source features help


def test_transfer_curves_protocol_and_validation():
    c = transfer_learning_curves(D=60, H=30, L_source=15, L_target=15, M_grid=[20, 80], M_source=600,
                                 M_test=300, realizations=2, learners=("TF", "RF"),
                                 source=TrainingConfig(5, 1e-2, 50), progress=False)
    assert set(c.errors) == {"TF", "RF"} and c.errors["TF"].shape == (2, 2)
    assert np.allclose(c.alpha, [20 / 30, 80 / 30])
    again = transfer_learning_curves(D=60, H=30, L_source=15, L_target=15, M_grid=[20, 80], M_source=600,
                                     M_test=300, realizations=2, learners=("TF", "RF"),
                                     source=TrainingConfig(5, 1e-2, 50), progress=False)
    assert np.array_equal(c.errors["TF"], again.errors["TF"])           # same seed -> same numbers
    reuse = transfer_learning_curves(D=60, H=30, L_source=15, L_target=15, M_grid=[20, 80], M_source=600,
                                     M_test=300, realizations=2, learners=("TF", "RF"), progress=False,
                                     source_params=c.source_params)
    assert np.array_equal(c.errors["TF"], reuse.errors["TF"])
    with pytest.raises(ValueError, match="learners must be one of"):
        transfer_learning_curves(60, 30, 15, 15, learners=("TF", "SVM"))
    with pytest.raises(ValueError, match="ft-TF"):
        transfer_learning_curves(60, 30, 15, 15, learners=("ft-TF",))
    with pytest.raises(ValueError, match="M_grid must contain integers"):
        transfer_learning_curves(60, 30, 15, 15, M_grid=[0, 10])
    with pytest.raises(ValueError, match=r"rho must be in \[0, 1\]"):
        transfer_learning_curves(60, 30, 15, 15, rho=2.0)


def test_paired_standard_error_matches_the_formula_and_is_zero_for_one_realization():
    import numpy as np

    from tasknb.feature_transfer import paired_standard_error

    rng = np.random.default_rng(0)
    d = rng.normal(size=(3, 5, 4))
    expected = d.std(1, ddof=1) / np.sqrt(5)
    assert np.array_equal(paired_standard_error(d, axis=1), expected)
    assert paired_standard_error(d[:, :1], axis=1).shape == (3, 4)
    assert not paired_standard_error(d[:, :1], axis=1).any()
    assert float(paired_standard_error(np.array([0.1, 0.3]))) == np.std([0.1, 0.3], ddof=1) / np.sqrt(2)


def test_theory_and_numerics_gains_are_positive_when_transfer_is_better():
    import numpy as np

    from tasknb.feature_transfer import TheoryAndNumericsGains

    class Result(TheoryAndNumericsGains):
        pass

    r = Result()
    per_real = {"TF": np.full((2, 3, 4), 0.1), "RF": np.full((2, 3, 4), 0.3)}
    per_real["RF"][:, 0] += 0.02
    r.theory = {k: v.mean(1) for k, v in per_real.items()}
    r.theory_realizations = per_real
    r.numerics, r.numerics_realizations = r.theory, per_real
    assert (r.gain("TF", "RF") > 0).all() and (r.gain("RF", "TF") < 0).all()
    assert (r.gain_sem("TF", "RF", numerics=True) > 0).all()
