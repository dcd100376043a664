"""Unit tests of tasknb.chapters.n1_feature_reuse (tiny sizes, a tmp source cache)."""
import math

import numpy as np
import pytest
import torch

from tasknb.chapters import n1_feature_reuse as n1
from tasknb.pretraining import TrainSpec, pretrained_source, source_config, target_images


def test_block_sizes_validated():
    assert n1.check_block_sizes([28, 7, 1]) == [28, 7, 1]
    with pytest.raises(ValueError, match="divide the image side"):
        n1.check_block_sizes([28, 5])
    with pytest.raises(ValueError, match="distinct and decreasing"):
        n1.check_block_sizes([1, 28])


def test_block_seed_one_stream_per_block_size_and_seed():
    s = {b: n1.block_seed(0, b) for b in n1.BLOCK_SIZES}
    assert len(set(s.values())) == len(s)
    assert n1.block_seed(0, 7) == n1.block_seed(0, 7)
    assert n1.block_seed(1, 7) != n1.block_seed(0, 7)


def test_example_images_are_permutations_of_the_unshuffled_ones():
    ex = n1.example_images("fashion_classes", [28, 7, 1], seed=0, n=2)
    assert ex.shape == (3, 2, 28, 28)
    plain = target_images("fashion_classes", "train", 2, 0).X[:, 0].numpy()
    np.testing.assert_array_equal(ex[0], plain)
    for i in (1, 2):
        assert not np.array_equal(ex[i], plain)
        np.testing.assert_allclose(np.sort(ex[i].reshape(2, -1), 1), np.sort(plain.reshape(2, -1), 1))
    # block 7: every 7x7 block of the shuffled image is a block of the original
    blocks = lambda x: {x[r:r + 7, c:c + 7].tobytes() for r in range(0, 28, 7) for c in range(0, 28, 7)}  # noqa: E731
    assert blocks(ex[1, 0]) == blocks(plain[0])


def test_relative_drop_loss_area_steps_to():
    np.testing.assert_allclose(n1.relative_drop([0.8, 0.5], [0.6, 0.5]), [0.25, 0.0])
    with pytest.raises(ValueError, match="same shape"):
        n1.relative_drop([0.8], [0.6, 0.5])
    with pytest.raises(ValueError, match="positive"):
        n1.relative_drop([0.0], [0.1])
    np.testing.assert_allclose(n1.loss_area([[1.0, 2.0, 3.0], [0.0, 0.0, 3.0]]), [2.0, 1.0])
    acc = np.array([[0.1, 0.5, 0.95, 0.99], [0.1, 0.2, 0.3, 0.4]])
    out = n1.steps_to(acc, [0, 10, 20, 30], 0.9)
    assert out[0] == 20 and math.isinf(out[1])
    with pytest.raises(ValueError, match="match steps"):
        n1.steps_to(acc, [0, 10], 0.9)


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    return pretrained_source(source_config(width=2, n_train=80, steps=10, seed=0), cache_dir=tmp_path_factory.mktemp("c"))


SPEC = TrainSpec(steps=6, batch_size=8, lr=0.05, eval_every=3)
KW = dict(n_train=24, n_test=20, width=2, n_show=2, device="cpu")


@pytest.fixture(scope="module")
def sweep(src):
    return n1.run_sweep("digits", [28, 4], src.final, SPEC, 2, 0, **KW)


def test_run_sweep_shapes_pairing_and_determinism(src, sweep):
    spec, kw, sw = SPEC, KW, sweep
    assert sw.block_sizes == [28, 4] and sw.steps.tolist() == [0, 3, 6]
    for k in ("P", "RI"):
        assert sw.test_accuracy[k].shape == (2, 2)
        assert sw.train_accuracy[k].shape == (2, 2, 3) and sw.batch_loss[k].shape == (2, 2, 6)
        assert np.all(np.isfinite(sw.batch_loss[k]))
    # P-T and RI-T start from different weights: their first mini-batch losses differ
    assert not np.allclose(sw.batch_loss["P"][:, :, 0], sw.batch_loss["RI"][:, :, 0])
    # the block-28 examples are the unshuffled images, the block-4 ones are not
    plain = target_images("digits", "train", 24, 0).X[:2, 0].numpy()
    np.testing.assert_array_equal(sw.examples[0], plain)
    assert not np.array_equal(sw.examples[1], plain)
    # deterministic, and a block size's runs do not depend on which other sizes are in the sweep
    again = n1.run_sweep("digits", [4], src.final, spec, 2, 0, **kw)
    np.testing.assert_array_equal(again.batch_loss["P"][0], sw.batch_loss["P"][1])
    np.testing.assert_array_equal(again.test_accuracy["RI"][0], sw.test_accuracy["RI"][1])
    other = n1.run_sweep("digits", [28], src.final, spec, 2, 1, **kw)
    assert not np.array_equal(other.batch_loss["RI"][0], sw.batch_loss["RI"][0])
    with pytest.raises(ValueError, match="n_seeds"):
        n1.run_sweep("digits", [28], src.final, spec, 1, 0, **kw)
    with pytest.raises(ValueError, match="target"):
        n1.run_sweep("cifar", [28], src.final, spec, 2, 0, **kw)


def test_batch_loss_recorded_is_the_training_loss():
    # the kernel's new TrainingRecord.batch_loss: one entry per step, equal to the loss of the batch used
    from tasknb.networks.resnet import init_resnet
    from tasknb.pretraining import train_network
    from tasknb.seed_runs import batch_stream
    import torch.nn.functional as F
    task = target_images("digits", "train", 16, 0)
    net = init_resnet(10, 2, 0, "cpu")
    first = next(batch_stream(16, 8, 5))
    with torch.no_grad():
        expected = float(F.cross_entropy(net(task.X[first]), task.y[first]))
    rec = train_network(net, task.X, task.y, TrainSpec(steps=3, batch_size=8, eval_every=3), 5)
    assert rec.batch_loss.shape == (3,)
    assert rec.batch_loss[0] == pytest.approx(expected, rel=1e-5)


def test_figures_build(sweep):
    sw = sweep
    assert len(n1.sweep_figure([sw, sw]).axes) == 6
    assert n1.block_frame([sw], 1).axes
    ex = {"digits": n1.example_images("digits", [28, 4], 0, n=1)}
    assert len(n1.image_grid(ex, [28, 4]).axes) == 2
    assert n1.curves_figure({"d": {"P": sw.batch_loss["P"][0], "RI": sw.batch_loss["RI"][0]}}, np.arange(6), "loss").axes
