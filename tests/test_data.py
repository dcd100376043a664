"""Datasets (offline) and task constructors."""
import os

import pytest
import torch

from tasknb import data, tasks
from tasknb.data import block_shuffle


def test_fashion_mnist_loads_from_debian_files(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKNB_DATA", str(tmp_path))
    X, y = data.load_fashion_mnist("test")
    assert X.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)
    assert float(X.min()) >= 0.0 and float(X.max()) <= 1.0
    assert sorted(torch.unique(y).tolist()) == list(range(10))
    assert (tmp_path / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte").exists()


def test_missing_fashion_mnist_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKNB_DATA", str(tmp_path / "empty"))
    monkeypatch.setenv("TASKNB_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="apt-get install -y dataset-fashion-mnist"):
        data.load_fashion_mnist("train")


def test_digits_offline_and_upsampled():
    Xtr, ytr = data.load_digits("train")
    Xte, yte = data.load_digits("test")
    assert Xtr.shape[1:] == (1, 8, 8) and len(Xtr) + len(Xte) == 1797
    X28, _ = data.load_digits("train", size=28)
    assert X28.shape[1:] == (1, 28, 28) and float(X28.max()) <= 1.0


@pytest.mark.parametrize("call, message", [
    (lambda: data.load_dataset("cifar10"), "name must be one of 'fashion_mnist', 'digits'"),
    (lambda: data.load_fashion_mnist("valid"), "split must be one of 'train', 'test'"),
    (lambda: data.load_digits("train", size=0), "size must be an integer >= 2"),
])
def test_bad_dataset_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _images(n=5, side=28, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, side, side, generator=g)


@pytest.mark.parametrize("block", [1, 2, 4, 7, 14])
def test_block_shuffle_moves_every_block(block):
    x = _images()
    z = block_shuffle(x, block, seed=3)
    k = 28 // block
    xb = x.reshape(5, 1, k, block, k, block).permute(0, 1, 2, 4, 3, 5).reshape(5, k * k, -1)
    zb = z.reshape(5, 1, k, block, k, block).permute(0, 1, 2, 4, 3, 5).reshape(5, k * k, -1)
    # every output block is some input block (a permutation), the same one for every image
    match = (zb[0].unsqueeze(1) == xb[0].unsqueeze(0)).all(-1)  # (out block, in block)
    perm = match.float().argmax(1)
    assert bool(match.any(1).all())
    assert sorted(perm.tolist()) == list(range(k * k))
    assert bool((perm != torch.arange(k * k)).all()), "some block stayed in place"
    for i in range(1, 5):
        assert torch.equal(zb[i], xb[i][perm])
    # pixels are only moved, never changed
    assert torch.equal(z.flatten(1).sort(1).values, x.flatten(1).sort(1).values)


def test_block_shuffle_is_seeded_and_whole_image_block_is_identity():
    x = _images()
    assert torch.equal(block_shuffle(x, 7, seed=1), block_shuffle(x, 7, seed=1))
    assert not torch.equal(block_shuffle(x, 7, seed=1), block_shuffle(x, 7, seed=2))
    assert torch.equal(block_shuffle(x, 28, seed=0), x)
    # two blocks in total (side 2, block 1 gives 4; use a 2x2 image with block 1): still never identity
    tiny = torch.arange(4.0).reshape(1, 1, 2, 2)
    for s in range(10):
        assert not torch.equal(block_shuffle(tiny, 1, seed=s), tiny)


@pytest.mark.parametrize("block", [0, 3, 5, 29, 2.0, -7])
def test_block_shuffle_rejects_bad_block_size(block):
    with pytest.raises(ValueError, match=r"block_size must divide the image side 28; allowed: \[1, 2, 4, 7, 14, 28\]"):
        block_shuffle(_images(), block)


def test_block_shuffle_rejects_bad_images():
    with pytest.raises(ValueError, match="x must be a tensor of images with shape"):
        block_shuffle(torch.rand(28, 28), 7)
    with pytest.raises(ValueError, match="square images"):
        block_shuffle(torch.rand(2, 1, 28, 14), 7)


def test_invert_and_upsample():
    x = _images(2, 8)
    assert torch.allclose(data.invert(data.invert(x)), x)
    assert data.upsample(x, 28).shape == (2, 1, 28, 28)


def test_task_constructors():
    y = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 0])
    X = torch.arange(12.0).reshape(12, 1)
    Xs, ys = tasks.class_subset(X, y, [9, 0])
    assert ys.tolist() == [1, 0, 0, 1]
    assert Xs.squeeze(1).tolist() == [0.0, 9.0, 10.0, 11.0]
    sup = tasks.superclass_labels(y, data.FASHION_SUPERCLASSES)
    assert sup.tolist() == [0, 2, 0, 2, 0, 1, 0, 1, 2, 1, 1, 0]
    eo = tasks.binary_relabel(y, tasks.EVEN_ODD)
    assert eo.tolist() == [1, -1, 1, -1, 1, -1, 1, -1, 1, -1, -1, 1]
    lt5 = tasks.binary_relabel(y, tasks.LESS_THAN_5)
    assert lt5[:5].tolist() == [1] * 5 and lt5[5:10].tolist() == [-1] * 5


def test_random_labels_fraction():
    y = torch.zeros(10_000, dtype=torch.long)
    r = tasks.random_labels(y, 0.5, num_classes=10, seed=0)
    changed = float((r != 0).double().mean())
    assert abs(changed - 0.5 * 0.9) < 0.02          # a replaced label stays 0 with prob. 1/10
    assert torch.equal(tasks.random_labels(y, 0.0, 10), y)
    assert torch.equal(r, tasks.random_labels(y, 0.5, num_classes=10, seed=0))
    with pytest.raises(ValueError, match=r"fraction must be in \[0, 1\]"):
        tasks.random_labels(y, 1.5, 10)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        tasks.random_labels(y, 0.5, 1)


def test_replace_labels_any_label_set_and_nested_positions():
    from tasknb.device import stream

    y = torch.full((2_000,), 7, dtype=torch.long)
    small = tasks.replace_labels(y, 0.2, (5, 6, 8, 9), stream(0, "test.replace"))
    large = tasks.replace_labels(y, 0.6, (5, 6, 8, 9), stream(0, "test.replace"))
    assert set(large.unique().tolist()) == {5, 6, 7, 8, 9}     # new labels only from the set
    assert int((small != 7).sum()) == 400 and int((large != 7).sum()) == 1200   # 7 is not in the set
    assert bool(((small != 7) <= (large != 7)).all())           # a larger fraction: a superset
    # random_labels is replace_labels over 0..num_classes-1 with the seed's generator
    from tasknb.device import generator
    assert torch.equal(tasks.random_labels(y, 0.5, 10, seed=3),
                       tasks.replace_labels(y, 0.5, range(10), generator(3)))
    with pytest.raises(ValueError, match="classes"):
        tasks.replace_labels(y, 0.5, (), stream(0, "test.replace"))


def test_task_constructor_errors():
    y = torch.tensor([0, 1, 2])
    with pytest.raises(ValueError, match="classes must contain integers"):
        tasks.class_subset(torch.zeros(3, 1), y, [0, 7])
    with pytest.raises(ValueError, match="groups must cover every label"):
        tasks.superclass_labels(y, [(0,), (1,)])
    with pytest.raises(ValueError, match="groups must be disjoint"):
        tasks.superclass_labels(y, [(0, 1), (1, 2)])
    with pytest.raises(ValueError, match="y must be a 1-D integer tensor"):
        tasks.binary_relabel(torch.zeros(3), [0])
