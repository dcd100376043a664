"""Transfer between tasks of different complexity: section 4.2 of Gerace et al. (2022).

In the CHMM the complexity of a task is its latent dimension L.  With ``eta = 1``,
``rho = 0`` and ``q = 1`` the target HMM keeps the first min(L_s, L_t) generative features
and teacher components of the source and deletes the rest (L_t < L_s) or appends fresh
ones (L_t > L_s), eqs. (4)-(5).  Two experiments probe the asymmetry of transfer:

* :func:`asymmetry_sweep` (figures 5a and 5b): L_t varies with L_s + L_t = L_total fixed.
  The TF and RF errors come from the replica theory on a grid of alpha = M / H (fig. 5a is
  the gain err(RF) - err(TF) over (L_t, M/H)); TF, RF, 2L and ft-TF are also trained at one target
  size ``M_cut`` (the horizontal cut of fig. 5b).
* :func:`hard_easy_curves` (figure 4b): learning curves for the two directions between a
  hard task (L_hard) and an easy one (L_easy), and the gain of TF over RF and 2L at few
  samples.

The source networks of every (L_s, L_t) pair and every realization are trained in one
batched call (:func:`train_sources`); realization k of a pair is ``CHMM(..., seed=seed,
realization=k)``, as :func:`tasknb.feature_transfer.transfer_learning_curves` builds it, and gets exactly
the data and initialisation that :func:`tasknb.feature_transfer.train_source` would give it, so a
pair's numbers do not depend on which other pairs are swept with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..chmm import CHMM, stack_samples
from ..device import derived_seed, get_device
from ..feature_transfer import LEARNERS, TransferCurves, check_learners, paired_standard_error
from ..gaussian_equivalence import theory_over_targets
from ..networks.stacks import TwoLayerStack, classification_error, features, init_two_layer
from ..training import (FINETUNE_DEFAULT, SCRATCH_DEFAULT, SOURCE_DEFAULT, TrainingConfig, fit_logistic_head,
                        train_stack)
from ..validation import check_choice, check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["DIRECTIONS", "train_sources", "transfer_curves_many", "AsymmetrySweep", "asymmetry_sweep", "HardEasy", "hard_easy_curves"]

#: the two transfer directions of figure 4b
DIRECTIONS = ("hard→easy", "easy→hard")



def _check_alphas(alphas) -> np.ndarray:
    try:
        a = np.atleast_1d(np.asarray(alphas, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"alphas must be a non-empty 1-D sequence of numbers > 0, got {alphas!r}") from None
    if a.ndim != 1 or a.size == 0 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"alphas must be a non-empty 1-D sequence of finite numbers > 0, got {alphas!r}")
    return a


def _check_learners(learners) -> list[str]:
    learners = list(learners)
    if not learners:
        raise ValueError(f"learners must be a non-empty subset of {LEARNERS}")
    return check_learners(learners)


def _check_config(name: str, value) -> TrainingConfig:
    if not isinstance(value, TrainingConfig):
        raise ValueError(f"{name} must be a tasknb.feature_transfer.TrainingConfig, got {type(value).__name__}")
    return value


def _check_protocol(D, H, M_source, realizations, lam, source, scratch, finetune, learners, n_samples, M_test,
                    seed, device) -> dict:
    """The arguments both C5 protocols share, checked by name; returned normalised (``dev`` added)."""
    out = dict(D=check_positive_int("D", D), H=check_positive_int("H", H),
               M_source=check_positive_int("M_source", M_source), K=check_positive_int("realizations", realizations),
               lam=check_positive_real("lam", lam))
    for name, cfg in (("source", source), ("scratch", scratch), ("finetune", finetune)):
        _check_config(name, cfg)
    out.update(learners=_check_learners(learners), n_samples=check_positive_int("n_samples", n_samples, minimum=2),
               M_test=check_positive_int("M_test", M_test), seed=check_seed("seed", seed), dev=get_device(device))
    return out


def train_sources(chmm_sets: list[list[CHMM]], H: int, M_source: int, config: TrainingConfig = SOURCE_DEFAULT,
                  M_val: int = 2000, lam: float = 0.0, patience: int = 0, seed: int = 0,
                  progress: bool = False) -> list[TwoLayerStack]:
    """Train the source networks of several CHMM families in one batched run.

    ``chmm_sets[i]`` is a list of K_i CHMMs (one per realization) sharing D.  Family i gets
    the same training set, validation set and initialisation as
    ``tasknb.feature_transfer.train_source(chmm_sets[i], H, M_source, config, M_val, lam, patience, seed)``
    (Adam is element-wise and the minibatch order is shared, so stacking the families
    changes nothing but the speed).  Early stopping is per network (appendix D: patience 0).

    Returns one :class:`~tasknb.networks.stacks.TwoLayerStack` of K_i networks (W1 (K_i, H, D),
    w2 (K_i, H)) per family, the weights of each network's best validation epoch.
    """
    if not chmm_sets or any(not isinstance(s, (list, tuple)) or not s for s in chmm_sets):
        raise ValueError("chmm_sets must be a non-empty list of non-empty lists of CHMMs")
    D = chmm_sets[0][0].D
    if any(c.D != D for s in chmm_sets for c in s):
        raise ValueError(f"chmm_sets: every CHMM must have the same D = {D}")
    H = check_positive_int("H", H)
    M_source = check_positive_int("M_source", M_source)
    M_val = check_positive_int("M_val", M_val)
    _check_config("config", config)
    lam = check_positive_real("lam", lam, allow_zero=True)
    patience = check_positive_int("patience", patience, minimum=0)
    seed = check_seed("seed", seed)
    Xs, ys, Xv, yv, W1, w2 = [], [], [], [], [], []
    for chmms in chmm_sets:                       # exactly what train_source draws, family by family
        X, y = stack_samples(list(chmms), M_source, "source", derived_seed(seed, "source.train"))
        Xs.append(X), ys.append(y)
        X, y = stack_samples(list(chmms), M_val, "source", derived_seed(seed, "source.validation"))
        Xv.append(X), yv.append(y)
        init = init_two_layer(len(chmms), H, D, seed=derived_seed(seed, "init.source"), device=X.device, dtype=X.dtype)
        W1.append(init.W1), w2.append(init.w2)
    res = train_stack(TwoLayerStack(torch.cat(W1), torch.cat(w2)), torch.cat(Xs), torch.cat(ys),
                          epochs=config.epochs, lr=config.lr, batch_size=config.batch_size, lam=lam,
                          X_val=torch.cat(Xv), y_val=torch.cat(yv), patience=patience,
                          seed=derived_seed(seed, "batches.source"),
                          progress=progress, desc="source nets")
    out, start = [], 0
    for chmms in chmm_sets:
        out.append(res.params.select(slice(start, start + len(chmms))))
        start += len(chmms)
    return out


def transfer_curves_many(chmm_sets: list[list[CHMM]], sources: list[TwoLayerStack], M_grid, lam: float,
                         learners=LEARNERS, scratch: TrainingConfig = SCRATCH_DEFAULT,
                         finetune: TrainingConfig = FINETUNE_DEFAULT, M_test: int = 2_000,
                         seed: int = 0) -> list[TransferCurves]:
    """:func:`tasknb.feature_transfer.transfer_learning_curves` for several CHMM families in one batched run.

    ``chmm_sets[i]`` holds the K_i CHMMs of family i (realization k = ``CHMM(..., seed, realization=k)``, as
    ``transfer_learning_curves`` builds them) and ``sources[i]`` their K_i trained source
    networks.  Every family gets the data, random first layers and initialisations that
    ``transfer_learning_curves(..., source_params=sources[i])`` would give it; the heads of all
    families are fitted together and 2L / ft-TF of all families trained as one stack, which on a
    CPU costs about as much as one family.  Returns one
    :class:`~tasknb.feature_transfer.TransferCurves` per family (errors (n_M, K_i); ``source_epochs`` -1).
    """
    if (not chmm_sets or len(chmm_sets) != len(sources)
            or any(not isinstance(s, (list, tuple)) or not s for s in chmm_sets)):
        raise ValueError("chmm_sets must be a non-empty list of non-empty lists of CHMMs, one per entry of sources")
    D = chmm_sets[0][0].D
    H = sources[0].H if isinstance(sources[0], TwoLayerStack) else None
    for i, (chmms, p) in enumerate(zip(chmm_sets, sources)):
        if not isinstance(p, TwoLayerStack) or (p.K, p.H, p.D) != (len(chmms), H, D) or any(c.D != D for c in chmms):
            raise ValueError(f"sources[{i}] must be a TwoLayerStack of (K, H, D) = ({len(chmms)}, {H}, {D}) "
                             f"networks, matching chmm_sets[{i}]")
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    lam = check_positive_real("lam", lam)
    learners = _check_learners(learners)
    _check_config("scratch", scratch), _check_config("finetune", finetune)
    M_test = check_positive_int("M_test", M_test)
    seed = check_seed("seed", seed)
    sizes = [len(c) for c in chmm_sets]
    dev = sources[0].W1.device

    def stacked(M, which, s):
        parts = [stack_samples(list(c), M, which, s) for c in chmm_sets]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

    def per_family(fn):
        return torch.cat([fn(K) for K in sizes])

    src = TwoLayerStack(torch.cat([p.W1 for p in sources]), torch.cat([p.w2 for p in sources]))
    Xs_test, ys_test = stacked(M_test, "source", derived_seed(seed, "source.test"))
    source_error = classification_error(src, Xs_test, ys_test).cpu().numpy()
    W1 = {"TF": src.W1,
          "RF": per_family(lambda K: init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1)}
    Xt_test, yt_test = stacked(M_test, "target", derived_seed(seed, "target.test"))
    n_all = sum(sizes)
    errors = {nm: np.zeros((len(M_grid), n_all)) for nm in learners}
    conv = {nm: np.zeros((len(M_grid), n_all), dtype=bool) for nm in ("TF", "RF") if nm in learners}
    for i, M in enumerate(M_grid):
        X, y = stacked(M, "target", derived_seed(seed, "target.train", i))
        heads = {}
        for nm in ("TF", "RF"):
            if nm in learners:
                fit = fit_logistic_head(features(W1[nm], X), y, lam)
                heads[nm] = TwoLayerStack(W1[nm], fit.w)
                conv[nm][i] = fit.converged.cpu().numpy()
                errors[nm][i] = classification_error(heads[nm], Xt_test, yt_test).cpu().numpy()
        if "2L" in learners:
            inits = [init_two_layer(K, H, D, seed=derived_seed(seed, "init.scratch", i), device=dev) for K in sizes]
            init2 = TwoLayerStack(torch.cat([p.W1 for p in inits]), torch.cat([p.w2 for p in inits]))
            r = train_stack(init2, X, y, epochs=scratch.epochs, lr=scratch.lr, batch_size=scratch.batch_size,
                                lam=lam, seed=derived_seed(seed, "batches.scratch", i))
            errors["2L"][i] = classification_error(r.params, Xt_test, yt_test).cpu().numpy()
        if "ft-TF" in learners:
            r = train_stack(heads["TF"], X, y, epochs=finetune.epochs, lr=finetune.lr,
                                batch_size=finetune.batch_size, lam=lam, seed=derived_seed(seed, "batches.finetune", i))
            errors["ft-TF"][i] = classification_error(r.params, Xt_test, yt_test).cpu().numpy()
    out, start = [], 0
    for chmms, K, p in zip(chmm_sets, sizes, sources):
        sl = slice(start, start + K)
        c0 = chmms[0]
        config = dict(D=D, H=H, L_source=c0.L_source, L_target=c0.L_target, eta=c0.eta, rho=c0.rho, q=c0.q,
                      M_test=M_test, realizations=K, lam=lam, seed=seed, scratch=scratch, finetune=finetune,
                      device=str(dev))
        out.append(TransferCurves(np.asarray(M_grid), H, {nm: e[:, sl] for nm, e in errors.items()},
                                  source_error[sl], np.full(K, -1), {nm: c[:, sl] for nm, c in conv.items()},
                                  config, p))
        start += K
    return out


def _theory(W_tf: torch.Tensor, W_rf: torch.Tensor, chmms: list[CHMM], alphas: np.ndarray, lam: float,
            n_samples: int, seed: int):
    """TF and RF replica errors (K, n_alpha) each and the joint convergence flags (K, n_alpha)."""
    eps, conv = {}, None
    for name, W in (("TF", W_tf), ("RF", W_rf)):
        e, c = theory_over_targets(W, [chmms], alphas, lam, n_samples=n_samples, seed=seed)
        eps[name] = e[0]
        conv = c[0] if conv is None else conv & c[0]
    return eps, conv


@dataclass
class AsymmetrySweep:
    """Errors of the learners across L_t with L_s + L_t = L_total fixed (figures 5a, 5b).

    ``L_target`` (n,) the target latent dimensions, ``L_source`` = L_total - L_target;
    ``alpha`` (n_alpha,) the theory grid of M / H;
    ``theory[name]`` (n, n_alpha) TF and RF replica errors, mean over realizations;
    ``theory_cut[name]`` (n,) the same at alpha = M_cut / H;
    ``converged`` (n, n_alpha + 1) every TF and RF saddle point converged (last column: the cut);
    ``errors[name]`` (n, K) test errors of the trained learners at ``M_cut``;
    ``source_error`` (n, K) the source networks on their own task;
    ``curves`` one :class:`~tasknb.feature_transfer.TransferCurves` per L_t (the trained learners on
    every target size of the sweep's ``M_grid``, M_cut included), whose ``source_params`` are
    the K source networks of that L_t;
    ``theory_realizations[name]`` (n, K, n_alpha) the TF and RF replica errors per realization.
    """

    L_total: int
    L_target: np.ndarray
    alpha: np.ndarray
    H: int
    M_cut: int
    theory: dict[str, np.ndarray]
    theory_cut: dict[str, np.ndarray]
    converged: np.ndarray
    errors: dict[str, np.ndarray]
    source_error: np.ndarray
    curves: list[TransferCurves] = field(default_factory=list, repr=False)
    theory_realizations: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def L_source(self) -> np.ndarray:
        return self.L_total - self.L_target

    @property
    def alpha_cut(self) -> float:
        """M_cut / H, the height of the horizontal cut (0.4 in the paper's fig. 5b)."""
        return self.M_cut / self.H

    def numerics(self, name: str) -> np.ndarray:
        """Mean over realizations of the trained learner ``name`` at M_cut, shape (n,)."""
        return self.errors[name].mean(axis=1)

    def gain(self, transfer: str = "TF", baseline: str = "RF") -> np.ndarray:
        """Theory err(baseline) - err(transfer) of the realization means over (L_t, alpha), shape
        (n, n_alpha); positive where the ``transfer`` learner wins."""
        return self.theory[baseline] - self.theory[transfer]

    def gain_sem(self, transfer: str = "TF", baseline: str = "RF") -> np.ndarray:
        """Standard error of :meth:`gain` from the paired per-realization differences
        (std with ddof=1 over the K realizations, / sqrt(K); zeros when K = 1), shape (n, n_alpha)."""
        return paired_standard_error(self.theory_realizations[baseline] - self.theory_realizations[transfer], axis=1)

    def mirror_pairs(self) -> list[tuple[int, int]]:
        """Index pairs (i, j) with L_t[i] < L_total / 2 and L_t[j] = L_total - L_t[i].

        Row i is a hard-to-easy transfer, row j its easy-to-hard mirror: the same
        min(L_s, L_t) features are shared by source and target in both.
        """
        where = {int(v): j for j, v in enumerate(self.L_target)}
        return [(i, where[self.L_total - int(v)]) for i, v in enumerate(self.L_target)
                if 2 * int(v) < self.L_total and self.L_total - int(v) in where]

    def index(self, L_t: int) -> int:
        """Row of the target dimension ``L_t`` (ValueError if it was not swept)."""
        hits = np.flatnonzero(self.L_target == L_t)
        if hits.size == 0:
            raise ValueError(f"L_t must be one of the swept values {self.L_target.tolist()}, got {L_t!r}")
        return int(hits[0])

    def hard_easy(self, L_easy: int) -> "HardEasy":
        """Figure 4b read off the sweep: L_hard = L_total - L_easy, both directions being rows.

        Row L_t = L_easy is the hard-to-easy transfer (L_s = L_hard), row L_t = L_hard the
        converse; the learning curves are the trained learners on the sweep's M_grid and the
        theory the TF and RF rows on ``alpha``.
        """
        L_easy = check_positive_int("L_easy", L_easy)
        if not 2 * L_easy < self.L_total:
            raise ValueError(f"L_easy must be < L_total / 2 = {self.L_total / 2:g}, got {L_easy}")
        rows = {"hard→easy": self.index(L_easy), "easy→hard": self.index(self.L_total - L_easy)}
        return HardEasy(self.L_total - L_easy, L_easy, {d: self.curves[i] for d, i in rows.items()}, self.alpha,
                        {d: {nm: self.theory[nm][i] for nm in ("TF", "RF")} for d, i in rows.items()},
                        {d: self.converged[i, :-1] for d, i in rows.items()})


def asymmetry_sweep(L_total: int, L_target_values, D: int, H: int, alphas, M_cut: int, M_source: int,
                    M_grid=None, realizations: int = 3, lam: float = 1e-3, source: TrainingConfig = SOURCE_DEFAULT,
                    scratch: TrainingConfig = SCRATCH_DEFAULT, finetune: TrainingConfig = FINETUNE_DEFAULT,
                    learners=LEARNERS, n_samples: int = 20_000, M_test: int = 2_000, seed: int = 0,
                    device="auto", progress: bool = False) -> AsymmetrySweep:
    """Figures 5a and 5b: sweep L_t with L_s = L_total - L_t (eta = 1, rho = 0, q = 1).

    Parameters
    ----------
    L_total : int >= 2, L_s + L_t (500 in the paper).
    L_target_values : distinct ints in [1, L_total - 1], the target latent dimensions.
    D, H : input dimension and hidden width.
    alphas : M / H values (> 0) of the theory grid (fig. 5a's vertical axis).
    M_cut : int >= 1, the target size where TF, RF, 2L, ft-TF are trained (fig. 5b: M_cut / H = 0.4).
    M_source : source training-set size.
    M_grid : further target sizes (ints >= 1) at which the learners are trained, for learning
        curves at every L_t (default None: M_cut only).   realizations : K >= 1 CHMMs per L_t (``realization=k``).
    lam : float > 0, L2 strength of every head (and of the source net's last layer).
    source, scratch, finetune : TrainingConfig of the source nets, 2L and ft-TF (appendix D defaults).
    learners : the learners trained at M_cut, a subset of ("TF", "RF", "2L", "ft-TF").
    n_samples : Monte-Carlo samples for the feature moments of the theory (eq. 12-13).
    M_test : test examples per realization.   seed : master seed.   device : where to compute.

    For each L_t the replica theory (:func:`tasknb.gaussian_equivalence.theory_over_targets`) gives
    TF (trained first layer) and RF (random first layer, the one the numerics use) on ``alphas``
    and on M_cut / H; the numerics come from :func:`transfer_curves_many` (the protocol of
    :func:`tasknb.feature_transfer.transfer_learning_curves`, every L_t trained in one stack).
    """
    L_total = check_positive_int("L_total", L_total, minimum=2)
    L_values = check_int_sequence("L_target_values", L_target_values, minimum=1, maximum=L_total - 1)
    c = _check_protocol(D, H, M_source, realizations, lam, source, scratch, finetune, learners, n_samples, M_test,
                        seed, device)
    D, H, M_source, K, lam, learners, n_samples, M_test, seed, dev = (
        c[k] for k in ("D", "H", "M_source", "K", "lam", "learners", "n_samples", "M_test", "seed", "dev"))
    alphas = _check_alphas(alphas)
    M_cut = check_positive_int("M_cut", M_cut)
    extra = [] if M_grid is None else check_int_sequence("M_grid", M_grid, minimum=1)
    M_all = sorted(set(extra) | {M_cut})

    n = len(L_values)
    chmm_sets = [[CHMM(D, L_total - Lt, Lt, seed=seed, realization=k, device=dev) for k in range(K)] for Lt in L_values]
    sources = train_sources(chmm_sets, H, M_source, source, lam=lam, seed=seed, progress=progress)
    W_rf = init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1
    grid = np.append(alphas, M_cut / H)
    theory = {nm: np.zeros((n, alphas.size)) for nm in ("TF", "RF")}
    theory_per = {nm: np.zeros((n, K, alphas.size)) for nm in ("TF", "RF")}
    theory_cut = {nm: np.zeros(n) for nm in ("TF", "RF")}
    converged = np.zeros((n, grid.size), dtype=bool)
    for i, (chmms, src) in enumerate(zip(chmm_sets, sources)):
        eps, conv = _theory(src.W1, W_rf, chmms, grid, lam, n_samples, seed)
        for nm in ("TF", "RF"):
            theory[nm][i] = eps[nm][:, :-1].mean(0)
            theory_per[nm][i] = eps[nm][:, :-1]
            theory_cut[nm][i] = eps[nm][:, -1].mean()
        converged[i] = conv.all(0)
    curves = transfer_curves_many(chmm_sets, sources, M_all, lam, learners, scratch, finetune, M_test, seed)
    j = M_all.index(M_cut)
    errors = {nm: np.stack([c.errors[nm][j] for c in curves]) for nm in learners}
    source_error = np.stack([c.source_error for c in curves])
    return AsymmetrySweep(L_total, np.asarray(L_values), alphas, H, M_cut, theory, theory_cut, converged, errors,
                          source_error, curves, theory_per)


@dataclass
class HardEasy:
    """Learning curves of both transfer directions between a hard and an easy task (figure 4b).

    ``curves[d]`` the :class:`~tasknb.feature_transfer.TransferCurves` of direction d in
    :data:`DIRECTIONS` ("hard→easy": L_s = L_hard, L_t = L_easy; "easy→hard" the converse),
    errors (n_M, K) per learner; ``alpha`` (n_alpha,) the theory grid;
    ``theory[d][name]`` (n_alpha,) TF and RF replica errors (mean over realizations);
    ``converged[d]`` (n_alpha,) all TF and RF saddle points converged.
    """

    L_hard: int
    L_easy: int
    curves: dict[str, TransferCurves]
    alpha: np.ndarray
    theory: dict[str, dict[str, np.ndarray]]
    converged: dict[str, np.ndarray]

    def gain(self, direction: str, baseline: str, index: int = 0) -> float:
        """err(baseline) - err(TF) of the trained learners at target size ``M[index]``
        (default: the smallest), mean over realizations: positive when TF wins."""
        check_choice("direction", direction, DIRECTIONS)
        c = self.curves[direction]
        check_choice("baseline", baseline, [n for n in c.errors if n != "TF"])
        return float(c.mean(baseline)[index] - c.mean("TF")[index])

    def gain_sem(self, direction: str, baseline: str, index: int = 0) -> float:
        """Standard error of :meth:`gain` from the paired per-realization differences
        err(baseline) - err(TF) at ``M[index]`` (std with ddof=1 / sqrt(K); 0 when K = 1)."""
        check_choice("direction", direction, DIRECTIONS)
        c = self.curves[direction]
        check_choice("baseline", baseline, [n for n in c.errors if n != "TF"])
        return float(paired_standard_error(c.errors[baseline][index] - c.errors["TF"][index]))


def hard_easy_curves(L_hard: int, L_easy: int, D: int, H: int, M_grid, M_source: int, realizations: int = 3,
                     lam: float = 1e-3, alphas=None, source: TrainingConfig = SOURCE_DEFAULT,
                     scratch: TrainingConfig = SCRATCH_DEFAULT, finetune: TrainingConfig = FINETUNE_DEFAULT,
                     learners=LEARNERS, n_samples: int = 20_000, M_test: int = 2_000, seed: int = 0,
                     device="auto", sources: dict[str, TwoLayerStack] | None = None,
                     progress: bool = False) -> HardEasy:
    """Figure 4b: TF, RF, 2L and ft-TF learning curves from hard to easy and from easy to hard.

    Parameters
    ----------
    L_hard > L_easy >= 1 : the latent dimensions of the two tasks (eta = 1, rho = 0, q = 1).
    D, H : input dimension and hidden width.   M_grid : increasing target sizes (ints >= 1).
    M_source, realizations, lam, source, scratch, finetune, learners, M_test, seed, device :
        as in :func:`asymmetry_sweep`.
    alphas : optional M / H grid (> 0) for the TF and RF replica curves; None skips the theory.
    n_samples : Monte-Carlo samples of the theory's feature moments.
    sources : optional {direction: TwoLayerStack of K source nets} already trained with the
        same seed (e.g. ``sweep.curves[i].source_params`` where L_t = L_easy, resp. L_hard, and
        L_total = L_hard + L_easy); missing directions are trained here.
    (When both directions are rows of an :func:`asymmetry_sweep`, ``sweep.hard_easy(L_easy)``
    gives the same comparison without training anything.)
    """
    L_hard = check_positive_int("L_hard", L_hard, minimum=2)
    L_easy = check_positive_int("L_easy", L_easy)
    if not L_easy < L_hard:
        raise ValueError(f"L_easy must be < L_hard, got L_easy = {L_easy}, L_hard = {L_hard}")
    c = _check_protocol(D, H, M_source, realizations, lam, source, scratch, finetune, learners, n_samples, M_test,
                        seed, device)
    D, H, M_source, K, lam, learners, n_samples, M_test, seed, dev = (
        c[k] for k in ("D", "H", "M_source", "K", "lam", "learners", "n_samples", "M_test", "seed", "dev"))
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    alphas = None if alphas is None else _check_alphas(alphas)
    sources = dict(sources or {})
    for d, p in sources.items():
        check_choice("sources", d, DIRECTIONS)
        if not isinstance(p, TwoLayerStack) or (p.K, p.H, p.D) != (K, H, D):
            raise ValueError(f"sources[{d!r}] must be a TwoLayerStack of (K, H, D) = ({K}, {H}, {D}) networks")

    dims = {"hard→easy": (L_hard, L_easy), "easy→hard": (L_easy, L_hard)}
    chmms = {d: [CHMM(D, Ls, Lt, seed=seed, realization=k, device=dev) for k in range(K)] for d, (Ls, Lt) in dims.items()}
    missing = [d for d in DIRECTIONS if d not in sources]
    if missing:
        trained = train_sources([chmms[d] for d in missing], H, M_source, source, lam=lam, seed=seed,
                                progress=progress)
        sources.update(zip(missing, trained))
    curves = dict(zip(DIRECTIONS, transfer_curves_many([chmms[d] for d in DIRECTIONS], [sources[d] for d in DIRECTIONS],
                                                       M_grid, lam, learners, scratch, finetune, M_test, seed)))
    theory, converged = {}, {}
    if alphas is not None:
        W_rf = init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1
        for d in DIRECTIONS:
            eps, conv = _theory(sources[d].W1, W_rf, chmms[d], alphas, lam, n_samples, seed)
            theory[d] = {nm: e.mean(0) for nm, e in eps.items()}
            converged[d] = conv.all(0)
    return HardEasy(L_hard, L_easy, curves, np.zeros(0) if alphas is None else alphas, theory, converged)
