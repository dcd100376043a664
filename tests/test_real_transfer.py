"""Fast tests of tasknb.chapters.c8_real_data: image transforms, task pairs, the batched protocol."""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from tasknb.chapters.c8_real_data import (EXPERIMENTS, TaskPair, brightness_labels, edge_enhance, experiment_figure,
                                  learning_curves_on_tasks, make_task_pair, mean_brightness, real_data_experiments,
                                  standardize, transfer_gain, transfer_gain_sem)
from tasknb.feature_transfer import TransferCurves
from tasknb.training import TrainingConfig

QUICK = dict(source=TrainingConfig(15, 2e-2, 50), scratch=TrainingConfig(15, 0.1, 1000),
             finetune=TrainingConfig(15, 0.01, 1000))


def fake_data(n_train=700, n_test=300, side=8, seed=0):
    """Ten classes of 8x8 images: a fixed random template per class plus noise, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.rand(10, 1, side, side, generator=g)

    def draw(n):
        y = torch.arange(n) % 10
        x = (0.7 * templates[y] + 0.3 * torch.rand(n, 1, side, side, generator=g)).clamp(0, 1)
        return x, y

    return draw(n_train), draw(n_test)


@pytest.fixture(scope="module")
def data():
    return fake_data()


# ----------------------------------------------------------------------------- transforms
def test_edge_enhance_shape_range_and_determinism():
    x = torch.rand(6, 1, 10, 10, generator=torch.Generator().manual_seed(1))
    e = edge_enhance(x, seed=3)
    assert e.shape == x.shape and e.dtype == x.dtype
    assert float(e.min()) >= 0.0 and float(e.max()) <= 1.0
    assert torch.equal(e, edge_enhance(x, seed=3))
    assert not torch.equal(e, edge_enhance(x, seed=4))
    assert torch.equal(edge_enhance(x, alpha=0.0), x)


def test_edge_enhance_dims_flat_regions_and_lights_edges():
    x = torch.zeros(1, 1, 9, 9)
    x[..., 2:7, 2:7] = 0.5                     # a flat grey square on black
    e = edge_enhance(x, alpha=0.6)
    assert e[0, 0, 4, 4] == pytest.approx(0.4 * 0.5)          # interior: (1 - a) x, Laplacian 0
    assert float(e[0, 0, 1, 4]) == pytest.approx(0.6 * 0.5)   # just outside the square: a * x_neighbour
    assert float(e[0, 0, 0, 0]) == 0.0


@pytest.mark.parametrize("alpha", [1.5, (0.7, 0.5), (0.1, 0.2, 0.3), "a"])
def test_edge_enhance_rejects_bad_alpha(alpha):
    with pytest.raises(ValueError, match="alpha"):
        edge_enhance(torch.rand(2, 1, 5, 5), alpha=alpha)


def test_edge_enhance_rejects_bad_images():
    with pytest.raises(ValueError, match="x must be a float tensor of images"):
        edge_enhance(torch.rand(5, 5))


def test_brightness_labels_balanced_and_brightness_only():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(400, 1, 6, 6, generator=g) * torch.rand(400, 1, 1, 1, generator=g)
    y, edges = brightness_labels(x)
    assert y.shape == (400,) and set(y.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(y.mean())) < 0.05                          # balanced by the quartile cuts
    # a rearranged image has the same mean brightness, hence the same label
    shuffled = x.flatten(1)[:, torch.randperm(36, generator=g)].reshape(x.shape)
    assert torch.equal(brightness_labels(shuffled, edges)[0], y)
    b = mean_brightness(x)
    assert torch.equal(y == 1, (b <= edges[0]) | ((b > edges[1]) & (b <= edges[2])))


def test_brightness_labels_rejects_bad_edges():
    with pytest.raises(ValueError, match="edges must be 3 increasing"):
        brightness_labels(torch.rand(4, 1, 3, 3), edges=[0.5, 0.2, 0.7])


def test_standardize():
    x = torch.rand(5, 1, 4, 4)
    z = standardize(x, 0.5, 0.25)
    assert z.shape == (5, 16)
    assert torch.allclose(z, (x.reshape(5, -1) - 0.5) / 0.25)
    with pytest.raises(ValueError, match="std"):
        standardize(x, 0.5, 0.0)


# ----------------------------------------------------------------------------- task pairs
@pytest.mark.parametrize("name", EXPERIMENTS)
def test_make_task_pair_shapes_and_labels(data, name):
    pair = make_task_pair(name, data=data)
    assert isinstance(pair, TaskPair) and pair.D == 64
    for X, y in ((pair.source_X, pair.source_y), (pair.source_test_X, pair.source_test_y),
                 (pair.target_X, pair.target_y), (pair.target_test_X, pair.target_test_y)):
        assert X.dim() == 2 and X.shape[1] == 64 and y.shape == (X.shape[0],)
        assert set(y.unique().tolist()) == {-1.0, 1.0}
    assert {"source_task", "target_task"} <= set(pair.info)
    summary = pair.summary()
    assert summary.source_X.numel() == 0 and summary.info["sizes"]["source"] == pair.source_X.shape[0]


def test_task_pair_contents(data):
    (Xtr, ytr), _ = data
    sub = make_task_pair("substitution", data=data)
    assert sub.source_X.shape[0] == int(torch.isin(ytr, torch.tensor([0, 1, 2, 3, 4, 5, 6, 7])).sum())
    rel = make_task_pair("relabeling", data=data)
    assert torch.equal(rel.source_X, rel.target_X) and not torch.equal(rel.source_y, rel.target_y)
    edge = make_task_pair("edge", data=data)
    assert torch.equal(edge.source_y, edge.target_y) and not torch.equal(edge.source_X, edge.target_X)
    h2e, e2h = make_task_pair("hard_to_easy", data=data), make_task_pair("easy_to_hard", data=data)
    assert h2e.target_X.shape[0] == int(torch.isin(ytr, torch.tensor([0, 2, 1, 3])).sum())
    assert torch.equal(h2e.source_X, e2h.target_X) and torch.equal(h2e.target_X, e2h.source_X)
    assert h2e.info["source_task"] == rel.info["source_task"]
    assert e2h.info["target_task"] == edge.info["target_task"]


@pytest.mark.parametrize("kwargs, message", [
    (dict(name="rotation"), "name must be one of"),
    (dict(name="substitution", dataset="cifar"), "dataset must be one of"),
    (dict(name="substitution", groups=((0, 1), (1, 2))), "groups: the two groups must be disjoint"),
    (dict(name="substitution", target_groups=((0, 1), (2, 12))), r"target_groups must contain integers in \[0, 9\]"),
    (dict(name="hard_to_easy", easy_classes=(0, 2, 4)), "easy_classes must contain both even and odd"),
    (dict(name="edge", seed=-1), "seed must be an integer >= 0"),
])
def test_make_task_pair_validation(data, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_task_pair(data=data, **kwargs)


# ----------------------------------------------------------------------------- the protocol
def _run(pair, **kw):
    args = dict(H=16, M_grid=(10, 40), realizations=2, lam=1e-3, M_source=300, M_val=100, progress=False,
                source_test_X=pair.source_test_X, source_test_y=pair.source_test_y, **QUICK)
    args.update(kw)
    return learning_curves_on_tasks(pair.source_X, pair.source_y, pair.target_X, pair.target_y,
                                    pair.target_test_X, pair.target_test_y, **args)


def test_learning_curves_end_to_end_shapes_and_determinism(data):
    pair = make_task_pair("edge", data=data)
    c = _run(pair)
    assert isinstance(c, TransferCurves) and list(c.errors) == ["TF", "RF", "2L", "ft-TF"]
    assert all(e.shape == (2, 2) for e in c.errors.values())
    assert c.source_error.shape == (2,) and c.source_epochs.shape == (2,)
    assert c.source_params.W1.shape == (2, 16, 64)
    assert np.all((c.mean("TF") >= 0) & (c.mean("TF") <= 1))
    assert c.source_error.mean() < 0.3          # the fake classes are easy to tell apart
    assert c.mean("TF")[0] < c.mean("RF")[0]    # and the edge-trained features transfer
    again = _run(pair)
    for n in c.errors:
        np.testing.assert_array_equal(c.errors[n], again.errors[n])
    other = _run(pair, seed=1)
    assert not np.array_equal(c.errors["TF"], other.errors["TF"])
    # reusing the trained source networks gives the same TF curve without retraining
    reused = _run(pair, learners=("TF",), source_params=c.source_params)
    np.testing.assert_array_equal(reused.errors["TF"], c.errors["TF"])
    assert np.all(reused.source_epochs == -1)


@pytest.mark.parametrize("kw, message", [
    (dict(M_grid=(10, 10_000)), "M_grid must not exceed the target pool"),
    (dict(M_grid=(40, 10)), "M_grid must be increasing"),
    (dict(M_source=10_000), r"M_source \+ M_val must be <="),
    (dict(realizations=0), "realizations must be an integer >= 1"),
    (dict(lam=0.0), "lam must be a finite number > 0"),
    (dict(H=0), "H must be an integer >= 1"),
    (dict(learners=("ft-TF",)), "needs 'TF'"),
    (dict(learners=("XX",)), "learners must be one of"),
    (dict(source="fast"), "source must be a tasknb.feature_transfer.TrainingConfig"),
    (dict(patience=-1), "patience must be an integer >= 0"),
    (dict(source_params="W"), "source_params must hold a TwoLayerStack"),
])
def test_learning_curves_validation(data, kw, message):
    pair = make_task_pair("relabeling", data=data)
    with pytest.raises(ValueError, match=message):
        _run(pair, **kw)


def test_learning_curves_rejects_bad_pools(data):
    pair = make_task_pair("relabeling", data=data)
    with pytest.raises(ValueError, match="source_y must hold binary labels"):
        learning_curves_on_tasks(pair.source_X, pair.source_y * 2, pair.target_X, pair.target_y,
                                 pair.target_test_X, pair.target_test_y, progress=False)
    with pytest.raises(ValueError, match="target_X must have D = 64 columns"):
        learning_curves_on_tasks(pair.source_X, pair.source_y, pair.target_X[:, :10], pair.target_y,
                                 pair.target_test_X, pair.target_test_y, progress=False)
    with pytest.raises(ValueError, match="target_test_y must be a tensor of shape"):
        learning_curves_on_tasks(pair.source_X, pair.source_y, pair.target_X, pair.target_y,
                                 pair.target_test_X, pair.target_test_y[:5], progress=False)


def test_real_data_experiments_shares_sources_and_scratch_curves(data):
    names = ["relabeling", "edge", "brightness", "hard_to_easy"]
    curves, pairs = real_data_experiments(names, data=data, H=16, M_grid=(10, 40), realizations=2, lam=1e-3,
                                          M_source=300, M_val=100, M_test=None, progress=False, **QUICK)
    assert list(curves) == names and list(pairs) == names
    # same source task (all classes, even/odd): same source networks
    assert torch.equal(curves["relabeling"].source_params.W1, curves["hard_to_easy"].source_params.W1)
    np.testing.assert_array_equal(curves["relabeling"].source_epochs, curves["hard_to_easy"].source_epochs)
    # same target task (all classes, even/odd, original images): same 2L curve
    np.testing.assert_array_equal(curves["edge"].errors["2L"], curves["brightness"].errors["2L"])
    assert all(list(c.errors) == ["TF", "RF", "2L", "ft-TF"] for c in curves.values())
    assert pairs["edge"].source_X.numel() == 0 and "sizes" in pairs["edge"].info
    fig = experiment_figure(curves["edge"], pairs["edge"], title="edge", ylim=(0, 0.6))
    assert isinstance(fig, Figure)


@pytest.mark.parametrize("names, message", [
    ("edge", "names must be a sequence"), ([], "non-empty"), (["edge", "edge"], "must not repeat"),
    (["blur"], "names must be one of"),
])
def test_real_data_experiments_validation(data, names, message):
    with pytest.raises(ValueError, match=message):
        real_data_experiments(names, data=data, progress=False)


def test_transfer_gain_and_figure_validation():
    c = TransferCurves(np.array([10, 20]), 10, {"TF": np.array([[0.1, 0.2], [0.1, 0.1]]),
                                                "RF": np.array([[0.3, 0.4], [0.1, 0.2]])},
                       np.zeros(2), np.zeros(2))
    assert transfer_gain(c) == pytest.approx(0.2)
    assert transfer_gain(c, index=-1) == pytest.approx(0.05)
    assert transfer_gain(c, index=[0, 1]) == pytest.approx(0.125)
    for bad in (2, [], [0, 5], 0.5, True):
        with pytest.raises(ValueError, match="index must be an integer in"):
            transfer_gain(c, index=bad)
    with pytest.raises(ValueError, match="baseline must be one of"):
        transfer_gain(c, baseline="2L")
    with pytest.raises(ValueError, match="transfer must be one of"):
        transfer_gain(c, "ft-TF")
    with pytest.raises(ValueError, match="curves must be a tasknb.feature_transfer.TransferCurves"):
        experiment_figure({"TF": 1})
    assert isinstance(experiment_figure(c), Figure)


def test_transfer_gain_sign_order_and_standard_error():
    # TF's error is below RF's in every realization: the gain of TF over RF is positive
    tf, rf = np.array([[0.1, 0.2, 0.15], [0.1, 0.1, 0.1]]), np.array([[0.3, 0.35, 0.4], [0.2, 0.15, 0.1]])
    c = TransferCurves(np.array([10, 20]), 10, {"TF": tf, "RF": rf}, np.zeros(3), np.zeros(3))
    assert transfer_gain(c, "TF", "RF") > 0 and transfer_gain(c, "TF", "RF") == -transfer_gain(c, "RF", "TF")
    assert transfer_gain(c, "TF", "RF") == float(np.mean(rf[[0]] - tf[[0]]))   # err(baseline) - err(transfer)
    d = rf[0] - tf[0]
    assert transfer_gain_sem(c, "TF", "RF") == pytest.approx(d.std(ddof=1) / np.sqrt(3))
    both = (rf - tf).mean(0)
    assert transfer_gain_sem(c, index=[0, 1]) == pytest.approx(both.std(ddof=1) / np.sqrt(3))
    with pytest.raises(ValueError, match="index must be an integer in"):
        transfer_gain_sem(c, index=5)
