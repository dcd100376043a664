"""task_family: label spaces, balance, centring, streams, random labels, union."""
import pytest
import torch

from tasknb.device import stream
from tasknb.task_family import N_CLASSES, TASKS, task_classes, task_data, union


def test_names_and_label_spaces():
    for name in ("fashion", "fashion_0_4", "fashion_5_9", "ifashion", "digits", "digits_0_4"):
        assert name in TASKS
    assert N_CLASSES == 10
    t = task_data("fashion_5_9", 50, seed=0)
    assert set(t.y.tolist()) == {5, 6, 7, 8, 9}
    assert torch.bincount(t.y, minlength=10)[5:].tolist() == [10] * 5
    d = task_data("digits_0_4", 23, seed=0)
    assert d.X.shape == (23, 196) and d.X.dtype == torch.float32 and d.y.dtype == torch.int64
    assert sorted(torch.bincount(d.y, minlength=5)[:5].tolist()) == [4, 4, 5, 5, 5]


def test_shape_centring_and_inversion():
    f = task_data("fashion", 40, seed=3, size=14)
    i = task_data("ifashion", 40, seed=3, size=14)
    assert f.X.shape == (40, 196)
    assert float(f.X.min()) >= -0.5 and float(f.X.max()) <= 0.5
    # same class draw structure, different task index -> a different image draw; inversion is a sign flip
    assert not torch.equal(f.X, -i.X)
    f7 = task_data("fashion", 20, seed=0, size=7)
    assert f7.X.shape == (20, 49)


def test_deterministic_and_own_streams():
    a = task_data("fashion_0_4", 30, seed=1)
    b = task_data("fashion_0_4", 30, seed=1)
    assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
    c = task_data("fashion_0_4", 30, seed=2)
    assert not torch.equal(a.X, c.X)
    te = task_data("fashion_0_4", 30, split="test", seed=1)
    assert not torch.equal(a.X, te.X)


def test_random_fraction_exact_count_and_own_stream():
    n, f = 200, 0.3
    clean = task_data("fashion_5_9", n, seed=4)
    noisy = task_data("fashion_5_9", n, seed=4, random_fraction=f)
    assert torch.equal(clean.X, noisy.X)  # images unchanged: random labels use their own stream
    g = stream(4, "task_family.random_labels", TASKS.index("fashion_5_9"), 0)
    pos = torch.randperm(n, generator=g)[:round(f * n)]
    mask = torch.zeros(n, dtype=torch.bool)
    mask[pos] = True
    assert torch.equal(clean.y[~mask], noisy.y[~mask])  # exactly the 60 chosen positions may change
    assert set(noisy.y.tolist()) <= set(task_classes("fashion_5_9"))
    assert int((clean.y[mask] != noisy.y[mask]).sum()) > 0.6 * mask.sum()  # ~4/5 of them change
    full = task_data("fashion_5_9", n, seed=4, random_fraction=1.0)
    agree = (full.y == clean.y).float().mean()
    assert 0.1 < float(agree) < 0.32  # uniform over 5 classes: 1/5 agreement


def test_union():
    a = task_data("fashion_0_4", 20, seed=0)
    b = task_data("fashion_5_9", 30, seed=0)
    u = union(a, b)
    assert u.name == "fashion_0_4+fashion_5_9" and u.X.shape == (50, 196)
    assert torch.equal(u.X[:20], a.X) and torch.equal(u.y[20:], b.y)
    assert u.classes == tuple(range(10))


def test_validation_messages():
    with pytest.raises(ValueError, match="name must be one of"):
        task_data("cifar", 10)
    with pytest.raises(ValueError, match="random_fraction"):
        task_data("fashion", 10, random_fraction=1.5)
    with pytest.raises(ValueError, match="only .* exist"):
        task_data("digits", 5000)
    with pytest.raises(ValueError, match="n must be >="):
        task_data("fashion", 3)
