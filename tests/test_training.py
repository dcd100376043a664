"""Fitting network stacks: logistic heads on frozen features, batched Adam training (binary stacks)."""
import numpy as np
import pytest
import torch

from tasknb.chmm import CHMM, stack_samples
from tasknb.networks.stacks import init_softmax_net, init_two_layer, predict
from tasknb.training import TrainingConfig, bce_loss, fit_logistic_head, train_stack


def _stack(K=3, D=60, L=15, M=300, which="source", seed=0, **kw):
    chmms = [CHMM(D, L, L, seed=seed, realization=k, **kw) for k in range(K)]
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
    batched = train_stack(init, X, y, epochs=3, lr=1e-2, batch_size=25, seed=1)
    for k in range(3):
        alone = train_stack(init.select(k), X[k:k + 1], y[k:k + 1], epochs=3, lr=1e-2, batch_size=25, seed=1)
        torch.testing.assert_close(alone.params.W1[0], batched.params.W1[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(alone.params.w2[0], batched.params.w2[k], rtol=1e-4, atol=1e-5)


def test_training_is_deterministic():
    _, (X, y) = _stack(K=2, M=100)
    init = init_two_layer(2, 10, 60, seed=0)
    a = train_stack(init, X, y, epochs=2, lr=1e-2, batch_size=20, seed=3)
    b = train_stack(init, X, y, epochs=2, lr=1e-2, batch_size=20, seed=3)
    assert torch.equal(a.params.W1, b.params.W1) and torch.equal(a.params.w2, b.params.w2)


def test_early_stopping_returns_best_epoch_per_model():
    chmms, (X, y) = _stack(K=2, M=100)
    Xv, yv = stack_samples(chmms, 200, "source", seed=99)
    init = init_two_layer(2, 30, 60, seed=0)
    # a large learning rate on few data makes validation loss rise quickly
    r = train_stack(init, X, y, epochs=40, lr=0.2, batch_size=10, X_val=Xv, y_val=yv, patience=0, seed=0)
    assert r.val_loss.shape[1] == 2 and bool((r.epochs < 40).all())
    got = bce_loss(predict(r.params, Xv), yv).double()
    # the returned weights are those of the best epoch seen before stopping
    for k in range(2):
        seen = r.val_loss[: int(r.epochs[k]), k]
        assert abs(float(got[k]) - float(seen.min())) < 1e-5
    # no better than the first epoch would be a failure of early stopping (the other models keep
    # training after one has stopped, so its later recorded losses say nothing about its returned weights)
    assert bool((got <= r.val_loss[0] + 1e-5).all())


def test_training_bad_inputs():
    _, (X, y) = _stack(K=2, M=20)
    init = init_two_layer(2, 5, 60)
    with pytest.raises(ValueError, match="X must have shape"):
        train_stack(init, X[:1], y[:1])
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        train_stack(init, X, y, lr=-1.0)
    with pytest.raises(ValueError, match="patience"):
        train_stack(init, X, y, patience=0)
    with pytest.raises(ValueError, match="H must be an integer >= 1"):
        init_two_layer(2, 0, 5)
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        TrainingConfig(0, 1e-3, 50)


def test_train_stack_dispatches_on_the_stack_type():
    _, (X, y) = _stack(K=2, M=40)
    init = init_two_layer(2, 6, 60, seed=2)
    a = train_stack(init, X, y, epochs=2, lr=1e-2, batch_size=10, seed=4)
    b = train_stack(init, X, y, epochs=2, lr=1e-2, batch_size=10, seed=4)
    assert type(a.params) is type(init)
    assert torch.equal(a.params.W1, b.params.W1) and torch.equal(a.params.w2, b.params.w2)
    assert a.train_loss.shape == (2, 2) and a.val_loss.numel() == 0
    frozen = train_stack(init, X, y, epochs=2, lr=1e-2, batch_size=10, train_first_layer=False)
    assert torch.equal(frozen.params.W1, init.W1) and not torch.equal(frozen.params.w2, init.w2)
    with pytest.raises(TypeError, match="TwoLayerStack or a SoftmaxStack"):
        train_stack((init.W1, init.w2), X, y)
    with pytest.raises(ValueError, match="integer class indices"):
        train_stack(init_softmax_net(2, 6, 60, 3), X, y)                # binary labels on a soft-max stack
