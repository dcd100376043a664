"""Fisher information of a classifier from per-sample gradients, exact and matrix-free.

A model ``p_w(y|x)`` (an ``nn.Module`` returning logits) and inputs ``X`` define, for the SUMMED
loss over the N samples, the Fisher

    H_F = sum_i E_{y ~ q_i} [ g_i(y) g_i(y)^T ],    g_i(y) = grad_w log p_w(y | x_i),

where ``q_i`` is the label distribution of the chosen *kind*:

- ``"true"``: labels sampled from the model itself (the Fisher information proper; it depends on
  the data only through the inputs x) -- ``n_label_samples`` draws per input, stream
  ``"fisher.labels"``;
- ``"expected"``: the exact expectation over the model's classes (sum over c weighted by p_w(c|x));
  the limit of ``"true"`` as the number of sampled labels grows;
- ``"empirical"``: the training labels (a point mass at y_i), the "empirical Fisher".

:func:`fisher_factor` returns rows G with H_F = G^T G; its nonzero eigenvalues are those of the
M x M Gram G G^T (Sylvester), computed exactly in float64.  :func:`fisher_matvec` gives H_F v
without forming G (a Jacobian-vector product followed by a vector-Jacobian product), and
:func:`slq_logdet` estimates log|I + s H_F| from such products by stochastic Lanczos quadrature
(Rademacher probes) with a standard error -- the approximation for networks too large for the Gram.

Note: the average of squared MINI-BATCH gradients (batch size B) estimates F/B plus the squared
mean gradient, not F; the log-determinants here need per-sample gradients.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad, jacrev, jvp, vjp, vmap

from .device import stream
from .validation import check_choice, check_positive_int, check_positive_real, check_seed

FISHER_KINDS = ("true", "expected", "empirical")


def _check_model(model) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module returning logits, got {type(model).__name__}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError("model has no trainable parameters (requires_grad=True)")


def _trainable(model: nn.Module, dtype=torch.float64):
    names, tensors = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            names.append(name)
            tensors.append(p.detach().to(dtype))
    return names, tuple(tensors)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _inputs(X, model, dtype=torch.float64) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        X = torch.as_tensor(np.asarray(X))
    if X.ndim < 2 or X.shape[0] < 1:
        raise ValueError(f"X must hold one sample per row (n >= 1, ndim >= 2), got shape {tuple(X.shape)}")
    X = X.to(device=_device(model), dtype=dtype)
    if not torch.isfinite(X).all():
        raise ValueError("X must be finite")
    return X


def _labels(y, n: int, n_classes: int, device, name: str = "y") -> torch.Tensor:
    if y is None:
        raise ValueError(f"{name} (the training labels) is required for this Fisher kind")
    y = torch.as_tensor(np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y))
    if y.ndim != 1 or y.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), got {tuple(y.shape)}")
    if y.dtype.is_floating_point:
        if not torch.all(y == y.round()):
            raise ValueError(f"{name} must hold integer class labels")
    y = y.long()
    if n and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"{name} must lie in [0, {n_classes - 1}], got [{int(y.min())}, {int(y.max())}]")
    return y.to(device)


def n_parameters(model: nn.Module) -> int:
    """Number of trainable weights P (the columns of a per-sample gradient matrix)."""
    _check_model(model)
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def flat_parameters(model: nn.Module) -> torch.Tensor:
    """All trainable parameters flattened in ``named_parameters`` order (float64, on the CPU)."""
    _check_model(model)
    return torch.cat([t.reshape(-1) for t in _trainable(model)[1]]).cpu()


def _logits_fn(model, names):
    def logits(params, x):
        return functional_call(model, dict(zip(names, params)), (x,))
    return logits


def per_sample_gradients(model: nn.Module, X, y, chunk_size: int = 1024) -> torch.Tensor:
    """(N, P) float64 gradients of log p_w(y_i | x_i), one row per sample.

    ``vmap`` over ``grad`` through ``functional_call``, ``chunk_size`` samples at a time; the P
    columns are all trainable parameters flattened in ``named_parameters`` order.
    """
    _check_model(model)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    X = _inputs(X, model)
    names, params = _trainable(model)
    logits = _logits_fn(model, names)
    n_classes = int(logits(params, X[:1]).shape[-1])
    y = _labels(y, X.shape[0], n_classes, X.device)

    def log_prob(params, x, label):
        out = logits(params, x.unsqueeze(0))[0]
        return torch.log_softmax(out, dim=-1).gather(0, label.reshape(1))[0]

    g = vmap(grad(log_prob), in_dims=(None, 0, 0))
    rows = []
    for s in range(0, X.shape[0], chunk_size):
        grads = g(params, X[s:s + chunk_size], y[s:s + chunk_size])
        rows.append(torch.cat([t.reshape(t.shape[0], -1) for t in grads], dim=1))
    return torch.cat(rows, dim=0)


def model_probabilities(model: nn.Module, X) -> torch.Tensor:
    """(N, C) float64 soft-max probabilities of the model on ``X``."""
    _check_model(model)
    X = _inputs(X, model)
    names, params = _trainable(model)
    with torch.no_grad():
        return torch.softmax(_logits_fn(model, names)(params, X), dim=-1)


def sample_model_labels(model: nn.Module, X, n_samples: int = 1, seed: int = 0) -> torch.Tensor:
    """(N, n_samples) labels drawn from the model's own p_w(y | x_i) (stream ``"fisher.labels"``)."""
    n_samples = check_positive_int("n_samples", n_samples)
    seed = check_seed("seed", seed)
    p = model_probabilities(model, X).cpu()
    labels = torch.multinomial(p, n_samples, replacement=True, generator=stream(seed, "fisher.labels"))
    return labels.to(_device(model))


@dataclass
class FisherFactor:
    """Rows ``G`` (M, P) with the Fisher of the summed loss H_F = G^T G."""

    G: torch.Tensor
    kind: str

    @property
    def n_params(self) -> int:
        return int(self.G.shape[1])

    def trace(self) -> float:
        return float((self.G ** 2).sum())

    def eigenvalues(self) -> np.ndarray:
        """The min(M, P) eigenvalues of H_F that can be nonzero, descending, exact (float64).

        Through the M x M Gram G G^T when M <= P (Sylvester: same nonzero spectrum), else G^T G.
        Round-off negatives are clipped to 0.
        """
        G = self.G.to(torch.float64)
        gram = G @ G.T if G.shape[0] <= G.shape[1] else G.T @ G
        ev = torch.linalg.eigvalsh(gram).cpu().numpy()[::-1].copy()
        return np.clip(ev, 0.0, None)

    def matvec(self, v) -> torch.Tensor:
        """H_F v = G^T (G v) for a flat vector v of length P, or a block (P, k) of them."""
        v = torch.as_tensor(v, dtype=self.G.dtype, device=self.G.device)
        if v.ndim not in (1, 2) or v.shape[0] != self.n_params:
            raise ValueError(f"v must have shape ({self.n_params},) or ({self.n_params}, k), got {tuple(v.shape)}")
        return self.G.T @ (self.G @ v)

    def dense(self) -> torch.Tensor:
        """The P x P matrix H_F (only for small nets and tests)."""
        return self.G.T @ self.G


def fisher_factor(model: nn.Module, X, kind: str = "true", y=None, n_label_samples: int = 1,
                  seed: int = 0, chunk_size: int = 1024) -> FisherFactor:
    """Per-sample gradient rows G with H_F = G^T G, the Fisher of the loss summed over ``X``.

    ``kind="true"``: ``n_label_samples`` labels per input drawn from the model (rows scaled by
    1/sqrt(n_label_samples)); ``"expected"``: all C classes, rows sqrt(p_w(c|x_i)) (e_c - p)^T J_i
    from the logit Jacobians J_i (M = N C); ``"empirical"``: the training labels ``y`` (M = N).
    """
    kind = check_choice("kind", kind, FISHER_KINDS)
    n_label_samples = check_positive_int("n_label_samples", n_label_samples)
    seed = check_seed("seed", seed)
    X = _inputs(X, model)
    N = X.shape[0]
    if kind == "empirical":
        return FisherFactor(per_sample_gradients(model, X, y, chunk_size), kind)
    if kind == "true":
        labels = sample_model_labels(model, X, n_label_samples, seed)           # (N, S)
        Xr = X.repeat_interleave(n_label_samples, dim=0)
        G = per_sample_gradients(model, Xr, labels.reshape(-1), chunk_size)
        return FisherFactor(G / np.sqrt(n_label_samples), kind)
    rows = []
    for s in range(0, N, max(1, chunk_size // 10)):
        J = logit_jacobians(model, X[s:s + max(1, chunk_size // 10)])            # (n, C, P)
        p = model_probabilities(model, X[s:s + max(1, chunk_size // 10)])        # (n, C)
        centred = J - torch.einsum("nc,ncp->np", p, J)[:, None, :]              # grad log p_c = (e_c - p)^T J
        rows.append((p.sqrt()[:, :, None] * centred).reshape(-1, J.shape[2]))
    return FisherFactor(torch.cat(rows, 0), kind)


def logit_jacobians(model: nn.Module, X, chunk_size: int = 128) -> torch.Tensor:
    """(N, C, P) float64 Jacobians of the logits with respect to the trainable parameters."""
    _check_model(model)
    chunk_size = check_positive_int("chunk_size", chunk_size)
    X = _inputs(X, model)
    names, params = _trainable(model)
    logits = _logits_fn(model, names)
    jac = vmap(jacrev(lambda ps, x: logits(ps, x.unsqueeze(0))[0]), in_dims=(None, 0))
    out = []
    for s in range(0, X.shape[0], chunk_size):
        J = jac(params, X[s:s + chunk_size])
        out.append(torch.cat([j.reshape(j.shape[0], j.shape[1], -1) for j in J], dim=2))
    return torch.cat(out, 0)


def fisher_matvec(model: nn.Module, X, kind: str = "true", y=None, n_label_samples: int = 1,
                  seed: int = 0) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function v -> H_F v (flat float64 vectors of length P, or blocks (P, k)), matrix-free.

    For sampled or training labels, H_F v = J^T (J v) with J the (M, P) Jacobian of the vector of
    log-probabilities (one ``jvp`` then one ``vjp``); for ``"expected"``,
    H_F v = J_z^T (diag p - p p^T) J_z v with J_z the Jacobian of the logits.  Neither G nor the
    P x P matrix is formed.  Same labels as :func:`fisher_factor` for the same seed.
    """
    kind = check_choice("kind", kind, FISHER_KINDS)
    n_label_samples = check_positive_int("n_label_samples", n_label_samples)
    seed = check_seed("seed", seed)
    X = _inputs(X, model)
    names, params = _trainable(model)
    logits = _logits_fn(model, names)
    shapes = [t.shape for t in params]
    sizes = [t.numel() for t in params]
    P = int(sum(sizes))

    def unflatten(v):
        v = v.reshape(-1)
        if v.shape[0] != P:
            raise ValueError(f"v must have length {P}, got {v.shape[0]}")
        return tuple(c.reshape(s) for c, s in zip(torch.split(v, sizes), shapes))

    if kind == "expected":
        f = lambda *ps: logits(ps, X)                                       # noqa: E731
        with torch.no_grad():
            p = torch.softmax(logits(params, X), dim=-1)

        def weight(dz):
            return p * dz - p * (p * dz).sum(-1, keepdim=True)
    else:
        if kind == "true":
            lab = sample_model_labels(model, X, n_label_samples, seed)
            Xr = X.repeat_interleave(n_label_samples, dim=0)
            lab = lab.reshape(-1)
            w = 1.0 / n_label_samples
        else:
            n_classes = int(logits(params, X[:1]).shape[-1])
            lab = _labels(y, X.shape[0], n_classes, X.device)
            Xr, w = X, 1.0

        def f(*ps):
            return torch.log_softmax(logits(ps, Xr), dim=-1).gather(1, lab[:, None])[:, 0]

        def weight(dz):
            return w * dz

    _, pullback = vjp(f, *params)

    def one(v):
        _, dz = jvp(f, params, unflatten(v))
        out = pullback(weight(dz))
        return torch.cat([t.reshape(-1) for t in out])

    block = vmap(one, in_dims=1, out_dims=1)

    def matvec(v):
        v = torch.as_tensor(v, dtype=torch.float64, device=X.device)
        if v.ndim == 2:
            if v.shape[0] != P:
                raise ValueError(f"v must have shape ({P}, k), got {tuple(v.shape)}")
            return block(v)
        return one(v)

    return matvec


def logdet_identity_plus(eigenvalues, scale: float) -> float:
    """log|I + scale * H| = sum_i log1p(scale * f_i) from H's eigenvalues f_i >= 0."""
    scale = check_positive_real("scale", scale)
    f = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(f)):
        raise ValueError("eigenvalues must be finite")
    if np.any(f < -1e-9 * max(1.0, float(np.abs(f).max(initial=0.0)))):
        raise ValueError(f"eigenvalues must be >= 0 (a positive semi-definite matrix), min {f.min():.3g}")
    return float(np.log1p(scale * np.clip(f, 0.0, None)).sum())


def _block_lanczos(matvec, Q0: torch.Tensor, n_steps: int):
    """Independent Lanczos runs, one per column of unit Q0 (P, n), all at once, with full
    re-orthogonalisation; a run stops at breakdown (its Krylov space is exhausted).
    Returns alphas (n, m), betas (n, m - 1) and the number of steps of each run."""
    P, n = Q0.shape
    Qs = [Q0]
    alphas = torch.zeros(n, n_steps, dtype=torch.float64)
    betas = torch.zeros(n, max(n_steps - 1, 0), dtype=torch.float64)
    length = torch.full((n,), n_steps, dtype=torch.long)
    active = torch.ones(n, dtype=torch.bool, device=Q0.device)
    for j in range(n_steps):
        W = matvec(Qs[j]).to(torch.float64)
        a = (W * Qs[j]).sum(0)
        alphas[:, j] = a.cpu()
        if j == n_steps - 1:
            break
        Qm = torch.stack(Qs, 2)                                            # (P, n, j+1)
        for _ in range(2):
            W = W - torch.einsum("pnk,nk->pn", Qm, torch.einsum("pnk,pn->nk", Qm, W))
        b = torch.linalg.vector_norm(W, dim=0)
        scale = torch.clamp(alphas[:, 0].abs().to(b.device), min=1.0)
        stop = active & (b <= 1e-10 * scale)
        length[stop.cpu()] = j + 1
        active = active & ~stop
        betas[:, j] = torch.where(active, b, torch.zeros_like(b)).cpu()
        Qs.append(torch.where(active, W / torch.where(active, b, torch.ones_like(b)), torch.zeros_like(W)))
        if not bool(active.any()):
            break
    return alphas.numpy(), betas.numpy(), length.numpy()


def slq_logdet(matvec: Callable, dim: int, scale: float, n_probes: int = 30, n_steps: int = 30,
               seed: int = 0) -> tuple[float, float]:
    """Stochastic Lanczos quadrature estimate of log|I + scale * A| and its standard error.

    ``matvec`` computes A V for a symmetric positive semi-definite A of size ``dim`` and a block V
    of shape (dim, k) (all probes run at once; :func:`fisher_matvec` and ``FisherFactor.matvec``
    accept blocks); each of the
    ``n_probes`` Rademacher probes z (stream ``"fisher.slq_probes"``) gives
    z^T log(I + scale A) z ~ dim * sum_k tau_k^2 log(1 + scale theta_k) from an ``n_steps``
    Lanczos tridiagonal (Ritz values theta_k, first eigenvector components tau_k).  The estimate is
    their mean; the standard error is their standard deviation / sqrt(n_probes).
    """
    if not callable(matvec):
        raise TypeError("matvec must be callable (v -> A v)")
    dim = check_positive_int("dim", dim)
    scale = check_positive_real("scale", scale)
    n_probes = check_positive_int("n_probes", n_probes, minimum=2)
    n_steps = check_positive_int("n_steps", n_steps)
    seed = check_seed("seed", seed)
    g = stream(seed, "fisher.slq_probes")
    Z = torch.randint(0, 2, (dim, n_probes), generator=g, dtype=torch.float64) * 2 - 1
    V = Z / np.sqrt(dim)
    try:
        V = V.to(matvec(V[:, :1]).device)
    except Exception as exc:  # surfaced with context
        raise ValueError(f"matvec must map a ({dim}, k) block of vectors to A times it: {exc}") from exc
    alphas, betas, length = _block_lanczos(matvec, V, n_steps)
    values = []
    for r in range(n_probes):
        m = int(length[r])
        T = np.diag(alphas[r, :m]) + np.diag(betas[r, :m - 1], 1) + np.diag(betas[r, :m - 1], -1)
        theta, U = np.linalg.eigh(T)
        theta = np.clip(theta, 0.0, None)
        values.append(dim * float(np.sum(U[0] ** 2 * np.log1p(scale * theta))))
    values = np.array(values)
    if not np.all(np.isfinite(values)):
        raise ValueError("SLQ produced a non-finite value (is A positive semi-definite and finite?)")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(n_probes))
