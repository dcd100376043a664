"""Phase diagrams of transfer on the CHMM: figures 3 and A.1 of Gerace et al. (2022).

A diagram varies one correlation knob of the target task (``q``, ``eta`` or ``rho``)
against the number of target samples per hidden unit, alpha = M / H, and shows the
gain of one learner over another, err(baseline) - err(transfer), positive when
transfer helps.  The TF and RF errors come from the replica theory (:mod:`tasknb.replica`
on the Monte-Carlo moments of :mod:`tasknb.gaussian_equivalence`);
2L and ft-TF have no theory and are trained numerically on a coarser grid.

The source task of a CHMM depends only on its seed and realization, so one set of source networks serves
the whole diagram; when the knob leaves the target features unchanged (``q``), one
Monte-Carlo estimate of the moments per realization serves every value, the teachers being
stacked into one solver call.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..chmm import CHMM
from ..device import derived_seed
from ..feature_transfer import TheoryAndNumericsGains, transfer_learning_curves
from ..gaussian_equivalence import estimate_covariances, theory_over_targets
from ..networks.stacks import TwoLayerStack
from ..paired import PairedDifference, paired_difference
from ..replica import solve_saddle_point
from ..separability import separability_threshold
from ..training import FINETUNE_DEFAULT, SCRATCH_DEFAULT, TrainingConfig
from ..validation import (check_choice, check_increasing_positive_reals, check_int_sequence, check_positive_int,
                          check_positive_real, check_seed)

__all__ = ["KNOBS", "PhaseDiagram", "phase_diagram", "InterpolationCut", "interpolation_cut"]

#: the knobs a diagram can vary
KNOBS = ("q", "eta", "rho")


@dataclass
class PhaseDiagram(TheoryAndNumericsGains):
    """Errors over (knob value, alpha) for each learner, averaged over realizations.

    ``theory[name]`` (n_values, n_alpha) for TF and RF on ``alpha``;
    ``numerics[name]`` (n_values, n_M) for TF, 2L and ft-TF on ``M_numerics / H``;
    ``converged`` (n_values, n_alpha) all TF and RF solver points converged;
    ``theory_realizations[name]`` (n_values, K, n_alpha) and ``numerics_realizations[name]``
    (n_values, K, n_M): the same errors per realization (for :meth:`gain_sem`).
    """

    knob: str
    values: np.ndarray
    alpha: np.ndarray
    theory: dict[str, np.ndarray]
    alpha_numerics: np.ndarray
    numerics: dict[str, np.ndarray] = field(default_factory=dict)
    converged: np.ndarray | None = None
    theory_realizations: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    numerics_realizations: dict[str, np.ndarray] = field(default_factory=dict, repr=False)


def phase_diagram(knob: str, values, base: dict, alphas, lam: float, source_params: TwoLayerStack,
                  rf_W1: torch.Tensor, M_numerics=(), numeric_learners=("TF", "2L", "ft-TF"),
                  scratch: TrainingConfig = SCRATCH_DEFAULT, finetune: TrainingConfig = FINETUNE_DEFAULT,
                  n_samples: int = 20_000, M_test: int = 2_000, seed: int = 0, device="auto") -> PhaseDiagram:
    """One phase diagram of figure 3 / A.1: ``knob`` in ("q", "eta", "rho") against alpha.

    Parameters
    ----------
    knob, values : the varied correlation and its values.
    base : the other CHMM keywords (D, L_source, L_target, eta, rho, q), the seed excepted.
    alphas : M / H values for the theory (TF and RF).
    lam : ridge of every learner.
    source_params : the trained source networks (K of them, realization k = ``CHMM(..., seed, realization=k)``).
    rf_W1 : (K, H, D) random first layers for RF.
    M_numerics : target sizes at which 2L, ft-TF (and TF, for reference) are trained; () skips.
    n_samples : Monte-Carlo samples for the moments.
    """
    check_choice("knob", knob, KNOBS)
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        raise ValueError("values must be a non-empty sequence")
    lam = check_positive_real("lam", lam)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    seed = check_seed("seed", seed)
    K, H, D = source_params.K, source_params.H, source_params.D
    targets = [[CHMM(**{**base, knob: float(v)}, seed=seed, realization=k, device=device) for k in range(K)]
               for v in values]
    alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
    theory, conv, theory_per = {}, np.ones((values.size, alphas.size), dtype=bool), {}
    for name, W in (("TF", source_params.W1), ("RF", rf_W1)):
        eps, c = theory_over_targets(W, targets, alphas, lam, n_samples=n_samples, seed=seed)
        theory[name] = eps.mean(1)
        theory_per[name] = eps
        conv &= c.all(1)
    numerics, numerics_per = {}, {}
    if len(M_numerics):
        M_numerics = check_int_sequence("M_numerics", M_numerics, minimum=1)
        for name in numeric_learners:
            numerics[name] = np.zeros((values.size, len(M_numerics)))
            numerics_per[name] = np.zeros((values.size, K, len(M_numerics)))
        for i, v in enumerate(values):
            c = transfer_learning_curves(D, H, base["L_source"], base["L_target"],
                                         **{kk: base[kk] for kk in ("eta", "rho", "q")} | {knob: float(v)},
                                         M_grid=M_numerics, M_test=M_test, realizations=K, lam=lam,
                                         learners=numeric_learners, scratch=scratch, finetune=finetune,
                                         seed=seed, device=device, progress=False, source_params=source_params)
            for name in numeric_learners:
                numerics[name][i] = c.mean(name)
                numerics_per[name][i] = c.errors[name].T
    return PhaseDiagram(knob, values, alphas, theory, np.asarray(M_numerics, dtype=float) / H, numerics, conv,
                        theory_per, numerics_per)


@dataclass
class InterpolationCut:
    """A cut of the diagram at one knob value, resolving the interpolation peak of TF (figure 3a's band).

    ``alpha_star`` (K,): the closed-form separability threshold of each realization's transferred
    features (:func:`tasknb.separability.separability_threshold`); ``alpha`` (n_alpha,) and
    ``theory_TF`` (K, n_alpha): TF's replica error on a fine grid; ``alpha_numerics`` (n_M,) =
    M / H and ``errors[name]`` (K, n_M) for the trained "TF" and "2L"; ``head_converged`` (K, n_M)
    the TF heads' flags; ``lam`` the ridge.
    """

    alpha_star: np.ndarray
    alpha: np.ndarray
    theory_TF: np.ndarray
    alpha_numerics: np.ndarray
    errors: dict[str, np.ndarray]
    head_converged: np.ndarray
    lam: float

    def paired_gain(self, transfer: str = "TF", baseline: str = "2L") -> PairedDifference:
        """err(baseline) - err(transfer) at each trained size, with its paired SE (shape (n_M,))."""
        return paired_difference(self.errors[baseline], self.errors[transfer], axis=0,
                                 label=f"gain of {transfer} over {baseline}")

    def dip(self, at: int, other: int, transfer: str = "TF", baseline: str = "2L") -> PairedDifference:
        """gain(at other size) - gain(at size index ``at``), paired over realizations: positive when the
        gain at ``at`` (the threshold) is lower than at ``other``."""
        g = self.errors[baseline] - self.errors[transfer]                  # (K, n_M)
        return paired_difference(g[:, other], g[:, at], axis=0,
                                 label=f"gain at M/H = {self.alpha_numerics[other]:.2g} minus gain at "
                                       f"M/H = {self.alpha_numerics[at]:.2g}")


def interpolation_cut(targets: list[CHMM], source_params: TwoLayerStack, lam: float, alphas,
                      threshold_factors=(0.3, 1.0, 3.0), scratch: TrainingConfig = SCRATCH_DEFAULT, n_samples: int = 20_000, M_test: int = 2_000,
                      seed: int = 0, device="auto") -> InterpolationCut:
    """TF against 2L along M / H at one target task, with TF's separability threshold marked.

    ``targets``: the K target CHMMs (realization k = ``CHMM(..., seed, realization=k)``) of one cell row;
    ``source_params``: their K source networks; ``lam``: ridge of both learners (small, or the peak
    is smoothed away); ``alphas``: increasing M / H values for TF's theory curve;
    ``threshold_factors``: increasing multiples f of the realization-mean threshold at which TF and 2L
    are trained, M = round(f * mean(alpha*) * H) (so that one size sits at the threshold).  The Monte-Carlo moments of realization k use
    ``derived_seed(seed, "monte-carlo", k)`` as :func:`phase_diagram` does.
    """
    lam = check_positive_real("lam", lam)
    alphas = check_increasing_positive_reals("alphas", alphas)
    factors = check_increasing_positive_reals("threshold_factors", threshold_factors)
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    seed = check_seed("seed", seed)
    K, H, D = source_params.K, source_params.H, source_params.D
    if len(targets) != K:
        raise ValueError(f"targets must hold one CHMM per realization (K = {K}), got {len(targets)}")
    alpha_star, theory = np.zeros(K), np.zeros((K, len(alphas)))
    for k, chmm in enumerate(targets):
        mom = estimate_covariances(source_params.W1[k], chmm, n_samples=n_samples,
                                   seed=derived_seed(seed, "monte-carlo", k))
        alpha_star[k] = separability_threshold(mom.Omega, mom.Phi, mom.theta)[0]
        theory[k] = solve_saddle_point(mom.Omega, mom.Phi, mom.theta, alphas, lam, device=source_params.W1.device,
                                       warn=False).eps_g
    M_numerics = [max(1, int(round(f * alpha_star.mean() * H))) for f in factors]
    if len(set(M_numerics)) != len(M_numerics):
        raise ValueError(f"threshold_factors {list(factors)} give repeated target sizes {M_numerics}")
    t = targets[0]
    c = transfer_learning_curves(D, H, t.L_source, t.L_target, eta=t.eta, rho=t.rho, q=t.q, M_grid=M_numerics,
                                 M_test=M_test, realizations=K, lam=lam, learners=("TF", "2L"), scratch=scratch,
                                 seed=seed, device=device, progress=False, source_params=source_params)
    return InterpolationCut(alpha_star, np.asarray(alphas, dtype=float), theory, np.asarray(M_numerics) / H,
                            {n: c.errors[n].T for n in ("TF", "2L")}, c.head_converged["TF"].T, lam)
