"""The asymmetric static distance between tasks (Achille, Mbeng & Soatto 2019, section 4).

d_beta(D1 -> D2) = C_beta(D1 u D2) - C_beta(D1), with C_beta(w0) of eq. (4) (Fisher in place of the
Hessian) read off a small MLP trained on each dataset (``tasknb.task_distances.measure_family``:
each task, each union of two tasks, and each task with a fresh draw of itself, K runs at once).

``measure``              the family of the chapter -> ``tasknb.task_distances.Family``
``distance_summary``     mean and standard error over runs of the (T, T) matrix at each beta
``heatmap_figure``       one heatmap frame (mean, ± SE in the cells) for the beta slider
``complexity_parts``     loss, norm and log-det terms of C_beta per task and run
``claims``               the paired differences the chapter reads (see the notebook)
"""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from tasknb.complexity import complexity_from_eigenvalues
from tasknb.convergence import ThresholdSpec
from tasknb.paired import paired_difference
from tasknb.task_distances import Family, measure_family
from tasknb.validation import check_choice, check_positive_real

__all__ = ["REQUIRED_TASKS", "measure", "distance_summary", "heatmap_figure", "complexity_parts", "claims"]

#: the tasks the chapter's claims name (the family may hold more)
REQUIRED_TASKS = ("fashion", "fashion_0_4", "digits")


def measure(tasks, n: int, n_runs: int, hidden: int, lr: float, threshold: float, max_steps: int,
            seed: int = 0, device="auto", progress: bool = False) -> Family:
    """Train and measure the family (every stack trained by SGD, batch 32, until the mean training
    cross-entropy reaches ``threshold`` or ``max_steps``)."""
    for t in REQUIRED_TASKS:
        if t not in tasks:
            raise ValueError(f"tasks must include {list(REQUIRED_TASKS)} (the chapter's claims name them), got {list(tasks)}")
    spec = ThresholdSpec(lr=lr, batch_size=32, threshold=threshold, max_steps=max_steps, eval_every=10)
    return measure_family(tasks, n, n_runs, hidden, spec, seed=seed, device=device, progress=progress)


def distance_summary(fam: Family, betas, lam: float = 1.0) -> dict:
    """beta -> (mean (T, T), sem (T, T), all runs (T, T, K)) of d_beta."""
    out = {}
    for b in betas:
        D = fam.distances(b, lam)
        K = D.shape[-1]
        out[b] = (D.mean(-1), D.std(-1, ddof=1) / np.sqrt(K), D)
    return out


def heatmap_figure(mean, sem, names, beta: float, vmax: float | None = None, title: str | None = None):
    """The (T, T) matrix as a heatmap (row: the task learnt first, column: the task added), each cell
    'mean ± SE'; the diagonal is the union of a task with a fresh draw of itself."""
    T = len(names)
    fig, ax = plt.subplots(figsize=(1.3 * T + 2.6, 1.05 * T + 1.4))
    im = ax.imshow(mean, cmap="viridis", vmin=0, vmax=vmax if vmax is not None else float(np.max(mean)))
    for i in range(T):
        for j in range(T):
            v = mean[i, j]
            ax.text(j, i, f"{v:.0f}\n±{sem[i, j]:.0f}", ha="center", va="center", fontsize=8,
                    color="white" if v < 0.6 * (vmax or np.max(mean)) else "black")
    ax.set_xticks(range(T), names, rotation=30, ha="right")
    ax.set_yticks(range(T), names)
    ax.set_xlabel(r"$D_2$ (task added)")
    ax.set_ylabel(r"$D_1$ (task learnt first)")
    ax.set_title(title or rf"$d_\beta(D_1\to D_2)$ at $\beta$ = {beta:g} (nats; diagonal: fresh draw)", fontsize=9)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    return fig


def complexity_parts(fam: Family, beta: float, lam: float = 1.0, which: str = "single") -> dict:
    """key -> dict(loss, norm, logdet, total), each (K,): the three terms of C_beta per run, for the
    single tasks (``which="single"``) or the unions (``"unions"``)."""
    beta = check_positive_real("beta", beta)
    check_choice("which", which, ("single", "unions"))
    src = fam.single if which == "single" else fam.unions
    out = {}
    for key, m in src.items():
        cs = [complexity_from_eigenvalues(m.loss[k], m.sq_norm[k], m.eigenvalues[k], beta, lam)
              for k in range(len(m.loss))]
        out[key] = {"loss": np.array([c.loss for c in cs]), "norm": np.array([c.norm_term for c in cs]),
                    "logdet": np.array([c.logdet_term for c in cs]), "total": np.array([c.total for c in cs])}
    return out


def claims(fam: Family, beta: float, lam: float = 1.0) -> dict:
    """The chapter's paired differences over runs at ``beta`` (each a ``PairedDifference``, the claim's
    sign is +1 for all of them):

    ``asymmetry``       d(fashion_0_4 -> fashion) - d(fashion -> fashion_0_4)   (= C(fashion) - C(fashion_0_4))
    ``asym_logdet``     the same difference in the log-det term alone (the norm term removed)
    ``source_related``  for the target fashion: d(digits -> fashion) - d(fashion_0_4 -> fashion)
    ``source_null``     for the target fashion: d(digits -> fashion) - d(fashion' -> fashion) (fresh draw)
    ``source_ifashion`` for the target fashion: d(digits -> fashion) - d(ifashion -> fashion)  (if present)
    ``row_related``     for the source fashion: d(fashion -> digits) - d(fashion -> fashion_0_4)
    ``row_ifashion``    for the source fashion: d(fashion -> digits) - d(fashion -> ifashion)  (if present)
    ``null_smallest``   per target b (a (T,) difference): mean over the other sources of d(a -> b) minus d(b' -> b)
    """
    names = list(fam.names)
    D = fam.distances(beta, lam)
    i = {a: names.index(a) for a in names}
    f, f4, dg = i["fashion"], i["fashion_0_4"], i["digits"]
    parts = complexity_parts(fam, beta, lam)
    out = {
        "asymmetry": paired_difference(D[f4, f], D[f, f4], label="d(fashion_0_4->fashion) - d(fashion->fashion_0_4)"),
        "asym_logdet": paired_difference(parts["fashion"]["logdet"], parts["fashion_0_4"]["logdet"],
                                         label="log-det term of C(fashion) - C(fashion_0_4)"),
        "source_related": paired_difference(D[dg, f], D[f4, f], label="d(digits->fashion) - d(fashion_0_4->fashion)"),
        "source_null": paired_difference(D[dg, f], D[f, f], label="d(digits->fashion) - d(fashion'->fashion)"),
        "row_related": paired_difference(D[f, dg], D[f, f4], label="d(fashion->digits) - d(fashion->fashion_0_4)"),
    }
    if "ifashion" in i:
        g = i["ifashion"]
        out["source_ifashion"] = paired_difference(D[dg, f], D[g, f], label="d(digits->fashion) - d(ifashion->fashion)")
        out["row_ifashion"] = paired_difference(D[f, dg], D[f, g], label="d(fashion->digits) - d(fashion->ifashion)")
    T = len(names)
    others = np.stack([np.delete(D[:, j], j, axis=0).mean(0) for j in range(T)])   # (T, K)
    diag = np.stack([D[j, j] for j in range(T)])
    out["null_smallest"] = paired_difference(others, diag, label="mean other-source d(a->b) - d(b'->b)")
    return out
