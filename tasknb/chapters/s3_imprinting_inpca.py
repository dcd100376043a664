"""Imprinting, linear probes and runs on several tasks read in one prediction space (Ramesh et al.
2023, "S", §2 eqs. 7-8, Remark 2, App. D-E).

A network trained on task 1 has a backbone phi(x; w_1) and a head w_2 over task 1's classes.  To
read it on task 2 the paper replaces the head by *imprinted* weights, eq. (7): w_c = h_c / ||h_c||
with h_c the sum of the features of task 2's samples of class c (``tasknb.geometry.imprint``).
Remark 2 / App. D: imprinting is not the same as training the new head, but close.  This module
holds the loops of chapter S3:

``record_task``        train seeds on one task, read every checkpoint through a shared
                       :class:`~tasknb.trajectories.PredictionSet` (e.g. the union task, eq. 8),
                       keep the weights of every checkpoint
``model_from_state``   a :class:`~tasknb.trajectories.SmallCNN` with the weights of a checkpoint
``backbone_features``  features phi(x; w_1) of some images at every checkpoint -> (T, n, d)
``imprint_accuracy``   accuracy of the imprinted head of eq. (7) (any leading checkpoint axes)
``linear_probe``       a trained final layer on frozen features (free or unit-norm rows), the
                       alternative of Remark 2 / App. D, full-batch and deterministic
``log_likelihood``     mean log-probability of the labels under a linear head, eq. (12)
``random_orthogonal``  a Haar-random orthogonal matrix, for the invariance of App. E

Everything is deterministic given its seeds and runs on ``tasknb.device.get_device()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..data import DATASETS
from ..device import get_device
from ..geometry import imprint, imprinted_probabilities
from ..trajectories import (PredictionSet, SmallCNN, Trajectories, check_channels, check_checkpoints, draw_subset,
                           load_task_images, make_optimizer, train_supervised_seeds, trajectories_from_probs)
from ..validation import check_choice, check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["record_task", "model_from_state", "backbone_features", "imprint_accuracy", "LinearProbe",
           "linear_probe", "log_likelihood", "random_orthogonal"]


# ----------------------------------------------------------------------------- training runs
def record_task(dataset: str, classes, pset: PredictionSet, *, n_seeds: int = 3, steps: int = 300,
                checkpoints=None, n_train: int | None = None, batch_size: int = 64, optimizer: str = "sgd",
                lr: float = 0.05, momentum: float = 0.9, channels=(8, 16), seed: int = 0, data_seed: int = 0,
                device="auto", progress: bool = False) -> tuple[Trajectories, list]:
    """Train ``n_seeds`` SmallCNNs on the task ``classes`` and read each checkpoint through ``pset``.

    The training is exactly that of :func:`tasknb.trajectories.record_trajectories` (same data
    draw, initialisation and batch order for a seed, cross-entropy on the task's own head), but the
    models are read through the given ``pset`` -- typically ``prediction_set(dataset, range(10),
    readout="imprint")``, so runs on different tasks land in the prediction space of the union task
    (eq. 8 of S) -- and the weights of every checkpoint are kept (to re-head the backbone later).

    Parameters
    ----------
    dataset, classes : the task (labels 0..C-1 in the order of ``classes``), C >= 2.
    pset : PredictionSet where the models are read (N images, K classes).
    n_seeds : int >= 1, default 3; seed k uses ``seed + k``.   steps : int >= 1, default 300.
    checkpoints : increasing ints in [0, steps], default ``default_checkpoints(steps)``.
    n_train : training images (None: all), drawn with ``data_seed + 1``.   batch_size : default 64.
    optimizer : "sgd" (default) or "adam"; lr default 0.05; momentum default 0.9 (SGD).
    channels : (c1, c2) of the SmallCNN, default (8, 16).   device : "auto", "cpu" or "cuda".

    Returns
    -------
    (Trajectories with probs (n_seeds, T, N, K) float32, states) where ``states[k][t]`` is the CPU
    state dict of seed k at checkpoint t.  Same arguments -> same numbers on the same device.
    """
    check_choice("dataset", dataset, DATASETS)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    if len(classes) < 2:
        raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
    if not isinstance(pset, PredictionSet):
        raise ValueError(f"pset must be a PredictionSet (tasknb.trajectories.prediction_set), got {type(pset).__name__}")
    if pset.readout == "softmax" and pset.n_classes != len(classes):
        raise ValueError(f"pset reads the model's own head (readout='softmax') over {pset.n_classes} classes but the "
                         f"task has {len(classes)}; use a prediction_set with readout='imprint'")
    n_seeds = check_positive_int("n_seeds", n_seeds)
    steps = check_positive_int("steps", steps)
    checkpoints = check_checkpoints(checkpoints, steps)
    batch_size = check_positive_int("batch_size", batch_size)
    make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr, momentum)  # validates by name
    channels = check_channels(channels)
    seed = check_seed("seed", seed)
    data_seed = check_seed("data_seed", data_seed)
    dev = get_device(device)
    config = dict(dataset=dataset, classes=classes, n_seeds=n_seeds, steps=steps, checkpoints=checkpoints,
                  n_train=n_train, batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum,
                  channels=channels, seed=seed, data_seed=data_seed, readout=pset.readout,
                  union_classes=list(pset.classes))
    Xtr, ytr = load_task_images(dataset, "train", classes)
    Xtr, ytr = draw_subset(Xtr, ytr, n_train, data_seed + 1)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    probs, states = train_supervised_seeds(Xtr, ytr, len(classes), pset, n_seeds=n_seeds, steps=steps,
                                           checkpoints=checkpoints, batch_size=batch_size, optimizer=optimizer,
                                           lr=lr, momentum=momentum, channels=channels, seed=seed,
                                           keep_states=True, progress=progress, desc=f"training on classes {classes}")
    traj = trajectories_from_probs(probs, checkpoints, pset, [seed + k for k in range(n_seeds)], config)
    return traj, states


def model_from_state(state: dict, channels=(8, 16), device="auto") -> SmallCNN:
    """A SmallCNN (eval mode) holding the weights ``state`` (a state dict from :func:`record_task`);
    the number of classes is read off the head."""
    if not isinstance(state, dict) or "head.weight" not in state:
        raise ValueError("state must be a SmallCNN state dict (with a 'head.weight' entry)")
    model = SmallCNN(int(state["head.weight"].shape[0]), check_channels(channels))
    model.load_state_dict(state)
    return model.to(get_device(device)).eval()


@torch.no_grad()
def backbone_features(states, X, channels=(8, 16), *, batch: int = 2048, device="auto") -> torch.Tensor:
    """Penultimate features phi(x; w_1) of images ``X`` (n, 1, 28, 28) under each state dict of
    ``states`` (a list of T checkpoints, or a single state dict) -> float64 tensor (T, n, d) (or
    (n, d) for one state), d = 16 * c2.  The backbone is frozen: nothing is trained."""
    single = isinstance(states, dict)
    states = [states] if single else list(states)
    if not states:
        raise ValueError("states must be a state dict or a non-empty list of state dicts")
    batch = check_positive_int("batch", batch)
    dev = get_device(device)
    X = torch.as_tensor(X)
    if X.ndim != 4 or tuple(X.shape[1:]) != (1, 28, 28):
        raise ValueError(f"X must have shape (n, 1, 28, 28), got {tuple(X.shape)}")
    X = X.to(dev)
    out = []
    for st in states:
        m = model_from_state(st, channels, dev)
        out.append(torch.cat([m.features(X[i:i + batch]).double() for i in range(0, len(X), batch)]))
    f = torch.stack(out)
    return f[0] if single else f


# ----------------------------------------------------------------------------- heads
def _as_features(name, x, dev) -> torch.Tensor:
    t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else np.asarray(x), dtype=torch.float64).to(dev)
    if t.ndim < 2 or t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., n, d) with n, d >= 1, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite; it has NaN or inf entries")
    return t


def _as_labels(name, y, n, n_classes, dev) -> torch.Tensor:
    t = torch.as_tensor(y.detach().cpu() if isinstance(y, torch.Tensor) else np.asarray(y))
    if t.ndim != 1 or len(t) != n or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer array of length {n}, got dtype {t.dtype} shape {tuple(t.shape)}")
    if n and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(f"{name} must contain integers in [0, {n_classes - 1}]")
    return t.long().to(dev)


def imprint_accuracy(f_fit, y_fit, f_test, y_test, n_classes: int, *, device="auto"):
    """Test accuracy of the imprinted head of eq. (7) of S.

    ``f_fit`` (..., n, d) features of the images the head is imprinted from, ``y_fit`` (n,) their
    labels in [0, n_classes - 1] (every class present); ``f_test`` (..., N, d), ``y_test`` (N,).
    Leading axes (e.g. checkpoints) must match.  Returns a float, or float64 NumPy (...) accuracies.
    """
    dev = get_device(device)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    ff, ft = _as_features("f_fit", f_fit, dev), _as_features("f_test", f_test, dev)
    if ff.shape[:-2] != ft.shape[:-2] or ff.shape[-1] != ft.shape[-1]:
        raise ValueError(f"f_fit and f_test must share leading axes and d, got {tuple(ff.shape)} and {tuple(ft.shape)}")
    yf = _as_labels("y_fit", y_fit, ff.shape[-2], n_classes, dev)
    yt = _as_labels("y_test", y_test, ft.shape[-2], n_classes, dev)
    w = imprint(ff, yf, n_classes, device=dev)
    acc = (imprinted_probabilities(ft, w, device=dev).argmax(-1) == yt).double().mean(-1)
    return float(acc) if acc.ndim == 0 else acc.cpu().numpy()


@dataclass
class LinearProbe:
    """A linear head on frozen features: logits = features @ weight.T + bias.

    weight (K, d) float64, bias (K,) float64 (zeros when trained without a bias); ``unit_norm``:
    whether the rows of ``weight`` were constrained to norm 1 (the constraint of App. D).
    ``loss`` (steps,) the training objective after each step.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    unit_norm: bool
    loss: np.ndarray

    def probabilities(self, features) -> torch.Tensor:
        """softmax(features @ weight.T + bias): (..., n, d) -> (..., n, K) float64."""
        f = _as_features("features", features, self.weight.device)
        if f.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"features must have d = {self.weight.shape[1]}, got {f.shape[-1]}")
        return torch.softmax(f @ self.weight.T + self.bias, -1)

    def accuracy(self, features, labels) -> float:
        """Fraction of ``labels`` (n,) predicted by the argmax of :meth:`probabilities`."""
        p = self.probabilities(features)
        y = _as_labels("labels", labels, p.shape[-2], p.shape[-1], p.device)
        return float((p.argmax(-1) == y).double().mean())


def linear_probe(features, labels, n_classes: int, *, unit_norm: bool = False, bias: bool = True,
                 steps: int = 300, lr: float = 0.05, weight_decay: float = 0.0, init=None,
                 device="auto") -> LinearProbe:
    """Train a final layer on frozen features: the alternative to imprinting of Remark 2 / App. D of S.

    Minimises the mean cross-entropy (minus eq. 12 averaged over samples) of
    ``softmax(features @ W.T + b)`` by full-batch Adam for ``steps`` steps (float64, no randomness:
    same inputs -> same head).

    Parameters
    ----------
    features : (n, d) frozen backbone features; labels : (n,) ints in [0, n_classes - 1].
    unit_norm : False (default) -- a free linear probe; True -- the problem of App. D: each row of
        W is parametrised as v_c / ||v_c|| (norm 1, no bias), the constraint under which the
        imprinted weights maximise the first term of eq. (12).
    bias : learn a bias (default True; ignored with ``unit_norm``).
    steps : int >= 1, default 300.  lr : Adam step size > 0, default 0.05.
    weight_decay : >= 0, default 0 (L2 penalty 0.5 * weight_decay * ||W||^2 added to the loss).
    init : (n_classes, d) starting weights; default zeros (free) or the imprinted weights (unit_norm).

    Returns a :class:`LinearProbe`.
    """
    dev = get_device(device)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    f = _as_features("features", features, dev)
    if f.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {tuple(f.shape)}")
    y = _as_labels("labels", labels, f.shape[0], n_classes, dev)
    steps = check_positive_int("steps", steps)
    lr = check_positive_real("lr", lr)
    weight_decay = check_positive_real("weight_decay", weight_decay, allow_zero=True)
    for name, flag in (("unit_norm", unit_norm), ("bias", bias)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    d = f.shape[1]
    if init is None:
        if unit_norm:
            w0 = imprint(f, y, n_classes, device=dev)
        else:
            w0 = torch.zeros(n_classes, d, dtype=torch.float64, device=dev)
    else:
        w0 = _as_features("init", init, dev)
        if tuple(w0.shape) != (n_classes, d):
            raise ValueError(f"init must have shape (n_classes, d) = ({n_classes}, {d}), got {tuple(w0.shape)}")
    V = w0.clone().requires_grad_(True)
    use_bias = bias and not unit_norm
    b = torch.zeros(n_classes, dtype=torch.float64, device=dev, requires_grad=use_bias)
    opt = torch.optim.Adam([V, b] if use_bias else [V], lr=lr)

    def weight():
        return V / V.norm(dim=1, keepdim=True).clamp(min=1e-300) if unit_norm else V

    losses = np.empty(steps)
    for s in range(steps):
        W = weight()
        loss = F.cross_entropy(f @ W.T + b, y)
        if weight_decay:
            loss = loss + 0.5 * weight_decay * (W * W).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[s] = float(loss.detach())
    with torch.no_grad():
        return LinearProbe(weight=weight().detach().clone(), bias=b.detach().clone(), unit_norm=unit_norm,
                           loss=losses)


def log_likelihood(features, labels, weight, bias=None, *, device="auto") -> float:
    """Mean log-probability of the labels under the linear head ``softmax(features @ weight.T + bias)``:
    eq. (12) of S summed over classes and divided by the number of samples.

    features (n, d), labels (n,) in [0, K-1], weight (K, d), bias (K,) or None.  Imprinted weights
    maximise only the first term of eq. (12) under ||w_c|| = 1, so a unit-norm head trained on the
    whole of eq. (12) scores at least as high (App. D)."""
    dev = get_device(device)
    f = _as_features("features", features, dev)
    W = _as_features("weight", weight, dev)
    if f.ndim != 2 or W.ndim != 2 or f.shape[1] != W.shape[1]:
        raise ValueError(f"features (n, d) and weight (K, d) must share d, got {tuple(f.shape)} and {tuple(W.shape)}")
    y = _as_labels("labels", labels, f.shape[0], W.shape[0], dev)
    logits = f @ W.T
    if bias is not None:
        bt = torch.as_tensor(bias.detach() if isinstance(bias, torch.Tensor) else np.asarray(bias),
                             dtype=torch.float64).to(dev)
        if tuple(bt.shape) != (W.shape[0],):
            raise ValueError(f"bias must have shape ({W.shape[0]},), got {tuple(bt.shape)}")
        logits = logits + bt
    return float(-F.cross_entropy(logits, y))


def random_orthogonal(d: int, seed: int = 0) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (d, d) float64 (QR of a Gaussian matrix with the
    signs of R's diagonal moved into Q), for the invariance of imprinting under phi -> U phi (App. E)."""
    d = check_positive_int("d", d)
    seed = check_seed("seed", seed)
    A = np.random.default_rng(seed).standard_normal((d, d))
    Q, R = np.linalg.qr(A)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)
