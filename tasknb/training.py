"""Fitting stacks of two-layer networks (:mod:`tasknb.networks.stacks`), K networks at once.

Two ways to fit, as in section 2.2 and appendix D of Gerace et al. (2022):

* **a read-out on frozen features**: :func:`fit_logistic_head` (binary labels in {-1, +1})
  and :func:`fit_softmax_head` (C classes) minimise the L2-regularised cross-entropy of
  eq. (6) over the second layer only, by Newton's method in float64, K problems at once;
* **Adam on the whole network** (or on the second layer only): :func:`train_stack`, one loop
  for binary stacks (:class:`TwoLayerStack`, loss ``log(1 + exp(-y f))``) and soft-max stacks
  (:class:`SoftmaxStack`, soft-max cross-entropy), with minibatches, an L2 penalty on the
  second layer and per-network early stopping on a validation set.

Everything carries a leading K axis.  Adam's update is element-wise, so one Adam over the
stacked tensors is exactly K independent Adams as long as each network's gradient is its
own; the binary loss gets it from ``vmap(grad(loss of one network))``, the soft-max loss
from autograd on the sum of the K losses (they share no weights).

:class:`TrainingConfig` holds the hyper-parameters of one Adam run; ``SOURCE_DEFAULT``,
``SCRATCH_DEFAULT`` and ``FINETUNE_DEFAULT`` are the settings of appendix D for the source
network, a network trained from scratch and fine-tuning.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.func import grad_and_value, vmap
from tqdm.auto import tqdm

from .device import stream
from .networks.stacks import (FirstLayerStack, SoftmaxStack, TwoLayerStack, check_class_labels, check_stack_data,
                              network_logits, predict, softmax_logits)
from .validation import check_positive_int, check_positive_real, check_seed

__all__ = [
    "TrainingConfig", "SOURCE_DEFAULT", "SCRATCH_DEFAULT", "FINETUNE_DEFAULT", "bce_loss", "cross_entropy",
    "HeadFit", "armijo_backtracking", "fit_logistic_head", "fit_softmax_head", "TrainingResult", "train_stack",
]


# ----------------------------------------------------------------------------- hyper-parameters
@dataclass(frozen=True)
class TrainingConfig:
    """Hyper-parameters of one Adam training run (appendix D of the paper gives the defaults)."""

    epochs: int = 200
    lr: float = 1e-3
    batch_size: int = 50

    def __post_init__(self):
        check_positive_int("epochs", self.epochs)
        check_positive_real("lr", self.lr)
        check_positive_int("batch_size", self.batch_size)


#: appendix D: source net (lr 1e-3, batch 50, <= 200 epochs, early stopping)
SOURCE_DEFAULT = TrainingConfig(200, 1e-3, 50)
#: appendix D: 2L from scratch (lr 0.1, batch 1000, 200 epochs)
SCRATCH_DEFAULT = TrainingConfig(200, 0.1, 1000)
#: appendix D: ft-TF (lr 0.01, batch 1000, 200 epochs)
FINETUNE_DEFAULT = TrainingConfig(200, 0.01, 1000)


# ----------------------------------------------------------------------------- losses
def bce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy log(1 + exp(-y f)) over the last axis, computed stably."""
    return torch.nn.functional.softplus(-y * logits).mean(dim=-1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean soft-max cross-entropy over the sample axis: logits (K, M, C), y (K, M) int -> (K,)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(-1)


# ----------------------------------------------------------------------------- read-outs on frozen features
@dataclass
class HeadFit:
    """Result of :func:`fit_logistic_head` or :func:`fit_softmax_head`: weights ``w`` (K, H) or
    (K, H, C), per-model ``converged`` flags (K,), ``iterations`` used, final ``grad_norm``
    (K,; max abs component, scaled) and ``train_error`` (K,)."""

    w: torch.Tensor
    converged: torch.Tensor
    iterations: int
    grad_norm: torch.Tensor
    train_error: torch.Tensor


def armijo_backtracking(w: torch.Tensor, step: torch.Tensor, obj: torch.Tensor, objective, decrease: torch.Tensor,
                        active: torch.Tensor, max_halvings: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """One damped Newton update of K problems at once: w - t * step with t halved from 1 per problem
    until the Armijo condition ``objective(w - t step) <= obj - 1e-4 t decrease`` holds.

    ``w`` and ``step`` (K, ...); ``obj`` (K,) the objective at ``w``; ``objective`` maps (K, ...) to (K,);
    ``decrease`` (K,) the directional derivative <grad, step>; ``active`` (K,) bool, the problems to
    update (the others keep their ``w``).  A problem that finds no such t in ``max_halvings`` halvings
    keeps its ``w``.  Returns the new ``w`` and its objective.
    """
    t = torch.ones(w.shape[0], dtype=torch.float64, device=w.device)
    t_shape = (-1,) + (1,) * (w.dim() - 1)
    new_w = w.clone()
    for _ in range(max_halvings):
        cand = w - t.view(t_shape) * step
        cand_obj = objective(cand)
        ok = cand_obj <= obj - 1e-4 * t * decrease
        accept = active & ok
        new_w[accept] = cand[accept]
        obj = torch.where(accept, cand_obj, obj)
        active = active & ~ok
        if not bool(active.any()):
            break
        t = torch.where(active, t * 0.5, t)
    return new_w, obj


def _warn_unconverged(solver: str, converged: torch.Tensor, tol: float, max_iter: int, gnorm: torch.Tensor) -> None:
    """The RuntimeWarning of the Newton head solvers when some of their K problems did not converge."""
    n_bad = int((~converged).sum())
    if n_bad:
        warnings.warn(f"{solver}: {n_bad} of {converged.numel()} problems did not reach tol={tol:g} in "
                      f"max_iter={max_iter} Newton steps (largest scaled gradient {float(gnorm.max()):.2e}); "
                      "raise max_iter or lam", RuntimeWarning, stacklevel=3)


def fit_logistic_head(V: torch.Tensor, y: torch.Tensor, lam: float, max_iter: int = 200,
                      tol: float = 1e-7, warn: bool = True) -> HeadFit:
    """Minimise, for each of K problems at once, the L2-regularised logistic loss of eq. (6):

        sum_mu log(1 + exp(-y_mu v_mu . w / sqrt(H))) + (lam / 2) ||w||^2

    by Newton's method with a backtracking line search, in float64.

    Parameters
    ----------
    V : (K, M, H) tensor, the frozen features.    y : (K, M) tensor in {-1, +1}.
    lam : float > 0, the ridge strength (the paper uses 1e-7 to 1e-8 on synthetic data).
    max_iter : int >= 1, default 200.    tol : float > 0, default 1e-7
        Convergence when the largest gradient component, divided by
        max(1, lam * ||w||_inf), is below ``tol`` (scikit-learn's criterion made
        relative, since ||w|| grows like 1/lam on separable data).
    warn : emit a RuntimeWarning naming how many problems did not converge.

    Returns
    -------
    HeadFit with ``w`` (K, H) in V's dtype.
    """
    lam = check_positive_real("lam", lam)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_positive_real("tol", tol)
    if V.dim() != 3 or y.dim() != 2 or V.shape[:2] != y.shape:
        raise ValueError(f"V must be (K, M, H) and y (K, M); got V {tuple(V.shape)}, y {tuple(y.shape)}")
    if not torch.isfinite(V).all():
        raise ValueError("V contains NaN or infinite values")
    K, M, H = V.shape
    Vd, yd = V.to(torch.float64), y.to(torch.float64)
    A = yd.unsqueeze(-1) * Vd / math.sqrt(H)           # rows a_mu = y_mu v_mu / sqrt(H): margin = a . w
    w = torch.zeros(K, H, dtype=torch.float64, device=V.device)
    eye = torch.eye(H, dtype=torch.float64, device=V.device)

    def objective(w):
        return torch.nn.functional.softplus(-(A @ w.unsqueeze(-1)).squeeze(-1)).sum(-1) + 0.5 * lam * (w * w).sum(-1)

    obj = objective(w)
    converged = torch.zeros(K, dtype=torch.bool, device=V.device)
    it = 0
    for it in range(1, max_iter + 1):
        margin = (A @ w.unsqueeze(-1)).squeeze(-1)                    # (K, M)
        p = torch.sigmoid(-margin)                                    # = -dl/dmargin
        grad = -(A.transpose(1, 2) @ p.unsqueeze(-1)).squeeze(-1) + lam * w
        scale = torch.clamp(lam * w.abs().amax(-1), min=1.0)
        gnorm = grad.abs().amax(-1) / scale
        converged = gnorm < tol
        if bool(converged.all()):
            break
        curv = p * (1 - p)                                            # (K, M)
        Hess = A.transpose(1, 2) @ (curv.unsqueeze(-1) * A) + lam * eye
        chol, info = torch.linalg.cholesky_ex(Hess)                   # Hess is SPD (lam > 0)
        if bool((info != 0).any()):
            raise FloatingPointError("fit_logistic_head: the Hessian lost positive definiteness "
                                     "(features too large for float64?); rescale V or raise lam")
        step = torch.cholesky_solve(grad.unsqueeze(-1), chol).squeeze(-1)
        w, obj = armijo_backtracking(w, step, obj, objective, (grad * step).sum(-1), ~converged)
    margin = (A @ w.unsqueeze(-1)).squeeze(-1)
    train_err = (margin <= 0).to(torch.float64).mean(-1)
    grad = -(A.transpose(1, 2) @ torch.sigmoid(-margin).unsqueeze(-1)).squeeze(-1) + lam * w
    gnorm = grad.abs().amax(-1) / torch.clamp(lam * w.abs().amax(-1), min=1.0)
    converged = gnorm < tol
    if warn:
        _warn_unconverged("fit_logistic_head", converged, tol, max_iter, gnorm)
    return HeadFit(w.to(V.dtype), converged, it, gnorm, train_err)


def fit_softmax_head(V: torch.Tensor, y: torch.Tensor, n_classes: int, lam: float, max_iter: int = 200,
                     tol: float = 1e-7, warn: bool = True) -> HeadFit:
    """Multinomial L2-logistic regression on frozen features, K problems at once (multi-class eq. 6):

        minimise over W (H, C):  sum_mu [logsumexp(z_mu) - z_mu[y_mu]] + (lam / 2) ||W||^2,
        z_mu = v_mu W / sqrt(H),

    by Newton's method (exact Hessian, Cholesky solve, Armijo backtracking) in float64.
    The Hessian is (H C) x (H C); its (c, d) block is ``V^T diag(p_c delta_cd - p_c p_d) V / H``.

    Parameters
    ----------
    V : (K, M, H) features.   y : (K, M) integer labels in 0..C-1.   n_classes : C >= 2.
    lam : float > 0, the ridge.   max_iter : int >= 1, default 200.
    tol : float > 0, default 1e-7; convergence when max |grad| / max(1, lam max |W|) < tol
        (the criterion of :func:`fit_logistic_head`).
    warn : emit a RuntimeWarning naming how many problems did not converge.

    Returns
    -------
    :class:`HeadFit` with ``w`` of shape (K, H, C) in V's dtype, ``converged`` (K,),
    ``iterations``, ``grad_norm`` (K,) and ``train_error`` (K,).
    """
    C = check_positive_int("n_classes", n_classes, minimum=2)
    lam = check_positive_real("lam", lam)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_positive_real("tol", tol)
    if V.dim() != 3 or y.dim() != 2 or V.shape[:2] != y.shape:
        raise ValueError(f"V must be (K, M, H) and y (K, M); got V {tuple(V.shape)}, y {tuple(y.shape)}")
    check_class_labels(y, V.shape[:2], C)
    if not torch.isfinite(V).all():
        raise ValueError("V contains NaN or infinite values")
    K, M, H = V.shape
    A = V.to(torch.float64) / math.sqrt(H)                                # z = A W
    Y = torch.nn.functional.one_hot(y.long(), C).to(torch.float64)        # (K, M, C)
    W = torch.zeros(K, H, C, dtype=torch.float64, device=V.device)
    eye = torch.eye(H * C, dtype=torch.float64, device=V.device)

    def objective(W):
        Z = A @ W
        return (torch.logsumexp(Z, -1) - (Z * Y).sum(-1)).sum(-1) + 0.5 * lam * (W * W).sum((-1, -2))

    def gradient(W):
        P = torch.softmax(A @ W, -1)
        return A.transpose(1, 2) @ (P - Y) + lam * W, P                   # (K, H, C)

    def scaled_norm(G, W):
        return G.abs().amax((-1, -2)) / torch.clamp(lam * W.abs().amax((-1, -2)), min=1.0)

    obj = objective(W)
    it = 0
    for it in range(1, max_iter + 1):
        G, P = gradient(W)
        converged = scaled_norm(G, W) < tol
        if bool(converged.all()):
            break
        Hess = torch.empty(K, C, H, C, H, dtype=torch.float64, device=V.device)   # class-major blocks
        for c in range(C):
            for d in range(c, C):
                s = P[..., c] * ((1.0 if c == d else 0.0) - P[..., d])             # (K, M)
                block = A.transpose(1, 2) @ (s.unsqueeze(-1) * A)                    # (K, H, H)
                Hess[:, c, :, d, :] = block
                if d != c:
                    Hess[:, d, :, c, :] = block
        Hess = Hess.reshape(K, C * H, C * H) + lam * eye
        chol, info = torch.linalg.cholesky_ex(Hess)
        if bool((info != 0).any()):
            raise FloatingPointError("fit_softmax_head: the Hessian lost positive definiteness; "
                                     "rescale V or raise lam")
        g_flat = G.transpose(1, 2).reshape(K, C * H, 1)
        step = torch.cholesky_solve(g_flat, chol).reshape(K, C, H).transpose(1, 2)   # (K, H, C)
        W, obj = armijo_backtracking(W, step, obj, objective, (G * step).sum((-1, -2)), ~converged)
    G, P = gradient(W)
    gnorm = scaled_norm(G, W)
    converged = gnorm < tol
    train_err = ((A @ W).argmax(-1) != y).to(torch.float64).mean(-1)
    if warn:
        _warn_unconverged("fit_softmax_head", converged, tol, max_iter, gnorm)
    return HeadFit(W.to(V.dtype), converged, it, gnorm, train_err)


# ----------------------------------------------------------------------------- Adam on the networks
@dataclass
class TrainingResult:
    """Result of :func:`train_stack`.

    ``params``        the returned networks, a stack of the type trained (the best validation
                      epoch of each network when early stopping);
    ``epochs``        (K,) number of epochs each model trained before it stopped;
    ``train_loss``    (E, K) mean training loss per epoch;
    ``val_loss``      (E, K) validation loss per epoch (empty without validation data).
    """

    params: FirstLayerStack
    epochs: torch.Tensor
    train_loss: torch.Tensor
    val_loss: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def _binary_loss_one(W1, w2, X, y, lam):
    logits = network_logits(W1, w2, X)
    return torch.nn.functional.softplus(-y * logits).mean() + 0.5 * lam * (w2 * w2).sum()


_binary_grad_and_loss = vmap(grad_and_value(_binary_loss_one, argnums=(0, 1)), in_dims=(0, 0, 0, 0, None))


def _binary_gradients(W1, w2, X, y, lam, train_first_layer):
    """Per-network gradients (gW1, gw2) and losses (K,) of the binary objective on one minibatch."""
    (gW1, gw2), loss = _binary_grad_and_loss(W1, w2, X, y, lam)
    return gW1, gw2, loss


def _softmax_gradients(W1, W2, X, y, lam, train_first_layer):
    """Gradients (gW1 or None, gW2) and losses (K,) of the soft-max objective on one minibatch."""
    W1 = W1.detach().requires_grad_(train_first_layer)
    W2 = W2.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = cross_entropy(softmax_logits(SoftmaxStack(W1, W2), X), y) + 0.5 * lam * (W2 * W2).sum((-1, -2))
        grads = torch.autograd.grad(loss.sum(), (W1, W2) if train_first_layer else (W2,))
    gW1, gW2 = grads if train_first_layer else (None, grads[0])
    return gW1, gW2, loss.detach()


def _check_binary_labels(params, y, shape, name):
    if y.shape != shape:
        raise ValueError(f"{name} must have shape (K, M) = {tuple(shape)}, got {tuple(y.shape)}")


def _check_softmax_labels(params, y, shape, name):
    check_class_labels(y, shape, params.C, name)


@dataclass(frozen=True)
class _Objective:
    """What :func:`train_stack` needs to know about one stack type."""

    second_layer: Callable        # params -> the second-layer tensor
    check_labels: Callable        # (params, y, shape, name) -> None or raise
    gradients: Callable           # (W1, W2, X, y, lam / M, train_first_layer) -> (gW1, gW2, loss (K,))
    loss: Callable                # (params, X, y) -> (K,) mean loss, no penalty


_OBJECTIVES = {
    TwoLayerStack: _Objective(lambda p: p.w2, _check_binary_labels, _binary_gradients,
                              lambda p, X, y: bce_loss(predict(p, X), y)),
    SoftmaxStack: _Objective(lambda p: p.W2, _check_softmax_labels, _softmax_gradients,
                             lambda p, X, y: cross_entropy(softmax_logits(p, X), y)),
}


def train_stack(params: TwoLayerStack | SoftmaxStack, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 200,
                lr: float = 1e-3, batch_size: int = 50, lam: float = 0.0, train_first_layer: bool = True,
                X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                patience: int | None = None, seed: int = 0, progress: bool = False,
                desc: str = "training") -> TrainingResult:
    """Train K two-layer networks at once with Adam on the cross-entropy, as in appendix D.

    The per-network loss is the objective of eq. (6) divided by the training-set size M,

        binary (:class:`TwoLayerStack`, y in {-1, +1}):  mean_mu log(1 + exp(-y_mu f(x_mu))) + lam ||w2||^2 / (2 M)
        soft-max (:class:`SoftmaxStack`, y in 0..C-1):   mean_mu CE(y_mu, f(x_mu)) + lam ||W2||^2 / (2 M)

    (an L2 penalty on the second layer only).  Each epoch visits the M examples in a random
    order (shared by the K networks) in M // batch_size minibatches; the last incomplete one
    is dropped.

    Parameters
    ----------
    params : TwoLayerStack or SoftmaxStack, the initial networks (not modified).
    X : (K, M, D); y : (K, M), each network's own training set.
    epochs : int >= 1, maximum number of passes over the data.
    lr : float > 0, Adam's learning rate.   batch_size : int >= 1 (capped at M).
    lam : float >= 0, L2 strength on the second layer.
    train_first_layer : bool, False freezes W1.
    X_val, y_val : optional validation sets (K, M_val, D), (K, M_val) for early stopping.
    patience : int >= 0 or None.  With validation data, a model stops after its
        validation loss has failed to improve for ``patience + 1`` consecutive epochs
        (patience 0, the paper's setting, stops at the first increase); the weights of
        its best epoch are returned.  None trains every model for all epochs.
    seed : int, the minibatch order (drawn from ``stream(seed, "training.batch-order")``).
    progress : show a tqdm bar over epochs.

    Returns
    -------
    :class:`TrainingResult` whose ``params`` has the type of ``params``.
    """
    if type(params) not in _OBJECTIVES:
        raise TypeError(f"params must be a TwoLayerStack or a SoftmaxStack, got {type(params).__name__}")
    stack, objective = type(params), _OBJECTIVES[type(params)]
    check_stack_data(params, X)
    objective.check_labels(params, y, X.shape[:2], "y")
    epochs = check_positive_int("epochs", epochs)
    lr = check_positive_real("lr", lr)
    batch_size = check_positive_int("batch_size", batch_size)
    lam = check_positive_real("lam", lam, allow_zero=True)
    have_val = X_val is not None
    if have_val:
        check_stack_data(params, X_val, "X_val")
        if y_val is None:
            raise ValueError("y_val must be given with X_val and have shape (K, M_val)")
        objective.check_labels(params, y_val, X_val.shape[:2], "y_val")
    if patience is not None:
        patience = check_positive_int("patience", patience, minimum=0)
        if not have_val:
            raise ValueError("patience (early stopping) needs X_val and y_val")

    K, M, _ = X.shape
    batch_size = min(batch_size, M)
    n_batches = M // batch_size
    W1 = params.W1.detach().clone()
    W2 = objective.second_layer(params).detach().clone()
    opt = torch.optim.Adam([W1, W2] if train_first_layer else [W2], lr=lr)
    g = stream(check_seed("seed", seed), "training.batch-order")
    best = stack(W1.clone(), W2.clone())
    best_W2 = objective.second_layer(best)
    best_val = torch.full((K,), float("inf"), dtype=torch.float64, device=X.device)
    bad_epochs = torch.zeros(K, dtype=torch.long, device=X.device)
    running = torch.ones(K, dtype=torch.bool, device=X.device)
    n_epochs = torch.zeros(K, dtype=torch.long)
    train_hist, val_hist = [], []

    for _ in tqdm(range(epochs), desc=desc, leave=False, disable=not progress):
        perm = torch.randperm(M, generator=g).to(X.device)
        tot = torch.zeros(K, dtype=torch.float64, device=X.device)
        for start in range(0, n_batches * batch_size, batch_size):
            idx = perm[start:start + batch_size]
            gW1, gW2, loss = objective.gradients(W1, W2, X[:, idx], y[:, idx], lam / M, train_first_layer)
            if train_first_layer:
                W1.grad = gW1
            W2.grad = gW2
            opt.step()
            tot += loss.detach().double()
        n_epochs += running.cpu().long()
        train_hist.append((tot / n_batches).cpu())
        if have_val:
            with torch.no_grad():
                vl = objective.loss(stack(W1, W2), X_val, y_val).double()
            val_hist.append(vl.cpu())
            if patience is not None:
                improved = running & (vl < best_val)
                best.W1[improved] = W1[improved]
                best_W2[improved] = W2[improved]
                best_val = torch.where(improved, vl, best_val)
                bad_epochs = torch.where(improved, 0, bad_epochs + running.long())
                running = running & (bad_epochs <= patience)
                if not bool(running.any()):
                    break
    if patience is None:
        best = stack(W1.detach(), W2.detach())
    return TrainingResult(best, n_epochs, torch.stack(train_hist),
                          torch.stack(val_hist) if val_hist else torch.empty(0))
