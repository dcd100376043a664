"""The multi-class CHMM and softmax learners of Gerace et al. (2022), appendix B.

Appendix B of the paper checks numerically that its binary conclusions survive
when the tasks have C > 2 classes.  The generative part is unchanged (eq. 1 for
the inputs, eqs. 2 and 4 for the features); only the teacher grows a class axis:

    x = ReLU(c F / sqrt(L)),      y = argmax_k (c Theta / sqrt(L))_k              (eq. 1, multi-class)

with Theta of shape (L, C) and i.i.d. N(0, 1) entries.  The target teacher is
built column by column with the binary rules: eq. (3) on the shared rows,

    Theta_t[:, k] = q Theta_s[:, k] + sqrt(1 - q^2) Theta_tilde[:, k],

and eq. (5) for added or deleted rows when L_t != L_s.  :class:`MulticlassCHMM`
*composes* a binary :class:`tasknb.chmm.CHMM` (same seed): its features F_s, F_t
and its teachers theta_s, theta_t are reused as the first column of Theta_s,
Theta_t, and the other C - 1 columns are drawn with the same rules from a second
random stream.  Inputs, and therefore everything the feature maps see, are those
of the binary model.

The learners are two-layer networks with C outputs and no biases,

    v = ReLU(x W1^T / D),      logits = v W2 / sqrt(H),      W1 (H, D), W2 (H, C),

trained with the softmax cross-entropy plus (lam / 2) ||W2||^2 (the multi-class
eq. 6).  TF, RF, 2L and ft-TF are defined as in the binary case (section 2.2 and
appendix D).  Every function works on a stack of K realizations: parameters carry
a leading K axis, the heads are fitted by one batched Newton iteration, and Adam
runs on the stacked tensors (the sum of the K losses has, for each model, exactly
that model's gradient; Adam is element-wise, so one Adam is K independent ones).

The model is :class:`tasknb.chmm.MulticlassCHMM`, the networks are the soft-max stacks of
:mod:`tasknb.networks.stacks`, fitted by :mod:`tasknb.training` and compared by the
protocol of :mod:`tasknb.feature_transfer` (:func:`~tasknb.feature_transfer.softmax_family`);
this chapter runs that protocol and its sweeps.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from ..feature_transfer import LEARNERS, TransferCurves, paired_standard_error, transfer_learning_curves
from ..networks.stacks import SoftmaxStack
from ..paired import PairedDifference, paired_difference
from ..training import FINETUNE_DEFAULT, SCRATCH_DEFAULT, SOURCE_DEFAULT, TrainingConfig
from ..validation import check_choice, check_int_sequence, check_positive_int, check_real_in

__all__ = [
    "multiclass_transfer_curves", "GainMap", "multiclass_gain_map",
    "AsymmetricTransfer", "asymmetric_transfer", "plot_asymmetric_gain",
]


# ============================================================================ transfer protocol

def multiclass_transfer_curves(D: int, H: int, L_source: int, L_target: int, n_classes: int = 3,
                               eta: float = 1.0, rho: float = 0.0, q: float = 1.0,
                               M_grid=(25, 50, 100, 200, 400), M_source: int = 10_000, M_test: int = 5_000,
                               realizations: int = 8, lam: float = 1e-4, learners=LEARNERS,
                               source: TrainingConfig = SOURCE_DEFAULT,
                               scratch: TrainingConfig = SCRATCH_DEFAULT,
                               finetune: TrainingConfig = FINETUNE_DEFAULT,
                               seed: int = 0, device="auto", progress: bool = True,
                               source_params: SoftmaxStack | None = None,
                               max_iter: int = 200) -> TransferCurves:
    """Learning curves of TF, RF, 2L and ft-TF on the C-class CHMM (appendix B, numerically).

    The protocol of :func:`tasknb.feature_transfer.transfer_learning_curves` with softmax outputs:
    (1) a C-output source network per realization, Adam with early stopping on M_source
    source examples; (2) for each M in ``M_grid``, on the same M target examples: TF (the
    source W1 frozen, multinomial logistic head by :func:`fit_softmax_head`), RF (a random
    W1 frozen), 2L (Adam from scratch) and ft-TF (Adam on both layers from TF); test errors
    on M_test fresh target examples.

    Parameters are those of ``transfer_learning_curves`` plus ``n_classes`` (C >= 2) and
    ``max_iter`` (Newton steps of the heads).  ``source_params`` reuses source networks from an
    earlier call with the same D, H, L_source, n_classes, realizations and seed (the source
    task does not depend on eta, rho, q).  Returns a :class:`tasknb.feature_transfer.TransferCurves`
    (``errors[name]`` of shape (n_M, K)); ``config["n_classes"]`` holds C and chance level
    is 1 - 1/C.
    """
    return transfer_learning_curves(D, H, L_source, L_target, eta=eta, rho=rho, q=q, M_grid=M_grid,
                                    M_source=M_source, M_test=M_test, realizations=realizations, lam=lam,
                                    learners=learners, source=source, scratch=scratch, finetune=finetune, seed=seed,
                                    device=device, progress=progress, source_params=source_params,
                                    n_classes=n_classes, max_iter=max_iter)


# ---------------------------------------------------------------------------- phase diagrams
@dataclass
class GainMap:
    """Learning curves along one target-correlation parameter (the multi-class figure B.1).

    ``param`` ("eta", "rho" or "q"), ``values`` (n_v,), ``M`` (n_M,), ``H``, and ``curves``: one
    :class:`TransferCurves` per value, all sharing the same source networks.
    """

    param: str
    values: np.ndarray
    M: np.ndarray
    H: int
    curves: list[TransferCurves] = field(default_factory=list)

    @property
    def alpha(self) -> np.ndarray:
        return self.M / self.H

    def errors(self, name: str) -> np.ndarray:
        """Test errors of one learner: (n_values, n_M, K)."""
        return np.stack([c.errors[name] for c in self.curves])

    def gain(self, transfer: str, baseline: str) -> np.ndarray:
        """The gain err(baseline) - err(transfer), mean over realizations of the paired differences:
        (n_values, n_M); > 0 where the ``transfer`` learner wins."""
        return (self.errors(baseline) - self.errors(transfer)).mean(-1)

    def gain_sem(self, transfer: str, baseline: str) -> np.ndarray:
        """Standard error of :meth:`gain` from the paired per-realization differences
        (std with ddof=1 / sqrt(K); zeros when K = 1): (n_values, n_M)."""
        return paired_standard_error(self.errors(baseline) - self.errors(transfer), axis=-1)

    def paired_gain(self, transfer: str, baseline: str) -> PairedDifference:
        """:meth:`gain` with its paired standard error as a :class:`tasknb.paired.PairedDifference`
        of shape (n_values, n_M) (index it for one cell's ``describe``)."""
        return paired_difference(self.errors(baseline), self.errors(transfer), axis=-1,
                                 label=f"gain of {transfer} over {baseline}")


def multiclass_gain_map(param: str, values, *, D: int, H: int, L_source: int, L_target: int,
                        n_classes: int = 3, eta: float = 1.0, rho: float = 0.0, q: float = 1.0,
                        M_grid=(25, 50, 100, 200), learners=("TF", "RF", "2L"),
                        source_params: SoftmaxStack | None = None, progress: bool = True,
                        **kwargs) -> GainMap:
    """Sweep one target correlation (``param`` in "eta", "rho", "q") over ``values`` at every M of
    ``M_grid``: the numerical phase diagrams of figures 3, A.1 and B.1.

    The source task does not depend on the swept parameter, so the source networks are trained
    once (or taken from ``source_params``) and reused for every value.  Other keyword arguments
    go to :func:`multiclass_transfer_curves` (M_source, M_test, realizations, lam, the
    TrainingConfigs, seed, device).
    """
    check_choice("param", param, ("eta", "rho", "q"))
    try:
        values = [float(v) for v in values]
    except (TypeError, ValueError):
        raise ValueError(f"values must be a non-empty sequence of numbers, got {values!r}") from None
    if not values:
        raise ValueError("values must be a non-empty sequence of numbers")
    lo = -1.0 if param == "q" else 0.0
    values = [check_real_in(param, v, lo, 1.0) for v in values]
    base = dict(eta=eta, rho=rho, q=q)
    curves = []
    for v in tqdm(values, desc=f"{param} values", disable=not progress):
        c = multiclass_transfer_curves(D, H, L_source, L_target, n_classes, **{**base, param: v}, M_grid=M_grid,
                                       learners=learners, source_params=source_params, progress=False, **kwargs)
        source_params = c.source_params
        curves.append(c)
    return GainMap(param, np.asarray(values), np.asarray(curves[0].M), H, curves)


@dataclass
class AsymmetricTransfer:
    """Transfer between tasks of different latent dimension at fixed L_s + L_t (figures 5 and B.2).

    ``L_total``; ``L_target`` (n_L,); ``M`` (n_M,); ``H``; ``curves``: one :class:`TransferCurves`
    per L_t, each with its own source networks (L_s = L_total - L_t).
    """

    L_total: int
    L_target: np.ndarray
    M: np.ndarray
    H: int
    curves: list[TransferCurves] = field(default_factory=list)

    @property
    def L_source(self) -> np.ndarray:
        return self.L_total - self.L_target

    @property
    def alpha(self) -> np.ndarray:
        return self.M / self.H

    def errors(self, name: str) -> np.ndarray:
        """(n_L, n_M, K) test errors of one learner."""
        return np.stack([c.errors[name] for c in self.curves])

    def gain(self, transfer: str = "TF", baseline: str = "RF") -> np.ndarray:
        """The gain err(baseline) - err(transfer), mean over realizations of the paired differences:
        (n_L, n_M); > 0 where the ``transfer`` learner wins."""
        return (self.errors(baseline) - self.errors(transfer)).mean(-1)

    def gain_sem(self, transfer: str = "TF", baseline: str = "RF") -> np.ndarray:
        """Standard error of :meth:`gain` from the paired per-realization differences
        (std with ddof=1 / sqrt(K); zeros when K = 1): (n_L, n_M)."""
        return paired_standard_error(self.errors(baseline) - self.errors(transfer), axis=-1)

    def paired_gain(self, transfer: str = "TF", baseline: str = "RF") -> PairedDifference:
        """:meth:`gain` with its standard error over realizations, (n_L, n_M); realization k of every
        L_t shares its index (and seed) but not its CHMM, so differences between rows are paired by index."""
        return paired_difference(self.errors(baseline), self.errors(transfer), axis=-1,
                                 label=f"gain of {transfer} over {baseline}")


def asymmetric_transfer(L_total: int, L_targets, *, D: int, H: int, n_classes: int = 3,
                        M_grid=(25, 50, 100), learners=("TF", "RF"), progress: bool = True,
                        source_params: dict | None = None, **kwargs) -> AsymmetricTransfer:
    """TF against the baselines for L_t in ``L_targets`` with L_s = L_total - L_t (eqs. 4-5).

    L_t < L_s is transfer from a hard (feature-rich) to an easy task, L_t > L_s the converse.
    Every L_t needs its own source networks, so this costs one source training per value,
    except for the L_s found in ``source_params``, a dict {L_source: SoftmaxStack} of networks
    trained earlier with the same D, H, n_classes, realizations and seed (e.g.
    ``{50: curves.source_params}``).  Other keyword arguments go to
    :func:`multiclass_transfer_curves` (eta, rho, q, M_source, M_test, realizations, lam, the
    TrainingConfigs, seed, device).
    """
    L_total = check_positive_int("L_total", L_total, minimum=2)
    L_targets = check_int_sequence("L_targets", L_targets, minimum=1, maximum=L_total - 1)
    source_params = dict(source_params or {})
    curves = [multiclass_transfer_curves(D, H, L_total - Lt, Lt, n_classes, M_grid=M_grid, learners=learners,
                                         progress=False, source_params=source_params.get(L_total - Lt), **kwargs)
              for Lt in tqdm(L_targets, desc="target latent dims", disable=not progress)]
    return AsymmetricTransfer(L_total, np.asarray(L_targets), np.asarray(curves[0].M), H, curves)


# ============================================================================ figures
def plot_asymmetric_gain(ax, asym: AsymmetricTransfer, transfer: str = "TF", baseline: str = "RF"):
    """The gain err(baseline) - err(transfer) against the target latent dimension, one line per M
    with its paired standard error (figure 5b, B.2); positive where transfer helps.

    Left of the symmetric point L_t = L_total / 2 the target is easier than the source
    (hard -> easy), right of it harder (easy -> hard).
    """
    g, s = asym.gain(transfer, baseline), asym.gain_sem(transfer, baseline)
    for j, a in enumerate(asym.alpha):
        ax.errorbar(asym.L_target, g[:, j], yerr=s[:, j], marker="o", ms=4, capsize=2, label=f"M/H = {a:g}")
    ax.axvline(asym.L_total / 2, color="k", lw=0.8, ls=":")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel(f"target latent dimension L_t   (L_s + L_t = {asym.L_total})")
    ax.set_ylabel(f"gain of {transfer} over {baseline}:  ε({baseline}) − ε({transfer})")
    ax.set_title("hard → easy  ◀   ▶  easy → hard")
    ax.legend(fontsize="small")
    return ax
