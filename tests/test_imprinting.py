"""tasknb.chapters.s3_imprinting_inpca: runs read through a shared prediction set match record_trajectories, keep their
checkpoints, imprinting is invariant to orthogonal maps of the features (App. E of S), a trained
unit-norm head beats the imprinted one on eq. (12) (App. D), and bad inputs name the parameter."""
import numpy as np
import pytest
import torch

from tasknb.chapters.s3_imprinting_inpca import backbone_features, model_from_state, random_orthogonal, record_task
from tasknb.geometry import bhattacharyya
from tasknb.readout import (imprint, imprint_accuracy, imprinted_probabilities, linear_probe, log_likelihood,
                            prediction_set)
from tasknb.trajectories import record_trajectories

RUN = dict(n_seeds=2, steps=12, checkpoints=[0, 4, 12], n_train=600, batch_size=32, optimizer="adam", lr=0.01,
           device="cpu")
UNION = dict(n_test=60, n_imprint=8, data_seed=0)


@pytest.fixture(scope="module")
def pset():
    return prediction_set("fashion_mnist", range(10), UNION["n_test"], readout="imprint",
                          n_imprint=UNION["n_imprint"], data_seed=0, device="cpu")


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
    assert states[0][0]["head.weight"].shape == (3, 256)          # the task's own 3-class head
    ref = record_trajectories("fashion_mnist", [5, 7, 9], readout="imprint", union_classes=range(10),
                              n_test=UNION["n_test"], n_imprint=UNION["n_imprint"], **RUN)
    np.testing.assert_array_equal(traj.probs, ref.probs)        # same training, same readout
    # the kept weights are those that produced the recorded predictions
    p_last = pset.predict(model_from_state(states[1][-1], device="cpu")).float().numpy()
    np.testing.assert_allclose(p_last, traj.probs[1, -1], atol=1e-6)
    assert not np.allclose(traj.probs[0, -1], traj.probs[1, -1])  # seeds differ


def test_backbone_features_along_checkpoints(run, pset):
    _, states = run
    f = backbone_features(states[0], pset.X, device="cpu")
    assert f.shape == (3, 60, 256) and f.dtype == torch.float64 and (f >= 0).all()
    f1 = backbone_features(states[0][2], pset.X, device="cpu")
    torch.testing.assert_close(f1, f[2])
    assert not torch.allclose(f[0], f[2])                         # training moved the backbone
    with pytest.raises(ValueError, match="X must have shape"):
        backbone_features(states[0], torch.zeros(3, 28, 28))
    with pytest.raises(ValueError, match="states"):
        backbone_features([], pset.X)


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
    soft = prediction_set("fashion_mnist", [5, 7], 20, device="cpu")
    with pytest.raises(ValueError, match="pset"):
        record_task("fashion_mnist", [5, 7, 9], soft, **RUN)
    with pytest.raises(ValueError, match="classes"):
        record_task("fashion_mnist", [5], pset, **RUN)
    with pytest.raises(ValueError, match="steps"):
        record_task("fashion_mnist", [5, 7], pset, **{**RUN, "steps": 0})
    with pytest.raises(ValueError, match="channels"):
        record_task("fashion_mnist", [5, 7], pset, **{**RUN, "channels": (4, 4, 4)})
    with pytest.raises(ValueError, match="state"):
        model_from_state({"w": torch.zeros(1)})
