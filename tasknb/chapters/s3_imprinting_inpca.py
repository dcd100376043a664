"""Imprinting, linear probes and runs on several tasks read in one prediction space (Ramesh et al.
2023, "S", §2 eqs. 7-8, Remark 2, App. D-E).

A network trained on task 1 has a backbone phi(x; w_1) and a head w_2 over task 1's classes.  To
read it on task 2 the paper replaces the head by *imprinted* weights, eq. (7): w_c = h_c / ||h_c||
with h_c the sum of the features of task 2's samples of class c (``tasknb.readout.imprint``).
Remark 2 / App. D: imprinting is not the same as training the new head, but close.  The readouts
themselves (imprinting, linear probes, eq. 12) are kernels of :mod:`tasknb.readout`; this module
holds the loops of chapter S3:

``record_task``        train the seeds of a :class:`~tasknb.trajectories.RunConfig` on one task, read
                       every checkpoint through a shared :class:`~tasknb.readout.PredictionSet`
                       (e.g. the union task, eq. 8), keep the weights of every checkpoint
``model_from_state``   a :class:`~tasknb.networks.cnn.SmallCNN` with the weights of a checkpoint
``backbone_features``  features phi(x; w_1) of some images at every checkpoint -> (T, n, d)
``random_orthogonal``  a Haar-random orthogonal matrix, for the invariance of App. E

Everything is deterministic given its seeds and runs on ``tasknb.device.get_device()``.
"""
from __future__ import annotations

import numpy as np
import torch

from ..data import training_images
from ..device import get_device
from ..networks.cnn import SmallCNN, check_channels
from ..readout import PredictionSet
from ..trajectories import Trajectories, run_config, train_supervised_seeds, trajectories_from_probs
from ..validation import check_positive_int, check_seed

__all__ = ["record_task", "model_from_state", "backbone_features", "random_orthogonal"]


# ----------------------------------------------------------------------------- training runs
def record_task(config=None, classes=None, pset: PredictionSet | None = None, *, device="auto",
                progress: bool = False, **changes) -> tuple[Trajectories, list]:
    """Train the seeds of a run on the task ``classes`` and read each checkpoint through ``pset``.

    The training is exactly that of :func:`tasknb.trajectories.record_trajectories` (same data
    draw, initialisation and batch order for a seed, cross-entropy on the task's own head), but the
    models are read through the given ``pset`` -- typically ``prediction_set(dataset, range(10),
    readout="imprint")``, so runs on different tasks land in the prediction space of the union task
    (eq. 8 of S) -- and the weights of every checkpoint are kept (to re-head the backbone later).

    Parameters
    ----------
    config : a :class:`~tasknb.trajectories.RunConfig` or the dataset name; ``classes`` and other
        RunConfig fields as keywords fill in or replace its fields (its defaults: 3 seeds, 300 SGD
        steps, batch 64, lr 0.05).  Its n_test / readout / union_classes / n_imprint are not used:
        ``pset`` says where the models are read.
    classes : the task (labels 0..C-1 in the order of ``classes``), C >= 2.
    pset : PredictionSet where the models are read (N images, K classes).
    device : "auto", "cpu" or "cuda".   progress : a tqdm bar.

    Returns
    -------
    (Trajectories with probs (n_seeds, T, N, K) float32, states) where ``states[k][t]`` is the CPU
    state dict of seed k at checkpoint t.  Same arguments -> same numbers on the same device.
    """
    if classes is not None:
        changes["classes"] = classes
    c = run_config(config, **changes)
    if not isinstance(pset, PredictionSet):
        raise ValueError(f"pset must be a PredictionSet (tasknb.readout.prediction_set), got {type(pset).__name__}")
    if pset.readout == "softmax" and pset.n_classes != len(c.classes):
        raise ValueError(f"pset reads the model's own head (readout='softmax') over {pset.n_classes} classes but the "
                         f"task has {len(c.classes)}; use a prediction_set with readout='imprint'")
    dev = get_device(device)
    config_dict = {k: v for k, v in c.to_dict().items() if k not in ("n_test", "n_imprint")}
    config_dict.update(readout=pset.readout, union_classes=list(pset.classes))
    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    probs, states = train_supervised_seeds(Xtr, ytr, pset, c, keep_states=True, progress=progress,
                                           desc=f"training on classes {list(c.classes)}")
    traj = trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)
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


def random_orthogonal(d: int, seed: int = 0) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (d, d) float64 (QR of a Gaussian matrix with the
    signs of R's diagonal moved into Q), for the invariance of imprinting under phi -> U phi (App. E)."""
    d = check_positive_int("d", d)
    seed = check_seed("seed", seed)
    A = np.random.default_rng(seed).standard_normal((d, d))
    Q, R = np.linalg.qr(A)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)
