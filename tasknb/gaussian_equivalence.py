"""Gaussian equivalence for a frozen first layer on the CHMM: step (c) of section 3 of
Gerace et al. (2022), and the theory-vs-simulation comparison of their figure 2b.

For a first layer W1 (H x D) and a target HMM (F_t, theta_t), the features are
v = ReLU(x W1^T / D) with x = ReLU(c F_t / sqrt(L)).  The replica theory of
:mod:`tasknb.replica` needs the population moments

    Omega = Cov(v)        (H x H),        Phi = E[c v^T]        (L x H),

which :func:`estimate_covariances` computes by Monte Carlo, in chunks so that memory
stays bounded.  ReLU features have a non-zero mean mu = E[v], which the zero-mean
Gaussian covariate model does not have.  We *centre the features*: the learner reads
v - mu (a fixed affine map of the same features, with mu estimated once by the same
Monte Carlo), so that theory and simulation describe exactly the same estimator.  The
notebook C3 measures how well this works.

Replica predictions for frozen first layers: :func:`predict_frozen_heads` (one target task per
first layer, with the moments and saddle points) and :func:`theory_over_targets` (many target
tasks per first layer, sharing one Monte-Carlo estimate between targets with the same features).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .chmm import CHMM, stack_samples
from .device import derived_seed, stream
from .replica import SaddlePoint, solve_saddle_point
from .training import fit_logistic_head
from .validation import check_choice, check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["FeatureMoments", "estimate_covariances", "centred_features", "simulate_frozen_heads",
           "predict_frozen_heads", "theory_over_targets"]


@dataclass
class FeatureMoments:
    """Monte-Carlo moments of the features of one first layer on one HMM.

    ``Omega`` (H, H) covariance, ``Phi`` (L, H) = E[c v^T], ``mean`` (H,) = E[v],
    ``n_samples`` the Monte-Carlo sample count, ``theta`` (L,) the teacher read from the latents.
    """

    Omega: torch.Tensor
    Phi: torch.Tensor
    mean: torch.Tensor
    theta: torch.Tensor
    n_samples: int


def _features(W1: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    return torch.relu(X @ W1.T / W1.shape[1])


def estimate_covariances(W1: torch.Tensor, chmm: CHMM, n_samples: int = 50_000, which: str = "target",
                         chunk: int = 10_000, seed: int = 0) -> FeatureMoments:
    """Monte-Carlo estimate of Omega = Cov(v), Phi = E[c v^T] and mu = E[v] (step (c) of sec. 3).

    Parameters
    ----------
    W1 : (H, D) first layer.   chmm : the CHMM; ``which`` ("target" or "source") picks the HMM.
    n_samples : int >= 2, Monte-Carlo samples (default 50,000).
    chunk : int >= 1, samples drawn at a time (memory ~ chunk * (D + H) numbers).
    seed : int, the draws: latents from ``stream(seed, "gaussian_equivalence.monte-carlo")``,
        independent of the CHMM's matrices and samples for every seed.

    Moments are accumulated in float64 on W1's device.
    """
    if not isinstance(W1, torch.Tensor) or W1.dim() != 2 or W1.shape[1] != chmm.D:
        raise ValueError(f"W1 must be a (H, D) tensor with D = {chmm.D}, got {getattr(W1, 'shape', type(W1).__name__)}")
    n_samples = check_positive_int("n_samples", n_samples, minimum=2)
    chunk = check_positive_int("chunk", chunk)
    check_choice("which", which, ("source", "target"))
    seed = check_seed("seed", seed)
    F = (chmm.F_target if which == "target" else chmm.F_source).to(W1.device, torch.float64)
    theta = chmm.theta_target if which == "target" else chmm.theta_source
    L = F.shape[0]
    W = W1.to(torch.float64)
    H = W.shape[0]
    g = stream(seed, "gaussian_equivalence.monte-carlo")
    S_vv = torch.zeros(H, H, dtype=torch.float64, device=W1.device)
    S_cv = torch.zeros(L, H, dtype=torch.float64, device=W1.device)
    S_v = torch.zeros(H, dtype=torch.float64, device=W1.device)
    done = 0
    while done < n_samples:
        n = min(chunk, n_samples - done)
        c = torch.randn(n, L, generator=g, dtype=torch.float64).to(W1.device)
        v = _features(W, torch.relu(c @ F / math.sqrt(L)))
        S_vv += v.T @ v
        S_cv += c.T @ v
        S_v += v.sum(0)
        done += n
    mean = S_v / n_samples
    Omega = S_vv / n_samples - torch.outer(mean, mean)
    Omega = 0.5 * (Omega + Omega.T)
    return FeatureMoments(Omega, S_cv / n_samples, mean, theta.to(torch.float64), n_samples)


def centred_features(W1: torch.Tensor, X: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """Centred features v - mu for a stack: W1 (K, H, D), X (K, M, D), mean (K, H) -> (K, M, H)."""
    if W1.dim() != 3 or X.dim() != 3 or mean.dim() != 2:
        raise ValueError("W1 must be (K, H, D), X (K, M, D) and mean (K, H)")
    return torch.relu(torch.einsum("kmd,khd->kmh", X, W1) / W1.shape[2]) - mean.unsqueeze(1).to(X.dtype)


def predict_frozen_heads(W1: torch.Tensor, chmms: list[CHMM], alphas, lam: float, n_samples: int = 50_000,
                         seed: int = 0, **solver_kwargs) -> tuple[np.ndarray, list[FeatureMoments], list[SaddlePoint]]:
    """Replica prediction of the test error of a frozen first layer + L2-logistic head, per realization.

    W1 (K, H, D) holds one first layer per CHMM of ``chmms`` (K of them); ``alphas`` the
    values of M / H.  Returns ``(eps, moments, saddle_points)`` with eps of shape
    (K, len(alphas)).  Realization k's Monte Carlo uses ``derived_seed(seed, "monte-carlo", k)``
    (the same for two first layers on the same CHMM: common random numbers for TF - RF).
    """
    if W1.dim() != 3 or W1.shape[0] != len(chmms):
        raise ValueError(f"W1 must be (K, H, D) with K = len(chmms) = {len(chmms)}, got {tuple(W1.shape)}")
    lam = check_positive_real("lam", lam)
    eps, moments, sps = [], [], []
    for k, chmm in enumerate(chmms):
        mom = estimate_covariances(W1[k], chmm, n_samples=n_samples, seed=derived_seed(seed, "monte-carlo", k))
        sp = solve_saddle_point(mom.Omega, mom.Phi, mom.theta, alphas, lam, device=W1.device, **solver_kwargs)
        eps.append(np.atleast_1d(sp.eps_g))
        moments.append(mom)
        sps.append(sp)
    return np.stack(eps), moments, sps


def simulate_frozen_heads(W1: torch.Tensor, chmms: list[CHMM], M_grid, lam: float, means: torch.Tensor,
                          M_test: int = 5_000, seed: int = 0) -> np.ndarray:
    """Test error of L2-logistic heads on centred frozen features, fitted on M target examples.

    W1 (K, H, D), ``means`` (K, H) the feature means to subtract (from
    :func:`estimate_covariances`), ``M_grid`` the training-set sizes.  Each realization k
    draws its own training and test sets from ``chmms[k]``, with the streams of
    :func:`tasknb.feature_transfer.transfer_learning_curves` (``derived_seed(seed, "target.test")``
    and ``derived_seed(seed, "target.train", i)``).  Returns (K, len(M_grid)).
    """
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    lam = check_positive_real("lam", lam)
    M_test = check_positive_int("M_test", M_test)
    seed = check_seed("seed", seed)
    Xt, yt = stack_samples(chmms, M_test, "target", derived_seed(seed, "target.test"))
    Vt = centred_features(W1, Xt, means)
    out = np.zeros((len(chmms), len(M_grid)))
    H = W1.shape[1]
    for i, M in enumerate(M_grid):
        X, y = stack_samples(chmms, M, "target", derived_seed(seed, "target.train", i))
        fit = fit_logistic_head(centred_features(W1, X, means), y, lam)
        pred = torch.einsum("kmh,kh->km", Vt, fit.w) / math.sqrt(H)
        out[:, i] = (torch.sign(pred) != yt).double().mean(1).cpu().numpy()
    return out


def theory_over_targets(W1: torch.Tensor, targets: list[list[CHMM]], alphas, lam: float,
                        n_samples: int = 20_000, seed: int = 0, **solver_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """Replica test error of frozen first layers on many target tasks.

    W1 (K, H, D) holds one first layer per realization; ``targets[i][k]`` is the CHMM of
    target value i and realization k.  Realizations whose target features are equal across
    values share one Monte-Carlo estimate and one solver call (teachers stacked).
    Returns ``(eps, converged)``, both of shape (n_values, K, len(alphas)).
    """
    if W1.dim() != 3 or any(len(row) != W1.shape[0] for row in targets):
        raise ValueError(f"targets must be a list (values) of lists of K = {W1.shape[0]} CHMMs")
    lam = check_positive_real("lam", lam)
    n_v, K = len(targets), W1.shape[0]
    alphas = np.atleast_1d(np.asarray(alphas, dtype=float))
    eps = np.zeros((n_v, K, alphas.size))
    conv = np.zeros((n_v, K, alphas.size), dtype=bool)
    for k in range(K):
        groups: list[tuple[torch.Tensor, list[int]]] = []
        for i in range(n_v):
            F = targets[i][k].F_target
            for F_g, members in groups:
                if F_g.shape == F.shape and torch.equal(F_g, F):
                    members.append(i)
                    break
            else:
                groups.append((F, [i]))
        for _, members in groups:
            mom = estimate_covariances(W1[k], targets[members[0]][k], n_samples=n_samples,
                                       seed=derived_seed(seed, "monte-carlo", k))
            thetas = torch.stack([targets[i][k].theta_target for i in members]).to(torch.float64)
            sp = solve_saddle_point(mom.Omega, mom.Phi, thetas, alphas, lam, device=W1.device, **solver_kwargs)
            eps[members, k] = sp.eps_g
            conv[members, k] = sp.converged
    return eps, conv
