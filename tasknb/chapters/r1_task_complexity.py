"""R1 -- the structure function and the complexity C_beta(w0) of a trained network (achille2019 §3-4).

Protocol: small MLPs trained by SGD with weight decay gamma until the mean training cross-entropy
reaches a threshold (``tasknb.convergence``), on a Fashion-MNIST task whose labels are partly
replaced by random ones (``tasknb.task_family``); for each network, C_beta(w0) from
``tasknb.complexity`` with the Fisher of the summed loss in place of the Hessian.

The prior scale lam is tied to the weight decay: SGD minimises mean CE + (gamma/2)||w||^2, i.e.
(1/n)[summed CE + (n gamma/2)||w||^2], whose minimiser is the MAP of exp(-L/beta) N(0, lam^2 I) at
beta = 1 when lam^2 = beta / (n gamma).  Pairing: for seed k every fraction shares the images, the
initial weights and the (nested) set of corrupted positions; only the labels (and mini-batch order)
differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tasknb.book.plotting import new_figure
from tasknb.complexity import complexity_from_eigenvalues, complexity_ingredients
from tasknb.convergence import ThresholdSpec, init_mlp, mlp_module, train_until_threshold
from tasknb.device import derived_seed, get_device
from tasknb.fisher import fisher_factor, logdet_identity_plus, slq_logdet
from tasknb.seed_runs import progress_bar
from tasknb.task_family import task_data
from tasknb.validation import (
    check_bool,
    check_increasing_positive_reals,
    check_positive_int,
    check_positive_real,
    check_real_in,
    check_seed,
)

TERMS = ("loss", "norm_term", "logdet_term")


def prior_scale(n: int, weight_decay: float, beta: float = 1.0) -> float:
    """lam with lam^2 = beta / (n * weight_decay): the prior whose MAP at level beta is what SGD with
    weight decay on the mean loss minimises."""
    n = check_positive_int("n", n)
    weight_decay = check_positive_real("weight_decay", weight_decay)
    beta = check_positive_real("beta", beta)
    return float(np.sqrt(beta / (n * weight_decay)))


@dataclass
class Networks:
    """The trained networks of the random-label sweep: index [f, k] (fraction f, seed k)."""

    fractions: np.ndarray
    n_seeds: int
    tasks: list           # tasks[f][k]
    runs: object          # ThresholdRuns over F * K runs, run f * K + k
    spec: ThresholdSpec

    def model(self, f: int, k: int):
        return mlp_module(self.runs.params, f * self.n_seeds + k)

    @property
    def steps(self) -> np.ndarray:
        return self.runs.steps.reshape(len(self.fractions), self.n_seeds)

    @property
    def final_loss(self) -> np.ndarray:
        return self.runs.final_loss.reshape(len(self.fractions), self.n_seeds)


def check_fractions(fractions) -> np.ndarray:
    """Random-label fractions: >= 3 increasing values in [0, 1], the first 0 (the clean control)."""
    if isinstance(fractions, (str, bytes)) or not hasattr(fractions, "__iter__"):
        raise ValueError(f"fractions must be a list of >= 3 increasing numbers in [0, 1], got {fractions!r}")
    fr = np.array([check_real_in("fractions", f, 0.0, 1.0) for f in fractions])
    if len(fr) < 3 or np.any(np.diff(fr) <= 0):
        raise ValueError(f"fractions must hold >= 3 strictly increasing values (a line and its curvature), got {list(fr)}")
    if fr[0] != 0.0:
        raise ValueError(f"fractions must start at 0.0 (the clean-label control), got {fr[0]:g}")
    return fr


def train_networks(fractions, n_seeds: int, n_train: int, hidden: int, spec: ThresholdSpec,
                   task: str = "fashion", size: int = 14, seed: int = 0, device="auto",
                   progress: bool = False) -> Networks:
    """One MLP per (random-label fraction, seed), all trained at once until the threshold."""
    fractions = check_fractions(fractions)
    n_seeds = check_positive_int("n_seeds", n_seeds, minimum=2)
    seed = check_seed("seed", seed)
    progress = check_bool("progress", progress)
    dev = get_device(device)
    tasks = [[task_data(task, n_train, seed=derived_seed(seed, "r1.data", k), size=size, random_fraction=float(f))
              for k in range(n_seeds)] for f in fractions]
    X = torch.stack([t.X for row in tasks for t in row]).to(dev)
    y = torch.stack([t.y for row in tasks for t in row]).to(dev)
    p0 = init_mlp(n_seeds, X.shape[-1], hidden, seed=derived_seed(seed, "r1.init"), device=dev)
    params = {k: v.repeat(len(fractions), *([1] * (v.dim() - 1))) for k, v in p0.items()}
    runs = train_until_threshold(params, X, y, spec, seed=derived_seed(seed, "r1.sgd"), progress=progress)
    return Networks(fractions, n_seeds, tasks, runs, spec)


@dataclass
class Spectra:
    """Per network [f, k]: summed loss, ||w0||^2 and the Fisher eigenvalues (list of arrays)."""

    loss: np.ndarray
    sq_norm: np.ndarray
    eigenvalues: list
    fisher: str

    def parts(self, beta: float, lam: float, convention: str = "minimised") -> dict:
        """{term: (F, K) array} for 'total', 'loss', 'norm_term', 'logdet_term', 'kl', 'expected_loss'."""
        F, K = self.loss.shape
        out = {k: np.empty((F, K)) for k in ("total",) + TERMS + ("kl", "expected_loss")}
        for f in range(F):
            for k in range(K):
                c = complexity_from_eigenvalues(self.loss[f, k], self.sq_norm[f, k], self.eigenvalues[f][k],
                                                beta, lam, convention)
                for name in out:
                    out[name][f, k] = getattr(c, name)
        return out


def measure_spectra(nets: Networks, fisher: str = "expected", seed: int = 0, progress: bool = False) -> Spectra:
    """Fisher spectra (exact, through the Gram) of every network, on its own training set."""
    F, K = len(nets.fractions), nets.n_seeds
    loss, sq = np.empty((F, K)), np.empty((F, K))
    eig = [[None] * K for _ in range(F)]
    bar = progress_bar(F * K, "Fisher spectra", check_bool("progress", progress))
    for f in range(F):
        for k in range(K):
            m, t = nets.model(f, k), nets.tasks[f][k]
            loss[f, k], sq[f, k], eig[f][k] = complexity_ingredients(
                m, t.X, t.y, fisher, seed=derived_seed(seed, "r1.fisher", f, k))
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return Spectra(loss, sq, eig, fisher)


def beta_sweep(loss: float, sq_norm: float, eigenvalues, betas, lam: float, convention: str = "minimised") -> dict:
    """{term: (len(betas),) array} of C_beta(w0) and its parts over beta at fixed w0 and lam."""
    betas = check_increasing_positive_reals("betas", betas)
    out = {k: np.empty(len(betas)) for k in ("total",) + TERMS + ("kl", "expected_loss")}
    for i, b in enumerate(betas):
        c = complexity_from_eigenvalues(loss, sq_norm, eigenvalues, b, lam, convention)
        for name in out:
            out[name][i] = getattr(c, name)
    return out


@dataclass
class Fit:
    """Per-seed least-squares fits of a (F, K) quantity against the fractions."""

    slope: np.ndarray        # (K,) linear slope
    curvature: np.ndarray    # (K,) quadratic coefficient of a degree-2 fit
    residual_rms: np.ndarray  # (K,) rms residual of the linear fit
    r2: np.ndarray           # (K,) R^2 of the linear fit

    @staticmethod
    def _ms(x):
        return float(np.mean(x)), float(np.std(x, ddof=1) / np.sqrt(len(x)))

    def describe(self, name: str) -> str:
        s, ss = self._ms(self.slope)
        c, cs = self._ms(self.curvature)
        return (f"{name}: slope {s:+.1f} ± {ss:.1f} per unit fraction, quadratic coefficient {c:+.1f} ± {cs:.1f} "
                f"({c / cs if cs > 0 else float('inf'):+.1f} SE), linear R² {np.mean(self.r2):.3f}, "
                f"rms residual {np.mean(self.residual_rms):.2f}")


def fit_linear(fractions, values) -> Fit:
    fr = np.asarray(fractions, dtype=float)
    v = np.asarray(values, dtype=float)
    slopes, curv, rms, r2 = [], [], [], []
    for k in range(v.shape[1]):
        p1 = np.polyfit(fr, v[:, k], 1)
        p2 = np.polyfit(fr, v[:, k], 2)
        res = v[:, k] - np.polyval(p1, fr)
        slopes.append(p1[0])
        curv.append(p2[0])
        rms.append(np.sqrt(np.mean(res ** 2)))
        tot = np.sum((v[:, k] - v[:, k].mean()) ** 2)
        r2.append(1 - np.sum(res ** 2) / tot if tot > 0 else 1.0)
    return Fit(np.array(slopes), np.array(curv), np.array(rms), np.array(r2))


def slq_check(model, X, y, beta: float, lam: float, fisher: str = "expected", n_probes: int = 60,
              n_steps: int = 60, seed: int = 0) -> dict:
    """Exact (Gram) vs stochastic-Lanczos log|I + (lam^2/beta) H_F| on one network, same Fisher.

    The Lanczos products use the per-sample-gradient factor (H_F V = G^T (G V)); the matrix-free
    ``tasknb.fisher.fisher_matvec`` gives the same products (unit-tested to 1e-10) without G and is
    what a network too large for G would use -- on this CPU it is slower for a 6,634-weight MLP.
    """
    F = fisher_factor(model, X, fisher, y=y, seed=derived_seed(seed, "r1.slq_fisher"))
    scale = lam ** 2 / check_positive_real("beta", beta)
    exact = logdet_identity_plus(F.eigenvalues(), scale)
    est, se = slq_logdet(F.matvec, F.n_params, scale, n_probes=n_probes, n_steps=n_steps,
                         seed=derived_seed(seed, "r1.slq"))
    return {"exact": exact, "slq": est, "se": se, "n_params": F.n_params,
            "z": (est - exact) / se if se > 0 else float("inf")}


def fisher_kinds(model, X, y, scale: float, label_samples=(1, 10), seed: int = 0) -> dict:
    """log|I + scale H_F| for the exact true Fisher ("expected"), the true Fisher from S sampled
    labels per input, and the empirical Fisher (training labels); plus each one's trace."""
    out = {}
    F = fisher_factor(model, X, "expected")
    out["true, exact expectation over labels"] = (logdet_identity_plus(F.eigenvalues(), scale), F.trace())
    for S in label_samples:
        F = fisher_factor(model, X, "true", n_label_samples=S, seed=derived_seed(seed, "r1.kinds", S))
        out[f"true, {S} sampled label(s) per input"] = (logdet_identity_plus(F.eigenvalues(), scale), F.trace())
    F = fisher_factor(model, X, "empirical", y=y)
    out["empirical (training labels)"] = (logdet_identity_plus(F.eigenvalues(), scale), F.trace())
    return out


# ---------------------------------------------------------------------------------------------- figures

def terms_figure(betas, sweep: dict, title: str = ""):
    fig, ax = new_figure(5.2, 3.6)
    for name, lab in (("total", "C_β(w0)"), ("loss", "L(w0)"), ("norm_term", "(β/2)‖w0‖²/λ²"),
                      ("logdet_term", "(β/2) log|I + (λ²/β) F|")):
        ax.plot(betas, sweep[name], marker="o", ms=3, label=lab)
    ax.set_xscale("log")
    ax.set_xlabel("β")
    ax.set_ylabel("nats (summed over the training set)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def beta_frame(betas, i: int, networks: dict, lam: float):
    """Frame i of the beta slider.  ``networks`` maps a label to (eigenvalues, sweep) of one network
    (sweep from :func:`beta_sweep` over ``betas``).  Left: the Fisher spectrum f_j and the
    per-eigenvalue contributions (beta/2) log(1 + lam^2 f_j / beta) at beta_i; right: the
    structure-function curves (KL vs E_Q L over beta) with the point at beta_i."""
    fig, axes = new_figure(9.6, 3.5, ncols=2)
    b = float(betas[i])
    c = lam ** 2 / b
    lo, hi = np.inf, 0.0
    for j, (label, (eigenvalues, sweep)) in enumerate(networks.items()):
        f = np.sort(np.asarray(eigenvalues))[::-1]
        f = f[f > 1e-12 * max(f.max(), 1e-300)]
        idx = np.arange(1, len(f) + 1)
        axes[0].plot(idx, f, color=f"C{j}", lw=0.8, alpha=0.5, label=f"{label}: f_j")
        axes[0].plot(idx, 0.5 * b * np.log1p(c * f), color=f"C{j}", lw=1.8,
                     label=f"{label}: (β/2)log(1+cf_j), sum {sweep['logdet_term'][i]:.0f}")
        lo, hi = min(lo, f.min()), max(hi, f.max())
        axes[1].plot(sweep["kl"], sweep["expected_loss"], color=f"C{j}", marker=".", lw=1, label=label)
        axes[1].plot([sweep["kl"][i]], [sweep["expected_loss"][i]], "o", color=f"C{j}", ms=8)
    axes[0].axhline(b / lam ** 2, color="0.3", ls=":", lw=0.8, label="f = β/λ² (c f = 1)")
    axes[0].set_xscale("log")
    axes[0].set_yscale("log")
    axes[0].set_ylim(max(lo, 1e-6 * hi), hi * 5)
    axes[0].set_xlabel("eigenvalue index j")
    axes[0].set_title(f"β = {b:.3g}, c = λ²/β = {c:.3g}", fontsize=9)
    axes[0].legend(fontsize=6, loc="lower left")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("KL(Q*‖P)  [nats]")
    axes[1].set_ylabel("E_Q* L  [nats, summed]")
    axes[1].set_title("structure-function curves; dot: this β", fontsize=9)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def fraction_figure(fractions, parts: dict, beta: float):
    fig, axes = new_figure(9.0, 3.4, ncols=2)
    K = parts["total"].shape[1]
    for name, lab in (("total", "C_β(w0)"), ("loss", "L(w0)"), ("norm_term", "(β/2)‖w0‖²/λ²"),
                      ("logdet_term", "(β/2) log|I + cF|")):
        v = parts[name]
        axes[0].errorbar(fractions, v.mean(1), yerr=v.std(1, ddof=1) / np.sqrt(K), marker="o", ms=3,
                         capsize=2, label=lab)
    axes[0].set_xlabel("fraction of random labels")
    axes[0].set_ylabel("nats (summed)")
    axes[0].set_title(f"β = {beta:g}: mean ± 1 SE over {K} seeds", fontsize=9)
    axes[0].legend(fontsize=7)
    for k in range(K):
        axes[1].plot(fractions, parts["total"][:, k] - parts["total"][0, k], marker="o", ms=3, lw=1,
                     label=f"seed {k}")
    axes[1].set_xlabel("fraction of random labels")
    axes[1].set_ylabel("C_β(fraction) − C_β(0), same seed")
    axes[1].set_title("paired with the clean-label network of the same seed", fontsize=9)
    axes[1].legend(fontsize=6)
    fig.tight_layout()
    return fig
