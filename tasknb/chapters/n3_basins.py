"""Basins of the loss landscape after transfer (Neyshabur, Sedghi & Zhang 2020, "N", the slides on
performance barriers, their extrapolation to [-1, 2], identical-initialisation RI-T pairs and
cross-domain weight interpolation).

Two trained networks Theta (lam = 0) and Theta~ (lam = 1) are compared along the straight line
Theta_lam = (1 - lam) Theta + lam Theta~ (``tasknb.landscape.interpolation_curve``, every lam of the
grid at once); the *barrier* is the largest drop of test accuracy (or rise of test loss) below the
chord between the endpoints over lam in [0, 1] (``tasknb.landscape.barrier``, Frankle et al. 2020).

``lambda_grid``          an evenly spaced grid on [low, high] (default [-1, 2]) that holds 0, 1/2 and 1
``train_basin_models``   the networks of the chapter, in pairs -> :class:`BasinModels`:
                         pair j of kind "P-T" / "RI-T" = runs 2j and 2j+1 of ``target_runs`` on
                         task A (P-T: one source body, new heads 2j and 2j+1; RI-T: random
                         initialisations 2j and 2j+1; batch orders 2j and 2j+1);
                         "RI-T same init" = RI-T run 2j and a second run FROM ITS START with
                         batch order 2j+1 (the slides' identical-initialisation control);
                         "P-T same start" = the same for P-T (one head: the pair differs only in
                         its mini-batch order);
                         cross-domain pair j = (A's run 2j+1, B's run j) of each kind (different
                         heads / initialisations, different batch orders, different domains).
``pair_curves``          the interpolation curves of a list of pairs on one test set -> :class:`PairCurves`
                         (per-pair barrier, midpoint gain)
``curve_panel``          one figure of curves (a slider frame)

The second run of a same-start pair uses the batch order ``derived_seed(seed,
"pretraining.target_batches", 2j + 1)``, the stream ``target_runs`` gives run 2j + 1: same-start
and different-start pairs then share model A and both batch orders and differ only in where
model B starts, a paired comparison.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from tasknb.device import derived_seed, get_device
from tasknb.landscape import InterpolationCurve, barrier, interpolation_curve
from tasknb.networks.resnet import SmallResNet
from tasknb.pretraining import TaskImages, TrainSpec, load_state, target_runs, train_network
from tasknb.seed_runs import progress_bar
from tasknb.validation import check_positive_int, check_real_in

__all__ = ["PAIR_KINDS", "CROSS_KINDS", "lambda_grid", "BasinModels", "train_basin_models", "PairCurves",
           "pair_curves", "curve_panel"]

#: the within-domain pair kinds, in the order the chapter shows them
PAIR_KINDS = ("P-T", "RI-T", "RI-T same init", "P-T same start")
#: the cross-domain pair kinds
CROSS_KINDS = ("P-T", "RI-T")


def lambda_grid(n_lambdas: int, low: float = -1.0, high: float = 2.0) -> np.ndarray:
    """``n_lambdas`` evenly spaced values on [low, high] together with 0, 0.5 and 1 (sorted, unique).

    low <= 0 and high >= 1 (the endpoints of the pair must be on the grid); n_lambdas >= 3.
    """
    n_lambdas = check_positive_int("n_lambdas", n_lambdas, minimum=3)
    low = check_real_in("low", low, -100.0, 0.0)
    high = check_real_in("high", high, 1.0, 100.0)
    grid = np.concatenate([np.linspace(low, high, n_lambdas), [0.0, 0.5, 1.0]])
    return np.unique(np.round(grid, 12))


@dataclass
class BasinModels:
    """Final states of the chapter's networks.

    pairs : {kind: [(state_a, state_b), ...]} for kind in :data:`PAIR_KINDS`, n_pairs each (task A).
    cross : {kind: [(state on A, state on B), ...]} for kind in :data:`CROSS_KINDS`.
    n_classes : of both tasks; names : (task A's name, task B's name).
    """

    pairs: dict
    cross: dict
    n_classes: int
    names: tuple

    @property
    def n_pairs(self) -> int:
        return len(self.pairs["P-T"])


def _second_run(start: dict, task: TaskImages, spec: TrainSpec, seed: int, k: int, width: int, dev, bar):
    net = load_state(SmallResNet(task.n_classes, width).to(dev), start)
    final = train_network(net, task.X, task.y, spec, derived_seed(seed, "pretraining.target_batches", k)).final
    if bar is not None:
        bar.update(1)
    return final


def train_basin_models(task_a: TaskImages, task_b: TaskImages, spec: TrainSpec, n_pairs: int, seed: int, *,
                       source: dict, width: int = 8, device="auto", progress: bool = False) -> BasinModels:
    """Train the networks of the chapter (see the module docstring): 2 n_pairs P-T and 2 n_pairs RI-T
    runs on ``task_a``, n_pairs second runs from a shared start for each kind, n_pairs P-T and RI-T runs
    on ``task_b`` (same number of classes as ``task_a``) -- 8 n_pairs runs of ``spec.steps`` steps."""
    n_pairs = check_positive_int("n_pairs", n_pairs, minimum=2)
    if task_a.n_classes != task_b.n_classes:
        raise ValueError(f"task_a and task_b must have the same classes for cross-domain interpolation, got "
                         f"{task_a.n_classes} and {task_b.n_classes}")
    dev = get_device(device)
    runs_a = target_runs(task_a, spec, 2 * n_pairs, seed, source=source, width=width, device=dev, progress=progress)
    runs_b = target_runs(task_b, spec, n_pairs, seed, source=source, width=width, device=dev, progress=progress)
    pairs, cross = {}, {}
    bar = progress_bar(2 * n_pairs, "second runs from a shared start", progress)
    for kind, start_kind in (("P-T", "P"), ("RI-T", "RI")):
        fin_a = runs_a.finals(start_kind)
        pairs[kind] = [(fin_a[2 * j], fin_a[2 * j + 1]) for j in range(n_pairs)]
        same = f"{kind} same init" if kind == "RI-T" else f"{kind} same start"
        pairs[same] = [(fin_a[2 * j],
                        _second_run(runs_a.starts[start_kind][2 * j], task_a, spec, seed, 2 * j + 1, width, dev, bar))
                       for j in range(n_pairs)]
        fin_b = runs_b.finals(start_kind)
        cross[kind] = [(fin_a[2 * j + 1], fin_b[j]) for j in range(n_pairs)]
    if bar is not None:
        bar.close()
    return BasinModels({k: pairs[k] for k in PAIR_KINDS}, cross, task_a.n_classes, (task_a.name, task_b.name))


@dataclass
class PairCurves:
    """Interpolation curves of K pairs on one test set, on one lam grid.

    curves : K :class:`tasknb.landscape.InterpolationCurve`; accuracy, loss : (K, L) arrays.
    """

    lambdas: np.ndarray
    curves: list

    @property
    def accuracy(self) -> np.ndarray:
        return np.stack([c.accuracy for c in self.curves])

    @property
    def loss(self) -> np.ndarray:
        return np.stack([c.loss for c in self.curves])

    def at(self, lam: float, metric: str = "accuracy") -> np.ndarray:
        """(K,) values of ``metric`` at the grid point ``lam``."""
        i = np.flatnonzero(np.abs(self.lambdas - lam) < 1e-9)
        if len(i) == 0:
            raise ValueError(f"lam = {lam} is not on the grid")
        return (self.accuracy if metric == "accuracy" else self.loss)[:, i[0]]

    def barriers(self, metric: str = "accuracy") -> np.ndarray:
        """(K,) barrier of each pair (``tasknb.landscape.barrier``)."""
        return np.array([barrier(c, metric) for c in self.curves])

    def midpoint_gain(self) -> np.ndarray:
        """(K,) accuracy at lam = 1/2 minus the better endpoint's: > 0 when the average of the two
        networks beats both (a fixed lam, so no selection over the grid inflates it)."""
        return self.at(0.5) - np.maximum(self.at(0.0), self.at(1.0))


def pair_curves(pairs, lambdas, X, y, n_classes: int, width: int = 8, device="auto") -> PairCurves:
    """The curves of ``pairs`` [(state_a, state_b), ...] on (X, y), every lam of ``lambdas`` at once."""
    dev = get_device(device)
    model = SmallResNet(n_classes, width).to(dev)
    lambdas = np.asarray(lambdas, dtype=float)
    curves = [interpolation_curve(model, a, b, lambdas, X, y) for a, b in pairs]
    return PairCurves(lambdas, curves)


def mean_curves(curves: list[PairCurves]) -> PairCurves:
    """The pairwise mean of several :class:`PairCurves` on one grid (e.g. the two domains' test sets):
    a curve per pair whose accuracy and loss are the means over the sets."""
    lam = curves[0].lambdas
    out = []
    for k in range(len(curves[0].curves)):
        acc = np.mean([c.curves[k].accuracy for c in curves], axis=0)
        loss = np.mean([c.curves[k].loss for c in curves], axis=0)
        out.append(InterpolationCurve(lam, loss, acc, sum(c.curves[k].n_samples for c in curves)))
    return PairCurves(lam, out)


__all__.append("mean_curves")


def curve_panel(curves: dict, title: str, index: int | None = None, metric: str = "accuracy",
                ylim=None, chance: float | None = None):
    """One figure: for each label -> :class:`PairCurves` of ``curves``, the curve of pair ``index`` (or,
    when None, the mean over pairs with a band of +- one standard error), ``metric`` against lam, the
    interpolation segment [0, 1] shaded."""
    fig, ax = plt.subplots(figsize=(6.2, 3.6))
    for i, (label, pc) in enumerate(curves.items()):
        v = pc.accuracy if metric == "accuracy" else pc.loss
        if index is None:
            m = v.mean(0)
            se = v.std(0, ddof=1) / np.sqrt(len(v)) if len(v) > 1 else 0 * m
            ax.plot(pc.lambdas, m, "-", color=f"C{i}", label=label)
            ax.fill_between(pc.lambdas, m - se, m + se, color=f"C{i}", alpha=0.2)
        else:
            ax.plot(pc.lambdas, v[index], "-o", ms=2.5, color=f"C{i}", label=label)
    ax.axvspan(0, 1, color="grey", alpha=0.08)
    if chance is not None and metric == "accuracy":
        ax.axhline(chance, color="k", lw=0.8, ls=":", label="chance")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(r"$\lambda$  ($\Theta_\lambda = (1-\lambda)\Theta + \lambda\tilde\Theta$)")
    ax.set_ylabel("test accuracy" if metric == "accuracy" else "test loss (nats)")
    ax.set_title(title, fontsize="small")
    ax.legend(fontsize="x-small")
    fig.tight_layout()
    return fig
