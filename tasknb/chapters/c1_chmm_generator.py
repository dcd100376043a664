"""The CHMM generator (notebook C1): how related are the source and target tasks?

The generator itself is :class:`tasknb.chmm.CHMM` (eqs. (1)-(5) of Gerace et al. 2022).  This
chapter measures what its three knobs do:

* :func:`relatedness_sweep` runs :meth:`CHMM.relatedness <tasknb.chmm.CHMM.relatedness>`
  (label agreement on shared latents, input correlation, feature cosine, teacher overlap) along
  one parameter of :data:`SWEEPABLE`, the others fixed;
* :func:`expected_label_agreement` is the Gaussian prediction of the label agreement from the
  teacher overlap, 1 - arccos(overlap) / pi;
* the figures: :func:`plot_row_cosines` (cosines between source and target feature rows, eq. 2),
  :func:`plot_label_rules` (the two teacher fields on shared latents), their two-panel
  :func:`chmm_correlation_figure` (a widget frame) and :func:`row_cosine_histogram_figure` (the
  concentration of the row cosines around eta as D grows).
"""
from __future__ import annotations

import numpy as np
import torch

from ..book.plotting import new_figure
from ..chmm import CHMM
from ..validation import check_choice

__all__ = ["SWEEPABLE", "expected_label_agreement", "relatedness_sweep", "plot_row_cosines", "plot_label_rules",
           "chmm_correlation_figure", "row_cosine_histogram_figure"]

#: the parameters of a CHMM that a sweep may vary
SWEEPABLE = ("eta", "rho", "q", "L_target", "D")


def expected_label_agreement(overlap):
    """P(sign(c.a) = sign(c.b)) for Gaussian c and directions of cosine ``overlap``: 1 - arccos(overlap)/pi."""
    return 1.0 - np.arccos(np.clip(overlap, -1.0, 1.0)) / np.pi


def relatedness_sweep(param: str, values, base: dict, M: int = 20_000, seed: int = 0) -> dict[str, list[float]]:
    """:meth:`CHMM.relatedness <tasknb.chmm.CHMM.relatedness>` for each value of one parameter, the
    others fixed by ``base``.

    ``param`` is one of :data:`SWEEPABLE`; ``base`` holds the other CHMM keyword
    arguments (``D``, ``L_source``, ``L_target``, ``eta``, ``rho``, ``q``, ``seed``).
    Returns ``{"value": [...], "label_agreement": [...], "input_correlation": [...],
    "feature_cosine": [...], "teacher_overlap": [...]}``.
    """
    check_choice("param", param, SWEEPABLE)
    values = list(values)
    if not values:
        raise ValueError("values must be a non-empty sequence")
    out: dict[str, list[float]] = {"value": []}
    for v in values:
        r = CHMM(**{**base, param: v}).relatedness(M=M, seed=seed)
        out["value"].append(v)
        for k, x in r.items():
            out.setdefault(k, []).append(x)
    return out


# ----------------------------------------------------------------------------- figures
def plot_row_cosines(ax, chmm, rows: int = 30):
    """Heat map of cos(F_s[i], F_t[j]) for the first ``rows`` generative features.

    The diagonal shows eta on perturbed rows and ~0 on substituted ones (eq. 2); the
    off-diagonal ~0 since distinct Gaussian features are nearly orthogonal in high D.
    """
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
