"""Convergence time of SGD from random initialisation (Achille, Mbeng & Soatto 2019, "R", §7.1 and
Fig. 1): steps to a training-loss threshold vs the random-label fraction, vs the batch size at a
fixed learning rate (D ∝ η/B), and vs the complexity C_β of the reached solution (eq. (16):
log τ = a + ΔC_β / D).

Every sweep trains its runs at once (``tasknb.convergence.train_until_threshold``, K stacked MLPs);
a run is frozen at its convergence step, so its parameters are the solution "reached at the
threshold" whose complexity is measured (``tasknb.complexity.complexity`` with the true Fisher).

Replicate s (s = 0..n_seeds-1) fixes the images (``task_data`` seed ``derived_seed(seed,
"r5.data", s)``) and the initial weights (run s of ``init_mlp`` under ``derived_seed(seed,
"r5.init")``); a sweep changes only the labels (random fraction) or the batch size, so the
differences between settings are paired by replicate.

``fraction_sweep``   steps to threshold for every (random fraction, replicate) -> :class:`Sweep`
``batch_sweep``      steps to threshold for every (batch size, replicate) at one learning rate
``sweep_complexity`` C_β of every converged run of a sweep and its parts -> :class:`SweepComplexity`
``line_fit``         ordinary least squares y = a + b x with the standard error of b, and R²
``within_slope``     the slope of y on x within groups (group fixed effects), with its SE
``fraction_figure``, ``batch_frame``, ``complexity_figure``: the figures (``batch_frame`` is one
slider frame: the training-loss curves at one batch size)
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from tasknb.complexity import complexity, complexity_from_eigenvalues
from tasknb.convergence import ThresholdSpec, init_mlp, mlp_module, train_until_threshold
from tasknb.device import derived_seed
from tasknb.seed_runs import progress_bar
from tasknb.task_family import N_CLASSES, TASKS, task_data
from tasknb.validation import (check_bool, check_choice, check_positive_int, check_positive_real,
                               check_real_in, check_seed)

__all__ = ["Sweep", "fraction_sweep", "batch_sweep", "sweep_complexity", "line_fit", "LineFit",
           "within_slope", "SweepComplexity", "fraction_figure", "batch_frame", "complexity_figure"]


@dataclass
class Sweep:
    """Runs of one sweep: ``values`` the swept setting (fractions or batch sizes), ``steps``
    (n_values, n_seeds) steps to threshold (inf: not converged), ``final_loss`` likewise,
    ``params`` a list (one per value) of stacked parameters (n_seeds runs), ``data`` a list (one per
    value) of (X (n_seeds, n, d), y (n_seeds, n)), ``curves`` a list of (curve_steps, curve_loss)."""
    name: str
    values: list
    steps: np.ndarray
    final_loss: np.ndarray
    params: list
    data: list
    curves: list

    @property
    def n_not_converged(self) -> int:
        return int(np.isinf(self.steps).sum())

    @property
    def n_runs(self) -> int:
        return int(self.steps.size)


def _replicate_data(task, n, n_seeds, seed, size, fraction):
    Xs, ys = [], []
    for s in range(n_seeds):
        t = task_data(task, n, seed=derived_seed(seed, "r5.data", s), size=size, random_fraction=fraction)
        Xs.append(t.X)
        ys.append(t.y)
    return torch.stack(Xs), torch.stack(ys)


def _check_common(task, n, n_seeds, hidden, size, seed, spec):
    check_choice("task", task, TASKS)
    n = check_positive_int("n", n, minimum=N_CLASSES)
    n_seeds = check_positive_int("n_seeds", n_seeds, minimum=2)
    hidden = check_positive_int("hidden", hidden)
    size = check_positive_int("size", size, minimum=2)
    seed = check_seed("seed", seed)
    if not isinstance(spec, ThresholdSpec):
        raise ValueError(f"spec must be a ThresholdSpec, got {type(spec).__name__}")
    return n, n_seeds, hidden, size, seed


def fraction_sweep(fractions, n_seeds: int, n: int, hidden: int, spec: ThresholdSpec, seed: int = 0,
                   task: str = "fashion", size: int = 14, device="auto", progress: bool = False) -> Sweep:
    """Steps to ``spec.threshold`` for every random-label fraction in ``fractions`` and replicate,
    all (fraction, replicate) runs in ONE call of the batched trainer (per-run data)."""
    n, n_seeds, hidden, size, seed = _check_common(task, n, n_seeds, hidden, size, seed, spec)
    fractions = [check_real_in("fractions", f, 0.0, 1.0) for f in fractions]
    if len(fractions) < 2 or fractions[0] != 0.0 or any(np.diff(fractions) <= 0):
        raise ValueError(f"fractions must be increasing and start at 0 (the clean-label control), got {fractions}")
    check_bool("progress", progress)
    data = [_replicate_data(task, n, n_seeds, seed, size, f) for f in fractions]
    X = torch.cat([d[0] for d in data])
    y = torch.cat([d[1] for d in data])
    p0 = init_mlp(n_seeds, X.shape[-1], hidden, N_CLASSES, seed=derived_seed(seed, "r5.init"), device=device)
    F = len(fractions)
    p = {k: v.repeat(F, *[1] * (v.dim() - 1)) for k, v in p0.items()}
    r = train_until_threshold(p, X, y, spec, seed=derived_seed(seed, "r5.batches.fraction"), progress=progress)
    S = n_seeds
    params = [{k: v[i * S:(i + 1) * S] for k, v in r.params.items()} for i in range(F)]
    curves = [(r.curve_steps, r.curve_loss[:, i * S:(i + 1) * S]) for i in range(F)]
    return Sweep("random-label fraction", fractions, r.steps.reshape(F, S), r.final_loss.reshape(F, S),
                 params, data, curves)


def batch_sweep(batch_sizes, n_seeds: int, n: int, hidden: int, spec: ThresholdSpec, seed: int = 0,
                task: str = "fashion", size: int = 14, fraction: float = 0.0, device="auto",
                progress: bool = False) -> Sweep:
    """Steps to threshold for every batch size (at ``spec.lr``: D ∝ lr / B) and replicate; the
    replicates' images and initial weights are those of :func:`fraction_sweep` at ``fraction``."""
    n, n_seeds, hidden, size, seed = _check_common(task, n, n_seeds, hidden, size, seed, spec)
    bs = [check_positive_int("batch_sizes", b) for b in batch_sizes]
    if len(bs) < 2 or any(np.diff(bs) <= 0):
        raise ValueError(f"batch_sizes must be at least two increasing integers, got {bs}")
    if bs[-1] > n:
        raise ValueError(f"batch_sizes must be <= n = {n}, got {bs[-1]}")
    fraction = check_real_in("fraction", fraction, 0.0, 1.0)
    progress = check_bool("progress", progress)
    X, y = _replicate_data(task, n, n_seeds, seed, size, fraction)
    p0 = init_mlp(n_seeds, X.shape[-1], hidden, N_CLASSES, seed=derived_seed(seed, "r5.init"), device=device)
    steps, final, params, curves = [], [], [], []
    bar = progress_bar(len(bs), "batch sizes", progress)
    for i, B in enumerate(bs):
        sp = ThresholdSpec(lr=spec.lr, batch_size=B, weight_decay=spec.weight_decay, momentum=spec.momentum,
                           threshold=spec.threshold, max_steps=spec.max_steps, eval_every=spec.eval_every)
        r = train_until_threshold(p0, X, y, sp, seed=derived_seed(seed, "r5.batches.size", i))
        steps.append(r.steps); final.append(r.final_loss); params.append(r.params)
        curves.append((r.curve_steps, r.curve_loss))
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return Sweep("batch size", bs, np.stack(steps), np.stack(final), params, [(X, y)] * len(bs), curves)


@dataclass
class SweepComplexity:
    """C_β(w0) of every run of a sweep and its parts, arrays (n_values, n_seeds) (NaN: not
    converged): ``total = loss + norm_term + logdet_term``; ``eigenvalues`` the Fisher spectra
    (for other β without recomputing the Fisher: :meth:`at_beta`)."""
    total: np.ndarray
    loss: np.ndarray
    norm_term: np.ndarray
    logdet_term: np.ndarray
    sq_norm: np.ndarray
    eigenvalues: list
    beta: float
    lam: float

    def at_beta(self, beta: float) -> np.ndarray:
        """C_β totals at another β from the stored spectra (the Fisher does not depend on β)."""
        beta = check_positive_real("beta", beta)
        out = np.full(self.total.shape, np.nan)
        for (i, s), ev in self.eigenvalues:
            out[i, s] = complexity_from_eigenvalues(self.loss[i, s], self.sq_norm[i, s], ev, beta, self.lam).total
        return out


def sweep_complexity(sweep: Sweep, beta: float, lam: float = 1.0, seed: int = 0,
                     progress: bool = False) -> SweepComplexity:
    """C_β(w0) (``tasknb.complexity.complexity``: true Fisher with labels sampled from the model,
    exact log-det through the per-sample-gradient Gram, summed loss) of every converged run of
    ``sweep`` on its own training set; NaN for runs that did not converge."""
    if not isinstance(sweep, Sweep):
        raise ValueError(f"sweep must be a Sweep, got {type(sweep).__name__}")
    beta = check_positive_real("beta", beta)
    lam = check_positive_real("lam", lam)
    seed = check_seed("seed", seed)
    progress = check_bool("progress", progress)
    arrs = {k: np.full(sweep.steps.shape, np.nan) for k in ("total", "loss", "norm_term", "logdet_term", "sq_norm")}
    eig = []
    bar = progress_bar(sweep.n_runs, "complexity C_beta", progress)
    for i in range(len(sweep.values)):
        X, y = sweep.data[i]
        for s in range(sweep.steps.shape[1]):
            if np.isfinite(sweep.steps[i, s]):
                m = mlp_module(sweep.params[i], s)
                dev = m[0].weight.device
                c = complexity(m, X[s].to(dev), y[s].to(dev), beta, lam=lam, fisher="true", method="exact",
                               seed=derived_seed(seed, "r5.fisher", i, s))
                for k in arrs:
                    arrs[k][i, s] = getattr(c, k)
                eig.append(((i, s), np.asarray(c.eigenvalues)))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return SweepComplexity(**arrs, eigenvalues=eig, beta=beta, lam=lam)


@dataclass
class LineFit:
    """y = intercept + slope x by least squares; ``slope_se`` its standard error, ``r2``."""
    intercept: float
    slope: float
    slope_se: float
    r2: float
    n: int

    def describe(self, x_name: str = "x", y_name: str = "y") -> str:
        return (f"{y_name} = {self.intercept:.3f} + ({self.slope:.4g} ± {self.slope_se:.2g}) {x_name}, "
                f"R² = {self.r2:.3f}, {self.n} points")


def line_fit(x, y) -> LineFit:
    """Ordinary least squares of y on x (finite pairs only); slope SE from the residual variance."""
    x, y = np.asarray(x, float).ravel(), np.asarray(y, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same size, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 3 or np.ptp(x) == 0:
        raise ValueError(f"line_fit needs at least 3 finite points with distinct x, got {len(x)}")
    xc = x - x.mean()
    b = float((xc * (y - y.mean())).sum() / (xc ** 2).sum())
    a = float(y.mean() - b * x.mean())
    res = y - a - b * x
    s2 = float((res ** 2).sum() / (len(x) - 2))
    se = float(np.sqrt(s2 / (xc ** 2).sum()))
    r2 = float(1 - (res ** 2).sum() / ((y - y.mean()) ** 2).sum()) if np.ptp(y) > 0 else 0.0
    return LineFit(a, b, se, r2, len(x))


def within_slope(x, y) -> LineFit:
    """Slope of y on x after removing each group's mean (rows of the (groups, members) arrays x, y
    are the groups): does y follow x *within* a group, not only between groups?"""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x and y must be (groups, members) arrays of one shape, got {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    xs, ys = [], []
    for g in range(x.shape[0]):
        m = ok[g]
        if m.sum() >= 2:
            xs.append(x[g, m] - x[g, m].mean())
            ys.append(y[g, m] - y[g, m].mean())
    xd, yd = np.concatenate(xs), np.concatenate(ys)
    b = float((xd * yd).sum() / (xd ** 2).sum())
    res = yd - b * xd
    dof = len(xd) - len(xs) - 1
    se = float(np.sqrt((res ** 2).sum() / dof / (xd ** 2).sum()))
    r2 = float(1 - (res ** 2).sum() / (yd ** 2).sum())
    return LineFit(0.0, b, se, r2, len(xd))


def _mean_se(a):
    a = np.asarray(a, float)
    return a.mean(-1), a.std(-1, ddof=1) / np.sqrt(a.shape[-1])


def fraction_figure(sweep: Sweep, fit: LineFit | None = None):
    """log steps vs random-label fraction: every replicate (grey) and the mean ± 1 SE."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    v = np.asarray(sweep.values)
    logt = np.log(sweep.steps)
    for s in range(logt.shape[1]):
        ax.plot(v, logt[:, s], "-", color="0.75", lw=0.8)
    m, se = _mean_se(logt)
    ax.errorbar(v, m, yerr=se, fmt="o-", color="C0", capsize=3, label="mean ± 1 SE")
    if fit is not None:
        ax.plot(v, fit.intercept + fit.slope * v, "--", color="C2", label="line (eq. 16 with C ∝ fraction)")
    ax.set_xlabel("random-label fraction")
    ax.set_ylabel("log(steps to threshold)")
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def batch_frame(sweep: Sweep, i: int, threshold: float, lr: float, ylim=None):
    """Slider frame i: the training-loss curves of every replicate at batch size ``values[i]``,
    with the steps to threshold of all batch sizes (mean ± SE) in a second panel."""
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    cs, cl = sweep.curves[i]
    for s in range(cl.shape[1]):
        ax.plot(cs, cl[:, s], color=f"C{s % 10}", lw=1)
    ax.axhline(threshold, color="k", ls=":", lw=1, label=f"threshold {threshold:g}")
    ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    B = sweep.values[i]
    ax.set_title(f"B = {B}, D ∝ η/B = {lr / B:.3g}", fontsize="small")
    ax.set_xlabel("SGD step")
    ax.set_ylabel("training loss (mean CE)")
    ax.legend(fontsize="small")
    m, se = _mean_se(np.log(sweep.steps))
    ax2.errorbar(sweep.values, m, yerr=se, fmt="o-", color="C0", capsize=3)
    ax2.plot([B], [m[i]], "o", ms=12, mfc="none", color="C3")
    ax2.set_xscale("log", base=2)
    ax2.set_xlabel("batch size B (fixed η)")
    ax2.set_ylabel("log(steps to threshold)")
    fig.tight_layout()
    return fig


def complexity_figure(C, steps, labels, fit: LineFit | None = None, label_name: str = "fraction"):
    """log steps vs C_β of the reached solution, coloured by setting (rows of C, steps)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    C, logt = np.asarray(C, float), np.log(np.asarray(steps, float))
    for i, lab in enumerate(labels):
        ax.plot(C[i], logt[i], "o", color=f"C{i % 10}", label=f"{label_name} {lab}")
    if fit is not None:
        xs = np.linspace(np.nanmin(C), np.nanmax(C), 50)
        ax.plot(xs, fit.intercept + fit.slope * xs, "k--", lw=1, label="fit of eq. (16)")
    ax.set_xlabel(r"complexity $C_\beta(w_0)$ of the reached solution (nats)")
    ax.set_ylabel("log(steps to threshold)")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig
