"""Training trajectories in prediction space (Ramesh et al. 2023, "S", §2 and App. C).

A network trained on a task is recorded, at chosen checkpoints, by its softmax predictions on a
FIXED set of N test images: an (N, C) array of probability rows, the model's coordinates in the
prediction space of eq. (1) of S.  Several seeds give an array (n_seeds, T, N, C), the input of
every kernel in :mod:`tasknb.geometry`.

``SmallCNN``              a two-conv-layer network for 28x28 grey images (about 4k weights)
``default_checkpoints``   0 plus roughly log-spaced steps up to the last one
``record_trajectories``   train several seeds and record their predictions -> :class:`Trajectories`
``save_trajectories`` / ``load_trajectories``   torch.save / torch.load(weights_only=True)
``product_hellinger_vs_n``  the product-Hellinger distance of §2 and the averaged Bhattacharyya
                          distance (eq. 2) on the first N samples, for a range of N

Seeds are trained one after another (a plain loop: simple and exactly reproducible); each seed
draws its initialisation and its mini-batch order from its own generator, so a seed gives the
same numbers whatever the other seeds are.  Work runs on ``tasknb.device.get_device()``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .data import DATASETS, load_dataset
from .device import generator, get_device
from .tasks import class_subset
from .validation import (check_choice, check_int_sequence, check_positive_int, check_positive_real,
                         check_seed)

__all__ = ["SmallCNN", "Trajectories", "default_checkpoints", "record_trajectories",
           "save_trajectories", "load_trajectories", "product_hellinger_vs_n", "OPTIMIZERS"]

#: optimizers accepted by :func:`record_trajectories`
OPTIMIZERS = ("sgd", "adam")


class SmallCNN(nn.Module):
    """Conv(1->c1, 5x5, stride 2) - ReLU - Conv(c1->c2, 3x3, stride 2) - ReLU - 4x4 average pool -
    Linear(16*c2 -> n_classes).  Input (B, 1, 28, 28), output logits (B, n_classes).

    With the defaults ``channels=(8, 16)`` and 10 classes: 3,954 weights.
    """

    def __init__(self, n_classes: int = 10, channels=(8, 16)):
        super().__init__()
        n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        channels = [check_positive_int("channels", c) for c in channels]
        if len(channels) != 2:
            raise ValueError(f"channels must be a pair of integers >= 1 (c1, c2), got {channels}")
        c1, c2 = channels
        self.conv1 = nn.Conv2d(1, c1, 5, stride=2, padding=2)   # 28 -> 14
        self.conv2 = nn.Conv2d(c1, c2, 3, stride=2, padding=1)  # 14 -> 7
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.head = nn.Linear(16 * c2, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.head(self.pool(x).flatten(1))


@dataclass
class Trajectories:
    """Recorded predictions of several seeds along training.

    probs : float32 NumPy array (n_seeds, T, N, C), rows sum to 1 (softmax on the fixed test set)
    steps : int64 (T,), the optimizer steps of the checkpoints (0 = initialisation)
    labels : int64 (N,), labels of the fixed test images in 0..C-1
    seeds : list of the n_seeds seeds
    classes : list of the dataset classes used (label c of the task is dataset class classes[c])
    accuracy : float64 (n_seeds, T), test accuracy on the N images at each checkpoint
    config : dict of the arguments of :func:`record_trajectories`
    """

    probs: np.ndarray
    steps: np.ndarray
    labels: np.ndarray
    seeds: list
    classes: list
    accuracy: np.ndarray
    config: dict

    @property
    def shape(self):
        return self.probs.shape

    def cross_entropy(self) -> np.ndarray:
        """Mean test cross-entropy (n_seeds, T) in nats; equals 2 x the Bhattacharyya distance to the
        one-hot truth P_* (App. C of S)."""
        p = np.take_along_axis(self.probs.astype(np.float64), self.labels[None, None, :, None], axis=-1)[..., 0]
        return -np.log(np.clip(p, 1e-300, None)).mean(-1)


def default_checkpoints(steps: int, n: int = 10) -> list[int]:
    """``n`` distinct checkpoints in [0, steps]: 0, then roughly log-spaced steps ending at ``steps``
    (early training moves fastest in prediction space).  Fewer when ``steps`` is small."""
    steps = check_positive_int("steps", steps)
    n = check_positive_int("n", n, minimum=2)
    pts = np.unique(np.round(np.geomspace(1, steps, n - 1)).astype(int))
    return [0] + [int(p) for p in pts]


def _fixed_test_set(dataset, classes, n_test, data_seed):
    X, y = load_dataset(dataset, "test")
    X, y = class_subset(X, y, classes)
    if n_test > len(y):
        raise ValueError(f"n_test must be an integer in [1, {len(y)}] for these classes, got {n_test}")
    idx = torch.randperm(len(y), generator=generator(data_seed))[:n_test]
    return X[idx], y[idx]


@torch.no_grad()
def _predict(model, X, batch=2048):
    return torch.cat([torch.softmax(model(X[i:i + batch]).double(), -1) for i in range(0, len(X), batch)])


def record_trajectories(
    dataset: str = "fashion_mnist",
    classes=tuple(range(10)),
    *,
    n_seeds: int = 3,
    steps: int = 300,
    checkpoints=None,
    n_test: int = 1000,
    n_train: int | None = None,
    batch_size: int = 64,
    optimizer: str = "sgd",
    lr: float = 0.05,
    momentum: float = 0.9,
    channels=(8, 16),
    seed: int = 0,
    data_seed: int = 0,
    device="auto",
    progress: bool = False,
) -> Trajectories:
    """Train ``n_seeds`` SmallCNNs on a task and record their predictions on a fixed test set.

    Parameters
    ----------
    dataset : "fashion_mnist" (default) or "digits" (upsampled to 28x28)
    classes : sequence of dataset classes, default all ten; the task is ``tasks.class_subset``
        (labels 0..C-1 in the given order), C = len(classes) >= 2.
    n_seeds : int >= 1, default 3; seed k uses ``seed + k`` for initialisation and batch order.
    steps : int >= 1, default 300, optimizer steps (mini-batches drawn by reshuffled epochs).
    checkpoints : sorted distinct ints in [0, steps], default ``default_checkpoints(steps)``; 0 is
        the initialisation.  T = len(checkpoints).
    n_test : int >= 1, default 1000, N: test images, drawn once with ``data_seed``, shared by all seeds.
    n_train : int or None (default: every training image of the classes), training-set size drawn
        with ``data_seed``.
    batch_size : int >= 1, default 64.    optimizer : "sgd" (default, with ``momentum``) or "adam".
    lr : float > 0, default 0.05.         momentum : float >= 0, default 0.9 (SGD only).
    channels : (c1, c2), default (8, 16).  device : "auto" (CUDA when present), "cpu" or "cuda".

    Returns
    -------
    Trajectories with ``probs`` (n_seeds, T, N, C) float32, ``steps`` (T,), ``labels`` (N,),
    ``accuracy`` (n_seeds, T).  Same arguments -> same numbers on the same device.
    """
    check_choice("dataset", dataset, DATASETS)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    if len(classes) < 2:
        raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
    n_seeds = check_positive_int("n_seeds", n_seeds)
    steps = check_positive_int("steps", steps)
    if checkpoints is None:
        checkpoints = default_checkpoints(steps)
    checkpoints = check_int_sequence("checkpoints", checkpoints, minimum=0, maximum=steps)
    if checkpoints != sorted(checkpoints):
        raise ValueError(f"checkpoints must be increasing integers in [0, {steps}], got {checkpoints}")
    n_test = check_positive_int("n_test", n_test)
    if n_train is not None:
        n_train = check_positive_int("n_train", n_train, minimum=1)
    batch_size = check_positive_int("batch_size", batch_size)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    lr = check_positive_real("lr", lr)
    momentum = check_positive_real("momentum", momentum, allow_zero=True)
    channels = [check_positive_int("channels", c) for c in (channels if hasattr(channels, "__len__") else [channels])]
    if len(channels) != 2:
        raise ValueError(f"channels must be a pair of integers >= 1 (c1, c2), got {channels}")
    seed = check_seed("seed", seed)
    data_seed = check_seed("data_seed", data_seed)
    dev = get_device(device)
    config = dict(dataset=dataset, classes=classes, n_seeds=n_seeds, steps=steps, checkpoints=checkpoints,
                  n_test=n_test, n_train=n_train, batch_size=batch_size, optimizer=optimizer, lr=lr,
                  momentum=momentum, channels=channels, seed=seed, data_seed=data_seed)

    kw = {"size": 28} if dataset == "digits" else {}
    Xtr, ytr = load_dataset(dataset, "train", **kw)
    Xtr, ytr = class_subset(Xtr, ytr, classes)
    if n_train is not None:
        if n_train > len(ytr):
            raise ValueError(f"n_train must be an integer in [1, {len(ytr)}] for these classes, got {n_train}")
        idx = torch.randperm(len(ytr), generator=generator(data_seed + 1))[:n_train]
        Xtr, ytr = Xtr[idx], ytr[idx]
    if dataset == "digits":
        Xte, yte = load_dataset(dataset, "test", size=28)
        Xte, yte = class_subset(Xte, yte, classes)
        if n_test > len(yte):
            raise ValueError(f"n_test must be an integer in [1, {len(yte)}] for these classes, got {n_test}")
        sel = torch.randperm(len(yte), generator=generator(data_seed))[:n_test]
        Xte, yte = Xte[sel], yte[sel]
    else:
        Xte, yte = _fixed_test_set(dataset, classes, n_test, data_seed)
    Xtr, ytr, Xte = Xtr.to(dev), ytr.to(dev), Xte.to(dev)
    C, n = len(classes), len(ytr)
    T = len(checkpoints)
    probs = np.empty((n_seeds, T, n_test, C), dtype=np.float32)
    wanted = set(checkpoints)

    bar = None
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=n_seeds * steps, desc="training seeds")
    for k in range(n_seeds):
        s = seed + k
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(s)
            model = SmallCNN(C, channels)          # initialised on the CPU: same weights on every device
        model = model.to(dev)
        opt = (torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=lr))
        g = generator(s)
        order, pos, t_idx = torch.randperm(n, generator=g), 0, 0
        for step in range(steps + 1):
            if step in wanted:
                model.eval()
                p = _predict(model, Xte)
                probs[k, t_idx] = (p / p.sum(-1, keepdim=True)).float().cpu().numpy()
                t_idx += 1
                model.train()
            if step == steps:
                break
            if pos + batch_size > n:
                order, pos = torch.randperm(n, generator=g), 0
            b = order[pos:pos + batch_size].to(dev)
            pos += batch_size
            loss = F.cross_entropy(model(Xtr[b]), ytr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    labels = yte.cpu().numpy().astype(np.int64)
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    return Trajectories(probs=probs, steps=np.asarray(checkpoints, dtype=np.int64), labels=labels,
                        seeds=[seed + k for k in range(n_seeds)], classes=classes, accuracy=accuracy,
                        config=config)


def save_trajectories(traj: Trajectories, path) -> None:
    """Write ``traj`` to ``path`` with ``torch.save`` (tensors, lists, numbers and strings only, so it
    loads with ``weights_only=True``)."""
    if not isinstance(traj, Trajectories):
        raise ValueError(f"traj must be a Trajectories, got {type(traj).__name__}")
    torch.save({
        "probs": torch.from_numpy(np.ascontiguousarray(traj.probs)),
        "steps": torch.from_numpy(traj.steps), "labels": torch.from_numpy(traj.labels),
        "accuracy": torch.from_numpy(traj.accuracy), "seeds": list(traj.seeds),
        "classes": list(traj.classes), "config": dict(traj.config),
    }, path)


def load_trajectories(path) -> Trajectories:
    """Read what :func:`save_trajectories` wrote (``torch.load(..., weights_only=True)``)."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    return Trajectories(probs=d["probs"].numpy(), steps=d["steps"].numpy(), labels=d["labels"].numpy(),
                        seeds=list(d["seeds"]), classes=list(d["classes"]), accuracy=d["accuracy"].numpy(),
                        config=dict(d["config"]))


def product_hellinger_vs_n(P, Q, n_values, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Product-Hellinger distance and averaged Bhattacharyya distance on N samples, for each N.

    With per-sample coefficients BC_n = sum_c sqrt(p^n(c) q^n(c)) (samples taken in an order
    shuffled once with ``seed``, the first N kept):

        H(N)   = 2 (1 - prod_{n<=N} BC_n)      the Hellinger distance between the product models
                                               (as written in §2 of S; it lies in [0, 2])
        d_B(N) = -(1/N) sum_{n<=N} log BC_n     eq. (2) of S

    H(N) is non-decreasing in N and tends to 2 once N d_B >> 1; d_B(N) is an average and stays
    O(1).  P, Q : arrays (N_total, C) of probabilities; n_values : ints in [1, N_total].
    Returns (H, d_B), each float64 (len(n_values),).
    """
    P = np.asarray(P, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if P.ndim != 2 or P.shape != Q.shape:
        raise ValueError(f"P and Q must be arrays (N, C) of the same shape, got {P.shape} and {Q.shape}")
    for name, X in (("P", P), ("Q", Q)):
        if not np.isfinite(X).all() or X.min() < 0 or np.abs(X.sum(-1) - 1).max() > 1e-4:
            raise ValueError(f"{name} must hold probability rows (>= 0, summing to 1)")
    P, Q = P / P.sum(-1, keepdims=True), Q / Q.sum(-1, keepdims=True)  # float32 rows -> exact float64 sums
    n_values = check_int_sequence("n_values", n_values, minimum=1, maximum=P.shape[0])
    perm = torch.randperm(P.shape[0], generator=generator(check_seed("seed", seed))).numpy()
    logbc = np.log(np.clip(np.sqrt(P * Q).sum(-1), 1e-300, 1.0))[perm]
    cum = np.cumsum(logbc)
    idx = np.asarray(n_values) - 1
    return 2.0 * (1.0 - np.exp(cum[idx])), -cum[idx] / np.asarray(n_values, dtype=np.float64)
