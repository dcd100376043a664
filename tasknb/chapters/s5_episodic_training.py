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
imprinted head over all classes (eqs. 7-8 of S, ``readout.prediction_set(...,
readout="imprint")``); ``trajectories.record_trajectories(..., readout="imprint",
union_classes=...)`` with the same ``n_test``, ``n_imprint`` and ``data_seed`` records the
supervised baseline in the same prediction space.

``Episode``                       indices and labels of one episode
``sample_episode``                one episode from a label vector and a torch.Generator
``episode_stream``                endless seeded episodes
``prototypical_loss``             the loss above (the centroids and their logits are the readout
                                  kernels ``tasknb.readout.prototypes`` / ``prototypical_logits``)
``record_episodic_trajectories``  train prototypical backbones of several seeds and record them
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import training_images
from ..device import generator, get_device
from ..networks.cnn import init_cnn
from ..readout import prediction_set, prototypical_logits
from ..trajectories import Trajectories, make_optimizer, record_seeds, run_config, trajectories_from_probs
from ..validation import check_label_tensor, check_positive_int, check_seed

__all__ = ["Episode", "sample_episode", "episode_stream", "prototypical_loss", "record_episodic_trajectories"]


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
        (``dataset``, ``classes``, ``n_seeds``, ``n_train``, ``optimizer``, ``lr``, ...) fill in or
        replace its fields, defaults those of RunConfig with ``readout="imprint"`` (the only
        readout: the backbone has no head).  The training task is drawn exactly as in
        ``trajectories.record_trajectories``; ``batch_size`` is not used (an episode is the batch).
        Seed k uses ``seed + k`` for the backbone initialisation (``init_cnn(len(classes),
        channels, seed + k)``: the same convolutional weights as the supervised run of that seed)
        and for its episode stream.  The backbone is read through ``prediction_set(dataset,
        union_classes, n_test, readout="imprint", n_imprint, data_seed)`` (eqs. 7-8), so a
        supervised run recorded by ``record_trajectories(..., readout="imprint", union_classes=...,
        n_test, n_imprint, data_seed)`` lies in the same space.
    device, progress : as in ``record_trajectories``.

    Returns
    -------
    Trajectories with probs (n_seeds, T, n_test, len(union_classes)) float32, ``config`` holding
    the run and the episode sizes (``method="prototypical"``).  Same arguments -> same numbers on
    a device.
    """
    if steps is not None:
        changes["steps"] = steps
    c = run_config(config, {"readout": "imprint"}, **changes)
    if c.readout != "imprint":
        raise ValueError(f"readout must be 'imprint' for a prototypical backbone (it has no head), got {c.readout!r}")
    way, shot, query = _check_episode_args(way, shot, query, len(c.classes))
    dev = get_device(device)
    config_dict = dict(method="prototypical", way=way, shot=shot, query=query, **c.to_dict())

    dataset, classes, channels = c.dataset, c.classes, c.channels
    Xtr, ytr = training_images(dataset, classes, c.n_train, c.data_seed)
    _check_counts(_class_index(ytr), way, shot, query)
    pset = prediction_set(dataset, c.union_classes, c.n_test, readout="imprint", n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)
    Xtr = Xtr.to(dev)

    def build(_k, s):
        model = init_cnn(len(classes), channels, s, dev)
        opt = make_optimizer(model.parameters(), c.optimizer, c.lr, c.momentum, c.weight_decay)
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

    probs, _ = record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc=f"{way}-way episodes")
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)
