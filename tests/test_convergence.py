"""convergence: the batched trainer equals K plain torch.optim.SGD loops on the same batches."""
import numpy as np
import pytest
import torch

from tasknb.convergence import (ThresholdSpec, init_mlp, mean_loss, mlp_module, train_until_threshold)
from tasknb.device import stream


def _data(n=64, d=12, C=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=g)
    y = torch.randint(0, C, (n,), generator=g)
    return X, y


def _plain(params, k, X, y, spec, seed, n_steps):
    """Reference: one nn.Module, torch.optim.SGD, run k's batch stream, fixed number of steps."""
    m = mlp_module(params, k)
    opt = torch.optim.SGD(m.parameters(), lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay)
    g = stream(seed, "convergence.batches", k)
    n, B = X.shape[0], spec.batch_size
    per = n // B
    for s in range(n_steps):
        if s % per == 0:
            perm = torch.randperm(n, generator=g)
        idx = perm[(s % per) * B:(s % per + 1) * B]
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(X[idx]), y[idx]).backward()
        opt.step()
    return m


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_batched_equals_plain_loops(momentum):
    X, y = _data()
    X, K = X.double(), 3
    p = init_mlp(K, 12, 8, seed=5, device="cpu", dtype=torch.float64)
    spec = ThresholdSpec(lr=0.05, batch_size=10, weight_decay=1e-3, momentum=momentum,
                         threshold=1e-12, max_steps=37, eval_every=5)
    with pytest.warns(RuntimeWarning, match="3 of 3 runs did not reach"):
        r = train_until_threshold(p, X, y, spec, seed=2)
    assert np.all(np.isinf(r.steps)) and r.curve_steps[-1] == 37
    for k in range(K):
        m = _plain(p, k, X, y, spec, 2, 37)
        got = mlp_module(r.params, k)
        for a, b in zip(m.parameters(), got.parameters()):
            assert torch.allclose(a, b, atol=1e-6, rtol=0)
        ref_loss = torch.nn.functional.cross_entropy(m(X), y).item()
        assert abs(ref_loss - r.final_loss[k]) < 1e-6


def test_per_run_data_and_freeze():
    X, y = _data(n=40)
    K = 2
    p = init_mlp(K, 12, 16, seed=0, device="cpu")
    Xs = torch.stack([X, X[torch.randperm(40, generator=torch.Generator().manual_seed(1))]])
    ys = torch.stack([y, y])
    spec = ThresholdSpec(lr=0.2, batch_size=8, weight_decay=0.0, threshold=0.3, max_steps=3000, eval_every=5)
    r = train_until_threshold(p, Xs, ys, spec, seed=0)
    assert np.all(np.isfinite(r.steps)) and np.all(r.steps % 5 == 0)
    # frozen at the convergence step: the loss of the returned weights is the recorded one, <= threshold
    loss = mean_loss(r.params, Xs, ys).numpy()
    assert np.allclose(loss, r.final_loss, atol=1e-5) and np.all(loss <= 0.3)
    # the first evaluation at or below threshold is the step
    for k in range(K):
        i = int(np.argmax(r.curve_loss[:, k] <= 0.3))
        assert r.curve_steps[i] == r.steps[k] and np.all(r.curve_loss[:i, k] > 0.3)


def test_deterministic_and_seed_dependent_steps():
    X, y = _data(n=40)
    p = init_mlp(3, 12, 16, seed=0, device="cpu")
    spec = ThresholdSpec(lr=0.2, batch_size=8, weight_decay=0.0, threshold=1.0, max_steps=3000, eval_every=1)
    a = train_until_threshold(p, X, y, spec, seed=0)
    b = train_until_threshold(p, X, y, spec, seed=0)
    c = train_until_threshold(p, X, y, spec, seed=1)
    assert np.array_equal(a.steps, b.steps)
    assert not np.array_equal(a.steps, c.steps)
    # run k's initial weights do not depend on how many runs are stacked
    q = init_mlp(5, 12, 16, seed=0, device="cpu")
    assert torch.equal(q["W1"][:3], p["W1"])
    # an impossible threshold (below 0) can't be asked; a tiny one is never reached -> inf
    with pytest.warns(RuntimeWarning):
        r = train_until_threshold(p, X, y, ThresholdSpec(threshold=1e-9, max_steps=20), seed=0)
    assert np.all(np.isinf(r.steps)) and r.n_not_converged == 3


def test_starts_converged_and_finetunes_from_stacked_params():
    X, y = _data(n=40)
    p = init_mlp(2, 12, 16, seed=0, device="cpu")
    spec = ThresholdSpec(lr=0.2, batch_size=8, weight_decay=0.0, threshold=0.3, max_steps=3000)
    r = train_until_threshold(p, X, y, spec, seed=0)
    again = train_until_threshold(r.params, X, y, spec, seed=0)
    assert np.all(again.steps == 0)


def test_validation():
    X, y = _data()
    p = init_mlp(2, 12, 8, device="cpu")
    with pytest.raises(ValueError, match="lr"):
        ThresholdSpec(lr=-1)
    with pytest.raises(ValueError, match="momentum"):
        ThresholdSpec(momentum=1.5)
    with pytest.raises(ValueError, match="features"):
        train_until_threshold(p, X[:, :5], y)
    with pytest.raises(ValueError, match="labels in 0..9"):
        train_until_threshold(p, X, y + 5)
    with pytest.raises(ValueError, match="batch_size"):
        train_until_threshold(p, X, y, ThresholdSpec(batch_size=100))
    with pytest.raises(ValueError, match="k must be in"):
        mlp_module(p, 2)
    with pytest.raises(ValueError, match="params must be a dict"):
        mlp_module({"W1": 1}, 0)
