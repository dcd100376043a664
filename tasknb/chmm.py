"""The correlated hidden manifold model (CHMM) of Gerace et al. (2022), section 2.1.

A hidden manifold model (HMM) draws a latent vector c ~ N(0, I_L) and maps it
to an input and a label through generative features F (L x D) and a teacher
theta (L,):

    x = ReLU(c F / sqrt(L)),        y = sign(c . theta / sqrt(L))          (eq. 1)

The CHMM couples a *source* HMM (F_s, theta_s) with a *target* HMM
(F_t, theta_t) built from it by three families of transformations:

* feature substitution and perturbation (eq. 2): the first round(rho * L_min)
  rows of F_t are fresh Gaussian rows; every other shared row is
  eta * F_s + sqrt(1 - eta**2) * F_tilde;
* teacher perturbation (eq. 3): theta_t = q * theta_s + sqrt(1 - q**2) * theta_tilde
  on the shared components;
* feature addition or deletion (eqs. 4-5): L_t != L_s.  With L_t < L_s the
  rows (and teacher components) beyond L_t are deleted; with L_t > L_s new
  Gaussian rows and components are appended.

Here L_min = min(L_s, L_t).  With L_t = L_s the definitions reduce exactly to
eqs. (2)-(3); the transformations compose, the shared rows being perturbed and
the added rows being fresh.  Only the rows and components that are shared can be
perturbed, so rho = 1 (or eta = 0) gives target features independent of the
source ones.

**C classes** (appendix B).  The generative part is unchanged; the teacher grows a class axis,

    y = argmax_k (c Theta / sqrt(L))_k,        Theta (L, C) with i.i.d. N(0, 1) entries,

and the target teacher is built column by column with the binary rules (eq. 3 on the shared
rows, eq. 5 for added or deleted rows).  :class:`MulticlassCHMM` composes a binary
:class:`CHMM` with the same seed: its features and teachers theta_s, theta_t are the first
columns of Theta_s, Theta_t, the other C - 1 columns come from a second random stream, and the
inputs are those of the binary model.

**Random streams.**  Every draw has its own stream (:func:`tasknb.device.stream`), keyed by a
seed, the draw's purpose and the model's realization index:

* the model matrices F_s, theta_s, F_tilde, theta_tilde: ``stream(seed, "chmm.model", realization)``;
* the extra teacher columns of the C-class model: ``stream(seed, "chmm.multiclass.teacher", realization)``;
* ``sample_source(M, seed=s)``, ``sample_target(M, seed=s)`` and ``sample_paired(M, seed=s)``:
  ``stream(s, "chmm.sample.<which>", model seed, realization)``; ``seed=None`` continues the
  model's own ``"chmm.sample.default"`` stream.

So for every s a sample is independent of the model's matrices, and a source sample is
independent of the target sample drawn with the same s.  Models that share (seed, realization)
and differ only in eta, rho, q or L_t draw the *same* latents for the same sample seed (common
random numbers across a sweep of the target).

**K realizations.**  Realization k of an experiment is ``CHMM(..., seed=seed, realization=k)``
(not ``seed + k``, which would make the realizations of seed 1 those of seed 0 shifted by one).
:func:`stack_samples` draws the same number of examples from K models, element k with the
sample seed ``derived_seed(seed, "chmm.stack_samples", k)``, and stacks them as X (K, M, D),
y (K, M), the layout of the network stacks of :mod:`tasknb.networks.stacks`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .device import derived_seed, get_device, stream
from .validation import check_choice, check_positive_int, check_real_in, check_seed

__all__ = ["CHMM", "CHMMSample", "hmm_inputs", "hmm_labels", "MulticlassCHMM", "multiclass_labels", "stack_samples"]


def hmm_inputs(c: torch.Tensor, F: torch.Tensor) -> torch.Tensor:
    """Inputs of eq. (1): ``ReLU(c F / sqrt(L))``; c is (M, L), F is (L, D) -> (M, D)."""
    L = F.shape[0]
    return torch.relu(c @ F / math.sqrt(L))


def hmm_labels(c: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Labels of eq. (1): ``sign(c . theta / sqrt(L))`` in {-1, +1} (ties -> +1); shape (M,)."""
    s = c @ theta
    return torch.where(s >= 0, 1.0, -1.0).to(c.dtype)


@dataclass(frozen=True)
class CHMMSample:
    """A sample of one HMM: inputs ``X`` (M, D), labels ``y`` (M,), latents ``c`` (M, L)."""

    X: torch.Tensor
    y: torch.Tensor
    c: torch.Tensor

    def __iter__(self):  # so that ``X, y = chmm.sample_source(M)`` works
        return iter((self.X, self.y))


class CHMM:
    """A source/target pair of hidden manifold models built by eqs. (1)-(5) of Gerace et al.

    Parameters
    ----------
    D : int >= 1
        Input dimension (number of "pixels").
    L_source, L_target : int >= 1
        Latent (intrinsic) dimensions of the source and target HMMs.
    eta : float in [0, 1], default 1
        Feature perturbation: correlation kept by each non-substituted shared row.
    rho : float in [0, 1], default 0
        Fraction of shared feature rows substituted by fresh ones.
    q : float in [-1, 1], default 1
        Teacher perturbation: correlation of the shared teacher components.
    seed : int >= 0, default 0
        Seeds the draw of F_s, theta_s, the perturbations and the default
        sample stream (see "Random streams" in the module docstring).
    realization : int >= 0, default 0
        Index of this model among the independent realizations of one experiment seed: the
        model matrices come from ``stream(seed, "chmm.model", realization)``.
    device : "auto" | "cpu" | "cuda" | torch.device
        Where samples are returned.  Draws are made on the CPU with the seed, so
        the numbers do not depend on the device.
    dtype : torch.dtype, default torch.float32

    Attributes
    ----------
    F_source : (L_source, D) tensor      F_target : (L_target, D) tensor
    theta_source : (L_source,) tensor    theta_target : (L_target,) tensor
    n_substituted : int, the number of substituted rows, round(rho * min(L_s, L_t)).

    Examples
    --------
    >>> chmm = CHMM(D=100, L_source=20, L_target=20, eta=0.9, rho=0.1, q=0.8, seed=0)
    >>> X, y = chmm.sample_target(50)
    >>> X.shape, y.shape
    (torch.Size([50, 100]), torch.Size([50]))
    """

    def __init__(self, D: int, L_source: int, L_target: int, eta: float = 1.0, rho: float = 0.0,
                 q: float = 1.0, seed: int = 0, device="auto", dtype: torch.dtype = torch.float32,
                 realization: int = 0):
        self.D = check_positive_int("D", D)
        self.L_source = check_positive_int("L_source", L_source)
        self.L_target = check_positive_int("L_target", L_target)
        self.eta = check_real_in("eta", eta, 0.0, 1.0)
        self.rho = check_real_in("rho", rho, 0.0, 1.0)
        self.q = check_real_in("q", q, -1.0, 1.0)
        self.seed = check_seed("seed", seed)
        self.realization = check_positive_int("realization", realization, minimum=0)
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
        self.dtype = dtype
        self.device = get_device(device)

        g = stream(self.seed, "chmm.model", self.realization)
        Ls, Lt, Dm = self.L_source, self.L_target, self.D
        L_min = min(Ls, Lt)
        # Draw every Gaussian block once, in a fixed order, in float64 on the CPU.
        F_s = torch.randn(Ls, Dm, generator=g, dtype=torch.float64)
        theta_s = torch.randn(Ls, generator=g, dtype=torch.float64)
        F_tilde = torch.randn(max(Ls, Lt), Dm, generator=g, dtype=torch.float64)
        theta_tilde = torch.randn(max(Ls, Lt), generator=g, dtype=torch.float64)

        n_sub = int(round(self.rho * L_min))
        shared = self.eta * F_s[:L_min] + math.sqrt(max(0.0, 1.0 - self.eta**2)) * F_tilde[:L_min]   # eq. (2), 2nd line
        shared[:n_sub] = F_tilde[:n_sub]                                                            # eq. (2), 1st line
        F_t = torch.cat([shared, F_tilde[L_min:Lt]], dim=0)                                          # eq. (4)
        th_shared = self.q * theta_s[:L_min] + math.sqrt(max(0.0, 1.0 - self.q**2)) * theta_tilde[:L_min]  # eq. (3)
        theta_t = torch.cat([th_shared, theta_tilde[L_min:Lt]])                                      # eq. (5)

        self.n_substituted = n_sub
        self.F_source = F_s.to(device=self.device, dtype=dtype)
        self.theta_source = theta_s.to(device=self.device, dtype=dtype)
        self.F_target = F_t.to(device=self.device, dtype=dtype)
        self.theta_target = theta_t.to(device=self.device, dtype=dtype)
        # The default sample stream, independent of the draws above.
        self._stream = stream(self.seed, "chmm.sample.default", self.realization)

    def __repr__(self) -> str:
        return (f"CHMM(D={self.D}, L_source={self.L_source}, L_target={self.L_target}, eta={self.eta:g}, "
                f"rho={self.rho:g}, q={self.q:g}, seed={self.seed}"
                + (f", realization={self.realization})" if self.realization else ")"))

    # ------------------------------------------------------------------ sampling
    def _latents(self, M: int, L: int, seed: int | None, which: str) -> torch.Tensor:
        if seed is None:
            g = self._stream
        else:
            g = stream(check_seed("seed", seed), f"chmm.sample.{which}", self.seed, self.realization)
        return torch.randn(M, L, generator=g, dtype=torch.float64)

    def _sample(self, M, seed, F, theta, L, which) -> CHMMSample:
        M = check_positive_int("M", M)
        c = self._latents(M, L, seed, which).to(device=self.device, dtype=self.dtype)
        return CHMMSample(hmm_inputs(c, F), hmm_labels(c, theta), c)

    def sample_source(self, M: int, seed: int | None = None) -> CHMMSample:
        """M source examples by eq. (1): ``X`` (M, D) >= 0, ``y`` (M,) in {-1, +1}.

        Unpacks as ``X, y = chmm.sample_source(M)``; ``.c`` holds the latents.
        ``seed=None`` draws from the model's own stream (successive calls give new
        samples); an integer s gives a reproducible sample from the stream
        ``("chmm.sample.source", model seed, realization)`` under s: independent of the model's
        matrices and of ``sample_target(M, seed=s)``.
        """
        return self._sample(M, seed, self.F_source, self.theta_source, self.L_source, "source")

    def sample_target(self, M: int, seed: int | None = None) -> CHMMSample:
        """M target examples by eq. (1) with (F_target, theta_target); as ``sample_source``."""
        return self._sample(M, seed, self.F_target, self.theta_target, self.L_target, "target")

    def sample_paired(self, M: int, seed: int | None = None) -> tuple[CHMMSample, CHMMSample]:
        """Source and target examples built from the *same* latent draws.

        A latent c of dimension max(L_s, L_t) is drawn; the source reads its first
        L_s coordinates and the target its first L_t.  Comparing the two samples
        shows how related the tasks are (see :meth:`relatedness`).
        """
        M = check_positive_int("M", M)
        Lmax = max(self.L_source, self.L_target)
        c = self._latents(M, Lmax, seed, "paired").to(device=self.device, dtype=self.dtype)
        cs, ct = c[:, : self.L_source], c[:, : self.L_target]
        return (CHMMSample(hmm_inputs(cs, self.F_source), hmm_labels(cs, self.theta_source), cs),
                CHMMSample(hmm_inputs(ct, self.F_target), hmm_labels(ct, self.theta_target), ct))

    # ----------------------------------------------------------- diagnostics
    def feature_cosine(self) -> float:
        """Mean cosine between shared rows of F_s and F_t (≈ eta on unsubstituted rows, ≈ 0 on substituted).

        Averaged over the min(L_s, L_t) shared rows, so it is ≈ (1 - rho) * eta.
        """
        L_min = min(self.L_source, self.L_target)
        a, b = self.F_source[:L_min].double(), self.F_target[:L_min].double()
        return float(torch.nn.functional.cosine_similarity(a, b, dim=1).mean())

    def teacher_overlap(self) -> float:
        """Cosine between theta_s and theta_t, the missing components counted as 0 (≈ q for L_s = L_t)."""
        L_min = min(self.L_source, self.L_target)
        ts, tt = self.theta_source.double(), self.theta_target.double()
        return float((ts[:L_min] @ tt[:L_min]) / (ts.norm() * tt.norm()))

    def relatedness(self, M: int = 20_000, seed: int = 0) -> dict[str, float]:
        """Monte-Carlo measures of how related source and target are, from paired latents.

        Returns a dict with
        ``label_agreement``  P(y_s = y_t) for the same latent (1 = same rule, 0.5 = unrelated);
        ``input_correlation`` mean Pearson correlation between x_s and x_t across examples,
        per input coordinate (1 = same inputs, 0 = independent);
        ``feature_cosine`` and ``teacher_overlap`` (exact, from the parameters).
        """
        src, tgt = self.sample_paired(M, seed=seed)
        xs = src.X.double() - src.X.double().mean(0)
        xt = tgt.X.double() - tgt.X.double().mean(0)
        corr = (xs * xt).sum(0) / (xs.norm(dim=0) * xt.norm(dim=0)).clamp_min(1e-300)
        return {
            "label_agreement": float((src.y == tgt.y).double().mean()),
            "input_correlation": float(corr.mean()),
            "feature_cosine": self.feature_cosine(),
            "teacher_overlap": self.teacher_overlap(),
        }


# ============================================================================ C classes
def multiclass_labels(c: torch.Tensor, Theta: torch.Tensor) -> torch.Tensor:
    """Labels of the multi-class eq. (1): ``argmax_k (c Theta / sqrt(L))_k``.

    c is (M, L), Theta is (L, C) -> (M,) int64 in 0..C-1.  The 1/sqrt(L) does not
    change the argmax and is omitted.
    """
    return torch.argmax(c @ Theta, dim=-1)


class MulticlassCHMM:
    """A source/target pair of C-class hidden manifold models (appendix B of Gerace et al.).

    Parameters
    ----------
    D : int >= 1, input dimension.
    L_source, L_target : int >= 1, latent dimensions of the two HMMs.
    n_classes : int >= 2, the number of classes C.
    eta : float in [0, 1], default 1, feature perturbation (eq. 2).
    rho : float in [0, 1], default 0, fraction of substituted features (eq. 2).
    q : float in [-1, 1], default 1, teacher perturbation applied to every column (eq. 3).
    seed : int >= 0, default 0.  The binary CHMM inside uses the same seed, so
        ``MulticlassCHMM(..., seed=s).base`` equals ``CHMM(..., seed=s)``.
    realization : int >= 0, default 0, as for :class:`CHMM`.
    device, dtype : as for :class:`CHMM`.

    Attributes
    ----------
    base : the binary :class:`CHMM` providing F_s, F_t, the latents and the inputs.
    F_source (L_source, D), F_target (L_target, D) : the generative features (from ``base``).
    Theta_source (L_source, C), Theta_target (L_target, C) : the teachers; column 0 is
        ``base.theta_source`` / ``base.theta_target``.

    Examples
    --------
    >>> m = MulticlassCHMM(D=100, L_source=20, L_target=20, n_classes=3, eta=0.9, q=0.8, seed=0)
    >>> X, y = m.sample_target(50)
    >>> X.shape, y.shape, y.dtype
    (torch.Size([50, 100]), torch.Size([50]), torch.int64)
    """

    def __init__(self, D: int, L_source: int, L_target: int, n_classes: int = 3, eta: float = 1.0,
                 rho: float = 0.0, q: float = 1.0, seed: int = 0, device="auto",
                 dtype: torch.dtype = torch.float32, realization: int = 0):
        self.n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        # the binary model validates D, L_source, L_target, eta, rho, q, seed, realization, device and dtype
        self.base = CHMM(D, L_source, L_target, eta=eta, rho=rho, q=q, seed=seed, device=device, dtype=dtype,
                         realization=realization)
        b = self.base
        self.D, self.L_source, self.L_target = b.D, b.L_source, b.L_target
        self.eta, self.rho, self.q, self.seed, self.realization = b.eta, b.rho, b.q, b.seed, b.realization
        self.device, self.dtype = b.device, b.dtype

        C, Ls, Lt = self.n_classes, self.L_source, self.L_target
        L_min = min(Ls, Lt)
        g = stream(self.seed, "chmm.multiclass.teacher", self.realization)   # independent of the binary model's draws
        extra_s = torch.randn(Ls, C - 1, generator=g, dtype=torch.float64)
        extra_tilde = torch.randn(max(Ls, Lt), C - 1, generator=g, dtype=torch.float64)
        shared = self.q * extra_s[:L_min] + math.sqrt(max(0.0, 1.0 - self.q ** 2)) * extra_tilde[:L_min]  # eq. (3)
        extra_t = torch.cat([shared, extra_tilde[L_min:Lt]], dim=0)                                      # eq. (5)
        to = dict(device=self.device, dtype=dtype)
        self.Theta_source = torch.cat([b.theta_source[:, None], extra_s.to(**to)], dim=1)
        self.Theta_target = torch.cat([b.theta_target[:, None], extra_t.to(**to)], dim=1)

    @property
    def F_source(self) -> torch.Tensor:
        return self.base.F_source

    @property
    def F_target(self) -> torch.Tensor:
        return self.base.F_target

    def __repr__(self) -> str:
        return (f"MulticlassCHMM(D={self.D}, L_source={self.L_source}, L_target={self.L_target}, "
                f"n_classes={self.n_classes}, eta={self.eta:g}, rho={self.rho:g}, q={self.q:g}, seed={self.seed})")

    def _relabel(self, s: CHMMSample, Theta: torch.Tensor) -> CHMMSample:
        return CHMMSample(s.X, multiclass_labels(s.c, Theta), s.c)

    def sample_source(self, M: int, seed: int | None = None) -> CHMMSample:
        """M source examples: ``X`` (M, D) by eq. (1), ``y`` (M,) int64 in 0..C-1 by the argmax rule.

        Unpacks as ``X, y = m.sample_source(M)``; ``.c`` holds the latents (M, L_source).
        ``seed=None`` continues the model's own stream; an integer gives a reproducible sample
        whose inputs are exactly those of ``m.base.sample_source(M, seed)``.
        """
        return self._relabel(self.base.sample_source(M, seed), self.Theta_source)

    def sample_target(self, M: int, seed: int | None = None) -> CHMMSample:
        """M target examples with (F_target, Theta_target); as :meth:`sample_source`."""
        return self._relabel(self.base.sample_target(M, seed), self.Theta_target)

    def sample_paired(self, M: int, seed: int | None = None) -> tuple[CHMMSample, CHMMSample]:
        """Source and target examples from the same latents (see :meth:`CHMM.sample_paired`)."""
        s, t = self.base.sample_paired(M, seed)
        return self._relabel(s, self.Theta_source), self._relabel(t, self.Theta_target)

    def teacher_overlaps(self) -> np.ndarray:
        """Per-class cosine between the columns of Theta_s and Theta_t (missing rows count as 0): (C,).

        ≈ q for L_s = L_t, the multi-class analogue of :meth:`CHMM.teacher_overlap`.
        """
        L_min = min(self.L_source, self.L_target)
        a, b = self.Theta_source.double(), self.Theta_target.double()
        return ((a[:L_min] * b[:L_min]).sum(0) / (a.norm(dim=0) * b.norm(dim=0))).cpu().numpy()

    def label_agreement(self, M: int = 20_000, seed: int = 0) -> float:
        """P(y_s = y_t) on shared latents: 1 for the same rule, 1/C for unrelated rules."""
        s, t = self.sample_paired(M, seed)
        return float((s.y == t.y).double().mean())

    def class_frequencies(self, which: str = "target", M: int = 20_000, seed: int = 0) -> np.ndarray:
        """Fraction of each class in M fresh examples of the source or target task: (C,)."""
        check_choice("which", which, ("source", "target"))
        y = getattr(self, f"sample_{which}")(M, seed=seed).y
        return torch.bincount(y, minlength=self.n_classes).double().cpu().numpy() / M


# ============================================================================ K realizations
def stack_samples(models: list[CHMM] | list[MulticlassCHMM], M: int, which: str,
                  seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw M examples from each of K models and stack them: X (K, M, D), y (K, M).

    ``which`` is "source" or "target"; element k uses the sample seed
    ``derived_seed(seed, "chmm.stack_samples", k)``, so the K sets are independent even when one
    model is listed K times.  The labels are those of the models: {-1, +1} for a :class:`CHMM`,
    int64 classes for a :class:`MulticlassCHMM`.
    """
    check_choice("which", which, ("source", "target"))
    seed = check_seed("seed", seed)
    draw = [getattr(c, f"sample_{which}")(M, seed=derived_seed(seed, "chmm.stack_samples", k))
            for k, c in enumerate(models)]
    return torch.stack([d.X for d in draw]), torch.stack([d.y for d in draw])
