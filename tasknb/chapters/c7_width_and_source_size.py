"""Width and source-size phase diagrams: appendix A.2 and A.3 of Gerace et al. (2022).

Two knobs of the transfer protocol that the main text keeps fixed:

* **Width** (figure A.2).  The hidden width H is the number of features the source network
  learns; it is measured against the number of generative features L (kept fixed), as
  H / L.  A source network must be trained for every H, on the *same* CHMMs (the CHMM does
  not depend on H).  :func:`width_diagram` returns TF and RF replica errors over
  (H / L, alpha = M / H), with TF and 2L trained numerically on a coarser alpha grid.
* **Source size** (figure A.3).  The number M_s of source examples decides how much the
  source network can learn.  The source sets are nested (the first M_s examples of one
  stream), so the diagram isolates the amount of source data.  RF and 2L do not
  depend on M_s: they are computed once and broadcast over the rows.
  :func:`source_size_diagram` returns TF and RF replica errors over (M_s, alpha) and TF and
  2L trained numerically over (M_s, M_t).

Both use the pipeline of section 3 of the paper: (b) train the source nets
(:func:`tasknb.feature_transfer.train_source`), (c) Monte-Carlo moments Omega, Phi of the frozen
features on the target task (:func:`tasknb.gaussian_equivalence.estimate_covariances`),
(d) the replica saddle point (:func:`tasknb.replica.solve_saddle_point`, eqs. 9-15).
Everything is batched over K realizations (``CHMM(..., seed, realization=k)``) and deterministic for
a seed; every draw has its own stream (:func:`tasknb.device.derived_seed`).  The RF baseline is, by
default, a first layer drawn independently of the source nets' initialisation
(``derived_seed(seed, "init.rf")``, as :mod:`tasknb.feature_transfer` draws it), so that "TF equals
RF when the source teaches nothing" is a statement about two independent random layers, not an
identity.

The same moments give each frozen feature map's linear-separability threshold alpha* in closed
form (:func:`tasknb.separability.separability_threshold`): :meth:`WidthDiagram.threshold` is that
alpha* (the "diagonal" of figure A.2: the threshold number of samples M* = alpha* H grows with the
width). The theory's training error at a small ridge vanishes only below alpha*, but reading alpha*
off it (:meth:`WidthDiagram.crossover`, :func:`training_error_crossover`) underestimates it.
:func:`width_diagram` can also test the thresholds on data (:class:`SeparabilityTest`): heads at a
tiny ridge on M = f alpha* H target examples (:func:`tasknb.frozen_heads.training_separability`)
separate their training sets below alpha* (f < 1) and not above it (f > 1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..chmm import CHMM, stack_samples
from ..device import derived_seed, get_device
from ..feature_transfer import TheoryAndNumericsGains, paired_standard_error, train_source, transfer_learning_curves
from ..frozen_heads import training_separability
from ..gaussian_equivalence import estimate_covariances
from ..networks.stacks import classification_error, init_two_layer
from ..replica import solve_saddle_point
from ..separability import separability_threshold
from ..training import SCRATCH_DEFAULT, SOURCE_DEFAULT, TrainingConfig
from ..validation import (check_choice, check_increasing_positive_reals, check_int_sequence, check_positive_int,
                         check_positive_real, check_real_in, check_seed)

__all__ = ["TRANSFORMATION", "RF_BASELINES", "SeparabilityTest", "WidthDiagram", "SourceSizeDiagram", "frozen_theory", "width_diagram",
           "source_size_diagram", "training_error_crossover"]

#: the fixed source -> target transformation (eta, rho, q) of figure A.2
TRANSFORMATION = {"eta": 1.0, "rho": 0.2, "q": 0.8}

#: where the random first layer of RF comes from: an independent draw ("independent", the default,
#: ``derived_seed(seed, "init.rf")`` as in :mod:`tasknb.feature_transfer`) or the source nets' own
#: initialisation ("init", a paired comparison in which TF -> RF exactly as M_s -> 0)
RF_BASELINES = ("independent", "init")


# ----------------------------------------------------------------------------- helpers
def _sizes(name: str, alphas: np.ndarray, H: int) -> list[int]:
    """Target sizes round(alpha * H) (>= 1); distinct, else a ValueError naming ``name``."""
    M = [max(1, int(round(a * H))) for a in alphas]
    if len(set(M)) != len(M):
        raise ValueError(f"{name} gives repeated target sizes M = round(alpha * H) = {M} at H = {H}; "
                         "use fewer or more widely spaced values")
    return M


def training_error_crossover(alpha, train_error, tol: float = 1e-3) -> np.ndarray:
    """Smallest alpha where the training error exceeds ``tol``, by log-linear interpolation.

    A finite-ridge reading of where the head stops fitting its training set, taken off a grid of
    replica training errors.  It is NOT the separability threshold itself: the closed-form
    (lam -> 0) threshold of the Gaussian covariate model is
    :func:`tasknb.separability.separability_threshold`.

    ``alpha`` (n_alpha,) increasing; ``train_error`` (..., n_alpha).  Returns an array of
    shape ``train_error.shape[:-1]``; NaN where the training error is above ``tol`` already at
    the first alpha or never exceeds it (the threshold lies outside the grid).
    """
    alpha = np.asarray(alpha, dtype=float)
    te = np.asarray(train_error, dtype=float)
    if te.shape[-1] != alpha.size:
        raise ValueError(f"train_error must end with n_alpha = {alpha.size} values, got shape {te.shape}")
    tol = check_positive_real("tol", tol)
    flat = te.reshape(-1, alpha.size)
    out = np.full(flat.shape[0], np.nan)
    la = np.log(alpha)
    for r, row in enumerate(flat):
        above = np.nonzero(row > tol)[0]
        if above.size == 0 or above[0] == 0:
            continue
        j = above[0]
        f = (tol - row[j - 1]) / (row[j] - row[j - 1])
        out[r] = math.exp(la[j - 1] + f * (la[j] - la[j - 1]))
    return out.reshape(te.shape[:-1])


def frozen_theory(W1: torch.Tensor, chmms: list[CHMM], alphas, lam: float, n_samples: int = 20_000,
                  seed: int = 0, **solver_kwargs) -> dict[str, np.ndarray]:
    """Replica test and training errors of frozen first layers + L2-logistic heads on the target tasks.

    W1 (K, H, D): one first layer per CHMM of ``chmms`` (K of them); ``alphas`` (n_alpha,) the
    values of M / H.  Steps (c)-(d) of section 3: Monte-Carlo moments (``derived_seed(seed,
    "monte-carlo", k)`` for realization k, as :func:`tasknb.gaussian_equivalence.theory_over_targets`)
    and the saddle point.
    Returns a dict of arrays of shape (K, n_alpha): ``eps`` (test error, eq. 15),
    ``train_error`` and ``converged``; of shape (K,): ``alpha_star``, the closed-form
    separability threshold of each realization's features (:func:`separability_threshold`); and
    ``mean``, a (K, H) tensor of the feature means the heads subtract (the same Monte Carlo).
    """
    if not isinstance(W1, torch.Tensor) or W1.dim() != 3 or W1.shape[0] != len(chmms):
        raise ValueError(f"W1 must be a (K, H, D) tensor with K = len(chmms) = {len(chmms)}, "
                         f"got {getattr(W1, 'shape', type(W1).__name__)}")
    lam = check_positive_real("lam", lam)
    alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
    K = W1.shape[0]
    out = {"eps": np.zeros((K, alphas.size)), "train_error": np.zeros((K, alphas.size)),
           "converged": np.zeros((K, alphas.size), dtype=bool), "alpha_star": np.zeros(K),
           "mean": torch.zeros(K, W1.shape[1], dtype=W1.dtype, device=W1.device)}
    for k, chmm in enumerate(chmms):
        mom = estimate_covariances(W1[k], chmm, n_samples=n_samples, seed=derived_seed(seed, "monte-carlo", k))
        sp = solve_saddle_point(mom.Omega, mom.Phi, mom.theta, alphas, lam, device=W1.device, **solver_kwargs)
        out["eps"][k] = sp.eps_g
        out["train_error"][k] = sp.train_error
        out["converged"][k] = sp.converged
        out["alpha_star"][k] = separability_threshold(mom.Omega, mom.Phi, mom.theta)[0]
        out["mean"][k] = mom.mean.to(W1.dtype)
    return out


def _source_error(params, chmms, M_test: int, seed: int) -> np.ndarray:
    """(K,) test error of the source nets on their own task (the test set of :mod:`tasknb.feature_transfer`)."""
    X, y = stack_samples(chmms, M_test, "source", derived_seed(seed, "source.test"))
    return classification_error(params, X, y).cpu().numpy()


def _check_common(D, L, eta, rho, q, lam, realizations, n_samples, M_test, seed):
    """Validate the arguments both diagrams share, before any training starts."""
    return (check_positive_int("D", D), check_positive_int("L", L), check_real_in("eta", eta, 0.0, 1.0),
            check_real_in("rho", rho, 0.0, 1.0), check_real_in("q", q, -1.0, 1.0), check_positive_real("lam", lam),
            check_positive_int("realizations", realizations), check_positive_int("n_samples", n_samples, minimum=2),
            check_positive_int("M_test", M_test), check_seed("seed", seed))


def _empty_tables(n_rows: int, K: int, n_alpha: int, n_numerics: int):
    """The arrays a diagram fills, one row per width (or source size): theory errors per realization
    ``per`` (n_rows, K, n_alpha) and mean training errors ``trn`` of TF and RF, the ``conv`` flags,
    trained TF / 2L errors (empty dicts when ``n_numerics`` is 0), source errors and epochs (n_rows, K),
    and the closed-form thresholds ``a_star`` (n_rows, K) of TF and RF."""
    per = {n: np.zeros((n_rows, K, n_alpha)) for n in ("TF", "RF")}
    trn = {n: np.zeros((n_rows, n_alpha)) for n in ("TF", "RF")}
    conv = np.ones((n_rows, n_alpha), dtype=bool)
    numerics = {n: np.zeros((n_rows, n_numerics)) for n in ("TF", "2L")} if n_numerics else {}
    numerics_per = {n: np.zeros((n_rows, K, n_numerics)) for n in numerics}
    a_star = {n: np.zeros((n_rows, K)) for n in ("TF", "RF")}
    return per, trn, conv, numerics, numerics_per, np.zeros((n_rows, K)), np.zeros((n_rows, K), dtype=int), a_star


@dataclass
class SeparabilityTest:
    """An empirical test of the closed-form thresholds: are target training sets of M = f alpha* H
    examples linearly separable on the frozen features (a head at a tiny ridge reaches training
    error 0, :func:`tasknb.frozen_heads.training_separability`)?

    rows (n_sel,) int : the diagram rows tested.   factors (n_f,) : the multiples f of alpha*.
    M[name] (n_sel, n_f) int : the training-set sizes, round(f * threshold(name)[row] * H[row]).
    separable[name] (n_sel, K, n_f, R) bool : one entry per realization and independent training set.
    converged[name] (n_sel, K, n_f, R) bool : the head fits that met the solver tolerance.
    lam : the ridge of the heads.
    M_crossover[name] (n_sel,) int : the control size round(factors[-1] * crossover * H), where
        the finite-ridge crossover (:meth:`WidthDiagram.crossover`) would put the largest factor;
        0 where the crossover is outside the grid.
    separable_crossover[name] (n_sel, K, R) bool : the same test at that size (False where M is 0).
    """

    rows: np.ndarray
    factors: np.ndarray
    M: dict[str, np.ndarray]
    separable: dict[str, np.ndarray]
    converged: dict[str, np.ndarray]
    lam: float
    M_crossover: dict[str, np.ndarray] = field(default_factory=dict)
    separable_crossover: dict[str, np.ndarray] = field(default_factory=dict)

    def fraction(self, name: str) -> np.ndarray:
        """(n_sel, K, n_f): the fraction of separable training sets per realization."""
        if name not in self.separable:
            raise ValueError(f"name must be one of {', '.join(repr(n) for n in self.separable)}; got {name!r}")
        return self.separable[name].mean(-1)

    def fraction_crossover(self, name: str) -> np.ndarray:
        """(n_sel, K): the fraction of separable training sets at the control size ``M_crossover``."""
        if name not in self.separable_crossover:
            raise ValueError(f"name must be one of {', '.join(repr(n) for n in self.separable_crossover)}; got {name!r}")
        return self.separable_crossover[name].mean(-1)


@dataclass
class _Diagram(TheoryAndNumericsGains):
    alpha: np.ndarray
    theory: dict[str, np.ndarray]
    train_error: dict[str, np.ndarray]
    converged: np.ndarray
    numerics: dict[str, np.ndarray]
    theory_realizations: dict[str, np.ndarray]
    source_error: np.ndarray
    source_epochs: np.ndarray
    config: dict
    numerics_realizations: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    alpha_star: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def _check_name(self, name: str) -> None:
        if name not in self.train_error:
            raise ValueError(f"name must be one of {', '.join(repr(n) for n in self.train_error)}; got {name!r}")

    def threshold(self, name: str) -> np.ndarray:
        """Separability threshold alpha* = M*/H of learner ``name`` ("TF" or "RF") per row: the
        closed form of :func:`tasknb.separability.separability_threshold` on each realization's
        Monte-Carlo moments, averaged over the K realizations."""
        self._check_name(name)
        return self.alpha_star[name].mean(1)

    def threshold_sem(self, name: str) -> np.ndarray:
        """Standard error of :meth:`threshold` over the K realizations (per row; zeros when K = 1)."""
        self._check_name(name)
        return paired_standard_error(self.alpha_star[name], axis=1)

    def crossover(self, name: str, tol: float = 1e-3) -> np.ndarray:
        """Where the theory's realization-mean training error first exceeds ``tol`` on the alpha grid
        (:func:`training_error_crossover`): a finite-ridge reading that falls below :meth:`threshold`."""
        self._check_name(name)
        return training_error_crossover(self.alpha, self.train_error[name], tol)


@dataclass
class WidthDiagram(_Diagram):
    """Figure A.2: errors over (H / L, alpha = M / H), averaged over K realizations.

    Attributes (n_H widths, n_alpha theory points, n_num numerical points)
    ----------
    H_over_L (n_H,), H (n_H,) int : the widths, H = round(H_over_L * L).
    alpha (n_alpha,) : M / H of the theory.
    theory["TF"|"RF"] (n_H, n_alpha) : replica test errors.
    train_error["TF"|"RF"] (n_H, n_alpha) : replica training errors (their finite-ridge crossover).
    alpha_star["TF"|"RF"] (n_H, K) : closed-form separability thresholds per realization.
    theory_realizations["TF"|"RF"] (n_H, K, n_alpha) : the same test errors per realization.
    numerics_realizations["TF"|"2L"] (n_H, K, n_num) : the trained test errors per realization.
    converged (n_H, n_alpha) : every TF and RF solver point of the cell converged.
    alpha_numerics (n_num,) : M / H of the trained points; M_numerics (n_H, n_num) int the sizes.
    numerics["TF"|"2L"] (n_H, n_num) : test errors of trained TF heads and 2L nets.
    source_error (n_H, K), source_epochs (n_H, K) : the source nets on their own task.
    separability : a :class:`SeparabilityTest` of the thresholds, or None when none was asked for.
    """

    H_over_L: np.ndarray = field(default_factory=lambda: np.zeros(0))
    H: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    alpha_numerics: np.ndarray = field(default_factory=lambda: np.zeros(0))
    M_numerics: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))
    separability: SeparabilityTest | None = None


@dataclass
class SourceSizeDiagram(_Diagram):
    """Figure A.3: errors over (M_s, M_t), averaged over K realizations.

    Attributes (n_s source sizes, n_alpha theory points, n_num numerical points)
    ----------
    M_source (n_s,) int : source training-set sizes.   H : the width.
    alpha (n_alpha,) : M_t / H of the theory; M_target = alpha * H.
    theory["TF"|"RF"] (n_s, n_alpha) : replica test errors (the RF rows are equal: RF ignores M_s).
    train_error["TF"|"RF"] (n_s, n_alpha), theory_realizations["TF"|"RF"] (n_s, K, n_alpha),
    converged (n_s, n_alpha), alpha_star["TF"|"RF"] (n_s, K) : as in :class:`WidthDiagram`.
    M_numerics (n_num,) int : target sizes trained numerically.
    numerics["TF"|"2L"] (n_s, n_num) : trained test errors (the 2L rows are equal).
    numerics_realizations["TF"|"2L"] (n_s, K, n_num) : the same per realization.
    source_error (n_s, K), source_epochs (n_s, K) : the source nets on their own task.
    """

    M_source: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    H: int = 0
    M_numerics: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @property
    def M_target(self) -> np.ndarray:
        """Target sizes of the theory grid, alpha * H (not rounded)."""
        return self.alpha * self.H


# ----------------------------------------------------------------------------- figure A.2
def width_diagram(H_over_L, alphas, D: int = 200, L: int = 50, lam: float = 1e-5,
                  eta: float = TRANSFORMATION["eta"], rho: float = TRANSFORMATION["rho"],
                  q: float = TRANSFORMATION["q"], alpha_numerics=(), realizations: int = 3,
                  M_source: int = 2000, source: TrainingConfig = SOURCE_DEFAULT,
                  scratch: TrainingConfig = SCRATCH_DEFAULT, rf_baseline: str = "independent", n_samples: int = 20_000,
                  M_test: int = 2000, separability_H_over_L=(), separability_factors=(0.8, 1.25),
                  separability_lam: float = 1e-8, separability_repeats: int = 8, seed: int = 0, device="auto",
                  progress: bool = True) -> WidthDiagram:
    """Phase diagram of figure A.2: TF vs RF (theory) and TF vs 2L (numerics) over (H / L, M / H).

    Parameters
    ----------
    H_over_L : increasing ratios > 0; the widths are H = round(H_over_L * L) (distinct, >= 1).
    alphas : increasing M / H values > 0 of the theory grid.
    D, L : input and latent dimensions (L_source = L_target = L), defaults 200 and 50.
    lam : ridge of every learner (default 1e-5: small enough for the separability threshold to show).
    eta, rho, q : the transformation, default (1, 0.2, 0.8) as in the paper.
    alpha_numerics : increasing M / H values at which TF and 2L are trained (sizes round(alpha H)); () skips.
    realizations : K CHMMs (``realization=k``), batched.
    M_source, source : source training-set size and Adam configuration (early stopping, patience 0).
    scratch : Adam configuration of 2L.
    rf_baseline : "independent" (default): RF is a fresh N(0, 1) first layer, drawn independently of
        the source nets' initialisation; "init": RF uses the random first layer the source nets
        started from (a paired comparison: TF - RF is then what source training added, and is 0
        by construction when training moves nothing).
    n_samples : Monte-Carlo samples for the moments.
    M_test : test-set size of the trained learners.
    separability_H_over_L : the widths (values of ``H_over_L``) at which the closed-form thresholds
        are tested empirically (:class:`SeparabilityTest`); () skips.  At each, for TF and RF,
        ``separability_repeats`` independent training sets per realization of
        M = round(f * alpha* H) examples, f in ``separability_factors`` (increasing, > 0), are fitted
        by heads at ridge ``separability_lam`` (training sets: ``derived_seed(seed, "separability", i)``).
    seed, device, progress : as elsewhere.

    Returns a :class:`WidthDiagram` (shapes in its docstring).
    """
    D, L, eta, rho, q, lam, K, n_samples, M_test, seed = _check_common(
        D, L, eta, rho, q, lam, realizations, n_samples, M_test, seed)
    M_source = check_positive_int("M_source", M_source)
    check_choice("rf_baseline", rf_baseline, RF_BASELINES)
    ratios = check_increasing_positive_reals("H_over_L", H_over_L)
    Hs = [max(1, int(round(r * L))) for r in ratios]
    if len(set(Hs)) != len(Hs):
        raise ValueError(f"H_over_L gives repeated widths H = round(H_over_L * L) = {Hs} at L = {L}")
    alphas = check_increasing_positive_reals("alphas", alphas)
    num_alphas = check_increasing_positive_reals("alpha_numerics", alpha_numerics) if len(alpha_numerics) else np.zeros(0)
    M_num = np.array([_sizes("alpha_numerics", num_alphas, H) for H in Hs], dtype=int) if num_alphas.size \
        else np.zeros((len(Hs), 0), dtype=int)
    sep_rows = []
    for r in (np.atleast_1d(np.asarray(separability_H_over_L, dtype=float)) if len(separability_H_over_L) else []):
        hit = np.nonzero(np.isclose(ratios, r))[0]
        if hit.size == 0:
            raise ValueError(f"separability_H_over_L must hold values of H_over_L = {ratios.tolist()}, got {r:g}")
        sep_rows.append(int(hit[0]))
    if sep_rows:
        factors = check_increasing_positive_reals("separability_factors", separability_factors)
        separability_lam = check_positive_real("separability_lam", separability_lam)
        separability_repeats = check_positive_int("separability_repeats", separability_repeats)
    dev = get_device(device)
    chmms = [CHMM(D, L, L, eta, rho, q, seed=seed, realization=k, device=dev) for k in range(K)]

    per, trn, conv, numerics, numerics_per, src_err, src_ep, a_star = _empty_tables(
        len(Hs), K, alphas.size, num_alphas.size)
    sep = None
    if sep_rows:
        shape = (len(sep_rows), K, factors.size, separability_repeats)
        sep = SeparabilityTest(np.asarray(sep_rows), factors, {n: np.zeros((len(sep_rows), factors.size), dtype=int)
                                                                for n in ("TF", "RF")},
                               {n: np.zeros(shape, dtype=bool) for n in ("TF", "RF")},
                               {n: np.zeros(shape, dtype=bool) for n in ("TF", "RF")}, separability_lam,
                               {n: np.zeros(len(sep_rows), dtype=int) for n in ("TF", "RF")},
                               {n: np.zeros((len(sep_rows), K, separability_repeats), dtype=bool) for n in ("TF", "RF")})
    for i, H in enumerate(tqdm(Hs, desc="widths H", disable=not progress)):
        res, init = train_source(chmms, H, M_source, source, seed=seed, progress=False)
        src_ep[i] = res.epochs.numpy()
        rf_W1 = init.W1 if rf_baseline == "init" else init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1
        for name, W1 in (("TF", res.params.W1), ("RF", rf_W1)):
            th = frozen_theory(W1, chmms, alphas, lam, n_samples=n_samples, seed=seed)
            per[name][i] = th["eps"]
            trn[name][i] = th["train_error"].mean(0)
            conv[i] &= th["converged"].all(0)
            a_star[name][i] = th["alpha_star"]
            if i in sep_rows:
                j = sep_rows.index(i)
                M_f = [max(1, int(round(f * th["alpha_star"].mean() * H))) for f in factors]
                cross = float(training_error_crossover(alphas, th["train_error"].mean(0)))
                M_c = max(1, int(round(factors[-1] * cross * H))) if math.isfinite(cross) else 0
                M_all = sorted(set(M_f) | ({M_c} if M_c else set()))     # nested sets: one increasing grid
                test = training_separability(W1, chmms, th["mean"], M_all, lam=separability_lam,
                                             repeats=separability_repeats, seed=derived_seed(seed, "separability", i))
                at = [M_all.index(M) for M in M_f]
                sep.M[name][j] = M_f
                sep.separable[name][j] = test["separable"][:, at]
                sep.converged[name][j] = test["converged"][:, at]
                sep.M_crossover[name][j] = M_c
                if M_c:
                    sep.separable_crossover[name][j] = test["separable"][:, M_all.index(M_c)]
        src_err[i] = _source_error(res.params, chmms, M_test, seed)
        if numerics:
            curves = transfer_learning_curves(D, H, L, L, eta, rho, q, M_grid=M_num[i], M_test=M_test,
                                              realizations=K, lam=lam, learners=("TF", "2L"), scratch=scratch,
                                              seed=seed, device=dev, progress=False, source_params=res.params)
            for name in numerics:
                numerics[name][i] = curves.mean(name)
                numerics_per[name][i] = curves.errors[name].T
    config = dict(D=D, L=L, eta=eta, rho=rho, q=q, lam=lam, realizations=K, M_source=M_source, source=source,
                  scratch=scratch, rf_baseline=rf_baseline, n_samples=n_samples, M_test=M_test, seed=seed, device=str(dev))
    return WidthDiagram(alphas, {n: v.mean(1) for n, v in per.items()}, trn, conv, numerics, per, src_err, src_ep,
                        config, numerics_per, a_star, H_over_L=ratios, H=np.asarray(Hs), alpha_numerics=num_alphas,
                        M_numerics=M_num, separability=sep)


# ----------------------------------------------------------------------------- figure A.3
def source_size_diagram(M_source, alphas, D: int = 200, L: int = 50, H: int = 50, lam: float = 1e-5,
                        eta: float = TRANSFORMATION["eta"], rho: float = TRANSFORMATION["rho"],
                        q: float = TRANSFORMATION["q"], M_numerics=(), realizations: int = 3,
                        source: TrainingConfig = SOURCE_DEFAULT, scratch: TrainingConfig = SCRATCH_DEFAULT,
                        rf_baseline: str = "independent", n_samples: int = 20_000, M_test: int = 2000, seed: int = 0, device="auto",
                        progress: bool = True) -> SourceSizeDiagram:
    """Phase diagram of figure A.3: TF vs RF (theory) and TF vs 2L (numerics) over (M_s, M_t).

    Parameters
    ----------
    M_source : increasing source training-set sizes (ints >= 1); one set of K source nets each,
        trained from the same initialisation on nested data (the first M_s examples of one stream).
    alphas : increasing M_t / H values > 0 of the theory grid.
    D, L, H : input dimension, latent dimension (L_source = L_target = L), width; defaults 200, 50, 50.
    lam : ridge of every learner (default 1e-5).   eta, rho, q : the transformation, default (1, 0.2, 0.8).
    M_numerics : increasing target sizes at which TF and 2L are trained; () skips.
    realizations, source, scratch, rf_baseline, n_samples, M_test, seed, device, progress : as
        :func:`width_diagram`.  Every source net starts from the same random first layer (it depends on
        the seed only); with "init" that layer is the RF of every row, so at M_s -> 0, TF -> RF exactly,
        while the default independent RF makes TF ~ RF at small M_s a finding to test.

    Returns a :class:`SourceSizeDiagram` (shapes in its docstring).
    """
    D, L, eta, rho, q, lam, K, n_samples, M_test, seed = _check_common(
        D, L, eta, rho, q, lam, realizations, n_samples, M_test, seed)
    H = check_positive_int("H", H)
    check_choice("rf_baseline", rf_baseline, RF_BASELINES)
    M_s = check_int_sequence("M_source", M_source, minimum=1)
    if any(b <= a for a, b in zip(M_s, M_s[1:])):
        raise ValueError(f"M_source must be strictly increasing, got {M_s}")
    alphas = check_increasing_positive_reals("alphas", alphas)
    M_num = check_int_sequence("M_numerics", M_numerics, minimum=1) if len(M_numerics) else []
    if any(b <= a for a, b in zip(M_num, M_num[1:])):
        raise ValueError(f"M_numerics must be strictly increasing, got {M_num}")
    dev = get_device(device)
    chmms = [CHMM(D, L, L, eta, rho, q, seed=seed, realization=k, device=dev) for k in range(K)]

    per, trn, conv, numerics, numerics_per, src_err, src_ep, a_star = _empty_tables(
        len(M_s), K, alphas.size, len(M_num))
    for i, Ms in enumerate(tqdm(M_s, desc="source sizes M_s", disable=not progress)):
        res, init = train_source(chmms, H, Ms, source, seed=seed, progress=False)
        src_ep[i] = res.epochs.numpy()
        if i == 0:                          # RF ignores the source: solve it once, share the row
            rf_W1 = init.W1 if rf_baseline == "init" else init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1
            rf = frozen_theory(rf_W1, chmms, alphas, lam, n_samples=n_samples, seed=seed)
            per["RF"][:] = rf["eps"]
            trn["RF"][:] = rf["train_error"].mean(0)
            conv &= rf["converged"].all(0)
            a_star["RF"][:] = rf["alpha_star"]
        th = frozen_theory(res.params.W1, chmms, alphas, lam, n_samples=n_samples, seed=seed)
        per["TF"][i] = th["eps"]
        trn["TF"][i] = th["train_error"].mean(0)
        conv[i] &= th["converged"].all(0)
        a_star["TF"][i] = th["alpha_star"]
        src_err[i] = _source_error(res.params, chmms, M_test, seed)
        if M_num:
            curves = transfer_learning_curves(D, H, L, L, eta, rho, q, M_grid=M_num, M_test=M_test,
                                              realizations=K, lam=lam, learners=("TF", "2L") if i == 0 else ("TF",),
                                              scratch=scratch, seed=seed, device=dev, progress=False,
                                              source_params=res.params)
            numerics["TF"][i] = curves.mean("TF")
            numerics_per["TF"][i] = curves.errors["TF"].T
            if i == 0:                      # 2L ignores the source: train it once, share the row
                numerics["2L"][:] = curves.mean("2L")
                numerics_per["2L"][:] = curves.errors["2L"].T
    config = dict(D=D, L=L, H=H, eta=eta, rho=rho, q=q, lam=lam, realizations=K, source=source, scratch=scratch,
                  rf_baseline=rf_baseline,
                  n_samples=n_samples, M_test=M_test, seed=seed, device=str(dev))
    return SourceSizeDiagram(alphas, {n: v.mean(1) for n, v in per.items()}, trn, conv, numerics, per, src_err,
                             src_ep, config, numerics_per, a_star, M_source=np.asarray(M_s), H=H, M_numerics=np.asarray(M_num, dtype=int))
