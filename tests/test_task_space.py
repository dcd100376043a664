"""tasknb.chapters.s4_space_of_tasks: runs on several tasks read on one union task have the documented
shapes, streams and readout, are reproducible; per-class / unseen-class progress, the common-range
distances (d_B and App. C's symmetric KL), the task comparisons, the models-only InPCA picture with
projected references and the Mantel null behave as their definitions say; bad inputs stop with a
message naming the parameter."""
import numpy as np
import pytest

from tasknb.device import derived_seed
from tasknb.geometry import geodesic, progress, reference_points
from tasknb.trajectory_geometry import compare_families, compare_trajectories
from tasknb.chapters.s4_space_of_tasks import (TaskFamily, cophenetic_matrix, family_picture, family_progress,
                                               mantel_null, pair_distance, per_class_progress, random_classes,
                                               record_task_family, reindex_runs, seed_pair_distances, seen_classes,
                                               task_comparisons, task_linkage, task_seed, unseen_class_progress)

TASKS = {"a": [1, 7], "b": [5, 9], "ab": [1, 5, 7]}
UNION = [1, 5, 7, 9]
FAST = dict(n_seeds=2, steps=20, checkpoints=[0, 5, 20], n_test=60, n_train=300, batch_size=32, n_imprint=8,
            channels=(4, 8), device="cpu")


@pytest.fixture(scope="module")
def fam():
    return record_task_family(TASKS, UNION, **FAST)


def _synthetic_family(n_tasks=3, S=3, T=5, N=40, K=4, seed=0):
    """Runs that move from near-uniform models towards the truth along noisy geodesics."""
    rng = np.random.default_rng(seed)
    labels = np.arange(N) % K
    P0, Ps = reference_points(labels, K, clip=1e-3)
    probs = np.empty((n_tasks, S, T, N, K))
    for i in range(n_tasks):
        target = rng.dirichlet(np.ones(K) * 2, size=N) * 0.3 + 0.7 * Ps
        target /= target.sum(-1, keepdims=True)
        for k in range(S):
            noise = rng.dirichlet(np.ones(K) * 50, size=N)
            start = 0.9 * P0 + 0.1 * noise
            probs[i, k] = geodesic(start, target, np.linspace(0, 0.6 + 0.1 * k, T))
    return TaskFamily(names=[f"t{i}" for i in range(n_tasks)], tasks={f"t{i}": [0, 1] for i in range(n_tasks)},
                      union_classes=list(range(K)), probs=probs.astype(np.float32), steps=np.arange(T),
                      labels=labels, seeds=np.arange(n_tasks), accuracy=np.zeros((n_tasks, S, T)), config={})


def test_shapes_readout_and_streams(fam):
    assert isinstance(fam, TaskFamily) and fam.names == ["a", "b", "ab"]
    assert fam.probs.shape == (3, 2, 3, 60, 4) and fam.probs.dtype == np.float32
    assert np.abs(fam.probs.sum(-1) - 1).max() < 1e-5 and fam.probs.min() >= 0
    assert list(fam.steps) == [0, 5, 20] and fam.labels.shape == (60,) and set(fam.labels) == {0, 1, 2, 3}
    assert fam.accuracy.shape == (3, 2, 3)
    # the paper's recipe and the scale-free readout are the defaults
    assert fam.config["readout"] == "prototype_ml" and fam.config["optimizer"] == "sgd" and fam.config["nesterov"]
    assert fam.config["schedule"] == "cosine" and fam.config["head_bias"] is False
    # one stream per task, not seed + i * n_seeds
    assert fam.seeds.tolist() == [derived_seed(0, "s4.task", i) for i in range(3)]
    assert len(set(fam.seeds.tolist())) == 3 and task_seed(0, 1, shared_init=True) == 0
    assert seen_classes(fam).tolist() == [[True, False, True, False], [False, True, False, True],
                                          [True, True, True, False]]


def test_deterministic_and_independent_of_other_tasks(fam):
    again = record_task_family({"other": [1, 9], "b": TASKS["b"]}, UNION, **FAST)
    np.testing.assert_array_equal(again.probs[1], fam.probs[1])


def test_shared_init_starts_every_task_at_the_same_model():
    two = {k: TASKS[k] for k in ("a", "b")}
    f = record_task_family(two, UNION, **{**FAST, "n_seeds": 1, "steps": 5, "checkpoints": [0, 5]}, shared_init=True)
    # the feature readout ignores the task's own head, and the backbone depends on the seed only
    np.testing.assert_array_equal(f.probs[0, :, 0], f.probs[1, :, 0])
    assert not np.allclose(f.probs[0, :, 1], f.probs[1, :, 1])   # training on different tasks moves apart


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
    half = geodesic(uniform, truth, [0.5])[0]
    P = rng.dirichlet(np.ones(3), size=15)
    P[labels == 2] = half[labels == 2]
    out = per_class_progress(np.stack([P, P])[None], labels)
    assert out.shape == (1, 2, 3)
    assert abs(out[0, 0, 2] - 0.5) < 1e-6
    assert abs(out[0, 1, 0] - progress(P[labels == 0], labels[labels == 0])) < 1e-12


def test_unseen_class_progress(fam):
    pc = per_class_progress(fam.probs[:, :, [0, -1]], fam.labels)
    init, final = unseen_class_progress(fam, pc)
    assert init.shape == final.shape == (3, 2)
    # task "a" saw union classes 0 and 2: its unseen classes are 1 and 3
    np.testing.assert_allclose(final[0], pc[0, :, 1][:, [1, 3]].mean(-1))
    np.testing.assert_allclose(init[2], pc[2, :, 0][:, [3]].mean(-1))
    full = TaskFamily(names=["all"], tasks={"all": UNION}, union_classes=UNION, probs=fam.probs[:1], steps=fam.steps,
                      labels=fam.labels, seeds=fam.seeds[:1], accuracy=fam.accuracy[:1], config={})
    assert np.isnan(unseen_class_progress(full)[0]).all()          # nothing unseen


def test_pair_distance_is_compare_trajectories_over_the_common_range():
    f = _synthetic_family()
    a, b = f.probs[0, 0].astype(np.float64), f.probs[1, 2].astype(np.float64)
    pd_ = pair_distance(a, b, f.labels, 25)
    ref = compare_trajectories(a, b, labels=f.labels, n_grid=25)
    assert pd_.range == pytest.approx(ref.range) and pd_.d_b == pytest.approx(ref.mean_distance, rel=1e-9)
    assert pd_.sym_kl > 0 and pd_.d_b > 0
    same = pair_distance(a, a, f.labels, 25)
    assert same.d_b < 1e-6 and same.sym_kl < 1e-6
    # near one another the symmetric KL is ~ 8 d_B (App. C's local expansion)
    c = np.stack([geodesic(a[t], b[t], [0.05])[0] for t in range(len(a))])
    close = pair_distance(a, c, f.labels, 25)
    assert 6 < close.sym_kl / close.d_b < 10


def test_seed_pairs_and_task_comparisons():
    f = _synthetic_family()
    sp = seed_pair_distances(f, [("t0", "t1"), ("t0", "t0")], 15)
    assert sp["d_b"].shape == (2, 3) and sp["range"].shape == (2, 3, 2)
    # the null pairs seed k with seed k + 1 of the same task
    ref = pair_distance(f.probs[0, 2], f.probs[0, 0], f.labels, 15)
    assert sp["d_b"][1, 2] == pytest.approx(ref.d_b) and sp["sym_kl"][1, 2] == pytest.approx(ref.sym_kl)
    # different tasks (different targets) are farther apart than two seeds of one task
    assert (sp["d_b"][0] > sp["d_b"][1]).all()
    tc = task_comparisons(f, 15)
    assert tc.d_b.shape == (3, 3) and np.allclose(tc.d_b, tc.d_b.T) and np.all(np.diag(tc.d_b) == 0)
    c = compare_families(f.probs[0], f.probs[2], labels=f.labels, n_grid=15)
    assert tc.d_b[0, 2] == pytest.approx(c.mean_distance) and tc.lo[0, 2] == pytest.approx(c.range[0])
    assert tc.normalized[2, 0] == pytest.approx(c.mean_normalized_distance) and (tc.sym_kl[np.triu_indices(3, 1)] > 0).all()


def test_reindex_runs_on_own_range():
    f = _synthetic_family()
    models, grids = reindex_runs(f.probs, f.labels, 6)
    assert models.shape == (3, 3, 6) + f.probs.shape[-2:] and grids.shape == (3, 3, 6)
    t = family_progress(f.probs, f.labels)
    np.testing.assert_allclose(grids[..., 0], t[..., 0]) and np.testing.assert_allclose(grids[..., -1], t[..., -1])
    np.testing.assert_allclose(models[..., -1, :, :], f.probs[:, :, -1], atol=1e-6)   # ends at its last checkpoint
    np.testing.assert_allclose(family_progress(models, f.labels), grids, atol=1e-3)   # progress ~ grid (monotone runs)


def test_family_picture_fits_models_only_and_projects_references():
    f = _synthetic_family()
    pic = family_picture(f, 5, k=3)
    assert pic.emb.coords.shape == (3 * 3 * 5, 3) and pic.runs.shape == (3, 3, 5, 3)
    assert pic.means.shape == (3, 5, 3) and pic.p0.shape == (3,) and pic.pstar.shape == (3,)
    # the models move from near P_0 towards P_*: P_0 projects closest to the runs' starts
    d0 = np.linalg.norm(pic.runs[:, :, 0] - pic.p0, axis=-1).mean()
    d1 = np.linalg.norm(pic.runs[:, :, -1] - pic.p0, axis=-1).mean()
    assert d0 < d1
    kl = family_picture(f, 5, k=3, metric="sym_kl", models=pic.models)
    assert kl.emb.coords.shape == pic.emb.coords.shape and 0 < kl.emb.explained_stress <= 1
    with pytest.raises(ValueError, match="metric"):
        family_picture(f, 5, metric="hellinger")


def test_mantel_null():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(8, 3))
    D = np.linalg.norm(X[:, None] - X[None], axis=-1)
    rho, null = mantel_null(D, D ** 2, 100, seed=3)
    assert rho == pytest.approx(1.0) and null.shape == (100,)
    assert abs(null.mean()) < 0.25 and np.quantile(null, 0.99) < 0.9
    np.testing.assert_array_equal(mantel_null(D, D ** 2, 100, seed=3)[1], null)
    with pytest.raises(ValueError, match="A and B"):
        mantel_null(D, D[:4, :4])


def test_linkage_recovers_blocks():
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
    (dict(tasks={"a": [1, 2]}, readout="softmax"), r"readout"),
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
    f = _synthetic_family()
    with pytest.raises(ValueError, match="unknown task"):
        seed_pair_distances(f, [("t0", "nope")])
    with pytest.raises(ValueError, match="pairs"):
        seed_pair_distances(f, [("t0",)])
    with pytest.raises(ValueError, match="n must be"):
        random_classes(11, 10)
    with pytest.raises(ValueError, match="family"):
        seen_classes("not a family")
