"""Many seeds of the small CNN trained at once, recording their trajectories in prediction space.

:func:`tasknb.trajectories.record_trajectories` trains the seeds one after another.  Here the
``n_seeds`` networks are one stacked set of weights (a leading seed axis on every tensor) and
``torch.func.vmap`` runs the forward pass of all of them in one call: each seed sees its own
mini-batch, and the loss is the SUM of the per-seed losses.  That sum separates over seeds, so its
gradient with respect to the stacked weights is the stack of the per-seed gradients, and SGD (with
momentum) and Adam, which act element-wise, update every seed exactly as its own optimizer would.
The numbers agree with the sequential recorder up to floating-point reassociation (the batched
convolutions sum in another order), not bitwise; training amplifies those rounding differences, so
they stay below 1e-4 over a dozen steps but grow with the run (about 2e-2 in the largest probability
after 100 Adam steps, measured by ``benchmarks/bench_seed_batching.py``): a batched run is a
different, equally valid, sample of the same seed's trajectory.  Same arguments -> same numbers.

``record_trajectories_batched``  same arguments and result as ``record_trajectories`` (supervised
                                 training, ``readout`` "softmax" or "imprint"), seeds in one vmap
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from .device import get_device
from .geometry import to_union_task
from .trajectories import (SmallCNN, Trajectories, _validated_config, batch_stream, draw_subset, init_cnn,
                           load_task_images, make_optimizer, prediction_set, progress_bar, trajectories_from_probs)

__all__ = ["record_trajectories_batched"]


class _Features(SmallCNN):
    """A SmallCNN whose forward returns the penultimate features (same parameter names), so that
    ``functional_call`` can evaluate ``features`` with stacked weights."""

    def forward(self, x):
        return self.features(x)


def _vmapped(module, params, buffers, X, batch: int) -> torch.Tensor:
    """``module`` applied with each of the S stacked weight sets to the same X -> (S, n, ...)."""
    f = lambda p, b, x: functional_call(module, (p, b), (x,))  # noqa: E731
    return torch.cat([vmap(f, in_dims=(0, 0, None))(params, buffers, X[i:i + batch])
                      for i in range(0, len(X), batch)], dim=1)


@torch.no_grad()
def _stacked_predict(net, feat, params, buffers, pset, batch: int = 2048) -> torch.Tensor:
    """Float64 probabilities (S, N, K) of the S stacked networks read through ``pset``
    (their own softmax head, or eq. 8 of S with an imprinted head for "imprint")."""
    if pset.readout == "softmax":
        logits = _vmapped(net, params, buffers, pset.X, batch)
        if logits.shape[-1] != pset.n_classes:
            raise ValueError(f"the model has {logits.shape[-1]} outputs but this prediction set has "
                             f"{pset.n_classes} classes; use readout='imprint'")
        p = torch.softmax(logits.double(), -1)
    else:
        f_imp = _vmapped(feat, params, buffers, pset.X_imprint, batch).double()
        f_test = _vmapped(feat, params, buffers, pset.X, batch).double()
        p = to_union_task(f_imp, pset.y_imprint, pset.n_classes, eval_features=f_test)
    return p / p.sum(-1, keepdim=True)


def record_trajectories_batched(dataset: str = "fashion_mnist", classes=tuple(range(10)), *, n_seeds: int = 3,
                                steps: int = 300, checkpoints=None, n_test: int = 1000, n_train=None,
                                batch_size: int = 64, optimizer: str = "sgd", lr: float = 0.05,
                                momentum: float = 0.9, channels=(8, 16), seed: int = 0, data_seed: int = 0,
                                readout: str = "softmax", union_classes=None, n_imprint: int = 100,
                                device="auto", progress: bool = False) -> Trajectories:
    """:func:`tasknb.trajectories.record_trajectories` with the ``n_seeds`` networks trained at once.

    Same arguments, same validation, same initialisations (``init_cnn(C, channels, seed + k)``),
    same mini-batch order per seed (``batch_stream(n, batch_size, seed + k)``) and the same
    prediction set; the forward and backward passes of all seeds run as one ``vmap``-ed call on
    stacked weights, and one optimizer steps them all (element-wise, hence per seed).

    Returns :class:`Trajectories` with ``probs`` (n_seeds, T, N, K) float32, equal to the
    sequential recorder's up to float reassociation amplified by training (see the module
    docstring); same arguments -> same numbers.
    """
    config = _validated_config(dataset, classes, n_seeds, steps, checkpoints, n_test, n_train, batch_size,
                               optimizer, lr, momentum, channels, seed, data_seed, readout, union_classes, n_imprint)
    classes, union, channels, checkpoints = (config["classes"], config["union_classes"], config["channels"],
                                             config["checkpoints"])
    n_seeds, steps, seed = config["n_seeds"], config["steps"], config["seed"]
    dev = get_device(device)

    Xtr, ytr = load_task_images(dataset, "train", classes)
    Xtr, ytr = draw_subset(Xtr, ytr, n_train, data_seed + 1)
    pset = prediction_set(dataset, union, n_test, readout=readout, n_imprint=n_imprint,
                          data_seed=data_seed, device=dev)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    C, S = len(classes), n_seeds
    nets = [init_cnn(C, channels, seed + k, dev) for k in range(S)]
    params, buffers = stack_module_state(nets)
    net = SmallCNN(C, channels).to(dev)     # a template: its own weights are never used
    feat = _Features(C, channels).to(dev)
    opt = make_optimizer(list(params.values()), optimizer, lr, momentum)
    streams = [batch_stream(len(ytr), batch_size, seed + k) for k in range(S)]
    loss_one = lambda p, b, x, y: F.cross_entropy(functional_call(net, (p, b), (x,)), y)  # noqa: E731
    losses = vmap(loss_one)

    probs = np.empty((S, len(checkpoints), n_test, len(union)), dtype=np.float32)
    wanted, t_idx = set(checkpoints), 0
    bar = progress_bar(steps, f"training {S} seeds at once", progress)
    for step in range(steps + 1):
        if step in wanted:
            probs[:, t_idx] = _stacked_predict(net, feat, params, buffers, pset).float().cpu().numpy()
            t_idx += 1
        if step == steps:
            break
        b = torch.stack([next(s) for s in streams]).to(dev)           # (S, B)
        loss = losses(params, buffers, Xtr[b], ytr[b]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    config["batched"] = True
    return trajectories_from_probs(probs, checkpoints, pset, [seed + k for k in range(S)], config)
