"""tasknb.chapters.s7_finetuning_from_checkpoints: pre-training keeps the weights of every seed,
fine-tuning runs from each kept checkpoint have the documented shape, start exactly at that
checkpoint's point of the 10-class prediction space (the by-construction facts the notebook no
longer asserts), train the whole network, draw their batch orders from their own streams, are
reproducible, and the measurements (progress change, family comparisons over progress travelled,
paired run distances, seed spread, the InPCA picture) do what they say; bad inputs stop with a
message naming the parameter."""
import numpy as np
import pytest
import torch

from tasknb.chapters.s7_finetuning_from_checkpoints import (
    FineTuning, Pretraining, distance_to_trajectory, distance_travelled, family_comparisons, finetune_from_checkpoints,
    inpca_picture, paired_run_distances, pretrain_with_checkpoints, progress_along, progress_change, seed_spread)
from tasknb.geometry import bhattacharyya, progress
from tasknb.networks.cnn import init_cnn

PRE = dict(steps=20, checkpoints=[0, 5, 20], n_seeds=2, n_test=100, n_train=200, batch_size=16,
           channels=(4, 8), n_imprint=5, device="cpu")
FT = dict(subtasks=((2, 4), (5, 7)), start_steps=[0, 20], steps=6, checkpoints=[0, 3, 6], batch_size=8,
          seed=3, device="cpu")


@pytest.fixture(scope="module")
def pre():
    return pretrain_with_checkpoints(**PRE)


@pytest.fixture(scope="module")
def ft(pre):
    return finetune_from_checkpoints(pre, **FT)


def _net(pre, k, t):
    c = pre.config
    model = init_cnn(10, c["channels"], 0, "cpu", norm=c["norm"], head_bias=c["head_bias"])
    model.load_state_dict(pre.states[k][t])
    return model


def test_pretraining_shapes_states_and_recipe(pre):
    assert isinstance(pre, Pretraining)
    assert pre.probs.shape == (2, 3, 100, 10) and pre.probs.dtype == np.float32
    assert list(pre.steps) == [0, 5, 20] and pre.labels.shape == (100,) and pre.accuracy.shape == (2, 3)
    assert pre.train_accuracy.shape == (2, 3) and ((pre.train_accuracy >= 0) & (pre.train_accuracy <= 1)).all()
    assert len(pre.states) == 2 and len(pre.states[0]) == 3
    c = pre.config                                       # the paper's recipe is the default
    assert (c["optimizer"], c["nesterov"], c["schedule"], c["norm"], c["head_bias"], c["readout"]) == \
        ("sgd", True, "cosine", "layer_conv1", False, "prototype_ml")
    # two seeds are two different networks; re-reading the kept weights reproduces the recorded points
    assert not torch.equal(pre.states[0][0]["conv1.weight"], pre.states[1][0]["conv1.weight"])
    pset = pre.data[2]
    np.testing.assert_allclose(pset.predict(_net(pre, 1, 1)).numpy(), pre.probs[1, 1], atol=1e-6)
    X, y = pre.data[:2]
    with torch.no_grad():
        acc = float((_net(pre, 0, 2)(X).argmax(-1) == y).double().mean())
    assert pre.train_accuracy[0, 2] == pytest.approx(acc)


def test_finetuning_shapes(ft):
    assert isinstance(ft, FineTuning)
    assert ft.probs.shape == (2, 2, 2, 3, 100, 10) and ft.probs.dtype == np.float32
    assert np.abs(ft.probs.sum(-1) - 1).max() < 1e-5 and ft.probs.min() >= 0
    assert list(ft.steps) == [0, 3, 6] and list(ft.start_steps) == [0, 20] and ft.subtasks == [(2, 4), (5, 7)]
    assert ft.start_probs.shape == (2, 2, 100, 10)
    assert ft.accuracy.shape == (2, 2, 2, 3) and ft.subtask_accuracy.shape == (2, 2, 2, 2)
    assert ft.config["optimizer"] == "sgd" and ft.config["nesterov"] and ft.config["lr"] == 0.01


@pytest.mark.parametrize("head", ["pretrained", "imprint", "random"])
def test_first_point_is_the_checkpoint_and_the_whole_net_moves(pre, ft, head):
    run = ft if head == "pretrained" else finetune_from_checkpoints(pre, **{**FT, "head": head, "start_steps": [20]})
    for i, s in enumerate(run.start_steps):
        start = pre.probs[:, pre.index_of(int(s))]
        np.testing.assert_array_equal(run.start_probs[i], start)
        for j in range(len(run.subtasks)):
            np.testing.assert_array_equal(run.probs[i, j, :, 0], start)
    assert (distance_travelled(run) > 1e-6).all()          # the readout sees the backbone only, and it moves


def test_pretrained_head_is_the_restricted_10_way_network(pre, ft):
    pset = pre.data[2]
    with torch.no_grad():
        logits = _net(pre, 1, 2)(pset.X)
    for j, (a, b) in enumerate(ft.subtasks):
        keep = (pset.labels == a) | (pset.labels == b)
        acc = float((logits[keep][:, [a, b]].argmax(-1) == (pset.labels[keep] == b).long()).double().mean())
        assert ft.subtask_accuracy[1, j, 1, 0] == pytest.approx(acc)


def test_streams_and_determinism(pre, ft):
    again = finetune_from_checkpoints(pre, **{**FT, "start_steps": [20]})
    np.testing.assert_array_equal(again.probs[0], ft.probs[1])
    other = finetune_from_checkpoints(pre, **{**FT, "start_steps": [20], "replicate": 1})
    assert not np.allclose(other.probs[0, :, :, -1], ft.probs[1, :, :, -1])   # another batch order
    reseeded = finetune_from_checkpoints(pre, **{**FT, "start_steps": [20], "seed": 4})
    assert not np.allclose(reseeded.probs[0, :, :, -1], ft.probs[1, :, :, -1])
    adam = finetune_from_checkpoints(pre, **{**FT, "start_steps": [20], "optimizer": "adam"})
    assert adam.config["lr"] == 1e-3 and not adam.config["nesterov"]
    assert not np.allclose(adam.probs[0, :, :, -1], ft.probs[1, :, :, -1])
    np.testing.assert_array_equal(adam.probs[0, :, :, 0], ft.probs[1, :, :, 0])


def test_distances_and_progress(pre, ft):
    d = distance_travelled(ft)
    assert d.shape == (2, 2, 2) and (d >= 0).all()
    np.testing.assert_allclose(d, bhattacharyya(ft.probs[..., 0, :, :].astype(np.float64),
                                                ft.probs[..., -1, :, :].astype(np.float64)), rtol=1e-10)
    L = distance_travelled(ft, "length")
    assert L.shape == (2, 2, 2) and (L > 0).all()
    still = np.repeat(ft.probs[:1, :1, :1, :1], 3, axis=3)            # a run that never moves
    assert np.abs(distance_travelled(still)).max() < 1e-7
    on = distance_to_trajectory(pre.probs[0], pre.probs[0])
    assert on.shape == (3,) and np.abs(on).max() < 1e-7
    t = progress_along(ft)
    assert t.shape == (2, 2, 2, 3)
    np.testing.assert_allclose(t[:, 0, :, 0], progress(ft.start_probs.reshape(-1, 100, 10).astype(np.float64),
                                                       ft.labels).reshape(2, 2))
    ch = progress_change(ft)
    assert (ch[..., 0] == 0).all() and np.allclose(ch, t - t[..., :1])


def test_family_and_paired_comparisons(ft):
    same = family_comparisons(ft.probs[:, 0], ft.probs[:, 0], ft.labels, n_grid=5)
    assert len(same) == 2 and all(f.range[0] == 0.0 for f in same)
    assert all(np.abs(f.between_means).max() < 1e-9 for f in same)     # a family against itself
    cross = family_comparisons(ft.probs[:, 0], ft.probs[:, 1], ft.labels, n_grid=5)
    assert all(f.between_means[-1] > 1e-6 for f in cross)
    d, lo, hi = paired_run_distances(ft.probs[:, 0], ft.probs[:, 1], ft.labels, n_grid=5)
    assert d.shape == lo.shape == hi.shape == (2, 2) and (lo == 0).all() and (hi > 0).all() and (d > 0).all()
    d0, _, _ = paired_run_distances(ft.probs[:, 0], ft.probs[:, 0], ft.labels, n_grid=5)
    assert np.abs(d0).max() < 1e-9


def test_seed_spread(pre):
    s = seed_spread(pre.probs[:, -1])
    assert s.shape == (2,) and (s > 0).all()
    np.testing.assert_allclose(s[0], bhattacharyya(pre.probs[0, -1].astype(np.float64),
                                                   pre.probs[1, -1].astype(np.float64)))
    assert np.abs(seed_spread(np.repeat(pre.probs[:1, -1], 3, axis=0))).max() < 1e-7
    with pytest.raises(ValueError, match="models"):
        seed_spread(pre.probs[:1, -1])


def test_inpca_picture(pre, ft):
    pic = inpca_picture(pre, ft, k=3, n_null=2)
    assert pic.pre.shape == (2, 3, 3) and pic.ft.shape == (2, 2, 2, 3, 3)
    assert pic.pre_mean.shape == (3, 3) and pic.ft_mean.shape == (2, 2, 3, 3)
    assert pic.p0.shape == pic.p_star.shape == (3,) and pic.stress_null.shape == (2,)
    assert 0 < pic.embedding.explained_stress <= 1
    assert np.isfinite(pic.p_star).all() and np.linalg.norm(pic.p_star - pic.p0) > 0


@pytest.mark.parametrize("kwargs, match", [
    ({"subtasks": [(2, 2)]}, "subtasks"),
    ({"subtasks": [(2, 4, 6)]}, "subtasks"),
    ({"subtasks": [(2, 10)]}, "subtasks"),
    ({"subtasks": []}, "subtasks"),
    ({"start_steps": [7]}, "start_steps"),
    ({"checkpoints": [3, 6]}, "checkpoints"),
    ({"checkpoints": [0, 11]}, "checkpoints"),
    ({"head": "frozen"}, "head"),
    ({"steps": 0}, "steps"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr": -1.0}, "lr"),
    ({"replicate": -1}, "replicate"),
    ({"schedule": "step"}, "schedule"),
    ({"batch_size": 10**6}, "batch_size"),
    ({"device": "tpu"}, "device"),
])
def test_finetune_validation(pre, kwargs, match):
    with pytest.raises(ValueError, match=match):
        finetune_from_checkpoints(pre, **{**FT, **kwargs})


def test_other_validation(ft):
    with pytest.raises(ValueError, match="pre"):
        finetune_from_checkpoints("not a run")
    for kwargs, match in [({"steps": 0}, "steps"), ({"checkpoints": [0, 30]}, "checkpoints"),
                          ({"optimizer": "lbfgs"}, "optimizer"), ({"dataset": "cifar"}, "dataset"),
                          ({"channels": (8,)}, "channels"), ({"n_imprint": 0}, "n_imprint"),
                          ({"readout": "softmax"}, "readout"), ({"classes": (0, 1)}, "classes")]:
        with pytest.raises(ValueError, match=match):
            pretrain_with_checkpoints(**{**PRE, **kwargs})
    with pytest.raises(ValueError, match="kind"):
        distance_travelled(ft, "diameter")
    with pytest.raises(ValueError, match="ft"):
        distance_travelled(ft.probs[0, 0, 0, :1])
    with pytest.raises(ValueError, match="points"):
        distance_to_trajectory(ft.probs[0, 0, 0], ft.probs[0, 0, 0, 0])
    with pytest.raises(ValueError, match="ft"):
        progress_along(ft.probs)
    with pytest.raises(ValueError, match="runs_1"):
        family_comparisons(ft.probs[0, 0], ft.probs[0, 0], ft.labels)
    with pytest.raises(ValueError, match="runs_1"):
        paired_run_distances(ft.probs[:, 0], ft.probs[:1, 0], ft.labels)
