"""tasknb.chapters.s6_contrastive_semisupervised: augmentations keep shape and range and are seeded, NT-Xent has the
invariants of the SimCLR loss and matches a direct computation, FixMatch's mask respects the
threshold, the recorders return one shared prediction space reproducibly, and bad inputs stop with
a message naming the parameter."""
import math

import numpy as np
import pytest
import torch

from tasknb.chapters.s6_contrastive_semisupervised import (ContrastiveNet, augment, fixmatch_loss, init_contrastive, nt_xent,
                                    pseudo_labels, record_contrastive_trajectories,
                                    record_fixmatch_trajectories)
from tasknb.networks.cnn import init_cnn
from tasknb.trajectories import record_trajectories

FAST = dict(n_seeds=1, steps=6, checkpoints=[0, 3, 6], n_test=60, n_train=600, n_imprint=5, device="cpu")


def images(n=6, seed=0):
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- augment
@pytest.mark.parametrize("strength", ["weak", "strong"])
def test_augment_shape_range_and_seed(strength):
    x = images()
    a, b = augment(x, strength, seed=3), augment(x, strength, seed=3)
    assert a.shape == x.shape and a.dtype == x.dtype
    assert a.min() >= 0 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(a, augment(x, strength, seed=4))
    assert not torch.equal(a, x)


def test_weak_view_is_a_shift_or_flip_of_the_image():
    x = images(4)
    a = augment(x, "weak", seed=0)
    # a pure translation/flip with zero padding never creates new pixel values
    for i in range(4):
        assert set(a[i].flatten().tolist()) <= set(x[i].flatten().tolist()) | {0.0}
    torch.testing.assert_close(augment(x, "weak", seed=0, max_shift=0).flip(-1).abs().sum(),
                               x.abs().sum())  # no shift: only flips, which keep the mass


def test_augment_generator_gives_fresh_draws_and_validates():
    x = images(3)
    g = torch.Generator().manual_seed(1)
    assert not torch.equal(augment(x, "strong", generator_=g), augment(x, "strong", generator_=g))
    with pytest.raises(ValueError, match="strength"):
        augment(x, "medium", seed=0)
    with pytest.raises(ValueError, match="exactly one of seed"):
        augment(x, "weak")
    with pytest.raises(ValueError, match="x must be a tensor"):
        augment(torch.rand(2, 28, 28), "weak", seed=0)


# ----------------------------------------------------------------------------- NT-Xent
def direct_nt_xent(z1, z2, t):
    u = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1).double()
    n, B = len(u), len(z1)
    total = 0.0
    for i in range(n):
        j = (i + B) % n
        num = math.exp(float(u[i] @ u[j]) / t)
        den = sum(math.exp(float(u[i] @ u[k]) / t) for k in range(n) if k != i)
        total += -math.log(num / den)
    return total / n


def test_nt_xent_matches_direct_computation_and_is_symmetric():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    for t in (0.1, 0.5, 2.0):
        assert abs(float(nt_xent(z1, z2, t)) - direct_nt_xent(z1, z2, t)) < 1e-5
        assert abs(float(nt_xent(z1, z2, t)) - float(nt_xent(z2, z1, t))) < 1e-6
    # invariant to the scale of each projection (rows are normalised)
    assert abs(float(nt_xent(3 * z1, 0.5 * z2)) - float(nt_xent(z1, z2))) < 1e-5


def test_nt_xent_low_for_identical_views_with_far_negatives():
    z = torch.eye(4) * 5  # orthogonal rows: negatives at 90 degrees
    low = float(nt_xent(z, z, 0.1))
    assert low < 1e-3
    shuffled = float(nt_xent(z, z.roll(1, 0), 0.1))  # positives are now orthogonal
    assert shuffled > 5
    # chance level: identical rows everywhere -> log(2B - 1)
    same = torch.ones(4, 3)
    assert abs(float(nt_xent(same, same, 0.5)) - math.log(7)) < 1e-5


def test_nt_xent_validates():
    with pytest.raises(ValueError, match="temperature"):
        nt_xent(torch.ones(3, 2), torch.ones(3, 2), 0)
    with pytest.raises(ValueError, match="z1 and z2 must have the same shape"):
        nt_xent(torch.ones(3, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="z1 must be a 2-D"):
        nt_xent(torch.ones(3), torch.ones(3))


def test_contrastive_net_shapes_and_backbone_matches_init_cnn():
    m = init_contrastive((4, 8), hidden=16, proj_dim=5, seed=2, device="cpu")
    x = images(3)
    assert isinstance(m, ContrastiveNet)
    assert m.features(x).shape == (3, 16 * 8) and m(x).shape == (3, 5)
    # same seed -> same backbone as the supervised network: all methods start at one point
    cnn = init_cnn(10, (4, 8), seed=2, device="cpu")
    torch.testing.assert_close(m.features(x), cnn.features(x))


# ----------------------------------------------------------------------------- FixMatch
def test_pseudo_label_mask_respects_tau():
    logits = torch.tensor([[5.0, 0.0, 0.0], [0.1, 0.0, 0.2], [0.0, 3.0, 0.0], [1.0, 1.0, 1.0]])
    p = torch.softmax(logits, -1).max(-1).values
    for tau in (0.0, 0.3, 0.5, 0.9, 1.0):
        lab, mask = pseudo_labels(logits, tau)
        assert torch.equal(mask, p >= tau)
        assert torch.equal(lab[:3], torch.tensor([0, 2, 1]))
    with pytest.raises(ValueError, match="tau"):
        pseudo_labels(logits, 1.5)


def test_fixmatch_loss_is_supervised_when_nothing_passes_tau():
    model = init_cnn(10, (4, 8), seed=0, device="cpu")
    xl, yl, xu = images(4), torch.tensor([0, 1, 2, 3]), images(6, 1)
    loss, mask, rate = fixmatch_loss(model, xl, yl, xu, augment(xu, "strong", seed=0), tau=1.0)
    assert rate == 0.0 and not mask.any()
    sup = torch.nn.functional.cross_entropy(model(xl), yl)
    assert abs(float(loss.detach()) - float(sup.detach())) < 1e-5
    loss0, mask0, rate0 = fixmatch_loss(model, xl, yl, xu, augment(xu, "strong", seed=0), tau=0.0)
    assert rate0 == 1.0 and mask0.all() and float(loss0.detach()) > float(sup.detach())
    with pytest.raises(ValueError, match="lambda_u"):
        fixmatch_loss(model, xl, yl, xu, xu, lambda_u=-1)
    with pytest.raises(ValueError, match="x_weak and x_strong"):
        fixmatch_loss(model, xl, yl, xu, xu[:3])


# ----------------------------------------------------------------------------- recorders
@pytest.fixture(scope="module")
def runs():
    sim = record_contrastive_trajectories(batch_size=16, **FAST)
    fm = record_fixmatch_trajectories(n_labelled=2, batch_size=8, mu=2, tau=0.5, **FAST)
    sup = record_trajectories(classes=range(10), readout="imprint", union_classes=range(10), batch_size=16,
                              steps=6, checkpoints=[0, 3, 6], n_seeds=1, n_test=60, n_train=600, n_imprint=5,
                              device="cpu")
    return sup, sim, fm


def test_recorders_share_one_prediction_space(runs):
    sup, sim, fm = runs
    for tr in (sim, fm):
        assert tr.probs.shape == (1, 3, 60, 10) and tr.probs.dtype == np.float32
        assert np.abs(tr.probs.sum(-1) - 1).max() < 1e-5
        np.testing.assert_array_equal(tr.labels, sup.labels)
        assert list(tr.steps) == [0, 3, 6] and tr.classes == list(range(10))
    # same seed -> same initial network read through the same imprinted head
    np.testing.assert_allclose(sim.probs[0, 0], sup.probs[0, 0], atol=1e-6)
    np.testing.assert_allclose(fm.probs[0, 0], sup.probs[0, 0], atol=1e-6)
    assert not np.allclose(sim.probs[0, -1], sup.probs[0, -1])  # training moved them apart
    assert len(fm.config["mask_rate"][0]) == 6


def test_recorders_are_deterministic(runs):
    _, sim, fm = runs
    np.testing.assert_array_equal(record_contrastive_trajectories(batch_size=16, **FAST).probs, sim.probs)
    np.testing.assert_array_equal(
        record_fixmatch_trajectories(n_labelled=2, batch_size=8, mu=2, tau=0.5, **FAST).probs, fm.probs)


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=0), "temperature"), (dict(batch_size=1), "batch_size"), (dict(steps=0), "steps"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(dataset="cifar"), "dataset"), (dict(n_imprint=0), "n_imprint"),
    (dict(checkpoints=[0, 9]), "checkpoints"),
])
def test_contrastive_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        record_contrastive_trajectories(**{**FAST, "batch_size": 16, **kw})


@pytest.mark.parametrize("kw, match", [
    (dict(tau=1.2), "tau"), (dict(lambda_u=-0.1), "lambda_u"), (dict(mu=0), "mu"),
    (dict(n_labelled=0), "n_labelled"), (dict(n_labelled=1, batch_size=16), "batch_size"),
])
def test_fixmatch_validation(kw, match):
    with pytest.raises(ValueError, match=match):
        record_fixmatch_trajectories(**{**FAST, "n_labelled": 2, "batch_size": 8, **kw})
