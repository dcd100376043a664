"""tasknb.trajectories: recorded predictions are probability arrays of the documented shape,
reproducible for a seed, improve with training, survive a save/load round trip, and bad
inputs stop with a message naming the parameter."""
import numpy as np
import pytest
import torch

from tasknb.chapters.s1_prediction_space import product_hellinger_vs_n
from tasknb.networks.cnn import SmallCNN, init_cnn
from tasknb.readout import prediction_set, to_union_task
from tasknb.trajectories import default_checkpoints, load_trajectories, record_trajectories, save_trajectories

FAST = dict(classes=(1, 7, 9), n_seeds=2, steps=30, checkpoints=[0, 5, 30], n_test=120, n_train=1500,
            batch_size=32, optimizer="adam", lr=0.01, readout="softmax", device="cpu")


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


# ---------------------------------------------------------------- shared recorder pieces
from tasknb.trajectories import batch_stream, make_optimizer, record_run  # noqa: E402


@pytest.fixture(scope="module")
def union_set():
    return prediction_set("fashion_mnist", range(10), 60, readout="imprint", n_imprint=5, data_seed=3, device="cpu")


def test_imprint_readout_is_eq_8_on_the_backbone(union_set):
    model = init_cnn(3, seed=1, device="cpu")            # a 3-class head, read over 10 classes
    P = union_set.predict(model)
    assert P.shape == (60, 10) and P.dtype == torch.float64
    assert torch.allclose(P.sum(-1), torch.ones(60, dtype=torch.float64))
    with torch.no_grad():
        ref = to_union_task(model.features(union_set.X_imprint).double(), union_set.y_imprint, 10,
                            eval_features=model.features(union_set.X).double())
    assert torch.allclose(P, ref, atol=1e-12)
    assert sorted(torch.bincount(union_set.y_imprint).tolist()) == [5] * 10
    assert model.training, "predict must restore the training mode"


def test_softmax_readout_refuses_a_head_of_the_wrong_size():
    pset = prediction_set("fashion_mnist", (0, 1, 2, 3), 20, readout="softmax", device="cpu")
    assert pset.predict(init_cnn(4, seed=0, device="cpu")).shape == (20, 4)
    with pytest.raises(ValueError, match="use a feature readout"):
        pset.predict(init_cnn(10, seed=0, device="cpu"))


def test_record_run_reads_checkpoints_and_keeps_states(union_set):
    model = init_cnn(10, seed=2, device="cpu")
    opt = make_optimizer(model.parameters(), "sgd", 0.05)
    X, y = union_set.X_imprint, union_set.y_imprint
    batches = batch_stream(len(y), 10, seed=2)
    calls = []

    def step(s):
        calls.append(s)
        b = next(batches)
        loss = torch.nn.functional.cross_entropy(model(X[b]), y[b])
        opt.zero_grad()
        loss.backward()
        opt.step()

    probs, states = record_run(model, step, 6, [0, 2, 6], union_set, keep_states=True)
    assert calls == list(range(6)) and probs.shape == (3, 60, 10) and len(states) == 3
    assert not torch.equal(states[0]["conv1.weight"], states[-1]["conv1.weight"])
    # the last state is the model as it is now; reloading the first state reproduces the first point
    assert torch.equal(states[-1]["head.weight"], model.head.weight.detach())
    model.load_state_dict(states[0])
    assert np.allclose(union_set.predict(model).float().numpy(), probs[0], atol=1e-6)


def test_batch_stream_is_seeded_and_covers_epochs():
    a = [b.tolist() for b, _ in zip(batch_stream(10, 5, 7), range(4))]
    b = [b.tolist() for b, _ in zip(batch_stream(10, 5, 7), range(4))]
    assert a == b and sorted(a[0] + a[1]) == list(range(10)) and sorted(a[2] + a[3]) == list(range(10))
    with pytest.raises(ValueError, match=r"batch_size must be an integer in \[1, 10\]"):
        next(batch_stream(10, 11, 0))


def test_imprint_record_trajectories_share_one_union_space():
    kw = dict(n_seeds=1, steps=5, checkpoints=[0, 5], n_test=40, n_train=200, readout="imprint",
              union_classes=range(10), n_imprint=4, device="cpu")
    a = record_trajectories("fashion_mnist", (5, 7, 9), **kw)
    b = record_trajectories("fashion_mnist", (0, 2, 4, 6), **kw)
    assert a.probs.shape == b.probs.shape == (1, 2, 40, 10)
    assert np.array_equal(a.labels, b.labels) and a.classes == list(range(10))
    with pytest.raises(ValueError, match="union_classes needs a feature readout"):
        record_trajectories("fashion_mnist", (5, 7), n_seeds=1, steps=2, union_classes=range(10), readout="softmax")
    with pytest.raises(ValueError, match="readout must be one of 'softmax', 'imprint'"):
        prediction_set(readout="probe")


# ----------------------------------------------------------------------------- RunConfig
from tasknb.trajectories import RunConfig, run_config  # noqa: E402


def test_run_config_is_hashable_and_canonical():
    a = RunConfig(classes=[0, 2, 4], steps=20, channels=[4, 8])
    b = RunConfig(classes=(0, 2, 4), steps=20, checkpoints=default_checkpoints(20), union_classes=range(0, 6, 2),
                  channels=(4, 8))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a.classes == (0, 2, 4) and a.union_classes == (0, 2, 4) and a.channels == (4, 8)
    assert a.checkpoints == tuple(default_checkpoints(20)) and a.seeds == [0, 1, 2, 3, 4]
    assert hash(a.replace(lr=0.03)) != hash(a) and a.replace(lr=0.03).lr == 0.03
    d = a.to_dict()
    assert d["classes"] == [0, 2, 4] and d["checkpoints"] == default_checkpoints(20) and d["n_seeds"] == 5
    assert RunConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}) == a


def test_run_config_builder_merges_defaults_and_changes():
    c = run_config("digits", {"n_seeds": 2, "lr": 0.1}, lr=0.2, classes=(1, 2))
    assert (c.dataset, c.n_seeds, c.lr, c.classes) == ("digits", 2, 0.2, (1, 2))
    assert run_config(c) is c and run_config(c, steps=7).steps == 7 and run_config(c, steps=7).dataset == "digits"
    assert run_config(c, steps=7).checkpoints == tuple(default_checkpoints(7))      # defaults follow steps
    assert run_config(c, classes=(3, 4)).union_classes == (3, 4)                    # ... and classes
    assert c.replace(readout="imprint", union_classes=range(10)).replace(classes=(5, 6)).union_classes == tuple(range(10))
    with pytest.raises(ValueError, match="unknown run parameter"):
        run_config(None, nseeds=2)


@pytest.mark.parametrize("kw, name", [
    (dict(dataset="mnist"), "dataset"), (dict(classes=[3]), "classes"), (dict(classes=[0, 10]), "classes"),
    (dict(n_seeds=0), "n_seeds"), (dict(steps=0), "steps"), (dict(steps=5, checkpoints=[0, 9]), "checkpoints"),
    (dict(checkpoints=[3, 1]), "checkpoints"), (dict(n_test=0), "n_test"), (dict(n_train=0), "n_train"),
    (dict(batch_size=0), "batch_size"), (dict(optimizer="rmsprop"), "optimizer"), (dict(lr=0), "lr"),
    (dict(momentum=-1), "momentum"), (dict(weight_decay=-0.1), "weight_decay"), (dict(channels=(8,)), "channels"),
    (dict(seed=-1), "seed"), (dict(data_seed=1.5), "data_seed"), (dict(readout="argmax"), "readout"),
    (dict(classes=[0, 1], union_classes=range(10), readout="softmax"), "union_classes"), (dict(readout="imprint", union_classes=[11]), "union_classes"),
    (dict(n_imprint=0), "n_imprint"),
])
def test_run_config_rejects_bad_values_by_name(kw, name):
    with pytest.raises(ValueError, match=name):
        RunConfig(**kw)
    with pytest.raises(ValueError, match=name):
        record_trajectories(**kw)


def test_trajectories_progress_is_eq4_per_checkpoint(traj):
    from tasknb.geometry import progress
    t = traj.progress()
    assert t.shape == traj.accuracy.shape and t.dtype == np.float64
    assert t[1, 2] == pytest.approx(float(progress(traj.probs[1, 2].astype(np.float64), traj.labels)), abs=1e-12)
