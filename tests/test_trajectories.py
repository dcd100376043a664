"""tasknb.trajectories: recorded predictions are probability arrays of the documented shape,
reproducible for a seed, improve with training, survive a save/load round trip, and bad
inputs stop with a message naming the parameter."""
import numpy as np
import pytest
import torch

from tasknb.trajectories import (SmallCNN, default_checkpoints, load_trajectories, product_hellinger_vs_n,
                                 record_trajectories, save_trajectories)

FAST = dict(classes=(1, 7, 9), n_seeds=2, steps=30, checkpoints=[0, 5, 30], n_test=120, n_train=1500,
            batch_size=32, optimizer="adam", lr=0.01, device="cpu")


@pytest.fixture(scope="module")
def traj():
    return record_trajectories(**FAST)


def test_small_cnn_shapes_and_size():
    m = SmallCNN(10)
    assert m(torch.zeros(5, 1, 28, 28)).shape == (5, 10)
    assert 1000 < sum(p.numel() for p in m.parameters()) < 10000


def test_shapes_and_rows_sum_to_one(traj):
    assert traj.probs.shape == (2, 3, 120, 3) and traj.probs.dtype == np.float32
    assert list(traj.steps) == [0, 5, 30] and traj.labels.shape == (120,)
    assert set(np.unique(traj.labels)) <= {0, 1, 2}
    assert np.abs(traj.probs.sum(-1) - 1).max() < 1e-5 and traj.probs.min() >= 0
    assert traj.accuracy.shape == (2, 3) and traj.seeds == [0, 1]


def test_deterministic_for_a_seed(traj):
    again = record_trajectories(**{**FAST, "n_seeds": 1})
    np.testing.assert_array_equal(again.probs[0], traj.probs[0])
    assert not np.allclose(traj.probs[0, -1], traj.probs[1, -1])  # seeds differ


def test_final_checkpoint_beats_chance(traj):
    assert (traj.accuracy[:, -1] > 0.6).all(), traj.accuracy   # chance is 1/3
    ce = traj.cross_entropy()
    assert (ce[:, -1] < ce[:, 0]).all()


def test_save_load_round_trip(traj, tmp_path):
    path = tmp_path / "traj.pt"
    save_trajectories(traj, path)
    back = load_trajectories(path)
    np.testing.assert_array_equal(back.probs, traj.probs)
    np.testing.assert_array_equal(back.steps, traj.steps)
    np.testing.assert_array_equal(back.labels, traj.labels)
    np.testing.assert_array_equal(back.accuracy, traj.accuracy)
    assert back.seeds == traj.seeds and back.classes == traj.classes and back.config == traj.config


def test_default_checkpoints():
    c = default_checkpoints(300, 10)
    assert c[0] == 0 and c[-1] == 300 and c == sorted(set(c)) and len(c) <= 10


def test_product_hellinger_saturates_while_bhattacharyya_stays_finite(traj):
    P, Q = traj.probs[0, -1], traj.probs[0, 0]
    H, d = product_hellinger_vs_n(P, Q, [1, 10, 120])
    assert np.all(np.diff(H) >= 0) and 0 <= H[0] <= 2 and H[-1] > 1.9
    assert np.all(np.isfinite(d)) and d.max() < 5
    H0, d0 = product_hellinger_vs_n(P, P, [1, 120])
    assert np.allclose(H0, 0, atol=1e-9) and np.allclose(d0, 0, atol=1e-9)


@pytest.mark.parametrize("kw, message", [
    ({"dataset": "cifar"}, r"dataset must be one of"),
    ({"classes": (3,)}, r"classes must hold at least 2"),
    ({"classes": (0, 12)}, r"classes must contain integers in \[0, 9\]"),
    ({"n_seeds": 0}, r"n_seeds must be an integer >= 1"),
    ({"steps": -1}, r"steps must be an integer >= 1"),
    ({"checkpoints": [0, 50]}, r"checkpoints must contain integers in \[0, 30\]"),
    ({"checkpoints": [5, 0]}, r"checkpoints must be increasing"),
    ({"optimizer": "rmsprop"}, r"optimizer must be one of 'sgd', 'adam'"),
    ({"lr": 0.0}, r"lr must be a finite number > 0"),
    ({"n_test": 10**6}, r"n_test must be an integer in \[1, "),
    ({"device": "tpu"}, r"device must be one of"),
])
def test_bad_inputs_name_the_parameter(kw, message):
    with pytest.raises(ValueError, match=message):
        record_trajectories(**{**FAST, **kw})


def test_bad_hellinger_inputs():
    p = np.full((4, 2), 0.5)
    with pytest.raises(ValueError, match="P and Q must be arrays"):
        product_hellinger_vs_n(p, p[:3], [1])
    with pytest.raises(ValueError, match="n_values must contain integers"):
        product_hellinger_vs_n(p, p, [5])
