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

__all__ = ["SmallCNN", "Trajectories", "PredictionSet", "default_checkpoints", "record_trajectories",
           "record_run", "prediction_set", "init_cnn", "batch_stream", "make_optimizer", "load_task_images",
           "draw_subset", "check_checkpoints", "check_channels", "supervised_step", "train_supervised_seeds", "record_seeds", "trajectories_from_probs", "progress_bar",
           "save_trajectories", "load_trajectories", "product_hellinger_vs_n", "OPTIMIZERS", "READOUTS"]

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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features phi(x; w_1) of eq. (7) of S: (B, 1, 28, 28) -> (B, 16*c2), >= 0."""
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        return self.pool(x).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


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


READOUTS = ("softmax", "imprint")


def init_cnn(n_classes: int, channels=(8, 16), seed: int = 0, device="auto") -> SmallCNN:
    """A :class:`SmallCNN` whose weights depend on ``seed`` only (drawn on the CPU, then moved to
    ``device``), so a seed gives the same network on every device and whatever ran before."""
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN(n_classes, channels)
    return model.to(get_device(device))


def batch_stream(n: int, batch_size: int, seed: int):
    """Endless mini-batch index tensors (batch_size,) over range(n): reshuffled epochs drawn from a
    generator seeded with ``seed``; a short tail of an epoch is dropped."""
    n = check_positive_int("n", n)
    batch_size = check_positive_int("batch_size", batch_size)
    if batch_size > n:
        raise ValueError(f"batch_size must be an integer in [1, {n}] (the training-set size), got {batch_size}")
    g = generator(check_seed("seed", seed))
    order, pos = torch.randperm(n, generator=g), 0
    while True:
        if pos + batch_size > n:
            order, pos = torch.randperm(n, generator=g), 0
        yield order[pos:pos + batch_size]
        pos += batch_size


def make_optimizer(params, optimizer: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                   weight_decay: float = 0.0):
    """torch.optim.SGD (with ``momentum``) or Adam over ``params``; arguments validated by name."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    lr = check_positive_real("lr", lr)
    momentum = check_positive_real("momentum", momentum, allow_zero=True)
    weight_decay = check_positive_real("weight_decay", weight_decay, allow_zero=True)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def load_task_images(dataset: str, split: str, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, 28, 28) and task labels 0..C-1 of ``classes`` (digits upsampled to 28x28)."""
    check_choice("dataset", dataset, DATASETS)
    kw = {"size": 28} if dataset == "digits" else {}
    X, y = load_dataset(dataset, split, **kw)
    return class_subset(X, y, classes)


def draw_subset(X, y, n, seed: int, name: str = "n_train"):
    """``n`` samples of (X, y) drawn without replacement with ``seed`` (all of them when n is None)."""
    if n is None:
        return X, y
    n = check_positive_int(name, n)
    if n > len(y):
        raise ValueError(f"{name} must be an integer in [1, {len(y)}] for these classes, got {n}")
    idx = torch.randperm(len(y), generator=generator(seed))[:n]
    return X[idx], y[idx]


@dataclass
class PredictionSet:
    """Where and how a model is read as a point of prediction space.

    X : (N, 1, 28, 28) fixed test images; labels : (N,) their labels in 0..K-1 (K = len(classes));
    classes : the dataset classes of the K columns.
    readout : "softmax" -- the model's own head, which must have K outputs; or "imprint" -- eq. (7)
        of S: a fresh head is imprinted from the penultimate features of ``X_imprint`` (labels
        ``y_imprint`` in 0..K-1) and applied to the features of X (eq. 8, the union task).  Any
        network with a ``features(x) -> (B, d)`` method can be read with "imprint", whatever its
        own head (or none: prototypical and contrastive networks).
    """

    X: torch.Tensor
    labels: torch.Tensor
    classes: list
    readout: str = "softmax"
    X_imprint: torch.Tensor | None = None
    y_imprint: torch.Tensor | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @torch.no_grad()
    def predict(self, model, batch: int = 2048) -> torch.Tensor:
        """Float64 probabilities (N, K) of ``model`` on the fixed images (model put in eval mode and
        restored)."""
        was_training = model.training
        model.eval()
        try:
            if self.readout == "softmax":
                p = torch.cat([torch.softmax(model(self.X[i:i + batch]).double(), -1)
                               for i in range(0, len(self.X), batch)])
                if p.shape[-1] != self.n_classes:
                    raise ValueError(f"the model has {p.shape[-1]} outputs but this prediction set has "
                                     f"{self.n_classes} classes; use readout='imprint'")
            else:
                from .geometry import to_union_task
                f_imp = torch.cat([model.features(self.X_imprint[i:i + batch]).double()
                                   for i in range(0, len(self.X_imprint), batch)])
                f_test = torch.cat([model.features(self.X[i:i + batch]).double()
                                    for i in range(0, len(self.X), batch)])
                p = to_union_task(f_imp, self.y_imprint, self.n_classes, eval_features=f_test)
        finally:
            model.train(was_training)
        return p / p.sum(-1, keepdim=True)


def prediction_set(dataset: str = "fashion_mnist", classes=tuple(range(10)), n_test: int = 1000, *,
                   readout: str = "softmax", n_imprint: int = 100, data_seed: int = 0,
                   device="auto") -> PredictionSet:
    """The fixed test images of ``classes`` (``n_test`` drawn once with ``data_seed``) and, for
    ``readout="imprint"``, ``n_imprint`` training images per class to imprint heads from (eq. 7).

    Models trained on different tasks (class subsets, relabelings, no labels at all) become points
    of one prediction space when read through the same ``prediction_set(..., readout="imprint")``
    over the union of their classes (eq. 8 of S).
    """
    check_choice("dataset", dataset, DATASETS)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    if len(classes) < 2:
        raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
    n_test = check_positive_int("n_test", n_test)
    check_choice("readout", readout, READOUTS)
    data_seed = check_seed("data_seed", data_seed)
    dev = get_device(device)
    Xte, yte = load_task_images(dataset, "test", classes)
    Xte, yte = draw_subset(Xte, yte, n_test, data_seed, name="n_test")
    Xi = yi = None
    if readout == "imprint":
        n_imprint = check_positive_int("n_imprint", n_imprint)
        Xtr, ytr = load_task_images(dataset, "train", classes)
        g = generator(data_seed + 2)
        picks = []
        for c in range(len(classes)):
            idx = torch.nonzero(ytr == c).flatten()
            if n_imprint > len(idx):
                raise ValueError(f"n_imprint must be an integer in [1, {len(idx)}] for class {classes[c]}, got {n_imprint}")
            picks.append(idx[torch.randperm(len(idx), generator=g)[:n_imprint]])
        sel = torch.cat(picks)
        Xi, yi = Xtr[sel].to(dev), ytr[sel].to(dev)
    return PredictionSet(X=Xte.to(dev), labels=yte.to(dev), classes=classes, readout=readout,
                         X_imprint=Xi, y_imprint=yi)


def check_checkpoints(checkpoints, steps: int) -> list[int]:
    """Sorted distinct ints in [0, steps] (default :func:`default_checkpoints`)."""
    if checkpoints is None:
        return default_checkpoints(steps)
    checkpoints = check_int_sequence("checkpoints", checkpoints, minimum=0, maximum=steps)
    if checkpoints != sorted(checkpoints) or len(set(checkpoints)) != len(checkpoints):
        raise ValueError(f"checkpoints must be increasing integers in [0, {steps}], got {checkpoints}")
    return checkpoints


def record_run(model, train_step, steps: int, checkpoints, pset: PredictionSet, *, keep_states: bool = False,
               bar=None):
    """Run ``train_step(step)`` for step = 0..steps-1 and read ``model`` through ``pset`` before the
    steps listed in ``checkpoints`` (checkpoint s = the model after s steps; 0 = initialisation).

    ``train_step`` is any callable doing one optimizer step on ``model`` (supervised, episodic,
    contrastive, semi-supervised, fine-tuning...).  Returns ``probs`` float32 NumPy (T, N, K) and,
    with ``keep_states``, the list of T CPU state dicts at the checkpoints (else None).
    """
    steps = check_positive_int("steps", steps, minimum=0)
    checkpoints = check_checkpoints(checkpoints, steps) if steps else check_checkpoints(checkpoints or [0], 0)
    T = len(checkpoints)
    probs = np.empty((T, len(pset.labels), pset.n_classes), dtype=np.float32)
    states = [] if keep_states else None
    wanted, t_idx = set(checkpoints), 0
    for step in range(steps + 1):
        if step in wanted:
            probs[t_idx] = pset.predict(model).float().cpu().numpy()
            if keep_states:
                states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            t_idx += 1
        if step == steps:
            break
        train_step(step)
        if bar is not None:
            bar.update(1)
    return probs, states


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm.auto bar when ``enabled``, else None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc=desc)


def check_channels(channels) -> list[int]:
    """(c1, c2) of a SmallCNN: a pair of integers >= 1."""
    channels = [check_positive_int("channels", c) for c in (channels if hasattr(channels, "__len__") else [channels])]
    if len(channels) != 2:
        raise ValueError(f"channels must be a pair of integers >= 1 (c1, c2), got {channels}")
    return channels


def supervised_step(model, opt, X: torch.Tensor, y: torch.Tensor, batches):
    """A ``train_step`` for :func:`record_run`: one cross-entropy step of ``opt`` on the next
    mini-batch (indices from ``batches``, e.g. :func:`batch_stream`) of images X (n, 1, 28, 28)
    with labels y (n,)."""
    def train_step(_step):
        b = next(batches).to(X.device)
        loss = F.cross_entropy(model(X[b]), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return train_step


def train_supervised_seeds(X: torch.Tensor, y: torch.Tensor, n_classes: int, pset: PredictionSet, *, n_seeds: int,
                           steps: int, checkpoints, batch_size: int, optimizer: str, lr: float, momentum: float,
                           channels, seed: int, keep_states: bool = False, progress: bool = False,
                           desc: str = "training seeds"):
    """Seed k = ``seed + k``: ``init_cnn(n_classes, channels, seed + k)``, mini-batches from
    ``batch_stream(n, batch_size, seed + k)``, ``steps`` cross-entropy steps on (X, y), read
    through ``pset`` at ``checkpoints``.  Arguments are assumed checked (callers validate them).

    Returns probs float32 (n_seeds, T, N, K) and, with ``keep_states``, states[k][t] (else None).
    """
    def build(_k, s):
        model = init_cnn(n_classes, channels, s, X.device)
        opt = make_optimizer(model.parameters(), optimizer, lr, momentum)
        return model, supervised_step(model, opt, X, y, batch_stream(len(y), batch_size, s))

    return record_seeds(build, n_seeds, steps, checkpoints, pset, seed=seed, keep_states=keep_states,
                        progress=progress, desc=desc)


def record_seeds(build, n_seeds: int, steps: int, checkpoints, pset: PredictionSet, *, seed: int,
                 keep_states: bool = False, progress: bool = False, desc: str = "training seeds"):
    """The per-seed loop of every recorder: for k = 0..n_seeds-1, ``build(k, seed + k)`` returns
    (model, train_step) -- a fresh network and one optimizer step of the method -- and
    :func:`record_run` records it through ``pset`` at ``checkpoints``.

    Returns probs float32 (n_seeds, T, N, K) and, with ``keep_states``, states[k][t] (else None).
    """
    probs = np.empty((n_seeds, len(checkpoints), len(pset.labels), pset.n_classes), dtype=np.float32)
    states = [] if keep_states else None
    bar = progress_bar(n_seeds * steps, desc, progress)
    for k in range(n_seeds):
        model, train_step = build(k, seed + k)
        probs[k], st = record_run(model, train_step, steps, checkpoints, pset, keep_states=keep_states, bar=bar)
        if keep_states:
            states.append(st)
    if bar is not None:
        bar.close()
    return probs, states


def _validated_config(dataset, classes, n_seeds, steps, checkpoints, n_test, n_train, batch_size, optimizer,
                      lr, momentum, channels, seed, data_seed, readout, union_classes, n_imprint) -> dict:
    """Check the arguments of the supervised recorders by name; return them, normalised, as a dict."""
    check_choice("dataset", dataset, DATASETS)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    if len(classes) < 2:
        raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
    n_seeds = check_positive_int("n_seeds", n_seeds)
    steps = check_positive_int("steps", steps)
    checkpoints = check_checkpoints(checkpoints, steps)
    n_test = check_positive_int("n_test", n_test)
    batch_size = check_positive_int("batch_size", batch_size)
    make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr, momentum)  # validates by name
    channels = check_channels(channels)
    seed = check_seed("seed", seed)
    data_seed = check_seed("data_seed", data_seed)
    check_choice("readout", readout, READOUTS)
    if readout == "softmax" and union_classes is not None:
        raise ValueError("union_classes needs readout='imprint' (a softmax head only predicts its own classes)")
    union = classes if union_classes is None else check_int_sequence("union_classes", union_classes, 0, 9)
    config = dict(dataset=dataset, classes=classes, n_seeds=n_seeds, steps=steps, checkpoints=checkpoints,
                  n_test=n_test, n_train=n_train, batch_size=batch_size, optimizer=optimizer, lr=lr,
                  momentum=momentum, channels=channels, seed=seed, data_seed=data_seed, readout=readout,
                  union_classes=union, n_imprint=n_imprint)

    return config


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
    readout: str = "softmax",
    union_classes=None,
    n_imprint: int = 100,
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
    readout : "softmax" (default: the network's own head, test images of ``classes``) or "imprint"
        (eq. 7-8 of S: heads imprinted from ``n_imprint`` training images per class of
        ``union_classes``, default ``classes``; test images of ``union_classes``).  Use
        "imprint" with a shared ``union_classes`` to put runs on different tasks in one space.

    Returns
    -------
    Trajectories with ``probs`` (n_seeds, T, N, K) float32 (K = C, or len(union_classes) with
    "imprint"), ``steps`` (T,), ``labels`` (N,), ``accuracy`` (n_seeds, T).
    Same arguments -> same numbers on the same device.
    """
    config = _validated_config(dataset, classes, n_seeds, steps, checkpoints, n_test, n_train, batch_size,
                               optimizer, lr, momentum, channels, seed, data_seed, readout, union_classes, n_imprint)
    classes, union, channels, checkpoints = (config["classes"], config["union_classes"], config["channels"],
                                             config["checkpoints"])
    dev = get_device(device)

    Xtr, ytr = load_task_images(dataset, "train", classes)
    Xtr, ytr = draw_subset(Xtr, ytr, n_train, data_seed + 1)
    pset = prediction_set(dataset, union, n_test, readout=readout, n_imprint=n_imprint,
                          data_seed=data_seed, device=dev)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    probs, _ = train_supervised_seeds(Xtr, ytr, len(classes), pset, n_seeds=n_seeds, steps=steps,
                                      checkpoints=checkpoints, batch_size=batch_size, optimizer=optimizer, lr=lr,
                                      momentum=momentum, channels=channels, seed=seed, progress=progress)
    return trajectories_from_probs(probs, checkpoints, pset, [seed + k for k in range(n_seeds)], config)


def trajectories_from_probs(probs, checkpoints, pset: PredictionSet, seeds, config) -> Trajectories:
    """Wrap recorded ``probs`` (n_seeds, T, N, K) read through ``pset`` as :class:`Trajectories`."""
    labels = pset.labels.cpu().numpy().astype(np.int64)
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    return Trajectories(probs=probs, steps=np.asarray(checkpoints, dtype=np.int64), labels=labels,
                        seeds=list(seeds), classes=list(pset.classes), accuracy=accuracy, config=dict(config))


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
