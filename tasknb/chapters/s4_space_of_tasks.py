"""The space of tasks: runs on several tasks in one prediction space (Ramesh et al. 2023, "S",
Results 1-3, Remark 5 and App. G).

Several seeds are trained on each of several classification tasks (subsets of the classes of one
dataset) and every checkpoint of every run is read through ONE imprinted head over the union of
their classes (eqs. 7-8 of S), so that all runs are points of the same prediction space, with the
same N test images and labels.  On that common footing:

``record_task_family``        train every task's seeds, read them on the union -> :class:`TaskFamily`
``family_progress``           progress t_w (eq. 4) on the union task of every checkpoint
``per_class_progress``        progress restricted to the test images of each class (Fig. 2a of S)
``seen_classes``              which union classes each task was trained on
``interpolate_family``        every run re-indexed on a common progress grid (eq. 3 + eq. 4)
``family_means`` / ``family_tube_radii``   mean trajectories and tube radii (App. G)
``task_distance_matrix``      eq. (5) between the tasks' mean trajectories
``task_linkage`` / ``cophenetic_matrix``   hierarchical clustering of tasks (Result 3)
``normalized_distance_curves``  Remark 5 for chosen pairs of tasks
``family_inpca``              InPCA (eqs. 9-11) of all re-indexed runs and means (Result 1)

Every loop of the S4 chapter lives here.  Deterministic given seeds; device from
``tasknb.device.get_device``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import load_task_images
from ..geometry import (bhattacharyya_matrix, inpca, interpolate_trajectory, mean_trajectory, normalized_distance,
                       progress, trajectory_distance, tube_radius)
from ..trajectories import progress_bar, record_trajectories, run_config
from ..validation import check_choice, check_int_sequence, check_positive_int, check_seed

__all__ = ["FASHION_SUPER_CLASSES", "FASHION_NAMES", "TaskFamily", "record_task_family", "family_progress",
           "per_class_progress", "seen_classes", "interpolate_family", "family_means", "family_tube_radii",
           "task_distance_matrix", "task_linkage", "cophenetic_matrix", "normalized_distance_curves",
           "family_inpca", "random_classes", "FAMILY_DEFAULTS"]

#: names of the ten Fashion-MNIST classes
FASHION_NAMES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")
#: the three super-classes of Fashion-MNIST used as the analogue of Wordnet phyla
FASHION_SUPER_CLASSES = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "other": (1, 3, 8)}

_LINKAGE_METHODS = ("average", "single", "complete", "weighted")

#: run defaults of :func:`record_task_family` (RunConfig fields): 150 Adam steps on up to 12,000
#: images per task, read through an imprinted head over the union task
FAMILY_DEFAULTS = dict(n_seeds=2, steps=150, n_train=12000, batch_size=32, optimizer="adam", lr=0.005,
                       readout="imprint")


@dataclass
class TaskFamily:
    """Runs on several tasks, all read on the union task.

    names : list of n_tasks task names, in the order of the first axis
    tasks : dict name -> list of the dataset classes the task was trained on
    union_classes : list of the K dataset classes of the union task (column j = class union_classes[j])
    probs : float32 (n_tasks, n_seeds, T, N, K): imprinted predictions on the union task (eq. 8)
    steps : int64 (T,) checkpoints (0 = initialisation)
    labels : int64 (N,) union labels 0..K-1 of the fixed test images (shared by every run)
    seeds : int (n_tasks, n_seeds) seed of every run
    accuracy : float64 (n_tasks, n_seeds, T) accuracy on the union task through the imprinted head
    config : dict of the arguments of :func:`record_task_family`
    """

    names: list
    tasks: dict
    union_classes: list
    probs: np.ndarray
    steps: np.ndarray
    labels: np.ndarray
    seeds: np.ndarray
    accuracy: np.ndarray
    config: dict

    @property
    def shape(self):
        return self.probs.shape


def _check_tasks(tasks, union) -> dict:
    if not isinstance(tasks, dict) or len(tasks) == 0:
        raise ValueError(f"tasks must be a non-empty dict name -> classes, got {type(tasks).__name__}")
    out = {}
    for name, classes in tasks.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tasks must be keyed by non-empty strings, got key {name!r}")
        cl = check_int_sequence(f"tasks[{name!r}]", classes, minimum=0, maximum=9)
        if len(cl) < 2:
            raise ValueError(f"tasks[{name!r}] must hold at least 2 distinct classes, got {cl}")
        missing = sorted(set(cl) - set(union))
        if missing:
            raise ValueError(f"tasks[{name!r}] has classes {missing} outside union_classes {union}")
        out[name] = cl
    return out


def random_classes(n: int, n_classes: int = 10, seed: int = 0) -> list[int]:
    """``n`` distinct classes of range(n_classes), drawn with ``seed`` and sorted (the analogue of
    the paper's random 333 ImageNet classes)."""
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    n = check_positive_int("n", n, minimum=2)
    if n > n_classes:
        raise ValueError(f"n must be an integer in [2, {n_classes}], got {n}")
    rng = np.random.default_rng(check_seed("seed", seed))
    return sorted(int(c) for c in rng.choice(n_classes, n, replace=False))


def record_task_family(tasks: dict, union_classes=None, *, config=None, shared_init: bool = False, device="auto",
                       progress: bool = False, **changes) -> TaskFamily:
    """Train the seeds of a run on every task and read all checkpoints on the union task.

    Parameters
    ----------
    tasks : dict name -> sequence of >= 2 dataset classes (each inside ``union_classes``).  Task
        ``name`` is trained with cross-entropy on its own classes (labels 0..C_k-1, its own head).
    union_classes : the K classes of the union task U (default: those of ``config``, else all
        ten).  Every checkpoint is read through ``prediction_set(dataset, union_classes, n_test,
        readout="imprint")``: a head imprinted from ``n_imprint`` training images per union class
        (eq. 7) applied to the same ``n_test`` test images of U (eq. 8) -- one prediction space for
        every task.
    config : a :class:`~tasknb.trajectories.RunConfig` (or None); RunConfig fields as keywords
        (``dataset``, ``n_seeds``, ``steps``, ``checkpoints``, ``n_test``, ``n_train``,
        ``batch_size``, ``optimizer``, ``lr``, ``momentum``, ``channels``, ``seed``, ``data_seed``,
        ``n_imprint``) fill in or replace its fields, defaults ``FAMILY_DEFAULTS`` over RunConfig's
        (2 seeds, 150 steps of Adam, lr 0.005, batch 32, n_train 12000, N = 1000).  Its classes
        are replaced by each task's, its readout is "imprint".  n_train is per task, clipped to
        the number the task has (6000 per Fashion-MNIST class); None = all of them.
    shared_init : run k of task i uses seed ``seed + k`` when True (every task starts from the same
        n_seeds networks), else ``seed + i * n_seeds + k`` (default: independent initialisations,
        as when each task is trained separately).
    device : "auto", "cpu" or "cuda".   progress : one tqdm bar over the tasks.

    Returns
    -------
    :class:`TaskFamily` with ``probs`` (n_tasks, n_seeds, T, N, K) float32.
    Same arguments -> same numbers on the same device.
    """
    if union_classes is None:
        union_classes = config.union_classes if config is not None else tuple(range(10))
    union = check_int_sequence("union_classes", union_classes, minimum=0, maximum=9)
    if len(union) < 2:
        raise ValueError(f"union_classes must hold at least 2 distinct classes, got {union}")
    base = run_config(config, FAMILY_DEFAULTS, classes=union, union_classes=union, readout="imprint", **changes)
    tasks = _check_tasks(tasks, union)
    if not isinstance(shared_init, bool):
        raise ValueError(f"shared_init must be True or False, got {shared_init!r}")
    names = list(tasks)
    bar = progress_bar(len(names), "training tasks", progress)
    probs, accuracy, seeds = [], [], []
    labels = steps_out = None
    for i, name in enumerate(names):
        nt = base.n_train
        if nt is not None:
            nt = min(nt, len(load_task_images(base.dataset, "train", tasks[name])[1]))
        s0 = base.seed if shared_init else base.seed + i * base.n_seeds
        run = base.replace(classes=tasks[name], union_classes=base.union_classes, n_train=nt, seed=s0)
        tr = record_trajectories(run, device=device)
        if labels is None:
            labels, steps_out = tr.labels, tr.steps
        probs.append(tr.probs)
        accuracy.append(tr.accuracy)
        seeds.append(tr.seeds)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    config_dict = {k: v for k, v in base.to_dict().items() if k != "classes"}
    config_dict.update(tasks={k: list(v) for k, v in tasks.items()}, shared_init=shared_init)
    return TaskFamily(names=names, tasks=tasks, union_classes=union, probs=np.stack(probs), steps=steps_out,
                      labels=labels, seeds=np.array(seeds, dtype=np.int64), accuracy=np.stack(accuracy),
                      config=config_dict)


def _family_probs(P, name="P", ndim_min=3):
    P = np.asarray(P)
    if P.ndim < ndim_min:
        raise ValueError(f"{name} must have at least {ndim_min} axes (..., N, K), got shape {P.shape}")
    return P


def family_progress(P, labels) -> np.ndarray:
    """Progress t_w (eq. 4 of S) on the union task of every model in ``P`` (..., N, K).

    ``labels`` (N,) union labels.  Returns float64 (...) (e.g. (n_tasks, n_seeds, T) for a
    :class:`TaskFamily`'s ``probs``).
    """
    P = _family_probs(P, "P", 2)
    lead, (N, K) = P.shape[:-2], P.shape[-2:]
    flat = P.reshape((-1, N, K)).astype(np.float64)
    return np.asarray(progress(flat, labels), dtype=np.float64).reshape(lead)


def per_class_progress(P, labels, n_classes: int | None = None) -> np.ndarray:
    """Progress restricted to the test images of each class, t_w^c of Fig. 2a of S.

    For class c, eq. (4) is solved on the rows n with ``labels[n] == c`` only (the geodesic from
    the uniform model to those rows' one-hot labels, over all K columns): how far the model is
    towards the truth on that class.  ``P`` (..., N, K), ``labels`` (N,) in 0..K-1, every class
    present.  Returns float64 (..., K).
    """
    P = _family_probs(P, "P", 2)
    N, K = P.shape[-2:]
    labels = np.asarray(labels)
    if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 or labels.max() >= K:
        raise ValueError(f"labels must be {N} integers in [0, {K - 1}], got shape {labels.shape}")
    if n_classes is not None and check_positive_int("n_classes", n_classes, minimum=2) != K:
        raise ValueError(f"n_classes must equal the number of columns of P ({K}), got {n_classes}")
    lead = P.shape[:-2]
    flat = P.reshape((-1, N, K)).astype(np.float64)
    out = np.empty((flat.shape[0], K))
    for c in range(K):
        rows = labels == c
        if not rows.any():
            raise ValueError(f"labels must contain every class 0..{K - 1}; class {c} has no test image")
        out[:, c] = progress(flat[:, rows], labels[rows])
    return out.reshape(lead + (K,))


def seen_classes(family: TaskFamily) -> np.ndarray:
    """Bool (n_tasks, K): column j is True when task i was trained on union class j."""
    if not isinstance(family, TaskFamily):
        raise ValueError(f"family must be a TaskFamily, got {type(family).__name__}")
    return np.array([[c in family.tasks[n] for c in family.union_classes] for n in family.names])


def interpolate_family(P, labels, t_grid) -> np.ndarray:
    """Every run re-indexed by progress on ``t_grid`` (eq. 3 between checkpoints, eq. 4 for t).

    ``P`` (..., T, N, K) checkpoints of runs in training order; ``labels`` (N,); ``t_grid`` 1-D
    values in [0, 1].  Grid values beyond a run's largest progress repeat that checkpoint (see
    ``geometry.interpolate_trajectory``).  Returns float64 (..., len(t_grid), N, K).
    """
    P = _family_probs(P, "P", 3)
    lead, (T, N, K) = P.shape[:-3], P.shape[-3:]
    flat = P.reshape((-1, T, N, K)).astype(np.float64)
    out = np.stack([interpolate_trajectory(run, t_grid, labels=labels) for run in flat])
    return out.reshape(lead + out.shape[1:])


def family_means(I) -> np.ndarray:
    """Mean trajectory of each task's seeds (App. G): ``I`` (n_tasks, n_seeds, G, N, K) ->
    (n_tasks, G, N, K), the arithmetic mean of the probabilities (``geometry.mean_trajectory``)."""
    I = _family_probs(I, "I", 5)
    return np.stack([mean_trajectory(x) for x in I])


def family_tube_radii(I) -> np.ndarray:
    """Tube radius of each task around its mean at every progress value (App. G, Remark 5):
    ``I`` (n_tasks, n_seeds, G, N, K) -> (n_tasks, G), ``max_k d_B(P_k(t), P_mean(t))``."""
    I = _family_probs(I, "I", 5)
    return np.stack([np.asarray(tube_radius(x)) for x in I])


def task_distance_matrix(M, t_grid=None) -> np.ndarray:
    """Distances (eq. 5 of S) between the mean trajectories ``M`` (n_tasks, G, N, K) of tasks on
    one progress grid ``t_grid`` (G,) (default uniform on [0, 1]).  Returns a symmetric float64
    (n_tasks, n_tasks) matrix with zero diagonal."""
    M = _family_probs(M, "M", 4)
    n = M.shape[0]
    D = np.zeros((n, n))
    for i in range(n):
        for j in range(i + 1, n):
            D[i, j] = D[j, i] = trajectory_distance(M[i], M[j], t_grid=t_grid)
    return D


def task_linkage(D, method: str = "average") -> np.ndarray:
    """Agglomerative clustering of tasks from their distance matrix ``D`` (n, n) (Result 3):
    ``scipy.cluster.hierarchy.linkage`` of the condensed matrix with ``method`` ("average",
    the default, UPGMA; or "single", "complete", "weighted").  Returns the (n - 1, 4) linkage."""
    from scipy.cluster.hierarchy import linkage
    from scipy.spatial.distance import squareform

    check_choice("method", method, _LINKAGE_METHODS)
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.shape[0] != D.shape[1] or D.shape[0] < 2:
        raise ValueError(f"D must be a square (n, n) matrix with n >= 2, got shape {D.shape}")
    if not np.isfinite(D).all() or D.min() < 0 or np.abs(D - D.T).max() > 1e-12 * max(1.0, np.abs(D).max()):
        raise ValueError("D must be a finite, non-negative, symmetric matrix")
    D = D.copy()
    np.fill_diagonal(D, 0.0)
    return linkage(squareform(D, checks=False), method=method)


def cophenetic_matrix(Z) -> np.ndarray:
    """(n, n) height at which two tasks first join in the dendrogram of linkage ``Z``."""
    from scipy.cluster.hierarchy import cophenet
    from scipy.spatial.distance import squareform

    return squareform(cophenet(np.asarray(Z, dtype=np.float64)))


def normalized_distance_curves(I, pairs, names=None) -> np.ndarray:
    """Remark 5 of S for chosen pairs of tasks: ``2 d_B(mean_1(t), mean_2(t)) / (r_1(t) + r_2(t))``.

    ``I`` (n_tasks, n_seeds, G, N, K) re-indexed runs (n_seeds >= 2); ``pairs`` list of (i, j)
    task indices, or of names when ``names`` (the tasks' names in order) is given.  Below 1 the
    two tubes intersect.  Returns float64 (len(pairs), G).
    """
    I = _family_probs(I, "I", 5)
    if I.shape[1] < 2:
        raise ValueError(f"I needs n_seeds >= 2 runs per task for a tube radius, got {I.shape[1]}")
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs must hold pairs of tasks, got {pair!r}")
        idx = []
        for p in pair:
            if names is not None and isinstance(p, str):
                if p not in names:
                    raise ValueError(f"pairs names a task {p!r} not in names {list(names)}")
                p = list(names).index(p)
            if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < I.shape[0]:
                raise ValueError(f"pairs must hold task indices in [0, {I.shape[0] - 1}] (or names), got {p!r}")
            idx.append(int(p))
        out.append(np.asarray(normalized_distance(I[idx[0]], I[idx[1]]), dtype=np.float64))
    return np.stack(out)


def family_inpca(I, M=None, k: int = 3, **matrix_kwargs):
    """InPCA (eqs. 9-11 of S) of every re-indexed run and, with ``M``, the tasks' mean
    trajectories, embedded together as in Remark 4 of S.

    ``I`` (n_tasks, n_seeds, G, N, K); ``M`` (n_tasks, G, N, K) or None; ``k`` components.
    Returns ``(emb, runs_xyz, means_xyz)``: the :class:`tasknb.geometry.InPCA` of all
    m = n_tasks * n_seeds * G (+ n_tasks * G) models, their coordinates reshaped to
    (n_tasks, n_seeds, G, k) and (n_tasks, G, k) (None without ``M``).
    """
    I = _family_probs(I, "I", 5)
    nt, ns, G, N, K = I.shape
    X = [I.reshape(-1, N, K)]
    if M is not None:
        M = _family_probs(M, "M", 4)
        if M.shape != (nt, G, N, K):
            raise ValueError(f"M must have shape {(nt, G, N, K)} (n_tasks, G, N, K), got {M.shape}")
        X.append(M.reshape(-1, N, K))
    X = np.concatenate(X).astype(np.float64)
    D = np.asarray(bhattacharyya_matrix(X, **matrix_kwargs))
    emb = inpca(D, k)
    n_runs = nt * ns * G
    runs = emb.coords[:n_runs].reshape(nt, ns, G, -1)
    means = emb.coords[n_runs:].reshape(nt, G, -1) if M is not None else None
    return emb, runs, means
