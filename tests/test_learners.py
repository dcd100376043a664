"""Learners: logistic heads, batched two-layer training, the transfer protocol."""
import numpy as np
import pytest
import torch

from tasknb.chmm import CHMM
from tasknb.learners import (TwoLayerStack, features, fit_logistic_head, init_two_layer, predict,
                             classification_error, train_two_layer)
from tasknb.feature_transfer import TrainingConfig, stack_samples, train_source, transfer_learning_curves


def _stack(K=3, D=60, L=15, M=300, which="source", seed=0, **kw):
    chmms = [CHMM(D, L, L, seed=seed + k, **kw) for k in range(K)]
    return chmms, stack_samples(chmms, M, which, seed=seed)


def test_logistic_head_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    K, M, H, lam = 2, 80, 12, 0.05
    V = torch.rand(K, M, H, generator=g, dtype=torch.float64)
    y = torch.where(torch.rand(K, M, generator=g) > 0.5, 1.0, -1.0).double()
    fit = fit_logistic_head(V, y, lam, tol=1e-10)
    assert bool(fit.converged.all())
    for k in range(K):
        sk = LogisticRegression(C=1.0 / lam, fit_intercept=False, tol=1e-12, max_iter=10_000)
        sk.fit((V[k] / np.sqrt(H)).numpy(), y[k].numpy())
        np.testing.assert_allclose(fit.w[k].numpy(), sk.coef_[0], rtol=1e-4, atol=1e-6)


def test_logistic_head_reports_non_convergence():
    g = torch.Generator().manual_seed(1)
    V = torch.rand(2, 50, 30, generator=g)
    y = torch.where(torch.rand(2, 50, generator=g) > 0.5, 1.0, -1.0)
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        fit = fit_logistic_head(V, y, 1e-8, max_iter=2)
    assert not bool(fit.converged.any())
    assert bool(torch.isfinite(fit.w).all())


def test_logistic_head_bad_inputs():
    V, y = torch.rand(2, 5, 3), torch.ones(2, 5)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        fit_logistic_head(V, y, 0.0)
    with pytest.raises(ValueError, match="V must be"):
        fit_logistic_head(V[0], y, 1.0)
    V_bad = V.clone()
    V_bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fit_logistic_head(V_bad, y, 1.0)


def test_batched_training_equals_one_model_at_a_time():
    chmms, (X, y) = _stack(K=3, M=200)
    init = init_two_layer(3, 20, 60, seed=5)
    batched = train_two_layer(init, X, y, epochs=3, lr=1e-2, batch_size=25, seed=1)
    for k in range(3):
        alone = train_two_layer(init.select(k), X[k:k + 1], y[k:k + 1], epochs=3, lr=1e-2, batch_size=25, seed=1)
        torch.testing.assert_close(alone.params.W1[0], batched.params.W1[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(alone.params.w2[0], batched.params.w2[k], rtol=1e-4, atol=1e-5)


def test_training_is_deterministic():
    _, (X, y) = _stack(K=2, M=100)
    init = init_two_layer(2, 10, 60, seed=0)
    a = train_two_layer(init, X, y, epochs=2, lr=1e-2, batch_size=20, seed=3)
    b = train_two_layer(init, X, y, epochs=2, lr=1e-2, batch_size=20, seed=3)
    assert torch.equal(a.params.W1, b.params.W1) and torch.equal(a.params.w2, b.params.w2)


def test_early_stopping_returns_best_epoch_per_model():
    chmms, (X, y) = _stack(K=2, M=100)
    Xv, yv = stack_samples(chmms, 200, "source", seed=99)
    init = init_two_layer(2, 30, 60, seed=0)
    # a large learning rate on few data makes validation loss rise quickly
    r = train_two_layer(init, X, y, epochs=40, lr=0.2, batch_size=10, X_val=Xv, y_val=yv, patience=0, seed=0)
    assert r.val_loss.shape[1] == 2 and bool((r.epochs < 40).all())
    best_loss = r.val_loss.min(dim=0).values
    from tasknb.learners import bce_loss
    got = bce_loss(predict(r.params, Xv), yv).double()
    # the returned weights are those of the best epoch seen before stopping
    for k in range(2):
        seen = r.val_loss[: int(r.epochs[k]), k]
        assert abs(float(got[k]) - float(seen.min())) < 1e-5
    assert bool((got <= best_loss + 1e-5).all())


def test_training_bad_inputs():
    _, (X, y) = _stack(K=2, M=20)
    init = init_two_layer(2, 5, 60)
    with pytest.raises(ValueError, match="X must have shape"):
        train_two_layer(init, X[:1], y[:1])
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train_two_layer(init, X, y, lr=-1.0)
    with pytest.raises(ValueError, match="patience"):
        train_two_layer(init, X, y, patience=0)
    with pytest.raises(ValueError, match="H must be an integer >= 1"):
        init_two_layer(2, 0, 5)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainingConfig(0, 1e-3, 50)


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
