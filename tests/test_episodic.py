"""tasknb.chapters.s5_episodic_training: episodes hold the documented classes and shapes and are reproducible for a seed;
the prototypical loss has the invariances of a clustering loss; recorded episodic runs use the paper's
recipe and live in the same prediction space as a supervised run read through the same readout;
k-way tasks are seeded and paired by task index; the length, end-distance, radius and InPCA
pieces of the protocol do what they say on synthetic runs; bad inputs stop
with a message naming the parameter."""
import math

import numpy as np
import pytest
import torch

from tasknb.chapters.s5_episodic_training import (compare_ends, distance_to_truth, episode_seed, episode_stream,
                                                  inpca_picture, kway_tasks, pair_radii, progress_gained, prototypical_loss,
                                                  record_episodic_trajectories, record_kway_tasks, run_lengths,
                                                  sample_episode)
from tasknb.geometry import bhattacharyya_matrix, reference_points, riemann_length
from tasknb.readout import prototypes, prototypical_logits
from tasknb.trajectories import Trajectories, batch_seed, init_seed, record_trajectories

LABELS = torch.arange(6).repeat_interleave(20)  # 6 classes x 20 images, class-sorted


def test_episode_shapes_and_classes():
    ep = sample_episode(LABELS, way=3, shot=2, query=4, g=torch.Generator().manual_seed(0))
    assert ep.way == 3 and ep.classes.shape == (3,) and len(set(ep.classes.tolist())) == 3
    assert ep.support.shape == (6,) and ep.query.shape == (12,)
    assert ep.support_labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert ep.query_labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    # every image belongs to the episode class its label names, support and query are disjoint
    assert torch.equal(LABELS[ep.support], ep.classes[ep.support_labels])
    assert torch.equal(LABELS[ep.query], ep.classes[ep.query_labels])
    assert not set(ep.support.tolist()) & set(ep.query.tolist())


def test_episode_stream_is_seeded_and_covers_classes():
    a = [next(s) for s in [episode_stream(LABELS, 2, 3, 5, seed=7)] for _ in range(30)]
    b = [next(s) for s in [episode_stream(LABELS, 2, 3, 5, seed=7)] for _ in range(30)]
    c = [next(s) for s in [episode_stream(LABELS, 2, 3, 5, seed=8)] for _ in range(30)]
    assert all(torch.equal(x.support, y.support) and torch.equal(x.query, y.query) for x, y in zip(a, b))
    assert not all(torch.equal(x.support, y.support) for x, y in zip(a, c))
    seen = torch.cat([e.classes for e in a]).unique().tolist()
    assert seen == list(range(6))   # 30 two-way episodes visit all six classes


def test_prototypes_are_class_means():
    f = torch.tensor([[0., 0.], [2., 0.], [0., 4.], [0., 6.]])
    y = torch.tensor([0, 0, 1, 1])
    assert torch.allclose(prototypes(f, y, 2), torch.tensor([[1., 0.], [0., 5.]]))


def test_loss_is_log_way_for_identical_features_and_small_for_perfect_clusters():
    way, shot, query, d = 4, 3, 5, 8
    ys = torch.arange(way).repeat_interleave(shot)
    yq = torch.arange(way).repeat_interleave(query)
    same = torch.ones(way * shot, d)
    assert math.isclose(float(prototypical_loss(same, ys, torch.ones(way * query, d), yq, way)),
                        math.log(way), rel_tol=1e-6)
    centres = 10 * torch.eye(way, d)          # far-apart centroids
    loss = prototypical_loss(centres[ys], ys, centres[yq], yq, way)
    assert float(loss) < 1e-6
    # queries sitting on the wrong centroids give a large loss
    wrong = prototypical_loss(centres[ys], ys, centres[(yq + 1) % way], yq, way)
    assert float(wrong) > 100


def test_loss_invariant_to_relabelling_classes_and_to_translations():
    g = torch.Generator().manual_seed(1)
    way, shot, query, d = 5, 2, 3, 6
    fs, fq = torch.randn(way * shot, d, generator=g), torch.randn(way * query, d, generator=g)
    ys = torch.arange(way).repeat_interleave(shot)
    yq = torch.arange(way).repeat_interleave(query)
    base = prototypical_loss(fs, ys, fq, yq, way)
    perm = torch.randperm(way, generator=g)
    assert torch.allclose(prototypical_loss(fs, perm[ys], fq, perm[yq], way), base)
    shift = torch.randn(d, generator=g)
    assert torch.allclose(prototypical_loss(fs + shift, ys, fq + shift, yq, way), base, atol=1e-5)
    # logits are minus squared distances: the query on a centroid has logit 0 there
    logits = prototypical_logits(fs, ys, prototypes(fs, ys, way), way)
    assert torch.allclose(logits.diagonal(), torch.zeros(way), atol=1e-5)


def test_validation_errors_name_the_parameter():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="way"):
        sample_episode(LABELS, 7, 1, 1, g)
    with pytest.raises(ValueError, match="way"):
        sample_episode(LABELS, 1, 1, 1, g)
    with pytest.raises(ValueError, match="shot"):
        sample_episode(LABELS, 2, 0, 1, g)
    with pytest.raises(ValueError, match="shot \\+ query"):
        sample_episode(LABELS, 2, 15, 10, g)
    with pytest.raises(ValueError, match="support_labels"):
        prototypes(torch.zeros(4, 2), torch.tensor([0, 0, 0, 0]), 2)
    with pytest.raises(ValueError, match="query_labels"):
        prototypical_loss(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(3, 2), torch.tensor([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="way"):
        record_episodic_trajectories(way=4, classes=(0, 1, 2), steps=2, device="cpu")
    with pytest.raises(ValueError, match="checkpoints"):
        record_episodic_trajectories(way=2, steps=5, checkpoints=[0, 9], device="cpu")


TINY = dict(steps=12, checkpoints=[0, 6, 12], n_seeds=2, n_test=60, n_train=600, n_imprint=10,
            device="cpu", union_classes=range(10))


@pytest.fixture(scope="module")
def epi():
    return record_episodic_trajectories(way=2, shot=3, query=4, **TINY)


def test_recorded_shapes_and_determinism(epi):
    assert epi.probs.shape == (2, 3, 60, 10) and epi.probs.dtype == np.float32
    assert np.abs(epi.probs.sum(-1) - 1).max() < 1e-5 and list(epi.steps) == [0, 6, 12]
    assert epi.config["method"] == "prototypical" and epi.config["way"] == 2 and epi.seeds == [0, 1]
    # the paper's recipe and the scale-free readout are the defaults
    assert epi.config["optimizer"] == "sgd" and epi.config["nesterov"] and epi.config["schedule"] == "cosine"
    assert epi.config["norm"] == "layer_conv1" and epi.config["readout"] == "prototype_ml"
    again = record_episodic_trajectories(way=2, shot=3, query=4, **{**TINY, "n_seeds": 1})
    np.testing.assert_array_equal(again.probs[0], epi.probs[0])
    assert not np.allclose(epi.probs[0, -1], epi.probs[0, 0])    # training moved the model
    assert not np.allclose(epi.probs[0, -1], epi.probs[1, -1])   # seeds differ


def test_episode_streams_are_their_own():
    seeds = {episode_seed(0, 0), episode_seed(0, 1), episode_seed(1, 0), init_seed(0, 0), batch_seed(0, 0)}
    assert len(seeds) == 5


def test_same_prediction_space_and_start_as_supervised(epi):
    # by construction (moved here from the notebook): seed k of every method starts from one network
    sup = record_trajectories("fashion_mnist", range(10), batch_size=16, **TINY)
    np.testing.assert_array_equal(sup.labels, epi.labels)
    np.testing.assert_allclose(sup.probs[:, 0], epi.probs[:, 0], atol=1e-6)
    assert not np.allclose(sup.probs[:, -1], epi.probs[:, -1], atol=1e-3)
    with pytest.raises(ValueError, match="readout"):
        record_episodic_trajectories(way=2, readout="softmax", **TINY)


def test_kway_tasks_are_distinct_seeded_subsets():
    t = kway_tasks([2, 4, 7], 5, seed=3)
    assert sorted(t) == [2, 4, 7]
    for k, tasks in t.items():
        assert len(tasks) == 5 and len(set(tasks)) == 5
        assert all(len(c) == k and len(set(c)) == k and list(c) == sorted(c) and 0 <= min(c) and max(c) <= 9
                   for c in tasks)
    assert kway_tasks([2, 4, 7], 5, seed=3) == t and kway_tasks([2, 4, 7], 5, seed=4) != t
    assert kway_tasks([4], 5, seed=3)[4] == t[4]          # a way's draw does not depend on the others
    with pytest.raises(ValueError, match="n_tasks"):
        kway_tasks([9], 11, seed=0)
    with pytest.raises(ValueError, match="ways"):
        kway_tasks([10], 2, seed=0)


def test_record_kway_tasks_start_together_and_differ_by_their_classes(epi):
    tasks = {2: [(0, 1), (2, 3)], 3: [(0, 1, 2), (4, 5, 6)]}
    out = record_kway_tasks(tasks, **TINY)
    assert out[2].probs.shape == (2, 3, 60, 10) and out[3].config["tasks"] == [[0, 1, 2], [4, 5, 6]]
    # every task starts from seed 0's network (the start of every method's seed 0), read on ten classes
    for k in tasks:
        np.testing.assert_allclose(out[k].probs[:, 0], epi.probs[[0, 0], 0], atol=1e-6)
    # ... and training on different classes moves them apart
    assert not np.allclose(out[2].probs[0, -1], out[2].probs[1, -1], atol=1e-4)


WALK_LABELS = np.random.default_rng(0).integers(0, 3, 30)


def _noisy_walk(T, N=30, C=3, jitter=0.3, seed=0):
    """A run drifting from near-uniform towards the truth of WALK_LABELS, with jitter."""
    rng = np.random.default_rng(seed)
    drift = np.linspace(0, 3, T)[:, None, None] * np.eye(C)[WALK_LABELS[:N]][None]
    logits = drift + jitter * rng.standard_normal((T, N, C))
    p = np.exp(logits)
    return p / p.sum(-1, keepdims=True)


def test_dense_recording_lengthens_the_chord_sum():
    # eq. (6) sums chords: on a jittery curve every extra checkpoint adds the jitter between two of them
    walk = _noisy_walk(65)
    L = [riemann_length(walk[::f]) for f in (1, 2, 4, 8)]
    assert L[0] > L[1] > L[2] > L[3]
    smooth = _noisy_walk(65, jitter=0.0)
    Ls = [riemann_length(smooth[::f]) for f in (1, 8)]
    assert abs(Ls[0] - Ls[1]) < 0.1 * Ls[0] < L[0] - L[3]


def test_run_lengths_and_ends_on_synthetic_runs():
    walk = np.stack([_noisy_walk(9, seed=s) for s in range(3)])          # (3, 9, 30, 3)
    lab = WALK_LABELS
    tr = Trajectories(probs=walk.astype(np.float32), steps=np.arange(9), labels=lab, seeds=[0, 1, 2],
                      classes=[0, 1, 2], accuracy=np.zeros((3, 9)), config={})
    prog = tr.progress()
    np.testing.assert_allclose(progress_gained(walk, lab), prog - prog[:, :1], atol=1e-6)
    L = run_lengths(tr, prog)
    np.testing.assert_allclose(L.gain, prog[:, -1] - prog[:, 0])
    assert np.all(L.travelled >= np.abs(L.gain) - 1e-12)
    np.testing.assert_allclose(L.length[0], riemann_length(walk[0]), rtol=1e-5)
    # a family compared with itself: the cross distances vanish, the same-method null does not
    e = compare_ends(walk, walk, lab, n_grid=5)
    assert np.allclose(e.cross, 0, atol=1e-9) and np.allclose(e.cross_final, 0, atol=1e-9)
    assert np.all(e.null > 0) and np.all(e.null_final > 0)
    assert e.family.range[0] == 0 and e.family.range[1] > 0       # indexed by progress gained
    # runs that start far apart in progress still share a range of progress gained
    far = np.concatenate([walk[:2, :4], walk[2:, 5:]])               # the third starts where the others end
    assert progress_gained(far, lab)[2, 0] == 0 and tr.progress()[2, 5] > tr.progress()[:2, 3].max()
    assert compare_ends(far, far[[1, 2, 0]], lab, n_grid=5).family.range[0] == 0
    r = pair_radii(np.concatenate([walk, walk[:1]]), lab, n_grid=5)
    assert r.shape == (2,) and np.all(r > 0)
    # distance to the truth: 0 for the truth itself, -log sqrt(1/C) for the uniform model
    _, Pstar = reference_points(lab, 3)
    d = distance_to_truth(np.stack([Pstar, np.full((30, 3), 1 / 3)]), lab)
    np.testing.assert_allclose(d, [0.0, 0.5 * np.log(3)], atol=1e-9)


def test_inpca_picture_projects_out_of_sample():
    walk = np.stack([_noisy_walk(6, seed=s) for s in range(3)])
    lab = WALK_LABELS
    pic = inpca_picture({"a": walk, "b": walk[:, ::-1].copy()}, lab, n_null=3, n_grid=4)
    assert pic.coords["a"].shape == (3, 6, 3) and pic.means["a"].shape == (4, 3) and pic.null.shape == (3,)
    assert pic.emb.coords.shape[0] == 36          # fitted on the 36 models only: P_0, P_* are projected
    # a fitted model projected as a new point lands on its own coordinates
    D = bhattacharyya_matrix(walk[0, :1], np.concatenate([walk.reshape(-1, 30, 3), walk[:, ::-1].reshape(-1, 30, 3)]))
    np.testing.assert_allclose(pic.emb.project(np.asarray(D))[0], pic.coords["a"][0, 0], atol=1e-6)
