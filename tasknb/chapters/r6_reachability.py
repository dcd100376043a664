"""Reachability between tasks: fine-tuning times and the static distance (Achille, Mbeng & Soatto
2019, section 7.2, Fig. 2).

A small MLP is pre-trained on each task of a family (to a training-loss threshold), then every
pre-trained network -- and, as the reference row, the random initialisation they all started from --
is fine-tuned on a fresh draw (held-out images) of every task until the training loss reaches the
threshold (``tasknb.task_distances.fine_tuning_times``); the static distance d_beta(pre-train ->
target) comes from the same runs (``tasknb.task_distances.measure_family``).

``run``                    the family, the fine-tuning times -> :class:`Reachability`
``time_heatmap``           one frame: mean steps per cell over runs, non-converged runs marked
``scatter_figure``         one frame: steps vs d_beta per cell (all runs), with the rank correlations
``rank_correlations``      per-run Spearman correlation over the T x T cells
``within_target_correlations``  per-run correlation of ranks taken within each target's column
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from tasknb.convergence import ThresholdSpec
from tasknb.task_distances import Family, FineTuneTimes, fine_tuning_times, initial_params, measure_family, spearman

__all__ = ["Reachability", "REQUIRED_TASKS", "run", "time_heatmap", "scatter_figure", "rank_correlations",
           "within_target_correlations", "censored"]

#: the tasks the chapter's claims name
REQUIRED_TASKS = ("fashion", "fashion_0_4")


@dataclass
class Reachability:
    """``family`` (pre-training networks, distances); ``times`` the fine-tuning steps, rows: the
    tasks of ``family.names`` then "random init", columns: the targets (fresh draws)."""
    family: Family
    times: FineTuneTimes


def run(tasks, n: int, n_runs: int, hidden: int, lr: float, threshold: float, pretrain_max_steps: int,
        max_steps: int, seed: int = 0, device="auto", progress: bool = False) -> Reachability:
    """Pre-train (and measure) the family, then fine-tune every pre-trained stack and the random
    initialisation on every target's fresh draw (SGD, batch 32, weight decay 5e-4, until ``threshold``
    or ``max_steps``)."""
    for t in REQUIRED_TASKS:
        if t not in tasks:
            raise ValueError(f"tasks must include {list(REQUIRED_TASKS)} (the chapter's claims name them), got {list(tasks)}")
    pre = ThresholdSpec(lr=lr, batch_size=32, threshold=threshold, max_steps=pretrain_max_steps, eval_every=10)
    fam = measure_family(tasks, n, n_runs, hidden, pre, seed=seed, device=device, progress=progress)
    d_in = next(iter(fam.train.values())).X.shape[2]
    sources = {a: fam.single[a].params for a in fam.names}
    sources["random init"] = initial_params(n_runs, d_in, hidden, seed, device)
    ft = ThresholdSpec(lr=lr, batch_size=32, threshold=threshold, max_steps=max_steps, eval_every=10)
    times = fine_tuning_times(sources, fam.fresh, ft, seed=seed, device=device, progress=progress)
    return Reachability(fam, times)


def censored(steps, budget: int) -> np.ndarray:
    """Steps with non-converged runs (inf) replaced by ``budget``: a lower bound on their time."""
    s = np.asarray(steps, dtype=float)
    return np.where(np.isfinite(s), s, float(budget))


def time_heatmap(steps, sources, targets, budget: int, title: str = "", vmax: float | None = None):
    """(S, T, K) steps as a heatmap of the mean over runs (rows: pre-training task, columns: target).
    A cell where some run did not converge within ``budget`` is hatched and says how many ("k/K >
    budget"); one where none did is white and hatched."""
    steps = np.asarray(steps, dtype=float)
    S, T, K = steps.shape
    conv = np.isfinite(steps)
    cnt = conv.sum(-1)
    mean = np.where(cnt > 0, np.where(conv, steps, 0.0).sum(-1) / np.maximum(cnt, 1), np.nan)
    fig, ax = plt.subplots(figsize=(1.35 * T + 2.8, 0.95 * S + 1.5))
    top = vmax if vmax is not None else float(budget)
    im = ax.imshow(np.ma.masked_invalid(np.where(conv.all(-1), mean, np.nan)), cmap="magma_r", vmin=0, vmax=top)
    for i in range(S):
        for j in range(T):
            bad = int((~conv[i, j]).sum())
            if bad:
                ax.add_patch(plt.Rectangle((j - 0.5, i - 0.5), 1, 1, fill=bad < K, facecolor="white",
                                           edgecolor="grey", hatch="//", lw=0.5))
                txt = (f"{bad}/{K} > {budget}" if bad == K else f"{mean[i, j]:.0f}*\n{bad}/{K} > {budget}")
                ax.text(j, i, txt, ha="center", va="center", fontsize=7, color="black")
            else:
                ax.text(j, i, f"{mean[i, j]:.0f}", ha="center", va="center", fontsize=8,
                        color="white" if mean[i, j] > 0.55 * top else "black")
    ax.set_xticks(range(T), targets, rotation=30, ha="right")
    ax.set_yticks(range(S), sources)
    ax.set_xlabel("target (fine-tuned on)")
    ax.set_ylabel("pre-trained on")
    ax.set_title(title or f"SGD steps to the loss threshold (mean over {K} runs; budget {budget})", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def rank_correlations(steps, distances) -> np.ndarray:
    """Per run k, the Spearman correlation over the T x T cells of fine-tuning steps (T, T, K; inf
    ranks last) and static distances (T, T, K) -> (K,)."""
    steps, distances = np.asarray(steps, dtype=float), np.asarray(distances, dtype=float)
    return np.array([spearman(steps[..., k].ravel(), distances[..., k].ravel()) for k in range(steps.shape[-1])])


def _column_ranks(x: np.ndarray) -> np.ndarray:
    out = np.empty_like(x)
    for j in range(x.shape[1]):
        col = x[:, j]
        order = np.argsort(col, kind="mergesort")
        r = np.empty(len(col))
        r[order] = np.arange(len(col), dtype=float)
        for v in np.unique(col):                 # average ranks over ties
            r[col == v] = r[col == v].mean()
        out[:, j] = r
    return out


def within_target_correlations(steps, distances) -> np.ndarray:
    """Per run k, the correlation of ranks taken within each target's column (which source is fastest
    for this target vs which is closest), pooled over the columns -> (K,). Removes what a target's
    own difficulty contributes to both quantities."""
    steps, distances = np.asarray(steps, dtype=float), np.asarray(distances, dtype=float)
    out = []
    for k in range(steps.shape[-1]):
        a, b = _column_ranks(steps[..., k]), _column_ranks(distances[..., k])
        a, b = a - a.mean(0), b - b.mean(0)
        den = np.sqrt((a ** 2).sum() * (b ** 2).sum())
        out.append(float((a * b).sum() / den) if den > 0 else 0.0)
    return np.array(out)


def scatter_figure(steps, distances, names, beta: float, budget: int, rho=None, rho_within=None):
    """Fine-tuning steps (T, T, K) against d_beta (T, T, K): one marker per cell and run (colour: the
    target), non-converged runs drawn at the budget as open triangles."""
    steps, distances = np.asarray(steps, dtype=float), np.asarray(distances, dtype=float)
    T = len(names)
    fig, ax = plt.subplots(figsize=(6.2, 4.0))
    for j, b in enumerate(names):
        x, y = distances[:, j].ravel(), steps[:, j].ravel()
        ok = np.isfinite(y)
        ax.scatter(x[ok], y[ok], s=16, color=f"C{j}", label=f"target {b}", alpha=0.8)
        if (~ok).any():
            ax.scatter(x[~ok], np.full((~ok).sum(), budget), s=30, marker="^", facecolor="none", edgecolor=f"C{j}")
        ax.scatter(distances[j, j], steps[j, j], s=60, marker="x", color=f"C{j}")
    ax.set_xlabel(rf"static distance $d_\beta$(pre-train $\to$ target), $\beta$ = {beta:g} (nats)")
    ax.set_ylabel("fine-tuning steps to the threshold")
    t = "x: same task (fresh draw)"
    if rho is not None:
        t += f"; Spearman {np.mean(rho):+.2f} ± {np.std(rho, ddof=1) / np.sqrt(len(rho)):.2f}"
    if rho_within is not None:
        t += f", within target {np.mean(rho_within):+.2f} ± {np.std(rho_within, ddof=1) / np.sqrt(len(rho_within)):.2f}"
    ax.set_title(t, fontsize=8)
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig
