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

``record_trajectories_batched``  same :class:`~tasknb.trajectories.RunConfig` and result as
                                 ``record_trajectories`` (supervised training, ``readout`` "softmax"
                                 or a feature readout such as "imprint"), seeds in one vmap
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from .data import training_images
from .device import get_device
from .networks.cnn import SmallCNN, init_cnn
from .readout import prediction_set
from .trajectories import (Trajectories, batch_stream, make_optimizer, progress_bar, run_config,
                           trajectories_from_probs)

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
    (their own softmax head, or a head built on their features: eq. 8 of S with an imprinted head
    for "imprint", :func:`~tasknb.readout.readout_probabilities` for the other methods)."""
    if pset.readout == "softmax":
        logits = _vmapped(net, params, buffers, pset.X, batch)
        if logits.shape[-1] != pset.n_classes:
            raise ValueError(f"the model has {logits.shape[-1]} outputs but this prediction set has "
                             f"{pset.n_classes} classes; use readout='imprint'")
        p = torch.softmax(logits.double(), -1)
    else:
        f_imp = _vmapped(feat, params, buffers, pset.X_imprint, batch).double()
        f_test = _vmapped(feat, params, buffers, pset.X, batch).double()
        p = pset.read_features(f_imp, f_test)
    return p / p.sum(-1, keepdim=True)


def record_trajectories_batched(config=None, classes=None, *, device="auto", progress: bool = False,
                                **changes) -> Trajectories:
    """:func:`tasknb.trajectories.record_trajectories` with the ``n_seeds`` networks trained at once.

    Same arguments (a :class:`~tasknb.trajectories.RunConfig` or a dataset name, then RunConfig
    fields as keywords), same validation, same initialisations (``init_cnn(C, channels, seed + k)``),
    same mini-batch order per seed (``batch_stream(n, batch_size, seed + k)``) and the same
    prediction set; the forward and backward passes of all seeds run as one ``vmap``-ed call on
    stacked weights, and one optimizer steps them all (element-wise, hence per seed).

    Returns :class:`Trajectories` with ``probs`` (n_seeds, T, N, K) float32, equal to the
    sequential recorder's up to float reassociation amplified by training (see the module
    docstring); ``config["batched"]`` is True.  Same arguments -> same numbers.
    """
    if classes is not None:
        changes["classes"] = classes
    c = run_config(config, **changes)
    checkpoints, n_seeds, steps, seed = c.checkpoints, c.n_seeds, c.steps, c.seed
    dev = get_device(device)

    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    pset = prediction_set(c.dataset, c.union_classes, c.n_test, readout=c.readout, n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    C, S = len(c.classes), n_seeds
    nets = [init_cnn(C, c.channels, seed + k, dev) for k in range(S)]
    params, buffers = stack_module_state(nets)
    net = SmallCNN(C, c.channels).to(dev)     # a template: its own weights are never used
    feat = _Features(C, c.channels).to(dev)
    opt = make_optimizer(list(params.values()), c.optimizer, c.lr, c.momentum, c.weight_decay)
    streams = [batch_stream(len(ytr), c.batch_size, seed + k) for k in range(S)]
    loss_one = lambda p, b, x, y: F.cross_entropy(functional_call(net, (p, b), (x,)), y)  # noqa: E731
    losses = vmap(loss_one)

    probs = np.empty((S, len(checkpoints), c.n_test, len(c.union_classes)), dtype=np.float32)
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
    return trajectories_from_probs(probs, checkpoints, pset, c.seeds, {**c.to_dict(), "batched": True})
