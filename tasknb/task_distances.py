"""Distances between tasks measured with trained networks: the complexity of each dataset of a task
family (and of the union of two), the asymmetric static distance it defines, and fine-tuning times
from one task's network to another task.

**Data per run.** A family experiment runs K realizations at once (one vmapped stack of K small MLPs,
:mod:`tasknb.convergence`). Realization k gets its own draw of every task (:func:`run_data`: stream
``("task_distances.draw", k)`` of the caller's seed passed as the draw seed of
:func:`tasknb.task_family.task_data`), so the K values of a quantity are independent realizations
(data, initialisation, mini-batch order) and paired differences over k have honest standard errors.
``split="test"`` gives a second draw of the same task from the held-out images (disjoint from the
``"train"`` draw): the "same task, fresh images" control.

**Complexity.** :func:`measure_datasets` trains one stack per dataset from the same K initial
networks (stream ``"task_distances.init"``; common random numbers: run k starts from one network on
every dataset) until the training loss reaches ``spec.threshold`` or ``spec.max_steps``, then reads
for each run the ingredients of C_beta(w0) = L(w0) + (beta/2)[||w0||^2/lam^2 + log|I + c H_F|]
(:mod:`tasknb.complexity`): the summed cross-entropy L(w0), ||w0||^2, and the nonzero eigenvalues of
the Fisher H_F of the summed loss (:mod:`tasknb.fisher`, exact through the Gram matrix). They are
computed once per network; :meth:`Measured.complexity` re-evaluates C at any beta cheaply.

**Static distance.** d_beta(a -> b) = C_beta(a u b) - C_beta(a) (:func:`distance_matrix`, one
(T, T, K) array), the union being the concatenation of a's and b's data of the same run; the union
of a with its own fresh draw is the diagonal (the cost of doubling the data with nothing new to learn).

**Fine-tuning times.** :func:`fine_tuning_times`: every source stack of networks (pre-trained
weights, or a random initialisation) trained on every target until the threshold; one (S, T, K)
array of steps, ``inf`` where a run never reached the threshold within ``max_steps``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from .complexity import complexity_from_eigenvalues, complexity_ingredients
from .convergence import ThresholdSpec, init_mlp, mlp_module, train_until_threshold
from .device import derived_seed, get_device
from .seed_runs import progress_bar
from .task_family import N_CLASSES, TASKS, task_data
from .validation import check_choice, check_positive_int, check_positive_real, check_seed

__all__ = ["RunData", "Measured", "Family", "FineTuneTimes", "run_data", "union_data", "initial_params",
           "measure_datasets", "measure_family", "distance_matrix", "fine_tuning_times", "spearman"]


@dataclass(frozen=True)
class RunData:
    """One dataset for K runs: ``X`` (K, n, d) float32, ``y`` (K, n) int64 (run k's own draw)."""
    name: str
    X: torch.Tensor
    y: torch.Tensor

    @property
    def n_runs(self) -> int:
        return int(self.X.shape[0])

    @property
    def n(self) -> int:
        return int(self.X.shape[1])


def run_data(name: str, n: int, n_runs: int, seed: int = 0, split: str = "train", size: int = 14) -> RunData:
    """``n`` images of task ``name`` for each of ``n_runs`` runs, run k's from the draw seed
    ``derived_seed(seed, "task_distances.draw", k)`` (the same k gives the same draw for every task
    name and split; the task family keys its own streams by task and split)."""
    check_choice("name", name, TASKS)
    n = check_positive_int("n", n)
    n_runs = check_positive_int("n_runs", n_runs)
    seed = check_seed("seed", seed)
    tasks = [task_data(name, n, split=split, seed=derived_seed(seed, "task_distances.draw", k), size=size)
             for k in range(n_runs)]
    suffix = "" if split == "train" else f"'{split}"
    return RunData(name + suffix, torch.stack([t.X for t in tasks]), torch.stack([t.y for t in tasks]))


def union_data(a: RunData, b: RunData) -> RunData:
    """Run k's data of ``a`` followed by run k's data of ``b`` (name ``"a+b"``)."""
    for nm, t in (("a", a), ("b", b)):
        if not isinstance(t, RunData):
            raise ValueError(f"{nm} must be a RunData (from run_data), got {type(t).__name__}")
    if a.X.shape[0] != b.X.shape[0] or a.X.shape[2] != b.X.shape[2]:
        raise ValueError(f"a and b must have the same runs and features, got {tuple(a.X.shape)} and {tuple(b.X.shape)}")
    return RunData(f"{a.name}+{b.name}", torch.cat([a.X, b.X], dim=1), torch.cat([a.y, b.y], dim=1))


@dataclass
class Measured:
    """The complexity ingredients of K trained networks on one dataset (one value per run).

    ``loss`` summed cross-entropy at w0, ``sq_norm`` ||w0||^2, ``eigenvalues`` the K arrays of the
    Fisher's nonzero eigenvalues, ``steps`` the steps the run took to reach the threshold (inf if it
    did not), ``final_loss`` the mean training cross-entropy at the end, ``params`` the stacked final
    weights (on the CPU), ``n`` the dataset size."""
    name: str
    n: int
    loss: np.ndarray
    sq_norm: np.ndarray
    eigenvalues: list
    steps: np.ndarray
    final_loss: np.ndarray
    params: dict = field(repr=False)

    def complexity(self, beta: float, lam: float = 1.0, convention: str = "minimised") -> np.ndarray:
        """C_beta of each run (K,), from the stored eigenvalues (no new Fisher)."""
        return np.array([float(complexity_from_eigenvalues(self.loss[k], self.sq_norm[k], self.eigenvalues[k],
                                                           beta, lam, convention).total)
                         for k in range(len(self.loss))])


def _ingredients(params: dict, k: int, X: torch.Tensor, y: torch.Tensor, fisher: str, n_label_samples: int,
                 seed: int) -> tuple[float, float, np.ndarray]:
    loss, sq, ev = complexity_ingredients(mlp_module(params, k), X, y, fisher, n_label_samples, seed)
    return loss, sq, np.asarray(ev, dtype=float)


def initial_params(n_runs: int, d_in: int, hidden: int, seed: int = 0, device="auto") -> dict:
    """The K initial networks every dataset of :func:`measure_datasets` starts from (also the
    "random initialisation" source of a fine-tuning experiment)."""
    return init_mlp(n_runs, d_in, hidden, N_CLASSES, seed=derived_seed(seed, "task_distances.init"), device=device)


def measure_datasets(datasets: dict, hidden: int, spec: ThresholdSpec, seed: int = 0, fisher: str = "true",
                     n_label_samples: int = 1, device="auto", progress: bool = False) -> dict:
    """Train K networks per dataset (``datasets``: key -> :class:`RunData`, all with the same K and d)
    and measure their complexity ingredients; returns key -> :class:`Measured`.

    All datasets start from the same K initial networks (``init_mlp(K, d, hidden, seed=
    derived_seed(seed, "task_distances.init"))``); dataset i's mini-batches come from
    ``derived_seed(seed, "task_distances.train", i)`` and its Fisher labels from
    ``derived_seed(seed, "task_distances.fisher", i, k)``."""
    if not isinstance(datasets, dict) or not datasets:
        raise ValueError("datasets must be a non-empty dict of key -> RunData")
    hidden = check_positive_int("hidden", hidden)
    seed = check_seed("seed", seed)
    check_choice("fisher", fisher, ("true", "expected", "empirical"))
    n_label_samples = check_positive_int("n_label_samples", n_label_samples)
    shapes = {(d.X.shape[0], d.X.shape[2]) for d in datasets.values()}
    if len(shapes) != 1:
        raise ValueError(f"all datasets must have the same number of runs and features, got {sorted(shapes)}")
    K, d_in = shapes.pop()
    dev = get_device(device)
    init = initial_params(K, d_in, hidden, seed, dev)
    out = {}
    bar = progress_bar(len(datasets), "train + Fisher per dataset", progress)
    for i, (key, data) in enumerate(datasets.items()):
        X, y = data.X.to(dev), data.y.to(dev)
        params = {k: v.clone() for k, v in init.items()}
        runs = train_until_threshold(params, X, y, spec, seed=derived_seed(seed, "task_distances.train", i))
        ing = [_ingredients(runs.params, k, X[k], y[k], fisher, n_label_samples,
                            derived_seed(seed, "task_distances.fisher", i, k)) for k in range(K)]
        out[key] = Measured(data.name, data.n, np.array([g[0] for g in ing]), np.array([g[1] for g in ing]),
                            [g[2] for g in ing], np.asarray(runs.steps, dtype=float),
                            np.asarray(runs.final_loss, dtype=float),
                            {k: v.detach().cpu() for k, v in runs.params.items()})
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def distance_matrix(single: dict, unions: dict, names, beta: float, lam: float = 1.0,
                    convention: str = "minimised") -> np.ndarray:
    """d_beta(a -> b) = C_beta(a u b) - C_beta(a) for every ordered pair of ``names``: a (T, T, K) array
    (row a the first task, column b the second; run k's values).

    ``single[a]`` is the :class:`Measured` of task a, ``unions[(a, b)]`` that of the union of a and b
    (looked up as (a, b) or (b, a): the union is one dataset), ``unions[(a, a)]`` that of a with its
    own fresh draw (the diagonal)."""
    beta = check_positive_real("beta", beta)
    lam = check_positive_real("lam", lam)
    names = list(names)
    if not names:
        raise ValueError("names must be a non-empty list of task names")
    C1 = {}
    for a in names:
        if a not in single:
            raise ValueError(f"single has no measurement for task {a!r}; it has {sorted(single)}")
        C1[a] = single[a].complexity(beta, lam, convention)
    K = len(next(iter(C1.values())))
    D = np.zeros((len(names), len(names), K))
    cache = {}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            key = (a, b) if (a, b) in unions else (b, a)
            if key not in unions:
                raise ValueError(f"unions has no measurement for the pair ({a!r}, {b!r})")
            if key not in cache:
                cache[key] = unions[key].complexity(beta, lam, convention)
            D[i, j] = cache[key] - C1[a]
    return D


@dataclass
class Family:
    """The measurements of a task family (:func:`measure_family`): ``names``; ``train[a]`` and
    ``fresh[a]`` the two disjoint draws of task a ("train" and held-out "test" images) per run;
    ``single[a]`` the networks trained on ``train[a]``; ``unions[(a, b)]`` (a before b in ``names``)
    those trained on ``train[a] + train[b]``, ``unions[(a, a)]`` on ``train[a] + fresh[a]``."""
    names: tuple
    train: dict
    fresh: dict
    single: dict
    unions: dict
    hidden: int
    seed: int

    def distances(self, beta: float, lam: float = 1.0, convention: str = "minimised") -> np.ndarray:
        """d_beta(a -> b) for every ordered pair, (T, T, K) (see :func:`distance_matrix`)."""
        return distance_matrix(self.single, self.unions, self.names, beta, lam, convention)

    def complexities(self, beta: float, lam: float = 1.0, convention: str = "minimised") -> np.ndarray:
        """C_beta of each task's networks, (T, K)."""
        return np.stack([self.single[a].complexity(beta, lam, convention) for a in self.names])


def measure_family(names, n: int, n_runs: int, hidden: int, spec: ThresholdSpec, seed: int = 0,
                   size: int = 14, fisher: str = "true", n_label_samples: int = 1, device="auto",
                   progress: bool = False) -> Family:
    """Draw every task of ``names`` twice per run (train and held-out images, :func:`run_data`),
    train and measure the T single tasks, the T(T-1)/2 unions of two tasks and the T unions of a task
    with its fresh draw (:func:`measure_datasets`; T(T+3)/2 stacks of ``n_runs`` networks)."""
    names = tuple(names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"names must list >= 2 distinct task names from {TASKS}, got {names}")
    for a in names:
        check_choice("names", a, TASKS)
    train = {a: run_data(a, n, n_runs, seed, "train", size) for a in names}
    fresh = {a: run_data(a, n, n_runs, seed, "test", size) for a in names}
    datasets = {a: train[a] for a in names}
    for i, a in enumerate(names):
        datasets[(a, a)] = union_data(train[a], fresh[a])
        for b in names[i + 1:]:
            datasets[(a, b)] = union_data(train[a], train[b])
    m = measure_datasets(datasets, hidden, spec, seed, fisher, n_label_samples, device, progress)
    return Family(names, train, fresh, {a: m[a] for a in names},
                  {k: v for k, v in m.items() if isinstance(k, tuple)}, hidden, seed)


@dataclass(frozen=True)
class FineTuneTimes:
    """Steps to reach the loss threshold, ``steps`` (S, T, K) (inf: never within ``max_steps``),
    ``final_loss`` (S, T, K) mean training cross-entropy at the end, for sources ``sources`` (rows)
    and targets ``targets`` (columns); ``curves[(i, j)]`` = (evaluated steps (n,), losses (n, K)) of
    cell (i, j) (a converged run keeps its last value)."""
    sources: tuple
    targets: tuple
    steps: np.ndarray
    final_loss: np.ndarray
    max_steps: int
    threshold: float
    curves: dict = field(repr=False, default_factory=dict)

    @property
    def converged(self) -> np.ndarray:
        return np.isfinite(self.steps)

    def steps_at(self, threshold: float | None = None, budget: int | None = None) -> np.ndarray:
        """(S, T, K) steps to reach ``threshold`` (>= the trained threshold; read off the loss
        curves) within a step ``budget`` (<= ``max_steps``; later arrivals become inf): what a run
        stopped at that threshold, or cut at that budget, would have recorded."""
        thr = self.threshold if threshold is None else check_positive_real("threshold", threshold)
        if thr < self.threshold:
            raise ValueError(f"threshold must be >= the trained threshold {self.threshold:g}, got {thr:g}")
        budget = self.max_steps if budget is None else check_positive_int("budget", budget)
        if budget > self.max_steps:
            raise ValueError(f"budget must be <= max_steps = {self.max_steps}, got {budget}")
        out = np.full(self.steps.shape, np.inf)
        for (i, j), (cs, cl) in self.curves.items():
            hit = cl <= thr                                     # (n, K)
            first = np.where(hit.any(0), np.asarray(cs, dtype=float)[hit.argmax(0)], np.inf)
            out[i, j] = np.where(first <= budget, first, np.inf)
        return out


def fine_tuning_times(sources: dict, targets: dict, spec: ThresholdSpec, seed: int = 0, device="auto",
                      progress: bool = False) -> FineTuneTimes:
    """Train every source stack (``sources``: name -> stacked parameters (K, ...), e.g.
    ``Measured.params`` or a fresh ``init_mlp``) on every target (``targets``: name -> :class:`RunData`
    with the same K) until ``spec.threshold``; target j's mini-batches come from
    ``derived_seed(seed, "task_distances.finetune", j)`` for every source (common random numbers)."""
    if not isinstance(sources, dict) or not sources or not isinstance(targets, dict) or not targets:
        raise ValueError("sources and targets must be non-empty dicts (name -> params, name -> RunData)")
    seed = check_seed("seed", seed)
    if not isinstance(spec, ThresholdSpec):
        raise ValueError(f"spec must be a ThresholdSpec, got {type(spec).__name__}")
    dev = get_device(device)
    S, T = len(sources), len(targets)
    K = next(iter(targets.values())).n_runs
    steps = np.full((S, T, K), np.inf)
    final = np.full((S, T, K), np.nan)
    curves = {}
    bar = progress_bar(S * T, "fine-tuning", progress)
    for i, p0 in enumerate(sources.values()):
        for j, data in enumerate(targets.values()):
            params = {k: v.detach().to(dev).clone() for k, v in p0.items()}
            with warnings.catch_warnings():  # non-converged runs are the result here (inf), not a problem
                warnings.simplefilter("ignore", RuntimeWarning)
                runs = train_until_threshold(params, data.X.to(dev), data.y.to(dev), spec,
                                             seed=derived_seed(seed, "task_distances.finetune", j))
            steps[i, j] = np.asarray(runs.steps, dtype=float)
            final[i, j] = np.asarray(runs.final_loss, dtype=float)
            curves[(i, j)] = (np.asarray(runs.curve_steps), np.asarray(runs.curve_loss, dtype=float))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return FineTuneTimes(tuple(sources), tuple(targets), steps, final, int(spec.max_steps), float(spec.threshold),
                         curves)


def spearman(a, b) -> float:
    """Spearman rank correlation of two 1-D arrays (average ranks for ties; inf ranks last)."""
    a, b = np.asarray(a, dtype=float).ravel(), np.asarray(b, dtype=float).ravel()
    if a.shape != b.shape or a.size < 3:
        raise ValueError(f"a and b must be 1-D arrays of one length >= 3, got {a.shape} and {b.shape}")
    ra, rb = _ranks(a), _ranks(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    den = np.sqrt((ra ** 2).sum() * (rb ** 2).sum())
    return float((ra * rb).sum() / den) if den > 0 else 0.0


def _ranks(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="mergesort")
    r = np.empty(len(x))
    r[order] = np.arange(len(x), dtype=float)
    xs = x[order]
    i = 0
    while i < len(x):  # average ranks over ties (inf ties with inf)
        j = i
        while j + 1 < len(x) and xs[j + 1] == xs[i]:
            j += 1
        r[order[i:j + 1]] = (i + j) / 2.0
        i = j + 1
    return r
