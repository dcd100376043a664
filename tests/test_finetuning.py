"""tasknb.chapters.s7_finetuning_from_checkpoints: pre-training keeps its weights, fine-tuning runs from each kept checkpoint
have the documented shape, start exactly at that checkpoint's point of the 10-class prediction
space, train the whole network (the point moves), are reproducible for a seed, and bad inputs
stop with a message naming the parameter."""
import numpy as np
import pytest
import torch

from tasknb.chapters.s7_finetuning_from_checkpoints import (FineTuning, Pretraining, distance_to_trajectory, distance_travelled,
                               finetune_from_checkpoints, pretrain_with_checkpoints, progress_along)
from tasknb.geometry import bhattacharyya, progress
from tasknb.networks.cnn import init_cnn

PRE = dict(steps=20, checkpoints=[0, 5, 20], n_test=100, n_train=1000, batch_size=16, optimizer="adam",
           lr=0.01, n_imprint=20, device="cpu")
FT = dict(subtasks=((2, 4), (5, 7)), start_steps=[0, 20], n_seeds=2, steps=10, checkpoints=[0, 4, 10],
          seed=3, device="cpu")


@pytest.fixture(scope="module")
def pre():
    return pretrain_with_checkpoints(**PRE)


@pytest.fixture(scope="module")
def ft(pre):
    return finetune_from_checkpoints(pre, **FT)


@pytest.fixture(scope="module")
def ft_pretrained_head(pre):
    return finetune_from_checkpoints(pre, **{**FT, "head": "pretrained", "n_seeds": 1})


def test_pretraining_shapes_and_states(pre):
    assert isinstance(pre, Pretraining)
    assert pre.probs.shape == (3, 100, 10) and pre.probs.dtype == np.float32
    assert list(pre.steps) == [0, 5, 20] and pre.labels.shape == (100,) and pre.accuracy.shape == (3,)
    assert np.abs(pre.probs.sum(-1) - 1).max() < 1e-5
    assert len(pre.states) == 3 and all(isinstance(v, torch.Tensor) for v in pre.states[0].values())
    # the kept weights change along training, and re-reading them reproduces the recorded points
    assert not torch.equal(pre.states[0]["conv1.weight"], pre.states[-1]["conv1.weight"])
    pset = pre.data[2]                                   # the prediction set the run was read through
    assert pset.readout == "imprint" and pset.classes == list(range(10)) and len(pset.labels) == 100
    model = init_cnn(10, (8, 16), 0, "cpu")
    model.load_state_dict(pre.states[1])
    np.testing.assert_allclose(pset.predict(model).numpy(), pre.probs[1], atol=1e-6)


def test_finetuning_shapes(ft):
    assert isinstance(ft, FineTuning)
    assert ft.probs.shape == (2, 2, 2, 3, 100, 10) and ft.probs.dtype == np.float32
    assert np.abs(ft.probs.sum(-1) - 1).max() < 1e-5 and ft.probs.min() >= 0
    assert list(ft.steps) == [0, 4, 10] and list(ft.start_steps) == [0, 20] and ft.seeds == [3, 4]
    assert ft.subtasks == [(2, 4), (5, 7)] and ft.start_probs.shape == (2, 100, 10)
    assert ft.accuracy.shape == (2, 2, 2, 3) and ft.subtask_accuracy.shape == (2, 2, 2, 2)


@pytest.mark.parametrize("head", ["imprint", "pretrained", "random"])
def test_first_point_is_the_pretraining_point(pre, ft, ft_pretrained_head, head):
    run = {"imprint": ft, "pretrained": ft_pretrained_head}.get(head)
    if run is None:
        run = finetune_from_checkpoints(pre, **{**FT, "head": head, "n_seeds": 1, "start_steps": [20],
                                                "subtasks": [(5, 7)]})
    for i, s in enumerate(run.start_steps):
        start = pre.probs[pre.index_of(int(s))]
        for j in range(len(run.subtasks)):
            for k in range(len(run.seeds)):
                np.testing.assert_array_equal(run.probs[i, j, k, 0], start)
    np.testing.assert_array_equal(run.start_probs, pre.probs[[pre.index_of(int(s)) for s in run.start_steps]])
    # the whole network is trained: the readout sees only the backbone, and it moves
    assert (distance_travelled(run) > 1e-6).all()


def test_deterministic_for_a_seed(pre, ft):
    again = finetune_from_checkpoints(pre, **{**FT, "n_seeds": 1, "start_steps": [20]})
    np.testing.assert_array_equal(again.probs[0, :, 0], ft.probs[1, :, 0])
    assert not np.allclose(ft.probs[1, 0, 0, -1], ft.probs[1, 0, 1, -1])   # seeds differ
    assert not np.allclose(ft.probs[1, 0, 0, -1], ft.probs[1, 1, 0, -1])   # sub-tasks differ
    pre2 = pretrain_with_checkpoints(**{**PRE, "steps": 5, "checkpoints": [0, 5]})
    np.testing.assert_array_equal(pre2.probs, pre.probs[:2])


def test_pretrained_head_is_the_restricted_10_way_network(pre, ft_pretrained_head):
    run = ft_pretrained_head
    pset = pre.data[2]
    model = init_cnn(10, (8, 16), 0, "cpu")
    model.load_state_dict(pre.states[-1])
    with torch.no_grad():
        logits = model(pset.X)
    for j, (a, b) in enumerate(run.subtasks):
        keep = (pset.labels == a) | (pset.labels == b)
        pred = logits[keep][:, [a, b]].argmax(-1)
        acc = float((pred == (pset.labels[keep] == b).long()).double().mean())
        assert run.subtask_accuracy[1, j, 0, 0] == pytest.approx(acc)


def test_finetuning_learns_the_subtask(ft):
    # sandal vs sneaker from the pre-trained checkpoint: well above chance after 10 steps
    assert ft.subtask_accuracy[1, 1, :, 1].min() > 0.75, ft.subtask_accuracy


def test_distances_and_progress(pre, ft):
    d = distance_travelled(ft)
    assert d.shape == (2, 2, 2) and (d >= 0).all()
    np.testing.assert_allclose(d, bhattacharyya(ft.probs[..., 0, :, :].astype(np.float64),
                                                ft.probs[..., -1, :, :].astype(np.float64)), rtol=1e-10)
    L = distance_travelled(ft, "length")
    assert L.shape == (2, 2, 2) and (L > 0).all()
    still = np.repeat(ft.probs[:1, :1, :1, :1], 3, axis=3)            # a run that never moves
    assert np.abs(distance_travelled(still)).max() < 1e-7   # float32 rows
    assert np.abs(distance_travelled(still, "length")).max() < 1e-3
    on = distance_to_trajectory(pre.probs, pre.probs)
    assert on.shape == (3,) and np.abs(on).max() < 1e-7
    assert distance_to_trajectory(ft.probs[:, :, :, -1], pre.probs).shape == (2, 2, 2)
    t = progress_along(ft)
    assert t.shape == (2, 2, 2, 3) and ((t >= 0) & (t <= 1)).all()
    np.testing.assert_allclose(t[:, 0, 0, 0], progress(ft.start_probs.astype(np.float64), ft.labels))


@pytest.mark.parametrize("kwargs, match", [
    ({"subtasks": [(2, 2)]}, "subtasks"),
    ({"subtasks": [(2, 4, 6)]}, "subtasks"),
    ({"subtasks": [(2, 10)]}, "subtasks"),
    ({"subtasks": []}, "subtasks"),
    ({"start_steps": [7]}, "start_steps"),
    ({"checkpoints": [4, 10]}, "checkpoints"),
    ({"checkpoints": [0, 11]}, "checkpoints"),
    ({"head": "frozen"}, "head"),
    ({"n_seeds": 0}, "n_seeds"),
    ({"steps": 0}, "steps"),
    ({"optimizer": "rmsprop"}, "optimizer"),
    ({"lr": -1.0}, "lr"),
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
                          ({"channels": (8,)}, "channels"), ({"n_imprint": 0}, "n_imprint")]:
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
