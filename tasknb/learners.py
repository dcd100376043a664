"""Learners of Gerace et al. (2022), section 2.2 and appendix D, trained many at once.

All models are two-layer networks with H ReLU hidden units and no biases,

    v = ReLU(x W1^T / D),     f(x) = v . w2 / sqrt(H)                         (eq. 6)

with x of dimension D, W1 of shape (H, D) and w2 of shape (H,).  Labels are
y in {-1, +1}; the loss is the binary cross-entropy l(y, f) = log(1 + exp(-y f))
with an L2 penalty (lam / 2) ||w2||^2 on the second layer only.

The four learners compared in the paper:

``TF``     transferred features: W1 taken from a network trained on the source
           task (with early stopping), frozen; only w2 is fitted on the target.
``RF``     random features: W1 with i.i.d. N(0, 1) entries, frozen; w2 fitted.
``2L``     the whole network trained from scratch on the target task.
``ft-TF``  TF followed by fine-tuning of both layers on the target task.

Every function works on a *stack* of K independent models, one per realization,
so that the averages over 10-50 realizations that the paper uses cost one
batched computation: parameters carry a leading K axis and the per-model
gradient is computed with ``torch.func.vmap`` over ``torch.func.grad``.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
from torch.func import functional_call, grad_and_value, vmap  # noqa: F401  (functional_call re-exported for users)
from tqdm.auto import tqdm

from .device import generator, get_device
from .validation import check_choice, check_positive_int, check_positive_real, check_seed

__all__ = [
    "FirstLayerStack", "TwoLayerStack", "draw_gaussian_layers", "init_two_layer", "check_stack_data", "features", "predict", "classification_error", "bce_loss",
    "fit_logistic_head", "HeadFit", "train_two_layer", "TrainingResult",
]


# ----------------------------------------------------------------------------- parameters
class FirstLayerStack:
    """What every stack of K two-layer networks shares: a first layer ``W1`` (K, H, D) and the
    sizes read from it.  :class:`TwoLayerStack` (one output) and ``multiclass.SoftmaxStack``
    (C outputs) add their second layer."""

    W1: torch.Tensor

    @property
    def K(self) -> int:
        return self.W1.shape[0]

    @property
    def H(self) -> int:
        return self.W1.shape[1]

    @property
    def D(self) -> int:
        return self.W1.shape[2]


@dataclass
class TwoLayerStack(FirstLayerStack):
    """Parameters of K two-layer networks: ``W1`` (K, H, D), ``w2`` (K, H)."""

    W1: torch.Tensor
    w2: torch.Tensor

    def clone(self) -> "TwoLayerStack":
        return TwoLayerStack(self.W1.detach().clone(), self.w2.detach().clone())

    def select(self, k) -> "TwoLayerStack":
        """The sub-stack of models ``k`` (an int, slice or index tensor)."""
        if isinstance(k, int):
            k = slice(k, k + 1)
        return TwoLayerStack(self.W1[k], self.w2[k])


def draw_gaussian_layers(K: int, H: int, D: int, n_out: int | None = None, seed: int = 0, device="auto",
                         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """I.i.d. N(0, 1) weights of K two-layer networks: W1 (K, H, D), then the second layer,
    (K, H) when ``n_out`` is None or (K, H, n_out).  W1 is drawn first, so a seed gives the same
    first layer (the RF feature map) whatever the second layer is."""
    K, H, D = (check_positive_int(n, v) for n, v in (("K", K), ("H", H), ("D", D)))
    g = generator(check_seed("seed", seed))
    W1 = torch.randn(K, H, D, generator=g, dtype=torch.float64)
    W2 = torch.randn((K, H) if n_out is None else (K, H, n_out), generator=g, dtype=torch.float64)
    dev = get_device(device)
    return W1.to(dev, dtype), W2.to(dev, dtype)


def init_two_layer(K: int, H: int, D: int, seed: int = 0, device="auto",
                   dtype: torch.dtype = torch.float32) -> TwoLayerStack:
    """K networks with i.i.d. N(0, 1) weights in both layers (the paper's initialisation).

    The first layer of such a stack is also the random feature map of the RF model.
    """
    return TwoLayerStack(*draw_gaussian_layers(K, H, D, None, seed, device, dtype))


# ----------------------------------------------------------------------------- forward pass
def _features_one(W1: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    return torch.relu(X @ W1.T / W1.shape[1])


def _logits_one(W1: torch.Tensor, w2: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    return _features_one(W1, X) @ w2 / math.sqrt(W1.shape[0])


def check_stack_data(params: FirstLayerStack, X: torch.Tensor, name: str = "X") -> None:
    """X must be (K, M, D) for a stack of K networks on D inputs."""
    if X.dim() != 3 or X.shape[0] != params.K or X.shape[2] != params.D:
        raise ValueError(f"{name} must have shape (K, M, D) = ({params.K}, M, {params.D}), got {tuple(X.shape)}")


def features(W1: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """Hidden features ``v = ReLU(X W1^T / D)`` of eq. (6), batched.

    W1 is (K, H, D) and X is (K, M, D) -> (K, M, H).
    """
    if W1.dim() != 3 or X.dim() != 3 or W1.shape[0] != X.shape[0] or W1.shape[2] != X.shape[2]:
        raise ValueError(f"W1 must be (K, H, D) and X (K, M, D) with matching K and D; got W1 {tuple(W1.shape)}, X {tuple(X.shape)}")
    return torch.relu(torch.einsum("kmd,khd->kmh", X, W1) / W1.shape[2])


def predict(params: TwoLayerStack, X: torch.Tensor) -> torch.Tensor:
    """Logits f(x) = v . w2 / sqrt(H) for K models on their own inputs: X (K, M, D) -> (K, M)."""
    check_stack_data(params, X)
    return vmap(_logits_one)(params.W1, params.w2, X)


def classification_error(params: TwoLayerStack, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of sign mistakes of each model on its own test set: (K,)."""
    f = predict(params, X)
    return (torch.sign(f) != y).to(torch.float64).mean(dim=1)


def bce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy log(1 + exp(-y f)) over the last axis, computed stably."""
    return torch.nn.functional.softplus(-y * logits).mean(dim=-1)


# ----------------------------------------------------------------------------- logistic head
@dataclass
class HeadFit:
    """Result of :func:`fit_logistic_head`: weights ``w`` (K, H), per-model ``converged`` flags,
    ``iterations`` used, final ``grad_norm`` (max abs component) and ``train_error``."""

    w: torch.Tensor
    converged: torch.Tensor
    iterations: int
    grad_norm: torch.Tensor
    train_error: torch.Tensor


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
        t = torch.ones(K, dtype=torch.float64, device=V.device)
        active = ~converged
        new_w = w.clone()
        for _ in range(40):                                           # Armijo backtracking, per problem
            cand = w - t.unsqueeze(-1) * step
            cand_obj = objective(cand)
            ok = cand_obj <= obj - 1e-4 * t * (grad * step).sum(-1)
            accept = active & ok
            new_w[accept] = cand[accept]
            obj = torch.where(accept, cand_obj, obj)
            active = active & ~ok
            if not bool(active.any()):
                break
            t = torch.where(active, t * 0.5, t)
        w = new_w
    margin = (A @ w.unsqueeze(-1)).squeeze(-1)
    train_err = (margin <= 0).to(torch.float64).mean(-1)
    grad = -(A.transpose(1, 2) @ torch.sigmoid(-margin).unsqueeze(-1)).squeeze(-1) + lam * w
    gnorm = grad.abs().amax(-1) / torch.clamp(lam * w.abs().amax(-1), min=1.0)
    converged = gnorm < tol
    n_bad = int((~converged).sum())
    if warn and n_bad:
        warnings.warn(f"fit_logistic_head: {n_bad} of {K} problems did not reach tol={tol:g} in "
                      f"max_iter={max_iter} Newton steps (largest scaled gradient {float(gnorm.max()):.2e}); "
                      "raise max_iter or lam", RuntimeWarning, stacklevel=2)
    return HeadFit(w.to(V.dtype), converged, it, gnorm, train_err)


# ----------------------------------------------------------------------------- full training
@dataclass
class TrainingResult:
    """Result of :func:`train_two_layer`.

    ``params``        the returned networks (best validation epoch when early stopping);
    ``epochs``        (K,) number of epochs each model trained before it stopped;
    ``train_loss``    (E, K) mean training loss per epoch;
    ``val_loss``      (E, K) validation loss per epoch (empty without validation data).
    """

    params: TwoLayerStack
    epochs: torch.Tensor
    train_loss: torch.Tensor
    val_loss: torch.Tensor = field(default_factory=lambda: torch.empty(0))


def _loss_one(W1, w2, X, y, lam):
    logits = _logits_one(W1, w2, X)
    return torch.nn.functional.softplus(-y * logits).mean() + 0.5 * lam * (w2 * w2).sum()


_grad_loss = vmap(grad_and_value(_loss_one, argnums=(0, 1)), in_dims=(0, 0, 0, 0, None))


def train_two_layer(params: TwoLayerStack, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 200,
                    lr: float = 1e-3, batch_size: int = 50, lam: float = 0.0, train_first_layer: bool = True,
                    X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                    patience: int | None = None, seed: int = 0, progress: bool = False,
                    desc: str = "training") -> TrainingResult:
    """Train K two-layer networks at once with Adam on the cross-entropy, as in appendix D.

    The per-model loss is ``mean_mu log(1 + exp(-y_mu f(x_mu))) + lam ||w2||^2 / (2 M)``, i.e. the
    objective of eq. (6) divided by the training-set size M,
    (an L2 penalty on the last layer only).  Gradients of the K models come from one
    ``vmap(grad(loss))`` call; Adam's update is element-wise, so one Adam over the
    stacked parameters is exactly K independent Adams.

    Parameters
    ----------
    params : TwoLayerStack, the initial networks (not modified).
    X : (K, M, D), y : (K, M) in {-1, +1}: each model's own training set.
    epochs : int >= 1, maximum number of passes over the data.
    lr : float > 0, Adam's learning rate.   batch_size : int >= 1 (capped at M).
    lam : float >= 0, L2 strength on w2.
    train_first_layer : bool, False freezes W1.
    X_val, y_val : optional validation sets (K, M_val, D), (K, M_val) for early stopping.
    patience : int >= 0 or None.  With validation data, a model stops after its
        validation loss has failed to improve for ``patience + 1`` consecutive epochs
        (patience 0, the paper's setting, stops at the first increase); the weights of
        its best epoch are returned.  None trains every model for all epochs.
    seed : int, the minibatch order.   progress : show a tqdm bar over epochs.
    """
    check_stack_data(params, X)
    if y.shape != X.shape[:2]:
        raise ValueError(f"y must have shape (K, M) = {tuple(X.shape[:2])}, got {tuple(y.shape)}")
    epochs = check_positive_int("epochs", epochs)
    lr = check_positive_real("lr", lr)
    batch_size = check_positive_int("batch_size", batch_size)
    lam = check_positive_real("lam", lam, allow_zero=True)
    have_val = X_val is not None
    if have_val:
        check_stack_data(params, X_val, "X_val")
        if y_val is None or y_val.shape != X_val.shape[:2]:
            raise ValueError("y_val must be given with X_val and have shape (K, M_val)")
    if patience is not None:
        patience = check_positive_int("patience", patience, minimum=0)
        if not have_val:
            raise ValueError("patience (early stopping) needs X_val and y_val")

    K, M, _ = X.shape
    batch_size = min(batch_size, M)
    W1 = params.W1.detach().clone()
    w2 = params.w2.detach().clone()
    trainable = [W1, w2] if train_first_layer else [w2]
    opt = torch.optim.Adam(trainable, lr=lr)
    g = generator(check_seed("seed", seed))
    best = TwoLayerStack(W1.clone(), w2.clone())
    best_val = torch.full((K,), float("inf"), dtype=torch.float64, device=X.device)
    bad_epochs = torch.zeros(K, dtype=torch.long, device=X.device)
    running = torch.ones(K, dtype=torch.bool, device=X.device)
    n_epochs = torch.zeros(K, dtype=torch.long)
    train_hist, val_hist = [], []

    it = tqdm(range(epochs), desc=desc, leave=False, disable=not progress)
    for _ in it:
        perm = torch.randperm(M, generator=g).to(X.device)
        tot = torch.zeros(K, dtype=torch.float64, device=X.device)
        for start in range(0, M - batch_size + 1, batch_size):
            idx = perm[start:start + batch_size]
            (gW1, gw2), loss = _grad_loss(W1, w2, X[:, idx], y[:, idx], lam / M)
            if train_first_layer:
                W1.grad = gW1
            w2.grad = gw2
            opt.step()
            tot += loss.detach().double()
        n_epochs += running.cpu().long()
        train_hist.append((tot / (M // batch_size)).cpu())
        if have_val:
            with torch.no_grad():
                vl = bce_loss(vmap(_logits_one)(W1, w2, X_val), y_val).double()
            val_hist.append(vl.cpu())
            if patience is not None:
                improved = running & (vl < best_val)
                best.W1[improved] = W1[improved]
                best.w2[improved] = w2[improved]
                best_val = torch.where(improved, vl, best_val)
                bad_epochs = torch.where(improved, 0, bad_epochs + running.long())
                running = running & (bad_epochs <= patience)
                if not bool(running.any()):
                    break
    if patience is None:
        best = TwoLayerStack(W1.detach(), w2.detach())
    return TrainingResult(best, n_epochs, torch.stack(train_hist),
                          torch.stack(val_hist) if val_hist else torch.empty(0))
