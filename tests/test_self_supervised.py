"""tasknb.chapters.s6_contrastive_semisupervised: augmentations keep shape and range and are seeded, NT-Xent has the
invariants of the SimCLR loss and matches a direct computation, FixMatch's mask respects the
threshold, the recorders use the paper's recipes (SimCLR: Adam), start every method of a seed from
one network read through one prototype readout, augment the supervised baseline, record the mask
rate, and reproduce; the protocol helpers pair seeds, share a grid every run covers and fit InPCA on
the models alone; bad inputs stop with a message naming the parameter."""
import math

import numpy as np
import pytest
import torch

from tasknb.chapters.s6_contrastive_semisupervised import (ContrastiveNet, augment, fixmatch_loss, init_contrastive,
                                                           inpca_picture, nt_xent, pseudo_labels,
                                                           record_contrastive_trajectories,
                                                           record_fixmatch_trajectories,
                                                           record_supervised_trajectories,
                                                           seed_pair_distances, shared_grid, window_mean)
from tasknb.geometry import bhattacharyya
from tasknb.networks.cnn import init_cnn
from tasknb.trajectories import Trajectories
from tasknb.trajectory_geometry import unfolded_progress

FAST = dict(n_seeds=2, steps=6, checkpoints=[0, 3, 6], n_test=60, n_train=600, n_imprint=5, channels=(4, 8),
            device="cpu")


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


def test_contrastive_backbone_matches_init_cnn_of_the_recipe():
    m = init_contrastive((4, 8), hidden=16, proj_dim=5, seed=2, device="cpu")
    x = images(3)
    assert isinstance(m, ContrastiveNet)
    assert m.features(x).shape == (3, 16 * 8) and m(x).shape == (3, 5)
    # same seed -> same backbone as the supervised network of the recipe (LayerNorm'd, bias-free)
    cnn = init_cnn(10, (4, 8), seed=2, device="cpu", norm="layer_conv1", head_bias=False)
    torch.testing.assert_close(m.features(x), cnn.features(x))
    assert m.backbone.head.bias is None
    # layer-normalised features: mean 0, variance 1 per row (the readout sees directions)
    f = m.features(x)
    torch.testing.assert_close(f.mean(1), torch.zeros(3), atol=1e-5, rtol=0)


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
    sup = record_supervised_trajectories(batch_size=16, **FAST)
    return sup, sim, fm


def test_recorders_share_one_prediction_space_and_start(runs):
    sup, sim, fm = runs
    for tr in (sim, fm, sup):
        assert tr.probs.shape == (2, 3, 60, 10) and tr.probs.dtype == np.float32
        assert np.abs(tr.probs.sum(-1) - 1).max() < 1e-5
        np.testing.assert_array_equal(tr.labels, sup.labels)
        assert list(tr.steps) == [0, 3, 6] and tr.classes == list(range(10))
        assert tr.config["readout"] == "prototype_ml"
    # seed k of every method starts from one network read through one readout (moved here from
    # the notebook's Checks: it holds by construction)
    np.testing.assert_allclose(sim.probs[:, 0], sup.probs[:, 0], atol=1e-6)
    np.testing.assert_allclose(fm.probs[:, 0], sup.probs[:, 0], atol=1e-6)
    assert not np.allclose(sup.probs[0, 0], sup.probs[1, 0])  # seeds start apart
    assert not np.allclose(sim.probs[0, -1], sup.probs[0, -1])  # training moved them apart
    assert np.array(fm.config["mask_rate"]).shape == (2, 6)


def test_recipes_of_the_methods(runs):
    sup, sim, fm = runs
    assert sim.config["optimizer"] == "adam" and sim.config["lr"] == 1e-3  # App. A of S for SimCLR
    for tr in (sup, fm):
        assert tr.config["optimizer"] == "sgd" and tr.config["nesterov"] and tr.config["schedule"] == "cosine"
        assert tr.config["norm"] == "layer_conv1" and tr.config["head_bias"] is False
    assert sup.config["augment"] == "weak"


def test_supervised_baseline_is_augmented():
    """The weak views change the run: with max_shift 0 and no flip the run would equal the kernel's;
    here it must differ from the un-augmented kernel run with the same streams."""
    from tasknb.trajectories import record_trajectories
    kw = {**FAST, "n_seeds": 1}
    plain = record_trajectories(batch_size=16, **kw)
    aug = record_supervised_trajectories(batch_size=16, **kw)
    np.testing.assert_allclose(plain.probs[:, 0], aug.probs[:, 0], atol=1e-6)  # same start and batches
    assert not np.allclose(plain.probs[:, -1], aug.probs[:, -1], atol=1e-4)


def test_two_class_runs_read_on_the_ten_classes():
    kw = {**FAST, "n_seeds": 1}
    sim = record_contrastive_trajectories(batch_size=16, classes=(5, 7), union_classes=range(10), **kw)
    sup = record_supervised_trajectories(batch_size=16, classes=(5, 7), union_classes=range(10), **kw)
    for tr in (sim, sup):
        assert tr.probs.shape == (1, 3, 60, 10) and tr.classes == list(range(10))


def test_recorders_are_deterministic(runs):
    _, sim, fm = runs
    np.testing.assert_array_equal(record_contrastive_trajectories(batch_size=16, **FAST).probs, sim.probs)
    again = record_fixmatch_trajectories(n_labelled=2, batch_size=8, mu=2, tau=0.5, **FAST)
    np.testing.assert_array_equal(again.probs, fm.probs)
    assert again.config["mask_rate"] == fm.config["mask_rate"]


def test_fixmatch_mask_rate_follows_tau():
    kw = dict(n_labelled=2, batch_size=8, mu=2, **{**FAST, "n_seeds": 1})
    assert np.all(np.array(record_fixmatch_trajectories(tau=0.0, **kw).config["mask_rate"]) == 1.0)
    assert np.all(np.array(record_fixmatch_trajectories(tau=1.0, **kw).config["mask_rate"]) == 0.0)


# ----------------------------------------------------------------------------- protocol helpers
def test_seed_pair_distances_and_window_mean():
    rng = np.random.default_rng(0)
    a = rng.dirichlet(np.ones(3), size=(3, 4, 5))  # (K, G, N, C)
    d = seed_pair_distances(a, a)
    assert d.shape == (3, 4)
    np.testing.assert_allclose(d[0], bhattacharyya(a[0], a[1]))
    np.testing.assert_allclose(d[2], bhattacharyya(a[2], a[0]))
    assert np.all(d > 0)
    np.testing.assert_allclose(window_mean(d), d.mean(-1))
    np.testing.assert_allclose(window_mean(d, 0, 1 / 3), d[:, :2].mean(-1))
    with pytest.raises(ValueError, match="share"):
        seed_pair_distances(a, a[:2])


def synthetic_family(starts, ends, T=4, N=40, C=3, seed=0):
    """Trajectories whose seeds move from near-uniform predictions towards the truth."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, N)
    onehot = np.eye(C)[labels]
    probs = []
    for a, b in zip(starts, ends):
        lam = np.linspace(a, b, T)[:, None, None]
        probs.append((1 - lam) / C + lam * onehot)
    probs = np.array(probs, dtype=np.float32)
    return Trajectories(probs=probs, steps=np.arange(T), labels=labels, seeds=list(range(len(starts))),
                        classes=list(range(C)), accuracy=np.ones((len(starts), T)), config={})


def test_shared_grid_covers_every_run():
    fams = {"a": synthetic_family([0.1, 0.2], [0.6, 0.7]), "b": synthetic_family([0.15, 0.05], [0.5, 0.9])}
    grid, (lo, hi), re = shared_grid(fams, ["a", "b"], n_grid=5)
    assert grid[0] == lo and grid[-1] == hi and lo < hi
    assert re["a"].shape == (2, 5, 40, 3)
    ranges = [(u[0], u[-1]) for tr in fams.values() for u in map(unfolded_progress, tr.progress())]
    assert lo == max(r[0] for r in ranges) and hi == min(r[1] for r in ranges)
    # every re-indexed point sits at its grid value of progress
    from tasknb.geometry import progress
    for k in range(2):
        np.testing.assert_allclose(progress(re["b"][k], fams["b"].labels), grid, atol=1e-9)


def test_inpca_picture_projects_reference_points(runs):
    sup, sim, _ = runs
    pic = inpca_picture({"a": sup, "b": sim}, ["a", "b"], k=3, n_null=2)
    assert pic["X"]["a"].shape == (2, 3, 3) and pic["means"]["b"].shape == (3, 3)
    assert pic["p0"].shape == (3,) and pic["null"].shape == (2,)
    assert 0 <= pic["emb"].explained_stress <= 1
    assert pic["emb"].coords.shape[0] == 12  # fitted on the 12 models alone


@pytest.mark.parametrize("kw, match", [
    (dict(temperature=0), "temperature"), (dict(batch_size=1), "batch_size"), (dict(steps=0), "steps"),
    (dict(optimizer="rmsprop"), "optimizer"), (dict(dataset="cifar"), "dataset"), (dict(n_imprint=0), "n_imprint"),
    (dict(checkpoints=[0, 9]), "checkpoints"), (dict(readout="softmax"), "readout"),
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
