"""The space of tasks: runs on several tasks in one prediction space (Ramesh et al. 2023, "S",
Results 1-3, Remark 5, App. C, F and G).

Several seeds are trained on each of several classification tasks (subsets of the classes of one
dataset) with the paper's recipe at our scale (``RunConfig``'s defaults, ``PAPER_RECIPE``), and
every checkpoint of every run is read on the union task through the scale-free default readout
(``prediction_set(..., readout="prototype_ml")`` over the union classes, eq. 8 of S with class-mean
prototypes), so all runs are points of one prediction space with the same N test images.

``record_task_family``     train every task's seeds, read them on the union -> :class:`TaskFamily`
``task_seed``              the base seed of task i (``derived_seed(seed, "s4.task", i)``)
``family_progress``        progress t_w (eq. 4) on the union task of every checkpoint
``per_class_progress``     progress restricted to the test images of each class (Fig. 2a of S)
``seen_classes``           which union classes each task was trained on
``unseen_class_progress``  mean per-class progress over the classes a task never saw, at init and at the end
``pair_distance``          two runs over their common range of unfolded progress: mean d_B (eq. 5 / range)
                           and mean symmetric KL (App. C) -> :class:`PairDistance`
``seed_pair_distances``    per-seed distances for pairs of tasks (seed k vs seed k) and the same-task null
                           (seed k vs seed k + 1 of one task)
``task_comparisons``       ``compare_families`` for every pair of tasks: task-distance matrices (d_B and
                           symmetric KL between mean trajectories, each over the pair's common range),
                           Remark 5's normalised distances -> :class:`TaskComparisons`
``task_linkage`` / ``cophenetic_matrix``   hierarchical clustering of tasks (Result 3)
``reindex_runs``           every run re-indexed on its own range of unfolded progress (the models of the picture)
``family_picture``         InPCA (eqs. 9-11) fitted on the re-indexed models alone; mean trajectories, P_0
                           and P_* placed with ``InPCA.project`` -> :class:`FamilyPicture`
``mantel_null``            Spearman correlation of two distance matrices and its task-relabelling null

Every loop of the S4 chapter lives here.  Deterministic given seeds; device from
``tasknb.device.get_device``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data import load_task_images
from ..device import derived_seed, numpy_stream
from ..geometry import (bhattacharyya, bhattacharyya_matrix, inpca, progress, reference_points,
                        symmetric_kl_matrix)
from ..trajectories import progress_bar, record_trajectories, run_config
from ..trajectory_geometry import (common_range, compare_families, family_tube, reindex_trajectory,
                                   unfolded_progress)
from ..validation import check_choice, check_int_sequence, check_positive_int, check_seed

__all__ = ["FASHION_SUPER_CLASSES", "FASHION_NAMES", "TaskFamily", "record_task_family", "task_seed",
           "family_progress", "per_class_progress", "seen_classes", "unseen_class_progress", "PairDistance",
           "pair_distance", "seed_pair_distances", "TaskComparisons", "task_comparisons", "task_linkage",
           "cophenetic_matrix", "reindex_runs", "FamilyPicture", "family_picture", "mantel_null",
           "random_classes", "FAMILY_DEFAULTS"]

#: names of the ten Fashion-MNIST classes
FASHION_NAMES = ("T-shirt/top", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                 "ankle boot")
#: the three super-classes of Fashion-MNIST used as the analogue of Wordnet phyla
FASHION_SUPER_CLASSES = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "other": (1, 3, 8)}

_LINKAGE_METHODS = ("average", "single", "complete", "weighted")

#: run defaults of :func:`record_task_family` over RunConfig's (the paper's recipe, 5 seeds, the
#: prototype_ml readout): 300 steps on 4,000 training images per task
FAMILY_DEFAULTS = dict(steps=300, n_train=4000)


@dataclass
class TaskFamily:
    """Runs on several tasks, all read on the union task.

    names : list of n_tasks task names, in the order of the first axis
    tasks : dict name -> list of the dataset classes the task was trained on
    union_classes : list of the K dataset classes of the union task (column j = class union_classes[j])
    probs : float32 (n_tasks, n_seeds, T, N, K): predictions on the union task (eq. 8) through the
        run's feature readout (default ``prototype_ml``)
    steps : int64 (T,) checkpoints (0 = initialisation)
    labels : int64 (N,) union labels 0..K-1 of the fixed test images (shared by every run)
    seeds : int (n_tasks,) base seed of every task's run (``task_seed``; seed k of task i draws from
        ``init_seed(seeds[i], k)`` and ``batch_seed(seeds[i], k)``)
    accuracy : float64 (n_tasks, n_seeds, T) accuracy on the union task through the readout
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
    """``n`` distinct classes of range(n_classes), drawn from ``numpy_stream(seed, "s4.random_classes")``
    and sorted (the analogue of the paper's random 333 ImageNet classes)."""
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    n = check_positive_int("n", n, minimum=2)
    if n > n_classes:
        raise ValueError(f"n must be an integer in [2, {n_classes}], got {n}")
    rng = numpy_stream(check_seed("seed", seed), "s4.random_classes")
    return sorted(int(c) for c in rng.choice(n_classes, n, replace=False))


def task_seed(seed: int, i: int, shared_init: bool = False) -> int:
    """Base seed of task i of a family with base seed ``seed``: ``derived_seed(seed, "s4.task", i)``
    (its own stream per task), or ``seed`` itself for every task when ``shared_init``."""
    seed = check_seed("seed", seed)
    return seed if shared_init else derived_seed(seed, "s4.task", check_seed("i", i))


def record_task_family(tasks: dict, union_classes=None, *, config=None, shared_init: bool = False, device="auto",
                       progress: bool = False, **changes) -> TaskFamily:
    """Train the seeds of a run on every task and read all checkpoints on the union task.

    Parameters
    ----------
    tasks : dict name -> sequence of >= 2 dataset classes (each inside ``union_classes``).  Task
        ``name`` is trained with cross-entropy on its own classes (labels 0..C_k-1, its own head).
    union_classes : the K classes of the union task U (default: those of ``config``, else all
        ten).  Every checkpoint is read through ``prediction_set(dataset, union_classes, n_test,
        readout=readout)`` (default readout ``prototype_ml``: class-mean prototypes of ``n_imprint``
        training images per union class, one temperature fitted on them) on the same ``n_test``
        test images of U (eq. 8) -- one prediction space for every task, whatever its own head.
    config : a :class:`~tasknb.trajectories.RunConfig` (or None); RunConfig fields as keywords
        fill in or replace its fields, defaults ``FAMILY_DEFAULTS`` over RunConfig's (the paper's
        recipe ``PAPER_RECIPE``: SGD-Nesterov, cosine schedule, layer-normed features, bias-free
        head; 5 seeds; 300 steps on 4,000 training images per task, N = 1000).  Its classes are
        replaced by each task's; the readout must be a feature readout (not "softmax").  n_train
        is per task, clipped to the number the task has (6000 per Fashion-MNIST class).
    shared_init : when True every task uses the base seed ``seed`` (the same n_seeds starting
        networks for every task); else (default) task i uses ``task_seed(seed, i)``, its own
        stream, as when each task is trained separately.
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
    base = run_config(config, FAMILY_DEFAULTS, classes=union, union_classes=union, **changes)
    if base.readout == "softmax":
        raise ValueError("readout must be a feature readout (e.g. 'prototype_ml'): runs on different tasks are "
                         "read on the union task through heads built on their features")
    tasks = _check_tasks(tasks, union)
    if not isinstance(shared_init, bool):
        raise ValueError(f"shared_init must be True or False, got {shared_init!r}")
    names = list(tasks)
    bar = progress_bar(len(names), "training tasks", progress)
    probs, accuracy, seeds = [], [], []
    labels = steps_out = None
    counts = None
    if base.n_train is not None:  # training images per union class, loaded once for every task
        y_union = np.asarray(load_task_images(base.dataset, "train", union)[1])
        counts = {c: int((y_union == j).sum()) for j, c in enumerate(union)}
    for i, name in enumerate(names):
        nt = base.n_train
        if nt is not None:
            nt = min(nt, sum(counts[c] for c in tasks[name]))
        s0 = task_seed(base.seed, i, shared_init)
        run = base.replace(classes=tasks[name], union_classes=base.union_classes, n_train=nt, seed=s0)
        tr = record_trajectories(run, device=device)
        if labels is None:
            labels, steps_out = tr.labels, tr.steps
        probs.append(tr.probs)
        accuracy.append(tr.accuracy)
        seeds.append(s0)
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




def unseen_class_progress(family: TaskFamily, per_class=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean per-class progress t_w^c (Fig. 2a of S) over the classes each task never saw, at the
    first checkpoint (the untrained network: the random-feature control) and at the last.

    ``per_class`` (n_tasks, n_seeds, 2, K) ``per_class_progress`` of the first and last checkpoints
    (computed when None).  Returns ``(init, final)`` float64 (n_tasks, n_seeds); NaN for a task
    trained on every union class.
    """
    seen = seen_classes(family)
    pc = per_class_progress(family.probs[:, :, [0, -1]], family.labels) if per_class is None else np.asarray(per_class)
    out = np.full(pc.shape[:2] + (2,), np.nan)
    for i in range(len(family.names)):
        if (~seen[i]).any():
            out[i] = pc[i][..., ~seen[i]].mean(-1)
    return out[..., 0], out[..., 1]


def _symkl_rows(P, Q) -> np.ndarray:
    """Sample-averaged symmetric KL (App. C) between paired models P[g], Q[g] (G, N, C) -> (G,)."""
    return np.array([float(symmetric_kl_matrix(P[g][None], Q[g][None])[0, 0]) for g in range(len(P))])


@dataclass
class PairDistance:
    """Two runs compared over their common range of unfolded progress.

    ``range`` (lo, hi); ``d_b`` the mean d_B per unit of progress (eq. 5 over the range / (hi - lo),
    ``compare_trajectories``' ``mean_distance``); ``sym_kl`` the same with the symmetric KL
    divergence of App. C in place of d_B."""

    range: tuple
    d_b: float
    sym_kl: float


def _trap_mean(y, x) -> float:
    return float(np.sum((y[1:] + y[:-1]) * np.diff(x)) / 2 / (x[-1] - x[0]))


def pair_distance(traj_a, traj_b, labels, n_grid: int = 20, *, progress_a=None, progress_b=None) -> PairDistance:
    """d_traj (eq. 5) and its App. C version between two runs (T_a, N, K), (T_b, N, K), over the
    common range of their unfolded progress (``common_range``), both re-indexed on
    ``linspace(lo, hi, n_grid)`` (``reindex_trajectory``, by unfolded progress: a run that goes back
    in progress keeps every leg).  Returns a :class:`PairDistance` of means per unit of progress."""
    n_grid = check_positive_int("n_grid", n_grid, minimum=2)
    ta = progress(np.asarray(traj_a, dtype=np.float64), labels) if progress_a is None else progress_a
    tb = progress(np.asarray(traj_b, dtype=np.float64), labels) if progress_b is None else progress_b
    ua, ub = unfolded_progress(np.asarray(ta, dtype=np.float64)), unfolded_progress(np.asarray(tb, dtype=np.float64))
    lo, hi = common_range(ua, ub)
    grid = np.linspace(lo, hi, n_grid)
    A = reindex_trajectory(traj_a, grid, progress_values=ta)
    B = reindex_trajectory(traj_b, grid, progress_values=tb)
    d = np.asarray(bhattacharyya(A, B), dtype=np.float64)
    return PairDistance(range=(lo, hi), d_b=_trap_mean(d, grid), sym_kl=_trap_mean(_symkl_rows(A, B), grid))


def _task_index(names, p):
    if isinstance(p, str):
        if p not in names:
            raise ValueError(f"unknown task {p!r}; the family has {list(names)}")
        return list(names).index(p)
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p < len(names):
        raise ValueError(f"task indices must be in [0, {len(names) - 1}] (or names), got {p!r}")
    return int(p)


def seed_pair_distances(family: TaskFamily, pairs, n_grid: int = 20, *, progress_values=None,
                        show_progress: bool = False) -> dict:
    """Per-seed trajectory distances for pairs of tasks, with the same-task null.

    ``pairs`` : list of (a, b) task names or indices.  For a != b, seed k of a is compared with seed
    k of b (k = 0..n_seeds-1: independent runs, matched by index); for a == b (the null: how far
    two seeds of ONE task are), seed k with seed k + 1 (mod n_seeds).  Each comparison is
    :func:`pair_distance` over the pair's common range.  ``progress_values`` (n_tasks, n_seeds, T)
    optional (``family_progress``).  Returns dict with ``"d_b"``, ``"sym_kl"`` float64
    (len(pairs), n_seeds) and ``"range"`` (len(pairs), n_seeds, 2).
    """
    if not isinstance(family, TaskFamily):
        raise ValueError(f"family must be a TaskFamily, got {type(family).__name__}")
    P = family.probs
    S = P.shape[1]
    if S < 2:
        raise ValueError(f"the family needs n_seeds >= 2 for seed pairs, got {S}")
    t = family_progress(P, family.labels) if progress_values is None else np.asarray(progress_values)
    idx = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(f"pairs must hold pairs of tasks, got {pair!r}")
        idx.append(tuple(_task_index(family.names, p) for p in pair))
    out = {"d_b": np.empty((len(idx), S)), "sym_kl": np.empty((len(idx), S)), "range": np.empty((len(idx), S, 2))}
    bar = progress_bar(len(idx) * S, "seed-pair distances", show_progress)
    for r, (a, b) in enumerate(idx):
        for k in range(S):
            kb = (k + 1) % S if a == b else k
            pd_ = pair_distance(P[a, k], P[b, kb], family.labels, n_grid, progress_a=t[a, k], progress_b=t[b, kb])
            out["d_b"][r, k], out["sym_kl"][r, k], out["range"][r, k] = pd_.d_b, pd_.sym_kl, pd_.range
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


@dataclass
class TaskComparisons:
    """Every pair of tasks compared through their families of seeds (``compare_families``).

    ``d_b`` (n, n): mean d_B between the two mean trajectories per unit of progress, over the
    range ALL seeds of the pair cover; ``sym_kl`` (n, n) the same with App. C's symmetric KL;
    ``lo``, ``hi`` (n, n) that range; ``normalized`` (n, n) Remark 5's normalised distance averaged
    over the range; ``pairs`` dict (i, j) -> the ``FamilyComparison`` (i < j)."""

    d_b: np.ndarray
    sym_kl: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    normalized: np.ndarray
    pairs: dict


def task_comparisons(family: TaskFamily, n_grid: int = 20, *, progress_values=None,
                     show_progress: bool = False) -> TaskComparisons:
    """``compare_families`` (common range, unfolded progress, arithmetic means, tube radii, Remark 5)
    for every pair of tasks of ``family``, and the App. C version of the task distance (symmetric KL
    between the two mean trajectories on the same grid).  Returns :class:`TaskComparisons`."""
    if not isinstance(family, TaskFamily):
        raise ValueError(f"family must be a TaskFamily, got {type(family).__name__}")
    n_grid = check_positive_int("n_grid", n_grid, minimum=2)
    P = family.probs
    n = P.shape[0]
    t = family_progress(P, family.labels) if progress_values is None else np.asarray(progress_values)
    mats = {k: np.zeros((n, n)) for k in ("d_b", "sym_kl", "lo", "hi", "normalized")}
    pairs = {}
    bar = progress_bar(n * (n - 1) // 2, "task pairs", show_progress)
    for i in range(n):
        for j in range(i + 1, n):
            c = compare_families(P[i], P[j], progress_1=t[i], progress_2=t[j], n_grid=n_grid)
            kl = _trap_mean(_symkl_rows(c.mean_1, c.mean_2), c.grid)
            for key, v in (("d_b", c.mean_distance), ("sym_kl", kl), ("lo", c.range[0]), ("hi", c.range[1]),
                           ("normalized", c.mean_normalized_distance)):
                mats[key][i, j] = mats[key][j, i] = v
            pairs[(i, j)] = c
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return TaskComparisons(pairs=pairs, **mats)


def reindex_runs(P, labels, n_grid: int = 10, *, progress_values=None) -> tuple[np.ndarray, np.ndarray]:
    """Every run of ``P`` (..., T, N, K) re-indexed on ``n_grid`` values equally spaced over ITS OWN
    range of unfolded progress (eqs. 3-4, ``reindex_trajectory``; no end point repeated, no leg
    dropped).  Returns ``(models, grids)``: float64 (..., n_grid, N, K) and (..., n_grid)."""
    n_grid = check_positive_int("n_grid", n_grid, minimum=2)
    P = np.asarray(P)
    if P.ndim < 3:
        raise ValueError(f"P must have shape (..., T, N, K), got {P.shape}")
    lead, (T, N, K) = P.shape[:-3], P.shape[-3:]
    flat = P.reshape((-1, T, N, K))
    t = (family_progress(flat, labels) if progress_values is None
         else np.asarray(progress_values, dtype=np.float64).reshape(-1, T))
    models = np.empty((flat.shape[0], n_grid, N, K))
    grids = np.empty((flat.shape[0], n_grid))
    for r in range(flat.shape[0]):
        u = unfolded_progress(t[r])
        grids[r] = np.linspace(u[0], u[-1], n_grid)
        models[r] = reindex_trajectory(flat[r], grids[r], progress_values=t[r])
    return models.reshape(lead + (n_grid, N, K)), grids.reshape(lead + (n_grid,))


_METRICS = ("bhattacharyya", "sym_kl")


def _distances(metric, X, Y=None):
    f = bhattacharyya_matrix if metric == "bhattacharyya" else symmetric_kl_matrix
    return np.asarray(f(X) if Y is None else f(X, Y), dtype=np.float64)


@dataclass
class FamilyPicture:
    """An InPCA picture of a family (Result 1): fitted on the re-indexed runs alone.

    ``emb`` the :class:`~tasknb.geometry.InPCA` of the m = n_tasks * n_seeds * n_grid models;
    ``runs`` (n_tasks, n_seeds, n_grid, k) their coordinates; ``means`` (n_tasks, n_grid, k) each
    task's mean trajectory (``family_tube`` on the range all its seeds cover), ``p0`` (k,) the
    uniform model and ``pstar`` (k,) the truth, all three placed by ``InPCA.project`` (out of
    sample); ``models`` (m, N, K) the fitted models (for ``explained_stress_null``); ``metric``."""

    emb: object
    runs: np.ndarray
    means: np.ndarray
    p0: np.ndarray
    pstar: np.ndarray
    models: np.ndarray
    metric: str


def family_picture(family: TaskFamily, n_grid: int = 10, k: int = 3, *, metric: str = "bhattacharyya",
                   progress_values=None, models=None) -> FamilyPicture:
    """InPCA (eqs. 9-11 of S) fitted on the models alone: every run re-indexed on its own range
    (:func:`reindex_runs`), the distance matrix ``metric`` ("bhattacharyya", eq. 2, or "sym_kl", App. C)
    between them, ``inpca(D, k)``; the tasks' mean trajectories (``family_tube``), P_0 and P_*
    (``reference_points``; P_* clipped at 1e-12 for the symmetric KL) are then placed with
    ``InPCA.project``, so they do not move the axes.  ``models`` (m, N, K): reuse re-indexed models.
    Returns :class:`FamilyPicture`."""
    if not isinstance(family, TaskFamily):
        raise ValueError(f"family must be a TaskFamily, got {type(family).__name__}")
    check_choice("metric", metric, _METRICS)
    P, labels = family.probs, family.labels
    nt, S, T, N, K = P.shape
    t = family_progress(P, labels) if progress_values is None else np.asarray(progress_values)
    X = reindex_runs(P, labels, n_grid, progress_values=t)[0].reshape(-1, N, K) if models is None else np.asarray(models)
    emb = inpca(_distances(metric, X), k)
    means = np.stack([family_tube(P[i], progress_values=t[i], n_grid=n_grid).mean for i in range(nt)])
    p0, pstar = reference_points(labels, K, clip=1e-12 if metric == "sym_kl" else None)
    xyz_means = emb.project(_distances(metric, means.reshape(-1, N, K), X)).reshape(nt, n_grid, -1)
    ref = emb.project(_distances(metric, np.stack([p0, pstar]), X))
    return FamilyPicture(emb=emb, runs=emb.coords.reshape(nt, S, n_grid, -1), means=xyz_means, p0=ref[0],
                         pstar=ref[1], models=X, metric=metric)


def mantel_null(A, B, n_perm: int = 200, seed: int = 0) -> tuple[float, np.ndarray]:
    """Spearman rank correlation of the off-diagonal entries of two (n, n) distance matrices over
    the same n tasks, and its null: the same correlation after relabelling the tasks of ``B`` by a
    random permutation (draw i from ``numpy_stream(seed, "s4.mantel", i)``), a Mantel test.
    Returns ``(rho, null)`` with null (n_perm,) float64."""
    from scipy.stats import spearmanr

    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.shape != B.shape or A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] < 3:
        raise ValueError(f"A and B must be two (n, n) matrices of the same shape with n >= 3, got {A.shape}, {B.shape}")
    n_perm = check_positive_int("n_perm", n_perm)
    iu = np.triu_indices(A.shape[0], 1)
    rho = float(spearmanr(A[iu], B[iu])[0])
    null = np.empty(n_perm)
    for i in range(n_perm):
        p = numpy_stream(check_seed("seed", seed), "s4.mantel", i).permutation(A.shape[0])
        null[i] = spearmanr(A[iu], B[np.ix_(p, p)][iu])[0]
    return rho, null
