"""Episodic meta-learning versus supervised learning, and k-way cross-entropy tasks (Ramesh et al.
2023, "S", Result 4, Figs. 4, 5, A2, App. A): the protocol of notebook S5.

An *episode* draws ``way`` (C^w) of the training classes and, for each, ``shot`` (s) support
images D_s and ``query`` (q) query images D_q.  The prototypical loss of Snell et al. (2017) turns
the support features into one centroid per class,

    phi_c = s^-1 sum_{x in D_s, y*(x) = c} phi(x; w_1),          c = 1..C^w   (Result 4 of S)

and scores each query image by its negative *squared Euclidean* distance to the centroids,
``logit_c(x) = -||phi(x; w_1) - phi_c||^2``, trained with the cross-entropy of the query labels.
Only the backbone ``w_1`` (``SmallCNN.features``) is trained, with the paper's recipe
(``trajectories.PAPER_RECIPE``: layer-normed features, SGD-Nesterov, cosine schedule), like the
supervised baseline.  Every model is read through the same feature readout (default
``"prototype_ml"``, scale- and rotation-invariant) on the ten classes, so all runs are points of one
prediction space.

``Episode``, ``sample_episode``, ``episode_stream``   episodes from a label vector, seeded
``prototypical_loss``             the loss above (kernels ``tasknb.readout.prototypes`` / ``prototypical_logits``)
``episode_seed``                  the episode stream of seed k (its own ``derived_seed`` purpose)
``record_episodic_trajectories``  prototypical backbones of several seeds, recorded
``record_methods``                supervised + episodic at several ways from one RunConfig
``kway_tasks``, ``record_kway_tasks``   k-class subsets trained with cross-entropy (Fig. 4b, 5)
``progress_gained``               progress per checkpoint minus the run's start (``Trajectories.progress`` gives it raw)
``Lengths``, ``run_lengths``      Riemann length (eq. 6),
                                  progress gained, unfolded progress travelled, their ratios
``EndComparison``, ``compare_ends``   two families over their common unfolded-progress range
                                  (``compare_families``) and the same-method seed null at its top
``pair_radii``                    tube radii of disjoint pairs of runs (independent estimates)
``distance_to``, ``distance_to_truth``   d_B of final models to a model / to P_*
``Picture``, ``inpca_picture``    InPCA fitted on the models, P_0, P_* and means projected, chi_3 null
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import training_images
from ..device import derived_seed, generator, get_device, numpy_stream
from ..networks.cnn import init_cnn
from ..geometry import bhattacharyya, inpca_with_placed, progress, reference_points, riemann_length
from ..readout import prediction_set, prototypical_logits
from ..trajectories import (Trajectories, progress_bar, record_seeds,
                            record_trajectories, run_config, run_optimizer, trajectories_from_probs)
from ..trajectory_geometry import compare_families, family_tube, reindex_trajectory, unfolded_progress
from ..validation import check_int_sequence, check_label_tensor, check_positive_int, check_seed

__all__ = ["Episode", "sample_episode", "episode_stream", "prototypical_loss", "episode_seed",
           "record_episodic_trajectories", "record_methods", "kway_tasks", "record_kway_tasks",
           "progress_gained", "Lengths", "run_lengths", "EndComparison", "compare_ends", "pair_radii",
           "distance_to", "distance_to_truth", "Picture", "inpca_picture"]


@dataclass
class Episode:
    """One episode, class-major (the ``shot`` support images of episode class 0 first, ...).

    classes : int64 (way,), the task labels (0..C-1 of the training task) of the episode classes
    support : int64 (way*shot,), indices of the support images into the label vector
    support_labels : int64 (way*shot,), episode labels 0..way-1 (``classes[j]`` has label j)
    query : int64 (way*query,), indices of the query images (disjoint from ``support``)
    query_labels : int64 (way*query,), episode labels 0..way-1
    """

    classes: torch.Tensor
    support: torch.Tensor
    support_labels: torch.Tensor
    query: torch.Tensor
    query_labels: torch.Tensor

    @property
    def way(self) -> int:
        return len(self.classes)


def _check_episode_args(way, shot, query, n_classes):
    way = check_positive_int("way", way, minimum=2)
    if way > n_classes:
        raise ValueError(f"way must be an integer in [2, {n_classes}] (the number of training classes), got {way}")
    shot = check_positive_int("shot", shot)
    query = check_positive_int("query", query)
    return way, shot, query


def _class_index(labels):
    if not isinstance(labels, torch.Tensor):
        labels = torch.as_tensor(np.asarray(labels))
    if labels.ndim != 1 or labels.numel() == 0 or labels.dtype.is_floating_point or bool((labels < 0).any()):
        raise ValueError("labels must be a non-empty 1-D integer array of task labels >= 0")
    labels = labels.cpu().long()
    n_classes = int(labels.max()) + 1
    return [torch.nonzero(labels == c).flatten() for c in range(n_classes)]


def _draw(index, way, shot, query, g) -> Episode:
    present = [c for c, idx in enumerate(index) if len(idx) > 0]
    chosen = torch.tensor(present)[torch.randperm(len(present), generator=g)[:way]]
    sup, qry = [], []
    for c in chosen.tolist():
        idx = index[c]
        pick = idx[torch.randperm(len(idx), generator=g)[:shot + query]]
        sup.append(pick[:shot])
        qry.append(pick[shot:])
    ar = torch.arange(way)
    return Episode(classes=chosen.long(), support=torch.cat(sup), support_labels=ar.repeat_interleave(shot),
                   query=torch.cat(qry), query_labels=ar.repeat_interleave(query))


def _check_counts(index, way, shot, query):
    counts = [len(i) for i in index if len(i) > 0]
    if len(counts) < way:
        raise ValueError(f"way must be an integer in [2, {len(counts)}] (classes present in labels), got {way}")
    if min(counts) < shot + query:
        raise ValueError(f"shot + query must be at most {min(counts)} (images of the smallest class), "
                         f"got shot={shot}, query={query}")


def sample_episode(labels, way: int, shot: int, query: int, g: torch.Generator) -> Episode:
    """One episode from task labels ``labels`` (n,) (integers >= 0): ``way`` distinct classes drawn
    uniformly among those present, then ``shot + query`` distinct images of each, drawn without
    replacement with the CPU generator ``g`` (so a seed gives the same episode on every device).
    Every present class needs at least ``shot + query`` images."""
    index = _class_index(labels)
    way, shot, query = _check_episode_args(way, shot, query, sum(len(i) > 0 for i in index))
    _check_counts(index, way, shot, query)
    if not isinstance(g, torch.Generator):
        raise ValueError(f"g must be a torch.Generator, got {type(g).__name__}")
    return _draw(index, way, shot, query, g)


def episode_stream(labels, way: int, shot: int, query: int, seed: int):
    """Endless episodes of :func:`sample_episode` drawn from a generator seeded with ``seed``."""
    index = _class_index(labels)
    way, shot, query = _check_episode_args(way, shot, query, sum(len(i) > 0 for i in index))
    _check_counts(index, way, shot, query)
    g = generator(check_seed("seed", seed))
    while True:
        yield _draw(index, way, shot, query, g)


def prototypical_loss(support_features, support_labels, query_features, query_labels, way: int) -> torch.Tensor:
    """The prototypical loss: mean cross-entropy of :func:`tasknb.readout.prototypical_logits` against the query
    labels (n_q,) in 0..way-1.  A scalar tensor (differentiable in the features).  Equal to
    log(way) when all features coincide; near 0 when queries sit on well-separated centroids."""
    logits = prototypical_logits(support_features, support_labels, query_features, way)
    check_label_tensor("query_labels", query_labels, query_features.shape[0], logits.shape[1])
    return F.cross_entropy(logits, query_labels)


def episode_seed(seed: int, k: int) -> int:
    """The episode-stream seed of seed k of a run with base seed ``seed``:
    ``derived_seed(seed, "s5.episodes", k)``, independent of the initialisation (``init_seed``) and
    of the supervised batch order (``batch_seed``)."""
    return derived_seed(check_seed("seed", seed), "s5.episodes", check_positive_int("k", k, minimum=0))


def record_episodic_trajectories(way: int = 5, shot: int = 5, query: int = 10, steps: int | None = None, *,
                                 config=None, device="auto", progress: bool = False,
                                 **changes) -> Trajectories:
    """Train the SmallCNN backbones of a run with the prototypical loss on episodes, recording them
    in the prediction space of the union task (Result 4 of S).

    Parameters
    ----------
    way, shot, query : episode size C^w >= 2 (at most len(classes)), s >= 1 support and q >= 1
        query images per class; one optimizer step = one episode of way*(shot+query) images.
    steps : number of episodes (optimizer steps), a RunConfig field (default 300).
    config : a :class:`~tasknb.trajectories.RunConfig` (or None); RunConfig fields as keywords
        (``dataset``, ``classes``, ``n_seeds``, ``n_train``, ``optimizer``, ``lr``, ``channels``,
        ``norm``, ...) fill in or replace its fields; the defaults are RunConfig's, i.e. the paper's
        recipe (:data:`~tasknb.trajectories.PAPER_RECIPE`: layer-normed features, SGD-Nesterov,
        cosine schedule, weight decay) and the readout ``"prototype_ml"``.  Any feature readout
        works (the backbone has no head of its own); ``"softmax"`` raises.  The training task is
        drawn exactly as in ``trajectories.record_trajectories``; ``batch_size`` is not used (an
        episode is the batch).  Seed k starts from ``init_cnn(len(classes), channels,
        init_seed(seed, k), norm=norm, head_bias=head_bias)`` -- the network the supervised run of
        that seed starts from -- and draws its episodes from :func:`episode_seed` ``(seed, k)``.
        The backbone is read through ``prediction_set(dataset, union_classes, n_test, readout,
        n_imprint, data_seed)``, so a supervised run recorded by ``record_trajectories`` with the
        same ``union_classes``, ``n_test``, ``readout``, ``n_imprint`` and ``data_seed`` lies in the
        same space.
    device, progress : as in ``record_trajectories``.

    Returns
    -------
    Trajectories with probs (n_seeds, T, n_test, len(union_classes)) float32, ``config`` holding
    the run and the episode sizes (``method="prototypical"``).  Same arguments -> same numbers on
    a device.
    """
    if steps is not None:
        changes["steps"] = steps
    c = run_config(config, None, **changes)
    if c.readout == "softmax":
        raise ValueError("readout must be a feature readout such as 'prototype_ml' for a prototypical backbone "
                         "(it has no head of its own), got 'softmax'")
    way, shot, query = _check_episode_args(way, shot, query, len(c.classes))
    dev = get_device(device)
    config_dict = dict(method="prototypical", way=way, shot=shot, query=query, **c.to_dict())

    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    _check_counts(_class_index(ytr), way, shot, query)
    pset = prediction_set(c.dataset, c.union_classes, c.n_test, readout=c.readout, n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)
    Xtr = Xtr.to(dev)

    def build(k, s):
        model = init_cnn(len(c.classes), c.channels, s, dev, norm=c.norm, head_bias=c.head_bias)
        opt, schedule = run_optimizer(model.parameters(), c)
        episodes = episode_stream(ytr, way, shot, query, episode_seed(c.seed, k))

        def train_step(_step):
            ep = next(episodes)
            f = model.features(Xtr[torch.cat([ep.support, ep.query]).to(dev)])
            n_s = len(ep.support)
            loss = prototypical_loss(f[:n_s], ep.support_labels.to(dev), f[n_s:], ep.query_labels.to(dev), way)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model, train_step, schedule

    probs, _ = record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc=f"{way}-way episodes")
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)


# ----------------------------------------------------------------------------- the chapter's protocol
def record_methods(ways, shot: int, query: int, *, config=None, device="auto", progress: bool = False,
                   **changes) -> dict:
    """Supervised learning on all of ``config.classes`` and prototypical episodic learning at each way
    of ``ways``, every run of one (seed, k) from the same network, read in one prediction space.

    Returns ``{"supervised": Trajectories, "<w>-way": Trajectories, ...}`` (:func:`record_trajectories`
    and :func:`record_episodic_trajectories` with the same RunConfig)."""
    c = run_config(config, None, **changes)
    ways = check_int_sequence("ways", ways, minimum=2, maximum=len(c.classes))
    runs = {"supervised": record_trajectories(c, device=device, progress=progress)}
    for w in ways:
        runs[f"{w}-way"] = record_episodic_trajectories(w, shot, query, config=c, device=device, progress=progress)
    return runs


def kway_tasks(ways, n_tasks: int, seed: int, classes=tuple(range(10))) -> dict:
    """``n_tasks`` distinct k-class subsets of ``classes`` for each way k of ``ways``, drawn uniformly
    (without repeats within a way) from ``numpy_stream(seed, "s5.kway_tasks", k)``.
    Returns ``{k: [tuple of k sorted classes, ...]}``."""
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    ways = check_int_sequence("ways", ways, minimum=2, maximum=len(classes) - 1)
    n_tasks = check_positive_int("n_tasks", n_tasks, minimum=2)
    seed = check_seed("seed", seed)
    out = {}
    for k in ways:
        n_max = math.comb(len(classes), k)
        if n_tasks > n_max:
            raise ValueError(f"n_tasks must be at most {n_max} (the {k}-class subsets of {len(classes)} classes), "
                             f"got {n_tasks}")
        rng = numpy_stream(seed, "s5.kway_tasks", k)
        picked = []
        while len(picked) < n_tasks:
            t = tuple(sorted(int(x) for x in np.asarray(classes)[rng.choice(len(classes), k, replace=False)]))
            if t not in picked:
                picked.append(t)
        out[k] = picked
    return out


def record_kway_tasks(tasks: dict, *, config=None, device="auto", progress: bool = False, **changes) -> dict:
    """Cross-entropy training on each k-class task of ``tasks`` (``kway_tasks``), one network per task
    with a head of its own k classes, read through the feature readout of ``config`` on its
    ``union_classes`` (default all ten).  Every task starts from one network, ``init_seed(seed, 0)``
    (the start of seed 0 of the supervised run of ``config``), with the batch order
    ``batch_seed(seed, 0)`` over its own images, so the tasks differ only by their classes.  Returns ``{k: Trajectories}`` with probs (n_tasks, T, N, K) (axis 0 the
    tasks), ``config["tasks"]`` the class tuples."""
    c = run_config(config, None, **changes)
    if c.readout == "softmax":
        raise ValueError("readout must be a feature readout such as 'prototype_ml' (the tasks have different heads)")
    out = {}
    bar = progress_bar(sum(len(v) for v in tasks.values()) * c.steps, "k-way tasks", progress)
    for k, task_list in tasks.items():
        trajs = []
        for i, cls in enumerate(task_list):
            trajs.append(record_trajectories(c, classes=tuple(cls), union_classes=c.union_classes, n_seeds=1,
                                             device=device))
            if bar is not None:
                bar.update(c.steps)
        first = trajs[0]
        out[k] = Trajectories(probs=np.concatenate([t.probs for t in trajs]), steps=first.steps, labels=first.labels,
                              seeds=list(range(len(trajs))), classes=first.classes,
                              accuracy=np.concatenate([t.accuracy for t in trajs]),
                              config=dict(method="cross_entropy", way=k, tasks=[list(t) for t in task_list],
                                          **{**c.to_dict(), "n_seeds": 1}))
    if bar is not None:
        bar.close()
    return out


def progress_gained(probs, labels) -> np.ndarray:
    """Progress (eq. 4) of every checkpoint of runs ``probs`` (K, T, N, C) minus that of their first
    checkpoint: (K, T) float64, 0 at the start of every run.

    Read through a feature readout, untrained networks of different seeds sit at different progress
    (their random features separate the classes to different degrees), so runs that start apart
    may share no range of progress at all.  Re-indexing by progress *gained* (``progress_values=``
    of ``family_tube`` / ``compare_families``; unfolded, it is the unfolded progress travelled)
    lines every run up at its own start, as the paper's runs are lined up at P_0."""
    p = np.asarray(probs, dtype=np.float64)
    K, T, N, C = p.shape
    t = np.asarray(progress(p.reshape(K * T, N, C), labels)).reshape(K, T)
    return t - t[:, :1]


@dataclass
class Lengths:
    """Riemann length (eq. 6) of each seed's recorded run and what it is divided by.

    length (S,) the chord sum over the recorded checkpoints; gain (S,) = t_end - t_0, the progress
    gained over the untrained network (checkpoint 0); travelled (S,) = u_end - u_0, the unfolded
    progress (every rise and fall counted); per_progress (S,) = length / gain (nan where gain <= 0);
    efficiency (S,) = gain / length, progress gained per unit of Riemann length (defined for every
    run: 0 or negative for one that ends no closer to the truth than it started).
    """

    length: np.ndarray
    gain: np.ndarray
    travelled: np.ndarray
    per_progress: np.ndarray
    efficiency: np.ndarray


def run_lengths(traj: Trajectories, prog=None) -> Lengths:
    """:class:`Lengths` of the seeds of ``traj`` (progress from ``traj.progress()`` unless given)."""
    prog = traj.progress() if prog is None else np.asarray(prog, dtype=np.float64)
    P = traj.probs.astype(np.float64)
    length = np.array([riemann_length(P[s]) for s in range(P.shape[0])])
    gain = prog[:, -1] - prog[:, 0]
    travelled = np.array([u[-1] - u[0] for u in map(unfolded_progress, prog)])
    with np.errstate(divide="ignore", invalid="ignore"):
        per = np.where(gain > 0, length / np.where(gain > 0, gain, 1.0), np.nan)
    return Lengths(length=length, gain=gain, travelled=travelled, per_progress=per, efficiency=gain / length)


@dataclass
class EndComparison:
    """Two families of seeds (paired by seed index k) compared where they end.

    ``family`` the :class:`~tasknb.trajectory_geometry.FamilyComparison` over the common range of
    unfolded progress gained (:func:`progress_gained`); at its top u_hi: ``cross`` (K,) d_B(a_k(u_hi), b_k(u_hi)) and ``null`` (K,)
    d_B(b_k(u_hi), b_{k+1}(u_hi)) (consecutive seeds of family b, cyclically: the same-method seed
    null); ``cross_final`` / ``null_final`` the same for the last recorded models.
    """

    family: object
    cross: np.ndarray
    null: np.ndarray
    cross_final: np.ndarray
    null_final: np.ndarray


def compare_ends(probs_a, probs_b, labels, *, n_grid: int = 40, device=None) -> EndComparison:
    """:class:`EndComparison` of families ``probs_a`` and ``probs_b`` (K, T, N, C) (K >= 2 seeds each,
    seed k of both from the same network)."""
    a = np.asarray(probs_a, dtype=np.float64)
    b = np.asarray(probs_b, dtype=np.float64)
    if a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise ValueError(f"probs_a and probs_b must hold the same number K >= 2 of seeds, got {a.shape[0]} and "
                         f"{b.shape[0]}")
    ga, gb = progress_gained(a, labels), progress_gained(b, labels)
    fam = compare_families(a, b, progress_1=ga, progress_2=gb, n_grid=n_grid, device=device)
    hi = np.array([fam.range[1]])
    at = lambda fam_probs, g: np.stack([reindex_trajectory(p, hi, progress_values=gk, device=device)[0]  # noqa: E731
                                        for p, gk in zip(fam_probs, g)])
    ea, eb = at(a, ga), at(b, gb)
    nxt = np.roll(np.arange(a.shape[0]), -1)
    bh = lambda x, y: np.asarray(bhattacharyya(x, y, device=device), dtype=np.float64)  # noqa: E731
    return EndComparison(family=fam, cross=bh(ea, eb), null=bh(eb, eb[nxt]),
                         cross_final=bh(a[:, -1], b[:, -1]), null_final=bh(b[:, -1], b[nxt, -1]))


def pair_radii(probs, labels, *, n_grid: int = 40, device=None) -> np.ndarray:
    """Mean tube radius (App. G) of disjoint pairs of runs (0, 1), (2, 3), ... of ``probs`` (K, T, N, C),
    each over the pair's own common range of unfolded progress gained (:func:`progress_gained`):
    (K // 2,) independent estimates."""
    p = np.asarray(probs, dtype=np.float64)
    if p.shape[0] < 2:
        raise ValueError(f"probs must hold at least 2 runs, got {p.shape[0]}")
    g = progress_gained(p, labels)
    return np.array([family_tube(p[2 * j:2 * j + 2], progress_values=g[2 * j:2 * j + 2], n_grid=n_grid,
                                 device=device).radius.mean() for j in range(p.shape[0] // 2)])


def distance_to(final, reference) -> np.ndarray:
    """d_B (eq. 2) of each model of ``final`` (K, N, C) to one model ``reference`` (N, C): (K,)."""
    f = np.asarray(final, dtype=np.float64)
    r = np.asarray(reference, dtype=np.float64)
    return np.asarray(bhattacharyya(f, np.broadcast_to(r, f.shape)), dtype=np.float64)


def distance_to_truth(final, labels) -> np.ndarray:
    """d_B (eq. 2) of each model of ``final`` (K, N, C) to the truth P_* of ``labels``: (K,)."""
    f = np.asarray(final, dtype=np.float64)
    return distance_to(f, reference_points(labels, f.shape[-1])[1])


@dataclass
class Picture:
    """An InPCA of models fitted on the models alone, with reference points placed out of sample.

    ``emb`` the :class:`~tasknb.geometry.InPCA`; ``coords`` {name: (S, T, 3)}; ``means`` {name: (G, 3)}
    the projected mean trajectories (``family_tube`` over progress gained); ``p0``, ``pstar`` (3,) projected P_0 and P_*;
    ``null`` (n_null,) chi_3 of ``explained_stress_null``.
    """

    emb: object
    coords: dict
    means: dict
    p0: np.ndarray
    pstar: np.ndarray
    null: np.ndarray


def inpca_picture(families: dict, labels, *, k: int = 3, n_null: int = 10, n_grid: int = 40, seed: int = 0,
                  device=None) -> Picture:
    """InPCA (eqs. 9-11) of every checkpoint of ``families`` ({name: (S, T, N, C)}), P_0, P_* and each
    family's mean trajectory projected into it (``InPCA.project``), chi_k against
    ``explained_stress_null(models, k, n_null, seed)``."""
    names = list(families)
    fam = {n: np.asarray(families[n], dtype=np.float64) for n in names}
    models = np.concatenate([f.reshape(-1, *f.shape[2:]) for f in fam.values()])
    with_means = [n for n in names if fam[n].shape[0] > 1]
    mean_trajs = [family_tube(fam[n], progress_values=progress_gained(fam[n], labels), n_grid=n_grid,
                              device=device).mean for n in with_means]
    P0, Pstar = reference_points(labels, models.shape[-1])
    pic = inpca_with_placed(models, np.concatenate(mean_trajs + [P0[None], Pstar[None]]), k=k, n_null=n_null,
                            seed=seed, device=device)
    emb = pic.embedding
    coords, i = {}, 0
    for n in names:
        S, T = fam[n].shape[:2]
        coords[n] = emb.coords[i:i + S * T].reshape(S, T, k)
        i += S * T
    means, j = {}, 0
    for n, m in zip(with_means, mean_trajs):
        means[n] = pic.placed[j:j + len(m)]
        j += len(m)
    ref, null = pic.placed[-2:], pic.stress_null
    return Picture(emb=emb, coords=coords, means=means, p0=ref[0], pstar=ref[1], null=null)
