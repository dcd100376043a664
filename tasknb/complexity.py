"""Gaussian PAC-Bayes / variational complexity of trained weights, its structure function, and the
static distance between datasets built from it.

For a prior P = N(0, lam^2 I), a posterior Q = N(w0, Sigma) and a loss L summed over the dataset,
the Lagrangian  C(Q) = E_Q L + beta KL(Q || P)  with E_Q L ~ L(w0) + 1/2 tr(H Sigma) is minimised
over Sigma by  Sigma* = (H / beta + I / lam^2)^{-1}, with value

    C_beta(w0) = L(w0) + (beta / 2) [ ||w0||^2 / lam^2 + log|I + c H| ],   c = lam^2 / beta

(``convention="minimised"``, the default; beta = 1 is the negative ELBO).  The same expression
with c = 2 lam^2 / beta (and Sigma* = (H/(beta/2) + I/lam^2)^{-1}) is ``convention="paper"``: it
corresponds to dropping the 1/2 of the second-order term, and is NOT the minimum of the
Lagrangian above.  In eigenvalues a_i = c f_i of c H, at the convention's Sigma*:

    KL(Q*||P) = 1/2 [ ||w0||^2 / lam^2 + sum_i (log(1 + a_i) - a_i / (1 + a_i)) ],
    E_Q* L    = L(w0) + lam^2 / (2 c) sum_i a_i / (1 + a_i),

so for "minimised" E_Q* L + beta KL = C_beta(w0).  H is replaced by a Fisher (``tasknb.fisher``):
positive semi-definite where the Hessian need not be.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .fisher import (
    FISHER_KINDS,
    fisher_factor,
    fisher_matvec,
    flat_parameters,
    logdet_identity_plus,
    n_parameters,
    slq_logdet,
)
from .validation import (
    check_choice,
    check_increasing_positive_reals,
    check_positive_int,
    check_positive_real,
    check_seed,
)

CONVENTIONS = ("minimised", "paper")
METHODS = ("exact", "slq")


def posterior_scale(beta: float, lam: float, convention: str = "minimised") -> float:
    """c in log|I + c H|: lam^2 / beta ("minimised") or 2 lam^2 / beta (eq. (4) as printed, "paper")."""
    beta = check_positive_real("beta", beta)
    lam = check_positive_real("lam", lam)
    convention = check_choice("convention", convention, CONVENTIONS)
    return lam ** 2 / beta if convention == "minimised" else 2.0 * lam ** 2 / beta


@dataclass
class Complexity:
    """C_beta(w0) and its parts.  ``total = loss + norm_term + logdet_term``."""

    total: float
    loss: float               # L(w0), summed over the dataset
    norm_term: float          # (beta/2) ||w0||^2 / lam^2
    logdet_term: float        # (beta/2) log|I + c H_F|
    kl: float                 # KL(Q*||P) at the convention's Sigma*
    expected_loss: float      # E_{Q*} L (second-order)
    beta: float
    lam: float
    scale: float              # c
    convention: str
    sq_norm: float            # ||w0||^2
    logdet: float             # log|I + c H_F|
    logdet_se: float = 0.0    # standard error (SLQ), 0 for exact
    fisher: str = ""
    method: str = "exact"
    n_params: int = 0
    n_samples: int = 0
    eigenvalues: np.ndarray | None = field(default=None, repr=False)

    @property
    def information(self) -> float:
        """beta * KL(Q*||P): the information term of the Lagrangian."""
        return self.beta * self.kl


def _check_eigenvalues(eigenvalues) -> np.ndarray:
    f = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(f)):
        raise ValueError("eigenvalues must be finite")
    if np.any(f < -1e-9 * max(1.0, float(np.abs(f).max(initial=0.0)))):
        raise ValueError(f"eigenvalues must be >= 0 (a Fisher is positive semi-definite), min {f.min():.3g}")
    return np.clip(f, 0.0, None)


def _finite(name: str, value) -> float:
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return v


def _kl_expected(loss, sq_norm, f, lam, scale):
    a = scale * f
    kl = 0.5 * (sq_norm / lam ** 2 + float(np.sum(np.log1p(a) - a / (1.0 + a))))
    el = loss + lam ** 2 / (2.0 * scale) * float(np.sum(a / (1.0 + a)))
    return kl, el


def complexity_from_eigenvalues(loss: float, sq_norm: float, eigenvalues, beta: float, lam: float = 1.0,
                                convention: str = "minimised") -> Complexity:
    """C_beta(w0) from L(w0) (summed), ||w0||^2 and the eigenvalues of the Fisher (beta sweeps
    without recomputing the Fisher)."""
    loss = _finite("loss", loss)
    sq_norm = check_positive_real("sq_norm", _finite("sq_norm", sq_norm), allow_zero=True)
    f = _check_eigenvalues(eigenvalues)
    scale = posterior_scale(beta, lam, convention)
    beta, lam = float(beta), float(lam)
    logdet = logdet_identity_plus(f, scale)
    norm_term = 0.5 * beta * sq_norm / lam ** 2
    logdet_term = 0.5 * beta * logdet
    kl, el = _kl_expected(loss, sq_norm, f, lam, scale)
    return Complexity(loss + norm_term + logdet_term, loss, norm_term, logdet_term, kl, el, beta, lam,
                      scale, convention, sq_norm, logdet, 0.0, "", "exact", 0, 0, f)


def structure_function(loss: float, sq_norm: float, eigenvalues, betas, lam: float = 1.0):
    """(KL(Q*_beta||P), E_{Q*_beta} L) for each beta (convention "minimised"): the points of the
    structure-function curve traced by the Lagrangian's minimisers at fixed w0.  Larger beta: less
    information in the weights, higher expected loss."""
    betas = check_increasing_positive_reals("betas", betas)
    kl = np.empty(len(betas))
    el = np.empty(len(betas))
    for i, b in enumerate(betas):
        c = complexity_from_eigenvalues(loss, sq_norm, eigenvalues, b, lam, "minimised")
        kl[i], el[i] = c.kl, c.expected_loss
    return kl, el


def summed_loss(model: nn.Module, X, y) -> float:
    """Cross-entropy summed over the dataset at the model's weights (float64)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    dev = next(model.parameters()).device
    X = torch.as_tensor(np.asarray(X.cpu() if isinstance(X, torch.Tensor) else X)).to(dev, torch.float64)
    y = torch.as_tensor(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y)).long().to(dev)
    params = {n: p.detach().to(torch.float64) for n, p in model.named_parameters()}
    with torch.no_grad():
        out = torch.func.functional_call(model, params, (X,))
        return float(torch.nn.functional.cross_entropy(out, y, reduction="sum"))


def complexity_ingredients(model: nn.Module, X, y, fisher: str = "true", n_label_samples: int = 1,
                           seed: int = 0, chunk_size: int = 1024) -> tuple[float, float, np.ndarray]:
    """What C_beta needs of a trained ``model`` on (X, y), at every beta: the summed cross-entropy
    L(w0), ||w0||^2 over all trainable parameters, and the exact nonzero-spectrum eigenvalues of the
    Fisher of kind ``fisher`` (through the Gram; ``FisherFactor.eigenvalues``).  Feed them to
    :func:`complexity_from_eigenvalues` for any beta without a new Fisher."""
    fisher = check_choice("fisher", fisher, FISHER_KINDS)
    loss = summed_loss(model, X, y)
    sq_norm = float((flat_parameters(model) ** 2).sum())
    ev = fisher_factor(model, X, fisher, y=y, n_label_samples=n_label_samples, seed=seed,
                       chunk_size=chunk_size).eigenvalues()
    return loss, sq_norm, ev


def complexity(model: nn.Module, X, y, beta: float, lam: float = 1.0, fisher: str = "true",
               method: str = "exact", convention: str = "minimised", seed: int = 0,
               n_label_samples: int = 1, n_probes: int = 30, n_steps: int = 30,
               chunk_size: int = 1024) -> Complexity:
    """C_beta(w0) = L(w0) + (beta/2)[||w0||^2/lam^2 + log|I + c H_F|] of a trained ``model`` on (X, y).

    L is the cross-entropy SUMMED over the N samples and H_F the Fisher of that summed loss, of
    kind ``fisher`` ("true": labels sampled from the model, stream "fisher.labels"; "expected";
    "empirical").  ``method="exact"``: all eigenvalues through the per-sample-gradient Gram
    (float64); ``"slq"``: stochastic Lanczos quadrature with ``n_probes`` Rademacher probes and
    ``n_steps`` Lanczos steps on matrix-free Fisher-vector products (``logdet_se`` is its standard
    error; ``kl`` and ``expected_loss`` are then NaN -- they need the spectrum).
    ||w0||^2 is over all trainable parameters (biases included).
    """
    fisher = check_choice("fisher", fisher, FISHER_KINDS)
    method = check_choice("method", method, METHODS)
    scale = posterior_scale(beta, lam, convention)
    seed = check_seed("seed", seed)
    n_label_samples = check_positive_int("n_label_samples", n_label_samples)
    P = n_parameters(model)
    N = int(len(y))
    if method == "exact":
        loss, sq_norm, ev = complexity_ingredients(model, X, y, fisher, n_label_samples, seed, chunk_size)
        c = complexity_from_eigenvalues(loss, sq_norm, ev, beta, lam, convention)
        c.fisher, c.n_params, c.n_samples = fisher, P, N
        return c
    loss = summed_loss(model, X, y)
    sq_norm = float((flat_parameters(model) ** 2).sum())
    mv = fisher_matvec(model, X, fisher, y=y, n_label_samples=n_label_samples, seed=seed)
    logdet, se = slq_logdet(mv, P, scale, n_probes=n_probes, n_steps=n_steps, seed=seed)
    beta, lam = float(beta), float(lam)
    norm_term = 0.5 * beta * sq_norm / lam ** 2
    return Complexity(loss + norm_term + 0.5 * beta * logdet, loss, norm_term, 0.5 * beta * logdet,
                      float("nan"), float("nan"), beta, lam, scale, convention, sq_norm, logdet,
                      se, fisher, "slq", P, N, None)


def static_distance(c_union: float, c_first: float) -> float:
    """d(D1 -> D2) = C(D1 u D2) - C(D1): the complexity added by the second dataset."""
    return _finite("c_union", c_union) - _finite("c_first", c_first)


def static_distance_matrix(single: dict, unions: dict, names) -> np.ndarray:
    """(T, T) matrix d[a, b] = C(a u b) - C(a) (row: the first task, column: the added one; 0 on the
    diagonal).  ``single[name]`` is C of one task, ``unions[(a, b)]`` (or ``unions[(b, a)]``) of the
    union."""
    names = list(names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"names must list >= 2 distinct tasks, got {names}")
    T = len(names)
    d = np.zeros((T, T))
    for i, a in enumerate(names):
        if a not in single:
            raise KeyError(f"single has no complexity for task {a!r}; it has {sorted(single)}")
        for j, b in enumerate(names):
            if i == j:
                continue
            key = (a, b) if (a, b) in unions else (b, a)
            if key not in unions:
                raise KeyError(f"unions has no complexity for the union of {a!r} and {b!r}")
            d[i, j] = static_distance(unions[key], single[a])
    return d
