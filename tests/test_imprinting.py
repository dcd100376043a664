"""tasknb.chapters.s3_imprinting_inpca: runs read through a shared prediction set match record_trajectories and
keep their checkpoints; shuffled labels keep the class balance; every readout of read_checkpoints is the
PredictionSet's (softmax = the network's own head); imprinting is invariant to orthogonal maps of the features
and not to others (App. E of S); a trained unit-norm head beats the imprinted one on eq. (12) (App. D); the
eq. (8) distances, the stress null and the projection agreement tell structure from its absence; bad inputs
name the parameter."""
import numpy as np
import pytest
import torch

from tasknb.chapters.s3_imprinting_inpca import (OLD_RECIPE, backbone_features, control_gaps, model_from_state,
                                                 projection_agreement, random_orthogonal, read_checkpoints,
                                                 record_task, reheaded_heads, stress_with_null, union_distances)
from tasknb.data import training_images
from tasknb.device import stream
from tasknb.geometry import bhattacharyya, geodesic
from tasknb.readout import (imprint, imprint_accuracy, imprinted_probabilities, linear_probe, log_likelihood,
                            prediction_set)
from tasknb.trajectories import record_trajectories

RUN = dict(n_seeds=2, steps=12, checkpoints=[0, 4, 12], n_train=600, channels=(4, 8), device="cpu")
UNION = dict(n_test=60, n_imprint=8, data_seed=0)


@pytest.fixture(scope="module")
def pset():
    return prediction_set("fashion_mnist", range(10), UNION["n_test"], n_imprint=UNION["n_imprint"], data_seed=0,
                          device="cpu")


@pytest.fixture(scope="module")
def task_set():
    return prediction_set("fashion_mnist", [5, 7, 9], 40, n_imprint=6, data_seed=0, device="cpu")


@pytest.fixture(scope="module")
def run(pset):
    return record_task("fashion_mnist", [5, 7, 9], pset, **RUN)


def _clusters(n_per=40, d=6, K=3, seed=0, offset=0.0, spread=0.3):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((K, d))
    y = np.repeat(np.arange(K), n_per)
    f = centres[y] + spread * rng.standard_normal((K * n_per, d)) + offset
    return f, y


def test_record_task_shapes_states_and_match_with_record_trajectories(run, pset):
    traj, states = run
    assert traj.probs.shape == (2, 3, 60, 10) and traj.probs.dtype == np.float32
    assert np.abs(traj.probs.sum(-1) - 1).max() < 1e-5
    assert len(states) == 2 and all(len(s) == 3 for s in states)
    assert states[0][0]["head.weight"].shape == (3, 128) and "head.bias" not in states[0][0]   # bias-free head
    ref = record_trajectories("fashion_mnist", [5, 7, 9], union_classes=range(10), n_test=UNION["n_test"],
                              n_imprint=UNION["n_imprint"], **RUN)
    np.testing.assert_array_equal(traj.probs, ref.probs)        # same training, same (default) readout
    p_last = pset.predict(model_from_state(states[1][-1], device="cpu")).float().numpy()
    np.testing.assert_allclose(p_last, traj.probs[1, -1], atol=1e-6)
    assert not np.allclose(traj.probs[0, -1], traj.probs[1, -1])  # seeds differ
    assert traj.config["shuffle_labels"] is False


def test_shuffled_labels_train_differently_from_the_same_start(run, pset):
    traj, states = run
    shuf, st_s = record_task("fashion_mnist", [5, 7, 9], pset, shuffle_labels=True, **RUN)
    for k in range(2):                                            # same initialisation ...
        for key in states[k][0]:
            torch.testing.assert_close(states[k][0][key], st_s[k][0][key], rtol=0, atol=0)
    assert not np.allclose(traj.probs[:, -1], shuf.probs[:, -1])  # ... different training
    assert shuf.config["shuffle_labels"] is True
    # the permutation keeps the class counts and moves most labels
    _, y = training_images("fashion_mnist", [5, 7, 9], 600, 0)
    ys = y[torch.randperm(len(y), generator=stream(0, "s3.shuffled_labels"))]
    assert torch.equal(torch.bincount(ys), torch.bincount(y)) and (ys != y).float().mean() > 0.4
    with pytest.raises(ValueError, match="shuffle_labels"):
        record_task("fashion_mnist", [5, 7, 9], pset, shuffle_labels="yes", **RUN)


def test_model_from_state_reads_width_and_head_and_norm(run):
    _, states = run
    m = model_from_state(states[0][-1], device="cpu")
    assert m.conv1.out_channels == 4 and m.conv2.out_channels == 8 and m.head.bias is None and m.norm == "layer_conv1"
    old, st_old = record_task("fashion_mnist", [5, 7], prediction_set("fashion_mnist", [5, 7], 20, readout="softmax",
                                                                       device="cpu"),
                              **{**RUN, **OLD_RECIPE, "n_seeds": 1})
    mo = model_from_state(st_old[0][-1], device="cpu", norm="none")
    assert mo.head.bias is not None and mo.conv1.out_channels == 8
    with pytest.raises(ValueError, match="state"):
        model_from_state({"w": torch.zeros(1)})
    with pytest.raises(ValueError, match="norm"):
        model_from_state(states[0][-1], norm="batch")


def test_backbone_features_along_checkpoints(run, pset):
    _, states = run
    f = backbone_features(states[0], pset.X, device="cpu")
    assert f.shape == (3, 60, 128) and f.dtype == torch.float64
    np.testing.assert_allclose(f.norm(dim=-1).numpy(), np.sqrt(128), rtol=1e-2)   # layer norm, no affine part
    torch.testing.assert_close(backbone_features(states[0][2], pset.X, device="cpu"), f[2])
    assert not torch.allclose(f[0], f[2])                         # training moved the backbone
    with pytest.raises(ValueError, match="X must have shape"):
        backbone_features(states[0], torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match="states"):
        backbone_features([], pset.X)


def test_read_checkpoints_matches_prediction_sets_and_the_own_head(task_set):
    traj, states = record_task("fashion_mnist", [5, 7, 9], task_set, **RUN)
    curves = read_checkpoints(states, task_set, traj.steps, device="cpu")
    assert curves.readouts == ("softmax", "imprint", "imprint_ml", "prototype", "prototype_ml")
    np.testing.assert_allclose(curves.probs["prototype_ml"], traj.probs, atol=1e-6)   # the run's own readout
    for r in ("softmax", "imprint", "prototype"):
        ps = prediction_set("fashion_mnist", [5, 7, 9], 40, readout=r, n_imprint=6, data_seed=0, device="cpu")
        p = ps.predict(model_from_state(states[1][2], device="cpu")).numpy()
        np.testing.assert_allclose(curves.probs[r][1, 2], p, atol=1e-6)
    lab = task_set.labels.numpy()
    np.testing.assert_array_equal(curves.accuracy["imprint"], (curves.probs["imprint"].argmax(-1) == lab).mean(-1))
    np.testing.assert_array_equal(curves.accuracy["imprint"], curves.accuracy["imprint_ml"])   # same argmax
    assert curves.progress["softmax"].shape == (2, 3) and ((curves.progress["softmax"] >= 0)
                                                            & (curves.progress["softmax"] <= 1)).all()
    np.testing.assert_allclose(curves.feature_norm, np.sqrt(128), rtol=1e-2)
    gaps = control_gaps(curves, curves)
    assert float(gaps[("imprint", "accuracy", "shuffled")].mean) == 0.0
    assert gaps[("softmax", "progress", "untrained")].n == 2
    with pytest.raises(ValueError, match="softmax"):
        read_checkpoints(states, prediction_set("fashion_mnist", [5, 7, 9, 1], 20, n_imprint=4, device="cpu"),
                         traj.steps, readouts=("softmax",), device="cpu")
    with pytest.raises(ValueError, match="readouts"):
        read_checkpoints(states, task_set, traj.steps, readouts=("argmax",))
    with pytest.raises(ValueError, match="checkpoints"):
        read_checkpoints(states, task_set, traj.steps[:2])


def test_reheaded_heads_app_d(run):
    _, states = run
    X, y = training_images("fashion_mnist", [1, 3], 60, 1)
    h = reheaded_heads([s[-1] for s in states], X, y, X, y, 2, probe_steps=30, device="cpu")
    assert set(h) == {"imprint", "prototype_ml", "unit", "probe", "ll_imp", "ll_unit"}
    assert all(v.shape == (2,) for v in h.values())
    assert (h["ll_unit"] > h["ll_imp"]).all()                     # App. D: imprinting is not the optimum of eq. (12)


def _family(n_seeds, T, N, C, target, seed):
    rng = np.random.default_rng(seed)
    P0 = np.full((N, C), 1.0 / C)
    lam = np.linspace(0, 0.9, T)
    out = []
    for _ in range(n_seeds):
        t = np.clip(target + 0.02 * rng.random(target.shape), 1e-9, None)
        out.append(geodesic(P0, t / t.sum(-1, keepdims=True), lam))
    return np.stack(out)


def test_union_distances_tell_two_tasks_from_one():
    N, C = 30, 4
    rng = np.random.default_rng(0)
    labels = rng.integers(0, C, N)
    truth = np.eye(C)[labels] * 0.9 + 0.1 / C
    other = np.eye(C)[(labels + 1) % C] * 0.5 + np.eye(C)[labels] * 0.4 + 0.1 / C
    a, b = _family(3, 6, N, C, truth, 1), _family(3, 6, N, C, other, 2)
    ud = union_distances(a, b, labels, n_grid=10, device="cpu")
    assert (ud["cross"] > 3 * ud["null"]).all() and (ud["end_cross"] > ud["end_null"]).all()
    assert ud["ranges"].shape == (3, 4, 2)
    same = union_distances(a, a, labels, n_grid=10, device="cpu")  # no task difference: claim = null
    np.testing.assert_allclose(same["cross"], same["null"], rtol=1e-10)
    with pytest.raises(ValueError, match="trajs_1"):
        union_distances(a[:1], b[:1], labels)


def test_stress_null_and_projection_agreement_can_fail():
    N, C = 40, 6
    rng = np.random.default_rng(3)
    labels = rng.integers(0, C, N)
    P = np.concatenate(_family(2, 10, N, C, np.eye(C)[labels] * 0.9 + 0.1 / C, 4))   # 20 models on two paths
    chi, null = stress_with_null([P, P[::-1].copy()], 3, n_null=3, seed=0)
    assert chi.shape == (2,) and (chi > null).all()
    np.testing.assert_array_equal(stress_with_null([P], 3, 3, 0)[1], stress_with_null([P], 3, 3, 0)[1])
    ag = projection_agreement(P, 3, n_draws=3, seed=0)
    assert set(ag) == {"projected", "control", "correlation"} and ag["projected"].shape == (3,)
    assert (ag["control"] > ag["projected"]).all() and (ag["control"] > 0.3).all()
    with pytest.raises(ValueError, match="P must"):
        projection_agreement(P[:2], 3)


def test_imprint_accuracy_and_leading_axes():
    f, y = _clusters()
    acc = imprint_accuracy(f, y, f, y, 3, device="cpu")
    assert isinstance(acc, float) and acc > 0.9
    stack = np.stack([f, np.random.default_rng(1).standard_normal(f.shape)])
    accs = imprint_accuracy(stack, y, stack, y, 3, device="cpu")
    assert accs.shape == (2,) and accs[0] == acc and accs[1] < 0.8
    with pytest.raises(ValueError, match="y_fit"):
        imprint_accuracy(f, y + 5, f, y, 3)
    with pytest.raises(ValueError, match="n_classes"):
        imprint_accuracy(f, y, f, y, 1)


def test_imprinting_invariant_to_orthogonal_maps_not_to_others():
    f, y = _clusters(d=8, offset=1.0)
    U = random_orthogonal(8, seed=3)
    np.testing.assert_allclose(U @ U.T, np.eye(8), atol=1e-12)
    assert abs(abs(np.linalg.det(U)) - 1) < 1e-10
    p = imprinted_probabilities(f, imprint(f, y, 3))
    fu = f @ U.T                                                    # phi -> U phi
    pu = imprinted_probabilities(fu, imprint(fu, y, 3))
    assert np.abs(p - pu).max() < 1e-12 and bhattacharyya(p, pu) < 1e-12
    S = np.diag(np.linspace(0.2, 3.0, 8))                           # not orthogonal: changes the model
    fs = f @ S
    ps = imprinted_probabilities(fs, imprint(fs, y, 3))
    assert bhattacharyya(p, ps) > 1e-3
    np.testing.assert_array_equal(random_orthogonal(5, 2), random_orthogonal(5, 2))
    assert not np.allclose(random_orthogonal(5, 2), random_orthogonal(5, 3))
    with pytest.raises(ValueError, match="d must"):
        random_orthogonal(0)


def test_linear_probe_deterministic_and_beats_imprinting_on_eq12():
    f, y = _clusters(offset=2.0, spread=0.8, seed=4)
    free = linear_probe(f, y, 3, steps=150, lr=0.05, device="cpu")
    again = linear_probe(f, y, 3, steps=150, lr=0.05, device="cpu")
    torch.testing.assert_close(free.weight, again.weight, rtol=0, atol=0)
    assert free.loss[-1] < free.loss[0]
    unit = linear_probe(f, y, 3, unit_norm=True, steps=150, lr=0.05, device="cpu")
    torch.testing.assert_close(unit.weight.norm(dim=1), torch.ones(3, dtype=torch.float64))
    assert (unit.bias == 0).all()
    w_imp = imprint(f, y, 3)
    ll_imp, ll_unit = log_likelihood(f, y, w_imp), log_likelihood(f, y, unit.weight)
    assert ll_unit > ll_imp                       # App. D: imprinting is not the optimum of eq. (12)
    assert abs(ll_unit - (-unit.loss[-1])) < 0.05
    assert free.accuracy(f, y) >= imprint_accuracy(f, y, f, y, 3) - 1e-12
    p = free.probabilities(f)
    assert p.shape == (len(y), 3) and torch.allclose(p.sum(-1), torch.ones(len(y), dtype=torch.float64))


def test_linear_probe_and_log_likelihood_validation():
    f, y = _clusters()
    with pytest.raises(ValueError, match="labels"):
        linear_probe(f, y + 3, 3)
    with pytest.raises(ValueError, match="steps"):
        linear_probe(f, y, 3, steps=0)
    with pytest.raises(ValueError, match="lr"):
        linear_probe(f, y, 3, lr=-1)
    with pytest.raises(ValueError, match="unit_norm"):
        linear_probe(f, y, 3, unit_norm="yes")
    with pytest.raises(ValueError, match="init"):
        linear_probe(f, y, 3, init=np.zeros((2, 6)))
    with pytest.raises(ValueError, match="features"):
        linear_probe(f[None], y, 3)
    with pytest.raises(ValueError, match="features"):
        linear_probe(np.full_like(f, np.nan), y, 3)
    with pytest.raises(ValueError, match="bias"):
        log_likelihood(f, y, np.ones((3, 6)), bias=np.zeros(2))


def test_record_task_validation(pset):
    with pytest.raises(ValueError, match="pset"):
        record_task("fashion_mnist", [5, 7, 9], "union", **RUN)
    soft = prediction_set("fashion_mnist", [5, 7], 20, readout="softmax", device="cpu")
    with pytest.raises(ValueError, match="pset"):
        record_task("fashion_mnist", [5, 7, 9], soft, **RUN)
    with pytest.raises(ValueError, match="classes"):
        record_task("fashion_mnist", [5], pset, **RUN)
    with pytest.raises(ValueError, match="steps"):
        record_task("fashion_mnist", [5, 7], pset, **{**RUN, "steps": 0})
    with pytest.raises(ValueError, match="channels"):
        record_task("fashion_mnist", [5, 7], pset, **{**RUN, "channels": (4, 4, 4)})
