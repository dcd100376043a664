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
from ..feature_transfer import TheoryAndNumericsGains, transfer_learning_curves
from ..gaussian_equivalence import theory_over_targets
from ..networks.stacks import TwoLayerStack
from ..training import FINETUNE_DEFAULT, SCRATCH_DEFAULT, TrainingConfig
from ..validation import check_choice, check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["KNOBS", "PhaseDiagram", "phase_diagram"]

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
