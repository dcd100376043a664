"""tasknb.chapters.s4_space_of_tasks: runs on several tasks read on one union task have the documented shapes,
are reproducible, start together with a shared initialisation, per-class progress and the
task-distance / clustering / normalised-distance helpers behave as their definitions say, and
bad inputs stop with a message naming the parameter."""
import numpy as np
import pytest

from tasknb.geometry import geodesic, progress, trajectory_distance
from tasknb.chapters.s4_space_of_tasks import (TaskFamily, cophenetic_matrix, family_inpca, family_means, family_progress,
                               family_tube_radii, interpolate_family, normalized_distance_curves,
                               per_class_progress, random_classes, record_task_family, seen_classes,
                               task_distance_matrix, task_linkage)

TASKS = {"a": [1, 7], "b": [5, 9], "ab": [1, 5, 7]}
UNION = [1, 5, 7, 9]
FAST = dict(n_seeds=2, steps=30, checkpoints=[0, 5, 30], n_test=80, n_train=600, batch_size=32, lr=0.01,
            n_imprint=10, device="cpu")


@pytest.fixture(scope="module")
def fam():
    return record_task_family(TASKS, UNION, **FAST)


def test_shapes_labels_and_seeds(fam):
    assert isinstance(fam, TaskFamily) and fam.names == ["a", "b", "ab"]
    assert fam.probs.shape == (3, 2, 3, 80, 4) and fam.probs.dtype == np.float32
    assert np.abs(fam.probs.sum(-1) - 1).max() < 1e-5 and fam.probs.min() >= 0
    assert list(fam.steps) == [0, 5, 30] and fam.labels.shape == (80,) and set(fam.labels) == {0, 1, 2, 3}
    assert fam.accuracy.shape == (3, 2, 3)
    assert fam.seeds.tolist() == [[0, 1], [2, 3], [4, 5]]       # independent initialisations per task
    assert seen_classes(fam).tolist() == [[True, False, True, False], [False, True, False, True],
                                          [True, True, True, False]]


def test_deterministic(fam):
    again = record_task_family({"b": TASKS["b"]}, UNION, **{**FAST, "seed": 2})
    np.testing.assert_array_equal(again.probs[0], fam.probs[1])


def test_shared_init_starts_every_task_at_the_same_model():
    f = record_task_family(TASKS, UNION, **{**FAST, "steps": 5, "checkpoints": [0, 5]}, shared_init=True)
    # the imprinted readout ignores the task's own head, and the backbone depends on the seed only
    np.testing.assert_array_equal(f.probs[0, :, 0], f.probs[1, :, 0])
    assert not np.allclose(f.probs[0, :, 1], f.probs[1, :, 1])   # training on different tasks moves apart


def test_training_makes_progress_on_the_union(fam):
    t = family_progress(fam.probs, fam.labels)
    assert t.shape == (3, 2, 3)
    assert (t[:, :, -1] > t[:, :, 0]).all(), t


def test_per_class_progress_definition():
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 5)
    truth = np.eye(3)[labels]
    uniform = np.full((15, 3), 1 / 3)
    np.testing.assert_allclose(per_class_progress(truth, labels), 1.0, atol=1e-6)
    np.testing.assert_allclose(per_class_progress(uniform, labels), 0.0, atol=1e-6)
    mixed = uniform.copy()
    mixed[labels == 1] = truth[labels == 1]                   # perfect on class 1 only
    np.testing.assert_allclose(per_class_progress(mixed, labels), [0, 1, 0], atol=1e-6)
    # a model halfway along the geodesic on class 2 has progress 1/2 there; stacked leading axes work
    half = geodesic(uniform, truth, [0.5])[0]
    P = rng.dirichlet(np.ones(3), size=15)
    P[labels == 2] = half[labels == 2]
    out = per_class_progress(np.stack([P, P])[None], labels)
    assert out.shape == (1, 2, 3)
    assert abs(out[0, 0, 2] - 0.5) < 1e-6
    assert abs(out[0, 1, 0] - progress(P[labels == 0], labels[labels == 0])) < 1e-12


def test_interpolation_means_radii_distances(fam):
    t = family_progress(fam.probs, fam.labels)
    grid = np.linspace(0, t.min(), 5)
    I = interpolate_family(fam.probs, fam.labels, grid)
    assert I.shape == (3, 2, 5, 80, 4)
    np.testing.assert_allclose(family_progress(I, fam.labels)[..., 1:], np.broadcast_to(grid[1:], (3, 2, 4)),
                               atol=0.05)
    M = family_means(I)
    np.testing.assert_allclose(M, I.mean(1))
    R = family_tube_radii(I)
    assert R.shape == (3, 5) and (R >= 0).all()
    D = task_distance_matrix(M, grid)
    assert D.shape == (3, 3) and np.allclose(D, D.T) and np.all(np.diag(D) == 0) and (D[~np.eye(3, dtype=bool)] > 0).all()
    assert abs(D[0, 2] - trajectory_distance(M[0], M[2], t_grid=grid)) < 1e-12
    nd = normalized_distance_curves(I, [("a", "b"), (0, 0)], fam.names)
    assert nd.shape == (2, 5) and np.abs(nd[1]).max() < 1e-3   # float rounding of d_B(x, x)
    emb, runs, means = family_inpca(I, M, k=3)
    assert runs.shape == (3, 2, 5, 3) and means.shape == (3, 5, 3)
    assert 0 < emb.explained_stress <= 1 and np.all(np.diff(emb.stress_by_k) >= -1e-12)


def test_linkage_recovers_blocks():
    # two blocks of three tasks: close within, far across
    D = np.full((6, 6), 1.0)
    D[:3, :3] = D[3:, 3:] = 0.2
    D[0, 1] = D[1, 0] = 0.1
    np.fill_diagonal(D, 0)
    C = cophenetic_matrix(task_linkage(D))
    assert C[0, 1] < C[0, 2] < C[0, 3]
    assert np.allclose(C[:3, 3:], 1.0)


def test_random_classes():
    a = random_classes(5, 10, seed=3)
    assert a == random_classes(5, 10, seed=3) and len(set(a)) == 5 and a == sorted(a)
    assert random_classes(5, 10, seed=4) != a or random_classes(5, 10, seed=5) != a


@pytest.mark.parametrize("kwargs, match", [
    (dict(tasks={"a": [1, 2]}, union_classes=[1, 5]), r"tasks\['a'\].*outside union_classes"),
    (dict(tasks={"a": [1]}), r"tasks\['a'\] must hold at least 2"),
    (dict(tasks=[1, 2]), r"tasks must be a non-empty dict"),
    (dict(tasks={"a": [1, 2]}, n_seeds=0), r"n_seeds"),
    (dict(tasks={"a": [1, 2]}, union_classes=[1, 2, 11]), r"union_classes"),
    (dict(tasks={"a": [1, 2]}, n_train=0), r"n_train"),
    (dict(tasks={"a": [1, 2]}, shared_init="yes"), r"shared_init"),
])
def test_record_task_family_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        record_task_family(**{"union_classes": [1, 2, 5], **kwargs, "steps": 2, "n_test": 10, "device": "cpu"})


def test_helper_validation():
    labels = np.array([0, 0, 1, 1])
    with pytest.raises(ValueError, match="labels"):
        per_class_progress(np.full((4, 3), 1 / 3), labels)        # class 2 has no test image
    with pytest.raises(ValueError, match="method"):
        task_linkage(np.zeros((3, 3)), method="ward2")
    with pytest.raises(ValueError, match="D must be"):
        task_linkage(np.array([[0, 1], [2, 0]]))
    I = np.full((2, 1, 3, 4, 2), 0.5)
    with pytest.raises(ValueError, match="n_seeds >= 2"):
        normalized_distance_curves(I, [(0, 1)])
    I2 = np.full((2, 2, 3, 4, 2), 0.5)
    with pytest.raises(ValueError, match="pairs"):
        normalized_distance_curves(I2, [(0, 5)])
    with pytest.raises(ValueError, match="n must be"):
        random_classes(11, 10)
    with pytest.raises(ValueError, match="family"):
        seen_classes("not a family")
