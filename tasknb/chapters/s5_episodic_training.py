"""Episodic meta-learning with prototypical networks (Ramesh et al. 2023, "S", Result 4, App. A).

An *episode* draws ``way`` (C^w) of the training classes and, for each, ``shot`` (s) support
images D_s and ``query`` (q) query images D_q.  The prototypical loss of Snell et al. (2017) turns
the support features into one centroid per class,

    phi_c = s^-1 sum_{x in D_s, y*(x) = c} phi(x; w_1),          c = 1..C^w   (Result 4 of S)

and scores each query image by its negative *squared Euclidean* distance to the centroids,
``logit_c(x) = -||phi(x; w_1) - phi_c||^2``, trained with the cross-entropy of the query labels
(the variant of Snell et al. that S uses; no temperature, no feature normalisation).  Only the
backbone ``w_1`` (``SmallCNN.features``) is trained; the network has no head of its own.

To compare it with supervised learning the backbone is read, at every checkpoint, through an
imprinted head over all classes (eqs. 7-8 of S, ``trajectories.prediction_set(...,
readout="imprint")``); ``trajectories.record_trajectories(..., readout="imprint",
union_classes=...)`` with the same ``n_test``, ``n_imprint`` and ``data_seed`` records the
supervised baseline in the same prediction space.

``Episode``                       indices and labels of one episode
``sample_episode``                one episode from a label vector and a torch.Generator
``episode_stream``                endless seeded episodes
``prototypes``                    class centroids of support features
``prototypical_logits`` / ``prototypical_loss``   the loss above
``record_episodic_trajectories``  train prototypical backbones of several seeds and record them
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DATASETS
from ..device import generator, get_device
from ..trajectories import (Trajectories, check_channels, check_checkpoints, draw_subset, init_cnn, load_task_images,
                           make_optimizer, prediction_set, record_seeds, trajectories_from_probs)
from ..validation import check_choice, check_int_sequence, check_positive_int, check_seed

__all__ = ["Episode", "sample_episode", "episode_stream", "prototypes", "prototypical_logits",
           "prototypical_loss", "record_episodic_trajectories"]


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


def _check_feats(name, f):
    if not isinstance(f, torch.Tensor) or f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D torch tensor (n, d), got {getattr(f, 'shape', type(f).__name__)}")


def _check_lab(name, y, n, way):
    if not isinstance(y, torch.Tensor) or y.shape != (n,) or y.dtype.is_floating_point:
        raise ValueError(f"{name} must be an integer torch tensor of shape ({n},), got {getattr(y, 'shape', y)}")
    if n and (int(y.min()) < 0 or int(y.max()) >= way):
        raise ValueError(f"{name} must hold episode labels in [0, {way - 1}]")


def prototypes(support_features: torch.Tensor, support_labels: torch.Tensor, way: int) -> torch.Tensor:
    """Class centroids phi_c = mean of the support features of class c (Result 4 of S):
    (n_s, d) features, (n_s,) labels in 0..way-1 (every class present) -> (way, d)."""
    way = check_positive_int("way", way, minimum=2)
    _check_feats("support_features", support_features)
    _check_lab("support_labels", support_labels, support_features.shape[0], way)
    counts = torch.bincount(support_labels, minlength=way)
    if int(counts.min()) == 0:
        raise ValueError(f"support_labels must contain every episode class 0..{way - 1}")
    onehot = F.one_hot(support_labels, way).to(support_features.dtype)  # (n_s, way)
    return (onehot.T @ support_features) / counts.to(support_features.dtype)[:, None]


def prototypical_logits(support_features, support_labels, query_features, way: int) -> torch.Tensor:
    """Logits ``-||phi(x_q) - phi_c||^2`` (squared Euclidean, Snell et al. 2017) of the query
    features (n_q, d) against the centroids of :func:`prototypes` -> (n_q, way)."""
    protos = prototypes(support_features, support_labels, way)
    _check_feats("query_features", query_features)
    if query_features.shape[1] != protos.shape[1]:
        raise ValueError(f"query_features must have the feature dimension of the support ({protos.shape[1]}), "
                         f"got {query_features.shape[1]}")
    return -((query_features[:, None, :] - protos[None, :, :]) ** 2).sum(-1)


def prototypical_loss(support_features, support_labels, query_features, query_labels, way: int) -> torch.Tensor:
    """The prototypical loss: mean cross-entropy of :func:`prototypical_logits` against the query
    labels (n_q,) in 0..way-1.  A scalar tensor (differentiable in the features).  Equal to
    log(way) when all features coincide; near 0 when queries sit on well-separated centroids."""
    logits = prototypical_logits(support_features, support_labels, query_features, way)
    _check_lab("query_labels", query_labels, query_features.shape[0], logits.shape[1])
    return F.cross_entropy(logits, query_labels)


def record_episodic_trajectories(
    way: int = 5,
    shot: int = 5,
    query: int = 10,
    steps: int = 300,
    *,
    dataset: str = "fashion_mnist",
    classes=tuple(range(10)),
    n_seeds: int = 3,
    checkpoints=None,
    n_test: int = 1000,
    n_train: int | None = None,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    channels=(8, 16),
    seed: int = 0,
    data_seed: int = 0,
    union_classes=None,
    n_imprint: int = 100,
    device="auto",
    progress: bool = False,
) -> Trajectories:
    """Train ``n_seeds`` SmallCNN backbones with the prototypical loss on episodes, recording them
    in the prediction space of the union task (Result 4 of S).

    Parameters
    ----------
    way, shot, query : episode size C^w >= 2 (at most len(classes)), s >= 1 support and q >= 1
        query images per class; one optimizer step = one episode of way*(shot+query) images.
    steps : int >= 1, number of episodes (optimizer steps).
    dataset, classes, n_train, data_seed : the training task exactly as in
        ``trajectories.record_trajectories`` (same training subset for the same arguments).
    n_seeds : seed k uses ``seed + k`` for the backbone initialisation (``init_cnn(len(classes),
        channels, seed + k)``: the same convolutional weights as the supervised run of that seed)
        and for its episode stream.
    checkpoints : sorted distinct ints in [0, steps] (default ``default_checkpoints(steps)``).
    optimizer, lr, momentum, channels, device, progress : as in ``record_trajectories``.
    union_classes : classes of the prediction space (default ``classes``); the backbone is read
        through ``prediction_set(dataset, union_classes, n_test, readout="imprint", n_imprint,
        data_seed)`` (eqs. 7-8), so a supervised run recorded by ``record_trajectories(...,
        readout="imprint", union_classes=..., n_test, n_imprint, data_seed)`` lies in the same space.

    Returns
    -------
    Trajectories with probs (n_seeds, T, n_test, len(union_classes)) float32, ``config`` holding
    these arguments (``method="prototypical"``).  Same arguments -> same numbers on a device.
    """
    check_choice("dataset", dataset, DATASETS)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    if len(classes) < 2:
        raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
    way, shot, query = _check_episode_args(way, shot, query, len(classes))
    n_seeds = check_positive_int("n_seeds", n_seeds)
    steps = check_positive_int("steps", steps)
    checkpoints = check_checkpoints(checkpoints, steps)
    n_test = check_positive_int("n_test", n_test)
    make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr, momentum)  # validates by name
    channels = check_channels(channels)
    seed = check_seed("seed", seed)
    data_seed = check_seed("data_seed", data_seed)
    union = classes if union_classes is None else check_int_sequence("union_classes", union_classes, 0, 9)
    dev = get_device(device)
    config = dict(method="prototypical", way=way, shot=shot, query=query, dataset=dataset, classes=classes,
                  n_seeds=n_seeds, steps=steps, checkpoints=checkpoints, n_test=n_test, n_train=n_train,
                  optimizer=optimizer, lr=lr, momentum=momentum, channels=channels, seed=seed,
                  data_seed=data_seed, readout="imprint", union_classes=union, n_imprint=n_imprint)

    Xtr, ytr = load_task_images(dataset, "train", classes)
    Xtr, ytr = draw_subset(Xtr, ytr, n_train, data_seed + 1)
    _check_counts(_class_index(ytr), way, shot, query)
    pset = prediction_set(dataset, union, n_test, readout="imprint", n_imprint=n_imprint,
                          data_seed=data_seed, device=dev)
    Xtr = Xtr.to(dev)
    def build(_k, s):
        model = init_cnn(len(classes), channels, s, dev)
        opt = make_optimizer(model.parameters(), optimizer, lr, momentum)
        episodes = episode_stream(ytr, way, shot, query, s)

        def train_step(_step):
            ep = next(episodes)
            f = model.features(Xtr[torch.cat([ep.support, ep.query]).to(dev)])
            n_s = len(ep.support)
            loss = prototypical_loss(f[:n_s], ep.support_labels.to(dev), f[n_s:], ep.query_labels.to(dev), way)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model, train_step

    probs, _ = record_seeds(build, n_seeds, steps, checkpoints, pset, seed=seed, progress=progress,
                            desc=f"{way}-way episodes")
    return trajectories_from_probs(probs, checkpoints, pset, [seed + k for k in range(n_seeds)], config)
