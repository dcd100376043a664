"""Many seeds of the small CNN trained at once, recording their trajectories in prediction space.

:func:`tasknb.trajectories.train_supervised_seeds` trains the seeds one after another.  Here the
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
The learning-rate schedule (``make_schedule``) is one for all seeds, stepped after every step.

On the CPU the vmap is slower than the plain loop (``benchmarks/bench_seed_batching.py``), so
``tasknb.trajectories.record_trajectories(batched="auto")`` uses it only on CUDA;
``record_trajectories(batched=True)`` (or ``record_trajectories_batched``) forces it.

``train_supervised_seeds_batched``  same :class:`~tasknb.trajectories.RunConfig`, arguments and
                                    result as ``train_supervised_seeds`` (supervised training,
                                    readout "softmax" or "imprint"), seeds in one vmap
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, stack_module_state, vmap

from .networks.cnn import SmallCNN, init_cnn
from .readout import PredictionSet
from .seed_runs import batch_seed, batch_stream, init_seed, progress_bar, run_optimizer

__all__ = ["train_supervised_seeds_batched"]


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
                             f"{pset.n_classes} classes; use a feature readout such as readout='prototype_ml'")
        p = torch.softmax(logits.double(), -1)
    else:
        f_imp = _vmapped(feat, params, buffers, pset.X_imprint, batch).double()
        f_test = _vmapped(feat, params, buffers, pset.X, batch).double()
        p = pset.read_features(f_imp, f_test)
    return p / p.sum(-1, keepdim=True)


def train_supervised_seeds_batched(X: torch.Tensor, y: torch.Tensor, pset: PredictionSet, config, *,
                                   progress: bool = False, desc: str | None = None):
    """:func:`tasknb.trajectories.train_supervised_seeds` with the ``config.n_seeds`` networks
    trained at once: cross-entropy on images X (n, 1, 28, 28) with task labels y (n,) in 0..C-1
    (C = len(config.classes)), read through ``pset`` at ``config.checkpoints``.

    ``config`` is a :class:`tasknb.trajectories.RunConfig` (validated there).  Same initialisations
    (``init_cnn(C, channels, init_seed(seed, k), norm=norm, head_bias=head_bias)``), same
    mini-batch order per seed (``batch_stream(n, batch_size, batch_seed(seed, k))``), the same
    optimizer and schedule (``make_optimizer(..., nesterov)``, ``make_schedule(opt, steps,
    schedule)``, stepped after every step) and the same readout; the forward and backward passes
    of all seeds run as one ``vmap``-ed call on stacked weights, and one optimizer steps them all
    (element-wise, hence per seed).

    Returns probs float32 (n_seeds, T, N, K), equal to the sequential trainer's up to float
    reassociation amplified by training (see the module docstring), and None (no states kept).
    Same arguments -> same numbers.  Warns (RuntimeWarning) if a checkpoint's predictions are not
    finite.
    """
    c = config
    checkpoints, S, steps, seed, dev = c.checkpoints, c.n_seeds, c.steps, c.seed, X.device
    C = len(c.classes)
    arch = dict(norm=c.norm, head_bias=c.head_bias)
    nets = [init_cnn(C, c.channels, init_seed(seed, k), dev, **arch) for k in range(S)]
    params, buffers = stack_module_state(nets)
    net = SmallCNN(C, c.channels, **arch).to(dev)     # a template: its own weights are never used
    feat = _Features(C, c.channels, **arch).to(dev)
    opt, schedule = run_optimizer(list(params.values()), c)
    streams = [batch_stream(len(y), c.batch_size, batch_seed(seed, k)) for k in range(S)]
    loss_one = lambda p, b, x, t: F.cross_entropy(functional_call(net, (p, b), (x,)), t)  # noqa: E731
    losses = vmap(loss_one)

    probs = np.empty((S, len(checkpoints), len(pset.labels), pset.n_classes), dtype=np.float32)
    wanted, t_idx = set(checkpoints), 0
    bar = progress_bar(steps, desc or f"training {S} seeds at once", progress)
    for step in range(steps + 1):
        if step in wanted:
            probs[:, t_idx] = _stacked_predict(net, feat, params, buffers, pset).float().cpu().numpy()
            if not np.isfinite(probs[:, t_idx]).all():
                warnings.warn(f"the predictions after {step} steps are not finite: training diverged "
                              f"(try a smaller lr)", RuntimeWarning, stacklevel=2)
            t_idx += 1
        if step == steps:
            break
        b = torch.stack([next(s) for s in streams]).to(dev)           # (S, B)
        loss = losses(params, buffers, X[b], y[b]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        schedule.step()
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return probs, None
