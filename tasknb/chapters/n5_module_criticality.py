"""N5 · Rewinding and module criticality (Neyshabur, Sedghi & Zhang 2020, "Which part of the network is
responsible for successful transfer?"; Zhang, Bengio & Singer 2019; Chatterji, Neyshabur & Sedghi 2020).

For P-T models (trained on a target from the pre-trained source body P and a new head) and RI-T models
(trained from a random initialisation RI), ``n_seeds`` of each, paired by batch order:

``train_models``         the P-T and RI-T runs (:func:`tasknb.pretraining.target_runs`)
``rewind_errors``        rewinding one module (conv1, layer1 ... layer4, fc) to its initial value -- P's
                         value (the new head's init for fc) for P-T, RI's for RI-T -- the rest at the final
                         value: train and test zero-one error, per module and seed
``alpha_paths``          the error along theta_i^alpha = (1 - alpha) theta_i^0 + alpha theta_i^F per module
                         (vectorised: :func:`tasknb.landscape.module_path_curve`)
``criticalities``        module criticality mu_i(eps) per module and seed (the slides' definition,
                         :func:`tasknb.landscape.module_criticality`), network criticality sum_i mu_i
``joint_noisy_errors``   E_U[L(f_{Theta^alpha + U})] with every module at its own (alpha_i, sigma_i) at once
                         -- the noisy network the theorem's bound is about
``bounds``               the theorem's PAC-Bayes bound with its terms, and the slides' simplified form
                         eps + sqrt((mu / 4 + log(m / delta)) / m), beside the measured test error
``*_figure``             the chapter's figures

Every random draw has its own stream: the noise of mu_i for run k of kind K is keyed by
``derived_seed(seed, "n5.criticality", kind index, k)``; that of the joint noisy network by
``stream(seed, "n5.joint_noise", kind index, k, draw)``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from tasknb.device import derived_seed, get_device, stream
from tasknb.landscape import (module_criticality, module_groups, module_path_curve, network_criticality,
                              pac_bayes_bound, parameter_distance, rewind_module, criticality_bound)
from tasknb.networks.resnet import RESNET_MODULES, SmallResNet
from tasknb.pretraining import (TaskImages, TargetRuns, TrainSpec, evaluate, load_state, target_images,
                                target_runs)
from tasknb.seed_runs import progress_bar
from tasknb.validation import check_choice, check_positive_int, check_real_in, check_seed

__all__ = ["KINDS", "KIND_LABELS", "MODULES", "SLIDES_OBSERVATIONS", "load_target", "first_images", "train_models",
           "RewindResult", "rewind_errors", "PathResult", "alpha_paths", "CriticalityResult", "criticalities",
           "joint_noisy_errors", "BoundResult", "bounds", "module_sizes", "rewind_figure", "path_figure",
           "criticality_figure"]

#: the two kinds of start (start_state kinds) and how the slides name the trained models
KINDS = ("P", "RI")
KIND_LABELS = {"P": "P-T", "RI": "RI-T"}
#: the modules, input to output
MODULES = RESNET_MODULES
#: what the slides report qualitatively (no numbers are given for criticality or rewinding)
SLIDES_OBSERVATIONS = {
    "fc": "rewinding fc is critical for P-T (CheXpert, ResNet-50); for RI-T it is not",
    "order": "modules become more critical from the input towards the output (tighter valleys)",
    "path": "the train error grows monotonically along theta_i^alpha from final to initial value",
    "bound": "a smaller network criticality predicts better generalisation (the PAC-Bayes bound)",
}


def _check_kind(kind):
    return check_choice("kind", kind, KINDS)


def load_target(target: str, n_train: int, n_test: int, seed: int) -> tuple[TaskImages, TaskImages]:
    """The target's training set (n_train images; the S of L_S, m = n_train) and a test set (n_test images),
    each a seeded subset drawn from its own stream."""
    seed = check_seed("seed", seed)
    train = target_images(target, "train", check_positive_int("n_train", n_train, minimum=2),
                          derived_seed(seed, "n5.train_images"))
    test = target_images(target, "test", check_positive_int("n_test", n_test), derived_seed(seed, "n5.test_images"))
    return train, test


def first_images(task: TaskImages, n: int) -> TaskImages:
    """The first ``n`` images of ``task`` (a seeded random subset already): the evaluation set of the
    expensive measurements (criticality, alpha-paths)."""
    n = check_positive_int("n", n, minimum=2)
    if n > task.X.shape[0]:
        raise ValueError(f"n must be at most the task's {task.X.shape[0]} images, got {n}")
    return TaskImages(task.X[:n], task.y[:n], task.n_classes, f"{task.name}[:{n}]")


def train_models(train: TaskImages, spec: TrainSpec, n_seeds: int, seed: int, source: dict, width: int,
                 device="auto", progress: bool = False) -> TargetRuns:
    """``n_seeds`` P-T and RI-T runs on ``train`` (run k of both kinds shares its batch order)."""
    return target_runs(train, spec, n_seeds, seed, source=source, width=width, kinds=KINDS, device=device,
                       progress=progress)


def _model(runs: TargetRuns, width: int, device) -> SmallResNet:
    return SmallResNet(runs.n_classes, width).to(get_device(device))


def module_sizes(runs: TargetRuns, width: int) -> np.ndarray:
    """k_i, the number of parameters of each module (MODULES order)."""
    model = SmallResNet(runs.n_classes, width)
    groups = module_groups(model)
    params = dict(model.named_parameters())
    return np.array([sum(params[n].numel() for n in groups[m]) for m in MODULES])


def _error(model, X, y) -> float:
    return 1.0 - evaluate(model, X, y)[1]


@dataclass
class RewindResult:
    """Zero-one errors of rewound networks: ``train[kind]``, ``test[kind]`` (n_seeds, len(MODULES));
    the un-rewound networks' ``final_train[kind]``, ``final_test[kind]`` (n_seeds,); ``distance[kind]``
    (n_seeds, len(MODULES)) the Frobenius distance ||theta_i^F - theta_i^0||; ``n_params`` (len(MODULES),)."""

    train: dict
    test: dict
    final_train: dict
    final_test: dict
    distance: dict
    n_params: np.ndarray


def rewind_errors(runs: TargetRuns, width: int, train: TaskImages, test: TaskImages, device="auto") -> RewindResult:
    """Rewind each module of each run to its initial value (the run's start: P's body and the new head's
    init for P-T, RI for RI-T), keep every other module at its final value, and measure train and test
    error (Zhang, Bengio & Singer 2019, as on the slides)."""
    model = _model(runs, width, device)
    groups = module_groups(model)
    out = {name: {} for name in ("train", "test", "final_train", "final_test", "distance")}
    for kind in KINDS:
        n = len(runs.records[kind])
        tr, te, dist = np.zeros((n, len(MODULES))), np.zeros((n, len(MODULES))), np.zeros((n, len(MODULES)))
        ftr, fte = np.zeros(n), np.zeros(n)
        for k in range(n):
            init, final = runs.starts[kind][k], runs.records[kind][k].final
            load_state(model, final)
            ftr[k], fte[k] = _error(model, train.X, train.y), _error(model, test.X, test.y)
            d = parameter_distance(final, init, groups)
            for i, m in enumerate(MODULES):
                load_state(model, rewind_module(final, init, m, groups))
                tr[k, i], te[k, i] = _error(model, train.X, train.y), _error(model, test.X, test.y)
                dist[k, i] = d[m]
        out["train"][kind], out["test"][kind], out["distance"][kind] = tr, te, dist
        out["final_train"][kind], out["final_test"][kind] = ftr, fte
    return RewindResult(**out, n_params=module_sizes(runs, width))


@dataclass
class PathResult:
    """Errors along theta_i^alpha: ``train[kind]``, ``test[kind]`` (n_seeds, len(MODULES), len(alphas)) and the
    train cross-entropy ``train_loss[kind]``; alpha = 0 is the rewound module, 1 the final network."""

    alphas: np.ndarray
    train: dict
    test: dict
    train_loss: dict


def alpha_paths(runs: TargetRuns, width: int, train: TaskImages, test: TaskImages | None, alphas,
                device="auto") -> PathResult:
    """The error along the convex path of each module from its initial (alpha = 0) to its final value
    (alpha = 1), the other modules at their final values (vectorised over alpha); ``test`` None skips the
    test error (NaN)."""
    alphas = np.asarray(alphas, dtype=float)
    model = _model(runs, width, device)
    groups = module_groups(model)
    tr, te, lo = {}, {}, {}
    for kind in KINDS:
        n = len(runs.records[kind])
        tr[kind], te[kind], lo[kind] = (np.zeros((n, len(MODULES), len(alphas))) for _ in range(3))
        for k in range(n):
            init, final = runs.starts[kind][k], runs.records[kind][k].final
            for i, m in enumerate(MODULES):
                c = module_path_curve(model, init, final, m, alphas, train.X, train.y, modules=groups)
                tr[kind][k, i], lo[kind][k, i] = c.error, c.loss
                te[kind][k, i] = (np.nan if test is None else
                                  module_path_curve(model, init, final, m, alphas, test.X, test.y, modules=groups).error)
    return PathResult(alphas, tr, te, lo)


@dataclass
class CriticalityResult:
    """mu_i(eps) per kind: ``mu[kind]`` (n_seeds, len(MODULES)), the minimisers ``alpha[kind]``, ``sigma[kind]``
    and their noisy train error ``noisy_error[kind]`` (NaN where infeasible), ``distance[kind]``;
    ``network[kind]`` (n_seeds,) = sum_i mu_i; ``n_params`` k_i; ``epsilon``, ``noise`` as used."""

    epsilon: float
    noise: str
    mu: dict
    alpha: dict
    sigma: dict
    noisy_error: dict
    distance: dict
    network: dict
    n_params: np.ndarray

    def per_weight(self, kind: str) -> np.ndarray:
        """mu_i / k_i: the criticality per parameter (alpha^2 times the mean squared change of one weight over
        sigma^2), the quantity inside the theorem's log(1 + mu_i / k_i); unlike mu_i it does not grow with the
        module's size."""
        return self.mu[_check_kind(kind)] / self.n_params


def criticalities(runs: TargetRuns, width: int, train: TaskImages, epsilon: float, *, noise: str = "absolute",
                  alphas=np.linspace(0.0, 1.0, 11), sigma_steps: int = 6, n_noise: int = 4, seed: int = 0,
                  device="auto", progress: bool = False) -> CriticalityResult:
    """Module criticality mu_i(eps) of every module of every run on the training set (L_S: zero-one error
    on ``train``), with the run's start as theta^0 and its final weights as theta^F."""
    epsilon = check_real_in("epsilon", epsilon, 0.0, 1.0)
    seed = check_seed("seed", seed)
    model = _model(runs, width, device)
    groups = module_groups(model)
    fields = {name: {} for name in ("mu", "alpha", "sigma", "noisy_error", "distance")}
    jobs = [(kind, k) for kind in KINDS for k in range(len(runs.records[kind]))]
    bar = progress_bar(len(jobs) * len(MODULES), f"criticality eps = {epsilon:g} ({noise} noise)", progress)
    for kind in KINDS:
        n = len(runs.records[kind])
        for name in fields:
            fields[name][kind] = np.full((n, len(MODULES)), np.nan)
    for kind, k in jobs:
        init, final = runs.starts[kind][k], runs.records[kind][k].final
        s = derived_seed(seed, "n5.criticality", KINDS.index(kind), k)
        for i, m in enumerate(MODULES):
            c = module_criticality(model, init, final, m, train.X, train.y, epsilon, alphas=alphas,
                                   sigma_steps=sigma_steps, n_noise=n_noise, seed=s, noise=noise, modules=groups)
            fields["mu"][kind][k, i] = c.mu
            fields["distance"][kind][k, i] = c.distance
            if c.feasible:
                fields["alpha"][kind][k, i], fields["sigma"][kind][k, i] = c.alpha, c.sigma
                fields["noisy_error"][kind][k, i] = c.noisy_error
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    network = {kind: np.array([network_criticality(list(row)) for row in fields["mu"][kind]]) for kind in KINDS}
    return CriticalityResult(epsilon, noise, **fields, network=network, n_params=module_sizes(runs, width))


def joint_noisy_errors(runs: TargetRuns, width: int, crit: CriticalityResult, data: dict, n_noise: int, seed: int,
                       device="auto") -> dict:
    """The noisy network of the theorem, E_U[L(f_{Theta^alpha + U})]: every module i at its own
    theta_i^{alpha_i} with u_i ~ N(0, sigma_i^2 I) (absolute noise), all at once, (alpha_i, sigma_i) the
    minimisers of mu_i(eps).  ``data`` : {name: TaskImages}; returns {name: {kind: (n_seeds,)}} of the
    zero-one error averaged over ``n_noise`` draws (NaN for a run with an infeasible module).  Draw r of
    run k of kind K: ``stream(seed, "n5.joint_noise", kind index, k, r)``."""
    if crit.noise != "absolute":
        raise ValueError("joint_noisy_errors needs criticalities with noise='absolute' (the theorem's noise)")
    n_noise = check_positive_int("n_noise", n_noise)
    seed = check_seed("seed", seed)
    model = _model(runs, width, device)
    groups = module_groups(model)
    out = {name: {} for name in data}
    for kind in KINDS:
        n = len(runs.records[kind])
        for name in data:
            out[name][kind] = np.full(n, np.nan)
        for k in range(n):
            al, sg = crit.alpha[kind][k], crit.sigma[kind][k]
            if not (np.all(np.isfinite(al)) and np.all(np.isfinite(sg))):
                continue
            init, final = runs.starts[kind][k], runs.records[kind][k].final
            errs = {name: [] for name in data}
            for r in range(n_noise):
                g = stream(seed, "n5.joint_noise", KINDS.index(kind), k, r)
                state = {}
                for i, m in enumerate(MODULES):
                    for p in groups[m]:
                        z = torch.randn(final[p].shape, generator=g, dtype=torch.float64).to(final[p].dtype)
                        state[p] = (1 - al[i]) * init[p] + al[i] * final[p] + sg[i] * z
                load_state(model, state)
                for name, task in data.items():
                    errs[name].append(_error(model, task.X, task.y))
            for name in data:
                out[name][kind][k] = float(np.mean(errs[name]))
    return out


@dataclass
class BoundResult:
    """Per kind, (n_seeds,) arrays: ``network`` mu(eps); ``noisy_train`` / ``noisy_test`` the joint noisy
    network's errors; ``kl`` = 1/4 sum_i k_i log(1 + mu_i / k_i) (mu_i = alpha_i^2 d_i^2 / sigma_i^2);
    ``pac_bayes`` the theorem's right-hand side (O~(1) dropped) with E_U[L_S] = noisy_train;
    ``simplified`` eps + sqrt((mu / 4 + log(m / delta)) / m); ``test`` the final (noise-free) test error.
    ``log_term`` = log(m / delta), ``m``, ``delta``, ``epsilon``."""

    network: dict
    noisy_train: dict
    noisy_test: dict
    kl: dict
    pac_bayes: dict
    simplified: dict
    test: dict
    log_term: float
    m: int
    delta: float
    epsilon: float


def bounds(runs: TargetRuns, width: int, crit: CriticalityResult, train: TaskImages, test: TaskImages,
           final_test: dict, n_noise: int, seed: int, delta: float = 0.05, device="auto") -> BoundResult:
    """The theorem's bound and the slides' simplified form for every run, beside its measured test error
    (``final_test[kind]``, e.g. ``RewindResult.final_test``); m = the number of training images."""
    m = int(train.X.shape[0])
    noisy = joint_noisy_errors(runs, width, crit, {"train": train, "test": test}, n_noise, seed, device)
    k_i = crit.n_params.astype(float)
    out = {name: {} for name in ("network", "noisy_train", "noisy_test", "kl", "pac_bayes", "simplified", "test")}
    for kind in KINDS:
        n = len(runs.records[kind])
        out["network"][kind] = crit.network[kind]
        out["noisy_train"][kind], out["noisy_test"][kind] = noisy["train"][kind], noisy["test"][kind]
        out["test"][kind] = np.asarray(final_test[kind], dtype=float)
        kl, pb, simp = np.full(n, np.inf), np.full(n, np.inf), np.zeros(n)
        for k in range(n):
            simp[k] = criticality_bound(crit.epsilon, crit.network[kind][k], m, delta)
            mu = crit.mu[kind][k]
            if np.all(np.isfinite(mu)) and np.isfinite(noisy["train"][kind][k]):
                kl[k] = 0.25 * float(np.sum(k_i * np.log1p(mu / k_i)))
                pb[k] = pac_bayes_bound(noisy["train"][kind][k], crit.alpha[kind][k], crit.sigma[kind][k],
                                        crit.distance[kind][k], crit.n_params, m, delta)
        out["kl"][kind], out["pac_bayes"][kind], out["simplified"][kind] = kl, pb, simp
    return BoundResult(**out, log_term=math.log(m / delta), m=m, delta=delta, epsilon=crit.epsilon)


# ============================================================================ figures
_COLORS = {"P": "tab:blue", "RI": "tab:orange"}


def rewind_figure(rewind: RewindResult, split: str = "test"):
    """Bars: the error after rewinding each module, P-T vs RI-T (mean and SE over seeds), the final
    networks' error as dashed lines."""
    split = check_choice("split", split, ("train", "test"))
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    x = np.arange(len(MODULES))
    for j, kind in enumerate(KINDS):
        e = getattr(rewind, split)[kind]
        se = e.std(0, ddof=1) / np.sqrt(len(e)) if len(e) > 1 else np.zeros(len(MODULES))
        ax.bar(x + (j - 0.5) * 0.38, e.mean(0), 0.38, yerr=se, color=_COLORS[kind], label=KIND_LABELS[kind])
        ax.axhline(getattr(rewind, "final_" + split)[kind].mean(), color=_COLORS[kind], ls="--", lw=1)
    ax.set_xticks(x, MODULES)
    ax.set_ylabel(f"{split} error after rewinding")
    ax.set_ylim(0, 1)
    ax.legend(title="dashed: not rewound", fontsize=8)
    fig.tight_layout()
    return fig


def path_figure(paths: PathResult, split: str = "train", upto: float | None = None):
    """Per module, the mean error along theta_i^alpha (alpha from 1 = final to 0 = initial), P-T solid,
    RI-T dashed.  ``upto`` (an alpha) hides the part of the paths below it (the slider's frames)."""
    split = check_choice("split", split, ("train", "test"))
    fig, axes = plt.subplots(1, 2, figsize=(8.6, 3.3), sharey=True)
    al = paths.alphas
    keep = al >= (upto if upto is not None else -np.inf)
    cmap = plt.get_cmap("viridis")
    for ax, kind in zip(axes, KINDS):
        e = getattr(paths, split)[kind].mean(0)
        for i, m in enumerate(MODULES):
            ax.plot(al[keep], e[i, keep], marker="o", ms=3, color=cmap(i / (len(MODULES) - 1)), label=m)
        ax.set_xlim(1.02, -0.02)
        ax.set_xlabel(r"$\alpha$ (1 = final, 0 = initial value of the module)")
        ax.set_title(KIND_LABELS[kind])
    axes[0].set_ylabel(f"{split} error")
    axes[0].set_ylim(0, 1)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    return fig


def criticality_figure(crits: dict, epsilon: float, per_weight: bool = False, ylim=None):
    """mu_i(eps) per module for P-T and RI-T (mean and SE over seeds, log scale) at one eps of
    ``crits`` {eps: CriticalityResult}; ``per_weight`` shows mu_i / k_i."""
    c = crits[epsilon]
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    x = np.arange(len(MODULES))
    for j, kind in enumerate(KINDS):
        v = c.per_weight(kind) if per_weight else c.mu[kind]
        v = np.where(np.isfinite(v), v, np.nan)
        mean = np.nanmean(v, 0)
        se = np.nanstd(v, 0, ddof=1) / np.sqrt(np.sum(np.isfinite(v), 0)) if len(v) > 1 else 0 * mean
        ax.errorbar(x + (j - 0.5) * 0.15, mean, yerr=se, marker="o", capsize=3, color=_COLORS[kind],
                    label=f"{KIND_LABELS[kind]} (network: {np.nanmean(c.network[kind]):.3g})")
    ax.set_yscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xticks(x, MODULES)
    ax.set_ylabel(r"$\mu_i(\epsilon)/k_i$" if per_weight else r"$\mu_i(\epsilon)$")
    ax.set_title(rf"module criticality, $\epsilon$ = {epsilon:g} ({c.noise} noise)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
