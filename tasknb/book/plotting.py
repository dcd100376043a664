"""The book's figure theme and the plots shared by several chapters.

``set_theme()`` is called once per notebook.  Plot functions draw on a given
matplotlib ``Axes`` and return it, so that notebooks (pyplot) and widgets
(``matplotlib.figure.Figure`` frames, no pyplot) share the same code.
"""
from __future__ import annotations

import numpy as np

__all__ = ["LEARNER_COLORS", "LEARNER_LABELS", "set_theme", "new_figure", "plot_learning_curves"]

#: one colour per learner, used in every chapter of Part C
LEARNER_COLORS = {"TF": "#1f77b4", "RF": "#ff7f0e", "2L": "#2ca02c", "ft-TF": "#d62728"}
LEARNER_LABELS = {"TF": "TF (transferred features)", "RF": "RF (random features)",
                  "2L": "2L (from scratch)", "ft-TF": "ft-TF (fine-tuned TF)"}


def set_theme(font_scale: float = 1.0) -> None:
    """Seaborn 'whitegrid' theme with the book's palette and readable sizes."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", font_scale=font_scale,
                  rc={"figure.dpi": 100, "savefig.dpi": 100, "axes.titlesize": "medium",
                      "legend.frameon": False})


def new_figure(width: float = 5.0, height: float = 3.5, ncols: int = 1):
    """A ``matplotlib.figure.Figure`` with ``ncols`` axes, made without pyplot (for widget frames)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def plot_learning_curves(ax, curves, learners=None, logx: bool = True, title: str | None = None):
    """Test error vs M/H for each learner of a :class:`tasknb.feature_transfer.TransferCurves`,
    mean over realizations with standard-error bars."""
    learners = learners or list(curves.errors)
    for name in learners:
        ax.errorbar(curves.alpha, curves.mean(name), yerr=curves.sem(name), marker="o", ms=4,
                    lw=1.5, ls="--" if name in ("2L", "ft-TF") else "-", capsize=2,
                    color=LEARNER_COLORS.get(name), label=LEARNER_LABELS.get(name, name))
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel("samples per hidden unit  M / H")
    ax.set_ylabel("test error")
    ax.set_ylim(bottom=max(0.0, float(np.nanmin([curves.mean(n).min() for n in learners])) - 0.05))
    if title:
        ax.set_title(title)
    ax.legend(fontsize="small")
    return ax


def plot_row_cosines(ax, chmm, rows: int = 30):
    """Heat map of cos(F_s[i], F_t[j]) for the first ``rows`` generative features.

    The diagonal shows eta on perturbed rows and ~0 on substituted ones (eq. 2); the
    off-diagonal ~0 since distinct Gaussian features are nearly orthogonal in high D.
    """
    import torch

    r = min(rows, chmm.L_source, chmm.L_target)
    a = torch.nn.functional.normalize(chmm.F_source[:r].double(), dim=1)
    b = torch.nn.functional.normalize(chmm.F_target[:r].double(), dim=1)
    im = ax.imshow((a @ b.T).cpu().numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xlabel("target feature j")
    ax.set_ylabel("source feature i")
    ax.set_title("cos(F_s[i], F_t[j])")
    ax.grid(False)
    return im


def plot_label_rules(ax, chmm, M: int = 1500, seed: int = 0):
    """Scatter of the source and target teacher fields c.theta/sqrt(L) on the same latents.

    Points in the off-diagonal quadrants are inputs the two tasks label differently.
    """
    src, tgt = chmm.sample_paired(M, seed=seed)
    a = (src.c @ chmm.theta_source / chmm.L_source ** 0.5).cpu().numpy()
    b = (tgt.c @ chmm.theta_target / chmm.L_target ** 0.5).cpu().numpy()
    agree = np.sign(a) == np.sign(b)
    ax.scatter(a[agree], b[agree], s=4, alpha=0.4, color="#4c72b0", label="same label")
    ax.scatter(a[~agree], b[~agree], s=4, alpha=0.6, color="#c44e52", label="different label")
    ax.axhline(0, color="k", lw=0.6)
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xlabel("source field  c·θ_s/√L_s")
    ax.set_ylabel("target field  c·θ_t/√L_t")
    ax.set_title(f"label agreement {agree.mean():.2f}")
    ax.legend(fontsize="x-small", loc="upper left", markerscale=3)
    return ax


def chmm_correlation_figure(chmm, rows: int = 24, M: int = 800, width: float = 8.0):
    """Two panels for one CHMM: the feature cosines (:func:`plot_row_cosines`) and the two
    label rules on shared latents (:func:`plot_label_rules`), with the parameters in the title.
    Returns a ``Figure`` (no pyplot), suitable as a widget frame."""
    fig, (a0, a1) = new_figure(width, 3.6, ncols=2)
    im = plot_row_cosines(a0, chmm, rows)
    fig.colorbar(im, ax=a0, shrink=0.8)
    plot_label_rules(a1, chmm, M)
    fig.suptitle(f"η = {chmm.eta:.2f}, ρ = {chmm.rho:.2f}, q = {chmm.q:.2f}, "
                 f"feature cosine {chmm.feature_cosine():.2f}", fontsize="medium")
    return fig


def row_cosine_histogram_figure(D: int, eta: float, L: int = 200, seed: int = 0, width: float = 5.0):
    """Histogram of cos(F_s[i], F_t[i]) over the L rows of a CHMM with input dimension D (rho = 0).

    The cosines concentrate around eta with a spread ~ sqrt((1 - eta^2) / D): the larger
    the input dimension, the more every feature carries exactly the prescribed correlation.
    """
    import torch

    from ..chmm import CHMM

    c = CHMM(D=D, L_source=L, L_target=L, eta=eta, rho=0.0, q=1.0, seed=seed, device="cpu")
    cos = torch.nn.functional.cosine_similarity(c.F_source.double(), c.F_target.double(), dim=1).numpy()
    fig, ax = new_figure(width, 3.2)
    ax.hist(cos, bins=np.linspace(-0.2, 1.0, 49), color="#4c72b0")
    ax.axvline(eta, color="k", ls="--", lw=1, label=f"η = {eta:.2f}")
    ax.set_xlim(-0.2, 1.0)
    ax.set_xlabel("cos(F_s[i], F_t[i])")
    ax.set_ylabel("features")
    ax.set_title(f"D = {D}: spread {cos.std():.3f}")
    ax.legend(fontsize="small")
    return fig
