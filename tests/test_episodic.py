"""tasknb.chapters.s5_episodic_training: episodes hold the documented classes and shapes and are reproducible for a seed;
the prototypical loss has the invariances of a clustering loss; recorded episodic runs live in the
same prediction space as a supervised run read through the same imprinted head; bad inputs stop
with a message naming the parameter."""
import math

import numpy as np
import pytest
import torch

from tasknb.chapters.s5_episodic_training import (episode_stream, prototypical_loss, record_episodic_trajectories,
                                                  sample_episode)
from tasknb.readout import prototypes, prototypical_logits
from tasknb.trajectories import record_trajectories

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
            optimizer="adam", lr=0.01, device="cpu", union_classes=range(10))


@pytest.fixture(scope="module")
def epi():
    return record_episodic_trajectories(way=2, shot=3, query=4, **TINY)


def test_recorded_shapes_and_determinism(epi):
    assert epi.probs.shape == (2, 3, 60, 10) and epi.probs.dtype == np.float32
    assert np.abs(epi.probs.sum(-1) - 1).max() < 1e-5 and list(epi.steps) == [0, 6, 12]
    assert epi.config["method"] == "prototypical" and epi.config["way"] == 2 and epi.seeds == [0, 1]
    again = record_episodic_trajectories(way=2, shot=3, query=4, **{**TINY, "n_seeds": 1})
    np.testing.assert_array_equal(again.probs[0], epi.probs[0])
    assert not np.allclose(epi.probs[0, -1], epi.probs[0, 0])    # training moved the model
    assert not np.allclose(epi.probs[0, -1], epi.probs[1, -1])   # seeds differ


def test_same_prediction_space_and_start_as_supervised(epi):
    sup = record_trajectories("fashion_mnist", range(10), readout="imprint", batch_size=16, **TINY)
    np.testing.assert_array_equal(sup.labels, epi.labels)
    # same seed -> same backbone initialisation -> the same point of prediction space at step 0
    np.testing.assert_allclose(sup.probs[:, 0], epi.probs[:, 0], atol=1e-6)
    assert not np.allclose(sup.probs[:, -1], epi.probs[:, -1], atol=1e-3)
