"""L2-logistic heads fitted on frozen, centred first layers: learning curves and linear separability.

A frozen first layer W1 (H x D) turns CHMM inputs into features v = ReLU(x W1^T / D); a head
w reads the centred features v - mu (mu = E[v], from
:func:`tasknb.gaussian_equivalence.estimate_covariances`) and is fitted by
:func:`tasknb.training.fit_logistic_head`, the L2-logistic loss of eq. (6) of Gerace et al. (2022).

* :func:`simulate_heads` : training and test errors of such heads on one first layer, against the
  training-set size M (the simulated points of the double-descent curves, section 4.3).
* :func:`training_separability` : whether each training set of M examples is *linearly separable*
  on the features, read from a head fitted at a tiny ridge: the minimiser of the regularised loss
  has training error 0 exactly when a separator exists and the ridge is small enough (as lam -> 0
  it tends to the max-margin separator), and a positive training error whenever none exists.
  The fraction of separable training sets drops from 1 to 0 around the separability threshold
  alpha* = M* / H (Cover's 2 for unstructured features), which makes this an empirical test of a
  threshold computed in closed form (:func:`tasknb.separability.separability_threshold`).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from .chmm import CHMM, stack_samples
from .device import derived_seed
from .gaussian_equivalence import centred_features
from .training import fit_logistic_head
from .validation import check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["simulate_heads", "training_separability"]


def simulate_heads(W1: torch.Tensor, chmm, means: torch.Tensor, M_grid, lam: float, repeats: int = 4,
                   M_test: int = 4000, seed: int = 0, max_iter: int = 300) -> dict[str, np.ndarray]:
    """Logistic heads on one frozen, centred first layer: training and test errors vs M.

    W1 (H, D) first layer, ``chmm`` its CHMM (target task), ``means`` (H,) the feature mean
    to subtract (from :func:`tasknb.gaussian_equivalence.estimate_covariances`), ``M_grid``
    training-set sizes, ``repeats`` independent training sets per size (fitted together by
    :func:`tasknb.training.fit_logistic_head`).  Returns a dict of (len(M_grid), repeats)
    arrays: ``train_error``, ``test_error`` and ``converged`` (booleans).
    """
    if not isinstance(W1, torch.Tensor) or W1.dim() != 2:
        raise ValueError(f"W1 must be a (H, D) tensor, got {getattr(W1, 'shape', type(W1).__name__)}")
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    lam = check_positive_real("lam", lam)
    repeats = check_positive_int("repeats", repeats)
    M_test = check_positive_int("M_test", M_test)
    seed = check_seed("seed", seed)
    H = W1.shape[0]
    W = W1.unsqueeze(0).expand(repeats, -1, -1)
    mu = means.to(W1.dtype).unsqueeze(0).expand(repeats, -1)
    Xt, yt = stack_samples([chmm], M_test, "target", derived_seed(seed, "target.test"))
    Vt = centred_features(W1.unsqueeze(0), Xt, mu[:1])[0].double()
    out = {k: np.zeros((len(M_grid), repeats)) for k in ("train_error", "test_error")}
    out["converged"] = np.zeros((len(M_grid), repeats), dtype=bool)
    for i, M in enumerate(M_grid):
        X, y = stack_samples([chmm] * repeats, M, "target", derived_seed(seed, "target.train", i))
        fit = fit_logistic_head(centred_features(W, X, mu), y, lam, max_iter=max_iter, warn=False)
        pred = Vt @ fit.w.double().T / math.sqrt(H)                         # (M_test, repeats)
        out["test_error"][i] = (torch.sign(pred) != yt[0].double().unsqueeze(1)).double().mean(0).cpu().numpy()
        out["train_error"][i] = fit.train_error.cpu().numpy()
        out["converged"][i] = fit.converged.cpu().numpy()
    return out


def training_separability(W1: torch.Tensor, chmms: list[CHMM], means: torch.Tensor, M_grid, lam: float = 1e-8,
                          repeats: int = 8, seed: int = 0, max_iter: int = 500) -> dict[str, np.ndarray]:
    """Are training sets of M target examples linearly separable on frozen, centred features?

    W1 (K, H, D): one first layer per CHMM of ``chmms`` (K of them); ``means`` (K, H) the feature
    means to subtract; ``M_grid`` increasing training-set sizes; ``repeats`` independent training
    sets per realization.  The sets are nested: draw (k, r) is one stream of max(M_grid) target
    examples of ``chmms[k]`` (``derived_seed(seed, "separability.train", k)``, element r), and size
    M uses its first M, so a draw separable at some M is separable at every smaller one.  A head is
    fitted at ridge ``lam`` (tiny, so that it separates whenever it can) by
    :func:`tasknb.training.fit_logistic_head` with ``max_iter`` Newton steps.

    Returns a dict of (K, len(M_grid), repeats) arrays: ``separable`` (training error exactly 0),
    ``train_error`` and ``converged``.  A set with a positive training error is never separable
    by this head; a separable set read as not separable (ridge too large, or the fit unconverged)
    is the only possible error, and ``converged`` flags the second.
    """
    if not isinstance(W1, torch.Tensor) or W1.dim() != 3 or W1.shape[0] != len(chmms):
        raise ValueError(f"W1 must be a (K, H, D) tensor with K = len(chmms) = {len(chmms)}, "
                         f"got {getattr(W1, 'shape', type(W1).__name__)}")
    K, H, _ = W1.shape
    if not isinstance(means, torch.Tensor) or tuple(means.shape) != (K, H):
        raise ValueError(f"means must be a ({K}, {H}) tensor (one feature mean per first layer), "
                         f"got {getattr(means, 'shape', type(means).__name__)}")
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    if any(b <= a for a, b in zip(M_grid, M_grid[1:])):
        raise ValueError(f"M_grid must be strictly increasing, got {M_grid}")
    lam = check_positive_real("lam", lam)
    repeats = check_positive_int("repeats", repeats)
    seed = check_seed("seed", seed)
    max_iter = check_positive_int("max_iter", max_iter)
    M_max = M_grid[-1]
    V, Y = [], []
    for k, chmm in enumerate(chmms):
        X, y = stack_samples([chmm] * repeats, M_max, "target", derived_seed(seed, "separability.train", k))
        V.append(centred_features(W1[k].unsqueeze(0).expand(repeats, -1, -1), X,
                                  means[k].to(W1.dtype).unsqueeze(0).expand(repeats, -1)))
        Y.append(y)
    V, Y = torch.cat(V), torch.cat(Y)                                         # (K * repeats, M_max, ...)
    shape = (K, len(M_grid), repeats)
    out = {"train_error": np.zeros(shape), "converged": np.zeros(shape, dtype=bool)}
    for i, M in enumerate(M_grid):
        fit = fit_logistic_head(V[:, :M], Y[:, :M], lam, max_iter=max_iter, warn=False)
        out["train_error"][:, i] = fit.train_error.cpu().numpy().reshape(K, repeats)
        out["converged"][:, i] = fit.converged.cpu().numpy().reshape(K, repeats)
    out["separable"] = out["train_error"] == 0.0
    return out
