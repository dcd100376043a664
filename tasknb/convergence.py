"""Time to reach a training-loss threshold: K small MLPs trained by SGD at once.

The network is ``Linear(d_in, hidden) -> ReLU -> Linear(hidden, n_classes)``; K runs are held as
stacked parameters (a dict of tensors with a leading run axis K: ``W1`` (K, hidden, d_in),
``b1`` (K, hidden), ``W2`` (K, n_classes, hidden), ``b2`` (K, n_classes)) and trained together with
batched matrix products and plain autograd (``benchmarks/bench_convergence.py``: on one CPU thread, hidden
64, batch 32, 2.7 / 7.7 ms per step for K = 10 / 40 runs, against 3.9 / 15 ms for ``torch.func.vmap``
over ``grad`` of ``functional_call`` and 6.6 / 40 ms for K ``nn.Module`` steps).  The loss of run k is its own
mini-batch mean cross-entropy, so summing over runs gives each run exactly its own gradient.

SGD on ``U = L + (weight_decay / 2) ||w||^2`` (all weights and biases), constant learning rate,
optional heavy-ball momentum with PyTorch's convention (``v <- m v + g``, ``w <- w - lr v``), so a
run equals ``torch.optim.SGD(lr, momentum, weight_decay)`` on the same batches.  Each run k draws
its mini-batches from its own stream ``("convergence.batches", k)``: one random permutation of its
n training points per epoch, ``n // batch_size`` batches per epoch (the remainder is skipped).

Every ``eval_every`` steps (and at step 0) the full-training-set mean cross-entropy (without the
weight-decay term) of every run is computed; the first evaluated step at or below ``threshold`` is
the run's convergence step.  A converged run is **frozen** (it is dropped from the active set, its
parameters stay those of its convergence step), so the returned parameters are the solutions
reached at the threshold.  A run that never reaches it within ``max_steps`` gets ``np.inf`` and a
warning reports how many.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .device import get_device, stream
from .seed_runs import progress_bar
from .validation import check_bool, check_positive_int, check_positive_real, check_real_in, check_seed

__all__ = ["ThresholdSpec", "ThresholdRuns", "init_mlp", "mlp_module", "mlp_logits", "mean_loss",
           "train_until_threshold", "PARAM_NAMES"]

PARAM_NAMES = ("W1", "b1", "W2", "b2")


def init_mlp(n_runs: int, d_in: int, hidden: int, n_classes: int = 10, seed: int = 0,
             device="auto", dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Stacked parameters of ``n_runs`` MLPs, each initialised as ``nn.Linear`` does (uniform in
    ±1/sqrt(fan_in) for weights and biases) from its own stream ``("convergence.init", k)``, so run k's
    initial weights do not depend on ``n_runs``."""
    n_runs = check_positive_int("n_runs", n_runs)
    d_in = check_positive_int("d_in", d_in)
    hidden = check_positive_int("hidden", hidden)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    seed = check_seed("seed", seed)
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    dev = get_device(device)
    shapes = {"W1": (hidden, d_in), "b1": (hidden,), "W2": (n_classes, hidden), "b2": (n_classes,)}
    fan = {"W1": d_in, "b1": d_in, "W2": hidden, "b2": hidden}
    out = {k: [] for k in PARAM_NAMES}
    for r in range(n_runs):
        g = stream(seed, "convergence.init", r)
        for name in PARAM_NAMES:
            bound = 1.0 / math.sqrt(fan[name])
            out[name].append((torch.rand(shapes[name], generator=g, dtype=torch.float64) * 2 - 1) * bound)
    return {k: torch.stack(v).to(device=dev, dtype=dtype) for k, v in out.items()}


def _check_params(params) -> int:
    if not isinstance(params, dict) or set(params) != set(PARAM_NAMES):
        raise ValueError(f"params must be a dict with keys {PARAM_NAMES} (from init_mlp), got "
                         f"{sorted(params) if isinstance(params, dict) else type(params).__name__}")
    K = params["W1"].shape[0]
    if any(params[k].shape[0] != K for k in PARAM_NAMES):
        raise ValueError("params must share the leading run axis K")
    return int(K)


def mlp_module(params: dict, k: int) -> nn.Module:
    """A plain ``nn.Sequential(Linear, ReLU, Linear)`` holding (a copy of) run ``k``'s weights."""
    K = _check_params(params)
    k = check_positive_int("k", k, minimum=0)
    if k >= K:
        raise ValueError(f"k must be in 0..{K - 1}, got {k}")
    hidden, d_in = params["W1"].shape[1:]
    C = params["W2"].shape[1]
    m = nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, C))
    m = m.to(device=params["W1"].device, dtype=params["W1"].dtype)
    with torch.no_grad():
        m[0].weight.copy_(params["W1"][k]); m[0].bias.copy_(params["b1"][k])
        m[2].weight.copy_(params["W2"][k]); m[2].bias.copy_(params["b2"][k])
    return m


def mlp_logits(params: dict, X: torch.Tensor) -> torch.Tensor:
    """Logits (K, n, C) of the K runs on inputs X (K, n, d), or (n, d) shared by all runs."""
    h = torch.relu(torch.matmul(X, params["W1"].transpose(1, 2)) + params["b1"].unsqueeze(1))
    return torch.matmul(h, params["W2"].transpose(1, 2)) + params["b2"].unsqueeze(1)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-run mean cross-entropy (K,) of logits (K, n, C) and labels (K, n)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(dim=1)


def mean_loss(params: dict, X, y, chunk: int = 4096) -> torch.Tensor:
    """Full-set mean cross-entropy (K,) of every run; X (n, d) or (K, n, d), y (n,) or (K, n)."""
    K = _check_params(params)
    X, y = _per_run(X, y, K, params["W1"])
    with torch.no_grad():
        tot = torch.zeros(K, dtype=params["W1"].dtype, device=X.device)
        for s in range(0, X.shape[1], chunk):
            tot += _ce(mlp_logits(params, X[:, s:s + chunk]), y[:, s:s + chunk]) * X[:, s:s + chunk].shape[1]
    return tot / X.shape[1]


def _per_run(X, y, K, like):
    if not torch.is_tensor(X) or X.dim() not in (2, 3):
        raise ValueError(f"X must be a tensor (n, d) or (K, n, d), got {getattr(X, 'shape', type(X).__name__)}")
    if not torch.is_tensor(y) or y.dim() not in (1, 2):
        raise ValueError(f"y must be an integer tensor (n,) or (K, n), got {getattr(y, 'shape', type(y).__name__)}")
    X = X.to(device=like.device, dtype=like.dtype)
    y = y.to(device=like.device, dtype=torch.int64)
    if X.dim() == 2:
        X = X.unsqueeze(0).expand(K, -1, -1)
    if y.dim() == 1:
        y = y.unsqueeze(0).expand(K, -1)
    if X.shape[0] != K or y.shape[0] != K:
        raise ValueError(f"per-run X and y must have K = {K} rows on their first axis, got {X.shape[0]} and {y.shape[0]}")
    if X.shape[1] != y.shape[1]:
        raise ValueError(f"X and y must have the same number of samples, got {X.shape[1]} and {y.shape[1]}")
    if X.shape[2] != like.shape[2]:
        raise ValueError(f"X has {X.shape[2]} features but the networks take {like.shape[2]}")
    return X, y


@dataclass(frozen=True)
class ThresholdSpec:
    """SGD and stopping settings of :func:`train_until_threshold`."""
    lr: float = 0.1
    batch_size: int = 32
    weight_decay: float = 5e-4
    momentum: float = 0.0
    threshold: float = 0.05
    max_steps: int = 3000
    eval_every: int = 10

    def __post_init__(self):
        check_positive_real("lr", self.lr)
        check_positive_int("batch_size", self.batch_size)
        check_positive_real("weight_decay", self.weight_decay, allow_zero=True)
        check_real_in("momentum", self.momentum, 0.0, 0.999)
        check_positive_real("threshold", self.threshold)
        check_positive_int("max_steps", self.max_steps)
        check_positive_int("eval_every", self.eval_every)


@dataclass
class ThresholdRuns:
    """Result of :func:`train_until_threshold`: ``steps`` (K,) the convergence step of each run
    (``np.inf`` if it never reached the threshold), ``final_loss`` (K,) the full-set mean
    cross-entropy at that step (or at ``max_steps``), ``params`` the stacked final parameters,
    ``curve_steps`` (n_evals,) and ``curve_loss`` (n_evals, K) the evaluated losses (a frozen run
    keeps its last value)."""
    steps: np.ndarray
    final_loss: np.ndarray
    params: dict
    curve_steps: np.ndarray
    curve_loss: np.ndarray

    @property
    def converged(self) -> np.ndarray:
        return np.isfinite(self.steps)

    @property
    def n_not_converged(self) -> int:
        return int((~self.converged).sum())


def train_until_threshold(params: dict, X, y, spec: ThresholdSpec = ThresholdSpec(), seed: int = 0,
                          progress: bool = False) -> ThresholdRuns:
    """Train the K stacked runs by SGD until each one's full-training-set mean cross-entropy is at
    or below ``spec.threshold`` (see the module docstring).  ``X`` (n, d) shared or (K, n, d) per
    run, ``y`` (n,) or (K, n) in 0..C-1; ``params`` is not modified."""
    if not isinstance(spec, ThresholdSpec):
        raise ValueError(f"spec must be a ThresholdSpec, got {type(spec).__name__}")
    K = _check_params(params)
    seed = check_seed("seed", seed)
    progress = check_bool("progress", progress)
    like = params["W1"]
    shared = X.dim() == 2 and y.dim() == 1
    X, y = _per_run(X, y, K, like)
    C = params["W2"].shape[1]
    if int(y.min()) < 0 or int(y.max()) >= C:
        raise ValueError(f"y must hold labels in 0..{C - 1}, got values in {int(y.min())}..{int(y.max())}")
    n = X.shape[1]
    B = spec.batch_size
    if B > n:
        raise ValueError(f"batch_size must be <= the number of training samples ({n}), got {B}")
    per_epoch = n // B
    gens = [stream(seed, "convergence.batches", k) for k in range(K)]
    final = {k: v.detach().clone() for k, v in params.items()}
    steps = np.full(K, np.inf)
    final_loss = np.full(K, np.nan)
    curve_steps, curve_loss = [], []

    def evaluate(step, active, p):
        with torch.no_grad():
            if shared:
                loss = _ce(mlp_logits(p, X[0]), y[0].unsqueeze(0).expand(len(active), -1))
            else:
                loss = _ce(mlp_logits(p, X[active]), y[active])
        loss = loss.cpu().numpy()
        row = curve_loss[-1].copy() if curve_loss else np.full(K, np.nan)
        row[active.cpu().numpy()] = loss
        curve_steps.append(step)
        curve_loss.append(row)
        return loss

    active = torch.arange(K, device=like.device)
    p = {k: v.clone() for k, v in final.items()}
    buf = {k: torch.zeros_like(v) for k, v in p.items()} if spec.momentum > 0 else None
    perms = None
    bar = progress_bar(spec.max_steps, "SGD to threshold", progress)
    step = 0
    while True:
        if step % spec.eval_every == 0 or step == spec.max_steps:
            loss = evaluate(step, active, p)
            done = loss <= spec.threshold
            act = active.cpu().numpy()
            steps[act[done]] = step
            stop = np.ones_like(done) if step == spec.max_steps else done
            if stop.any():
                for j in np.nonzero(stop)[0]:
                    final_loss[act[j]] = loss[j]
                    for k in PARAM_NAMES:
                        final[k][act[j]] = p[k][j].detach()
                keep = torch.as_tensor(~stop, device=like.device)
                active = active[keep]
                p = {k: v[keep].detach().clone() for k, v in p.items()}
                if buf is not None:
                    buf = {k: v[keep].clone() for k, v in buf.items()}
                if perms is not None:
                    perms = perms[keep]
            if len(active) == 0:
                break
        if step % per_epoch == 0 or perms is None:
            # new epoch: each run its own permutation (drawn for all K runs so streams stay aligned)
            allp = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(like.device)
            perms = allp[active]
        e = step % per_epoch
        idx = perms[:, e * B:(e + 1) * B]
        ar = active.unsqueeze(1)
        xb, yb = X[ar, idx], y[ar, idx]
        for v in p.values():
            v.requires_grad_(True)
        loss_b = _ce(mlp_logits(p, xb), yb).sum()
        grads = torch.autograd.grad(loss_b, [p[k] for k in PARAM_NAMES])
        with torch.no_grad():
            new = {}
            for k, gk in zip(PARAM_NAMES, grads):
                w = p[k].detach()
                d = gk + spec.weight_decay * w if spec.weight_decay > 0 else gk
                if buf is not None:
                    buf[k] = spec.momentum * buf[k] + d
                    d = buf[k]
                new[k] = w - spec.lr * d
        p = new
        step += 1
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    n_bad = int(np.isinf(steps).sum())
    if n_bad:
        warnings.warn(f"{n_bad} of {K} runs did not reach loss {spec.threshold:g} within "
                      f"max_steps = {spec.max_steps}; their steps are inf", RuntimeWarning, stacklevel=2)
    return ThresholdRuns(steps, final_loss, final, np.array(curve_steps),
                         np.stack(curve_loss))
