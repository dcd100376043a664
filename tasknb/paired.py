"""Paired comparisons over realizations: the difference of two learners measured on the same K
realizations, its standard error, and whether the quick scale resolves it.

Two learners (TF and RF, TF and 2L, ft-TF and TF...) fitted on the same K realizations of an
experiment give K paired differences d_k = err_k(baseline) - err_k(transfer). Their mean and
its standard error

    mean = (1/K) sum_k d_k,        sem = std(d, ddof=1) / sqrt(K)

say how large the gain is and how sure we are of it. A claim "transfer helps" (sign +1) or
"transfer hurts" (sign -1) is *resolved* at n_se standard errors when sign * mean >= n_se * sem
with sem > 0 (the book uses n_se = 2). A difference that is not resolved is printed as
"mean ± sem, not resolved at this scale" instead of being asserted or dropped; one resolved with the
other sign is printed as "resolved with the sign opposite to the claim".

:func:`paired_difference` builds a :class:`PairedDifference` from the two error arrays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .validation import check_choice, check_positive_real

__all__ = ["PairedDifference", "paired_difference", "paired_standard_error", "NOT_RESOLVED", "OPPOSITE"]

#: the words every chapter prints next to a difference the quick scale does not resolve
NOT_RESOLVED = "not resolved at this scale"
#: ... and next to one it resolves with the sign opposite to the claim (e.g. the paper's)
OPPOSITE = "resolved with the sign opposite to the claim"


def paired_standard_error(differences, axis: int = -1):
    """Standard error of a mean of paired differences: std(ddof=1) / sqrt(K) along ``axis``.

    ``differences`` holds one difference per realization, K of them along ``axis``. Returns the
    other axes' shape (a 0-d array for a vector), zeros when K = 1 (no spread to estimate).
    """
    d = np.asarray(differences, dtype=float)
    K = d.shape[axis]
    return d.std(axis, ddof=1) / np.sqrt(K) if K > 1 else np.zeros(np.delete(d.shape, axis))


@dataclass(frozen=True)
class PairedDifference:
    """Mean and standard error of K paired differences (``mean`` and ``sem`` share one shape).

    ``n`` is K, ``label`` a short name used by :meth:`describe` (e.g. "gain of TF over RF").
    """

    mean: np.ndarray
    sem: np.ndarray
    n: int
    label: str = ""

    @property
    def z(self) -> np.ndarray:
        """mean / sem, the difference in standard errors (inf where sem = 0 and mean != 0, 0 where both are 0)."""
        m, s = np.asarray(self.mean, dtype=float), np.asarray(self.sem, dtype=float)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(s > 0, m / np.where(s > 0, s, 1.0), np.sign(m) * np.inf)
        return np.where((s == 0) & (m == 0), 0.0, z)

    def resolved(self, sign: int = 1, n_se: float = 2.0) -> np.ndarray:
        """True where ``sign * mean >= n_se * sem`` and sem > 0 (a difference of the claimed sign,
        at ``n_se`` standard errors); ``sign`` +1 claims mean > 0, -1 claims mean < 0."""
        check_choice("sign", sign, (1, -1))
        n_se = check_positive_real("n_se", n_se)
        m, s = np.asarray(self.mean, dtype=float), np.asarray(self.sem, dtype=float)
        return (s > 0) & (sign * m >= n_se * s)

    def within(self, tol: float, n_se: float = 2.0) -> np.ndarray:
        """True where the difference is zero within ``tol``: mean ± ``n_se`` sem lies inside (-tol, tol)
        (an equivalence test; with a positive control it can fail, unlike "not resolved")."""
        tol = check_positive_real("tol", tol)
        n_se = check_positive_real("n_se", n_se)
        return np.abs(np.asarray(self.mean, dtype=float)) + n_se * np.asarray(self.sem, dtype=float) < tol

    def describe(self, sign: int = 1, n_se: float = 2.0, digits: int = 3, verdict: bool = True) -> str:
        """One line for a scalar difference: ``"label: +0.034 ± 0.008 (4.2 SE)"``, judged against the
        claimed ``sign``: nothing is appended when the claim is resolved, ", resolved with the sign
        opposite to the claim" when the other sign is, and ", not resolved at this scale" otherwise.
        ``verdict=False`` gives the numbers alone (for a difference claimed to be about zero, see
        :meth:`within`)."""
        if np.ndim(self.mean) != 0:
            raise ValueError(f"describe needs a scalar difference, got shape {np.shape(self.mean)}; index it first")
        z = float(self.z)
        text = f"{float(self.mean):+.{digits}f} ± {float(self.sem):.{digits}f} ({z:+.1f} SE, K = {self.n})"
        if self.label:
            text = f"{self.label}: {text}"
        if not verdict:
            return text
        if bool(self.resolved(-sign, n_se)):
            text += f", {OPPOSITE}"
        elif not bool(self.resolved(sign, n_se)):
            text += f", {NOT_RESOLVED}"
        return text

    def __getitem__(self, index) -> "PairedDifference":
        return PairedDifference(np.asarray(self.mean)[index], np.asarray(self.sem)[index], self.n, self.label)


def paired_difference(baseline, transfer, axis: int = -1, label: str = "") -> PairedDifference:
    """The paired gain err(baseline) - err(transfer) over K realizations along ``axis``.

    ``baseline`` and ``transfer`` are arrays of the same shape holding one error per realization
    (K >= 2 of them along ``axis``); the result's arrays have the other axes' shape.
    """
    b, t = np.asarray(baseline, dtype=float), np.asarray(transfer, dtype=float)
    if b.shape != t.shape:
        raise ValueError(f"baseline and transfer must have the same shape, got {b.shape} and {t.shape}")
    if b.ndim == 0:
        raise ValueError("baseline and transfer must hold one value per realization along axis")
    if not (np.all(np.isfinite(b)) and np.all(np.isfinite(t))):
        raise ValueError("baseline and transfer must be finite (a NaN error means a fit failed upstream)")
    d = b - t
    K = d.shape[axis]
    if K < 2:
        raise ValueError(f"a paired standard error needs >= 2 realizations along axis {axis}, got {K}")
    return PairedDifference(d.mean(axis), paired_standard_error(d, axis), K, label)
