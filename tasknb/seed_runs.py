"""The pieces of a run of seeds, shared by the sequential and the seed-batched recorders.

``init_seed``, ``batch_seed``   the streams of seed k of a run: ``tasknb.device.derived_seed(seed,
                          purpose, k)`` for the network initialisation and the mini-batch order, so
                          (seed, k) never replays another (seed', k') (as ``seed + k`` did)
``batch_stream``          endless reshuffled mini-batch indices from one seed
``make_optimizer``        SGD (momentum, optionally Nesterov's) or Adam, validated by name
``make_schedule``         the learning-rate schedule of a run: constant or cosine annealing (App. A of S)
``run_optimizer``         both, as a run configuration (``tasknb.trajectories.RunConfig``) asks for them
``progress_bar``          a tqdm.auto bar or None
``OPTIMIZERS``, ``SCHEDULES``, ``check_nesterov``   what they accept

:mod:`tasknb.trajectories` re-exports every name; import them from there.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .device import derived_seed, generator
from .validation import check_bool, check_choice, check_positive_int, check_positive_real, check_seed

__all__ = ["OPTIMIZERS", "SCHEDULES", "init_seed", "batch_seed", "check_nesterov", "batch_stream", "make_optimizer",
           "make_schedule", "run_optimizer", "progress_bar"]

#: optimizers accepted by :func:`make_optimizer` and :class:`RunConfig`
OPTIMIZERS = ("sgd", "adam")
#: learning-rate schedules accepted by :func:`make_schedule` and :class:`RunConfig`
SCHEDULES = ("constant", "cosine")

#: purposes of the per-seed draws of a run (:func:`init_seed`, :func:`batch_seed`)
_INIT_PURPOSE = "trajectories.init"
_BATCH_PURPOSE = "trajectories.batch_order"


def init_seed(seed: int, k: int) -> int:
    """The ``init_cnn`` seed of seed k (k >= 0) of a run with base seed ``seed``:
    ``derived_seed(seed, "trajectories.init", k)``.  Every recorder initialises seed k with it, so
    all methods of one (seed, k) start from the same network."""
    return derived_seed(check_seed("seed", seed), _INIT_PURPOSE, check_positive_int("k", k, minimum=0))


def batch_seed(seed: int, k: int) -> int:
    """The :func:`batch_stream` seed of seed k (k >= 0) of a run with base seed ``seed``:
    ``derived_seed(seed, "trajectories.batch_order", k)``, independent of :func:`init_seed`."""
    return derived_seed(check_seed("seed", seed), _BATCH_PURPOSE, check_positive_int("k", k, minimum=0))


def check_nesterov(nesterov, optimizer: str, momentum: float) -> bool:
    """``nesterov`` must be True or False, and True only with optimizer "sgd" and momentum > 0."""
    nesterov = check_bool("nesterov", nesterov)
    if nesterov and (optimizer != "sgd" or momentum <= 0):
        raise ValueError(f"nesterov=True needs optimizer='sgd' with momentum > 0, got optimizer={optimizer!r}, "
                         f"momentum={momentum:g}")
    return nesterov


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
                   weight_decay: float = 0.0, nesterov: bool = False):
    """torch.optim.SGD (with ``momentum``; Nesterov's momentum with ``nesterov=True``, which needs
    momentum > 0) or Adam over ``params``; arguments validated by name.  ``weight_decay`` is the
    L2 coefficient added to every gradient (coupled, as in torch's SGD and Adam)."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    lr = check_positive_real("lr", lr)
    momentum = check_positive_real("momentum", momentum, allow_zero=True)
    weight_decay = check_positive_real("weight_decay", weight_decay, allow_zero=True)
    nesterov = check_nesterov(nesterov, optimizer, momentum)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def make_schedule(optimizer, steps: int, schedule: str = "constant"):
    """A ``torch.optim.lr_scheduler.LambdaLR`` over ``optimizer`` for a run of ``steps`` steps, to be
    stepped once after every optimizer step (``record_run(..., schedule=...)`` does).

    schedule : "constant" (lr_s = lr) or "cosine" (cosine annealing, App. A of S:
        lr_s = lr (1 + cos(pi s / steps)) / 2 at step s = 0..steps-1, from lr down to just above 0;
        lr_s = 0 from s = steps on).
    """
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    steps = check_positive_int("steps", steps)
    check_choice("schedule", schedule, SCHEDULES)
    if schedule == "constant":
        factor = lambda s: 1.0  # noqa: E731
    else:
        factor = lambda s: 0.5 * (1.0 + math.cos(math.pi * min(s, steps) / steps))  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def run_optimizer(params, config):
    """The optimizer and learning-rate schedule of a run: ``make_optimizer(params, config.optimizer,
    config.lr, config.momentum, config.weight_decay, config.nesterov)`` and ``make_schedule(opt,
    config.steps, config.schedule)``.  ``config`` is a :class:`tasknb.trajectories.RunConfig` (or
    anything with those fields).  Returns (optimizer, LambdaLR)."""
    opt = make_optimizer(params, config.optimizer, config.lr, config.momentum, config.weight_decay, config.nesterov)
    return opt, make_schedule(opt, config.steps, config.schedule)


def progress_bar(total: int, desc: str, enabled: bool):
    """A tqdm.auto bar when ``enabled``, else None."""
    if not enabled:
        return None
    return tqdm(total=total, desc=desc)
