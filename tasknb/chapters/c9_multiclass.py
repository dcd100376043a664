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
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..chmm import CHMM, CHMMSample
from ..device import generator, get_device
from ..learners import FirstLayerStack, HeadFit, TrainingResult, check_stack_data, draw_gaussian_layers, features
from ..feature_transfer import (FINETUNE_DEFAULT, LEARNERS, SCRATCH_DEFAULT, SOURCE_DEFAULT, NetworkFamily, TrainingConfig,
                       TransferCurves, check_learners, resolve_source_networks,
                       target_learning_curves)
from ..validation import (check_choice, check_int_sequence, check_positive_int, check_positive_real,
                         check_real_in, check_seed)

__all__ = [
    "MulticlassCHMM", "multiclass_labels", "SoftmaxStack", "init_softmax_net", "softmax_logits",
    "softmax_error", "cross_entropy", "fit_softmax_head", "train_softmax_net", "stack_multiclass_samples",
    "train_multiclass_source", "softmax_family", "multiclass_transfer_curves", "GainMap", "multiclass_gain_map",
    "AsymmetricTransfer", "asymmetric_transfer", "plot_gain_map", "plot_asymmetric_gain",
]


# ============================================================================ generative model
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
    device, dtype : as for :class:`tasknb.chmm.CHMM`.

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
                 dtype: torch.dtype = torch.float32):
        self.n_classes = check_positive_int("n_classes", n_classes, minimum=2)
        # the binary model validates D, L_source, L_target, eta, rho, q, seed, device and dtype
        self.base = CHMM(D, L_source, L_target, eta=eta, rho=rho, q=q, seed=seed, device=device, dtype=dtype)
        b = self.base
        self.D, self.L_source, self.L_target = b.D, b.L_source, b.L_target
        self.eta, self.rho, self.q, self.seed = b.eta, b.rho, b.q, b.seed
        self.device, self.dtype = b.device, b.dtype

        C, Ls, Lt = self.n_classes, self.L_source, self.L_target
        L_min = min(Ls, Lt)
        g = generator(self.seed + 2_000_003)          # a stream independent of the binary model's draws
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


# ============================================================================ softmax networks
@dataclass
class SoftmaxStack(FirstLayerStack):
    """Parameters of K two-layer networks with C outputs: ``W1`` (K, H, D), ``W2`` (K, H, C)."""

    W1: torch.Tensor
    W2: torch.Tensor

    @property
    def C(self) -> int:
        return self.W2.shape[2]

    def clone(self) -> "SoftmaxStack":
        return SoftmaxStack(self.W1.detach().clone(), self.W2.detach().clone())


def init_softmax_net(K: int, H: int, D: int, n_classes: int, seed: int = 0, device="auto",
                     dtype: torch.dtype = torch.float32) -> SoftmaxStack:
    """K networks with i.i.d. N(0, 1) weights in both layers (the paper's initialisation).

    W1 is drawn first with the generator, exactly as :func:`tasknb.learners.init_two_layer`
    does, so the same seed gives the same random feature map W1 in both modules.
    """
    C = check_positive_int("n_classes", n_classes, minimum=2)
    return SoftmaxStack(*draw_gaussian_layers(K, H, D, C, seed, device, dtype))


def _check_labels(y: torch.Tensor, shape, C: int, name: str = "y") -> None:
    if tuple(y.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape (K, M) = {tuple(shape)}, got {tuple(y.shape)}")
    if y.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise ValueError(f"{name} must hold integer class indices, got dtype {y.dtype}")
    if y.numel() and (int(y.min()) < 0 or int(y.max()) >= C):
        raise ValueError(f"{name} must hold class indices in 0..{C - 1}, got values in "
                         f"{int(y.min())}..{int(y.max())}")


def _logits(W1, W2, X):
    return features(W1, X) @ W2 / math.sqrt(W1.shape[1])


def softmax_logits(params: SoftmaxStack, X: torch.Tensor) -> torch.Tensor:
    """Logits ``ReLU(X W1^T / D) W2 / sqrt(H)`` of K models on their own inputs: X (K, M, D) -> (K, M, C)."""
    check_stack_data(params, X)
    return _logits(params.W1, params.W2, X)


def softmax_error(params: SoftmaxStack, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Fraction of argmax mistakes of each model on its own test set: X (K, M, D), y (K, M) -> (K,)."""
    with torch.no_grad():
        pred = softmax_logits(params, X).argmax(-1)
    return (pred != y).to(torch.float64).mean(dim=1)


def cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean softmax cross-entropy over the sample axis: logits (K, M, C), y (K, M) int -> (K,)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1).mean(-1)


# ---------------------------------------------------------------------------- softmax head
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
        (the criterion of :func:`tasknb.learners.fit_logistic_head`).
    warn : emit a RuntimeWarning naming how many problems did not converge.

    Returns
    -------
    :class:`tasknb.learners.HeadFit` with ``w`` of shape (K, H, C) in V's dtype, ``converged`` (K,),
    ``iterations``, ``grad_norm`` (K,) and ``train_error`` (K,).
    """
    C = check_positive_int("n_classes", n_classes, minimum=2)
    lam = check_positive_real("lam", lam)
    max_iter = check_positive_int("max_iter", max_iter)
    tol = check_positive_real("tol", tol)
    if V.dim() != 3 or y.dim() != 2 or V.shape[:2] != y.shape:
        raise ValueError(f"V must be (K, M, H) and y (K, M); got V {tuple(V.shape)}, y {tuple(y.shape)}")
    _check_labels(y, V.shape[:2], C)
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
        decrease = (G * step).sum((-1, -2))
        t = torch.ones(K, dtype=torch.float64, device=V.device)
        active = ~converged
        new_W = W.clone()
        for _ in range(40):                                                   # Armijo, per problem
            cand = W - t[:, None, None] * step
            cand_obj = objective(cand)
            ok = cand_obj <= obj - 1e-4 * t * decrease
            accept = active & ok
            new_W[accept] = cand[accept]
            obj = torch.where(accept, cand_obj, obj)
            active = active & ~ok
            if not bool(active.any()):
                break
            t = torch.where(active, t * 0.5, t)
        W = new_W
    G, P = gradient(W)
    gnorm = scaled_norm(G, W)
    converged = gnorm < tol
    train_err = ((A @ W).argmax(-1) != y).to(torch.float64).mean(-1)
    n_bad = int((~converged).sum())
    if warn and n_bad:
        warnings.warn(f"fit_softmax_head: {n_bad} of {K} problems did not reach tol={tol:g} in "
                      f"max_iter={max_iter} Newton steps (largest scaled gradient {float(gnorm.max()):.2e}); "
                      "raise max_iter or lam", RuntimeWarning, stacklevel=2)
    return HeadFit(W.to(V.dtype), converged, it, gnorm, train_err)


# ---------------------------------------------------------------------------- Adam training
def train_softmax_net(params: SoftmaxStack, X: torch.Tensor, y: torch.Tensor, *, epochs: int = 200,
                      lr: float = 1e-3, batch_size: int = 50, lam: float = 0.0, train_first_layer: bool = True,
                      X_val: torch.Tensor | None = None, y_val: torch.Tensor | None = None,
                      patience: int | None = None, seed: int = 0, progress: bool = False,
                      desc: str = "training") -> TrainingResult:
    """Train K softmax networks at once with Adam on the cross-entropy (appendix D, multi-class).

    The per-model loss is ``mean_mu CE(y_mu, logits_mu) + lam ||W2||^2 / (2 M)`` (the multi-class
    eq. 6 divided by M), exactly as :func:`tasknb.learners.train_two_layer` does for the binary
    loss, with the same arguments and early-stopping rule: with validation data and
    ``patience`` p, a model stops once its validation cross-entropy has not improved for
    p + 1 consecutive epochs (p = 0, the paper's setting, stops at the first increase) and
    the weights of its best epoch are returned.

    Parameters
    ----------
    params : SoftmaxStack, the initial networks (not modified).
    X : (K, M, D), y : (K, M) int in 0..C-1.   epochs, lr, batch_size (capped at M), lam >= 0.
    train_first_layer : False freezes W1.   X_val, y_val, patience : early stopping.
    seed : minibatch order.   progress : a tqdm bar over epochs.

    Returns
    -------
    :class:`tasknb.learners.TrainingResult` whose ``params`` is a :class:`SoftmaxStack`.
    """
    check_stack_data(params, X)
    _check_labels(y, X.shape[:2], params.C)
    epochs = check_positive_int("epochs", epochs)
    lr = check_positive_real("lr", lr)
    batch_size = check_positive_int("batch_size", batch_size)
    lam = check_positive_real("lam", lam, allow_zero=True)
    have_val = X_val is not None
    if have_val:
        check_stack_data(params, X_val, "X_val")
        if y_val is None:
            raise ValueError("y_val must be given with X_val and have shape (K, M_val)")
        _check_labels(y_val, X_val.shape[:2], params.C, "y_val")
    if patience is not None:
        patience = check_positive_int("patience", patience, minimum=0)
        if not have_val:
            raise ValueError("patience (early stopping) needs X_val and y_val")

    K, M, _ = X.shape
    batch_size = min(batch_size, M)
    W1 = params.W1.detach().clone().requires_grad_(train_first_layer)
    W2 = params.W2.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([W1, W2] if train_first_layer else [W2], lr=lr)
    g = generator(check_seed("seed", seed))
    best = SoftmaxStack(W1.detach().clone(), W2.detach().clone())
    best_val = torch.full((K,), float("inf"), dtype=torch.float64, device=X.device)
    bad_epochs = torch.zeros(K, dtype=torch.long, device=X.device)
    running = torch.ones(K, dtype=torch.bool, device=X.device)
    n_epochs = torch.zeros(K, dtype=torch.long)
    train_hist, val_hist = [], []
    n_batches = M // batch_size
    for _ in tqdm(range(epochs), desc=desc, leave=False, disable=not progress):
        perm = torch.randperm(M, generator=g).to(X.device)
        tot = torch.zeros(K, dtype=torch.float64, device=X.device)
        for start in range(0, n_batches * batch_size, batch_size):
            idx = perm[start:start + batch_size]
            loss = cross_entropy(_logits(W1, W2, X[:, idx]), y[:, idx]) + 0.5 * (lam / M) * (W2 * W2).sum((-1, -2))
            opt.zero_grad(set_to_none=True)
            loss.sum().backward()                       # per-model gradients: the K losses share no weights
            opt.step()
            tot += loss.detach().double()
        n_epochs += running.cpu().long()
        train_hist.append((tot / n_batches).cpu())
        if have_val:
            with torch.no_grad():
                vl = cross_entropy(_logits(W1, W2, X_val), y_val).double()
            val_hist.append(vl.cpu())
            if patience is not None:
                improved = running & (vl < best_val)
                best.W1[improved] = W1.detach()[improved]
                best.W2[improved] = W2.detach()[improved]
                best_val = torch.where(improved, vl, best_val)
                bad_epochs = torch.where(improved, 0, bad_epochs + running.long())
                running = running & (bad_epochs <= patience)
                if not bool(running.any()):
                    break
    if patience is None:
        best = SoftmaxStack(W1.detach(), W2.detach())
    return TrainingResult(best, n_epochs, torch.stack(train_hist),
                          torch.stack(val_hist) if val_hist else torch.empty(0))


# ============================================================================ transfer protocol

def softmax_family(K: int, H: int, D: int, n_classes: int, device, max_iter: int = 200) -> NetworkFamily:
    """K softmax networks (C = ``n_classes`` outputs) for :func:`tasknb.feature_transfer.target_learning_curves`."""
    def train(net, X, y, config, lam, seed):
        return train_softmax_net(net, X, y, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                                 lam=lam, seed=seed)

    return NetworkFamily(init=lambda seed: init_softmax_net(K, H, D, n_classes, seed=seed, device=device),
                         fit_head=lambda V, y, lam: fit_softmax_head(V, y, n_classes, lam, max_iter=max_iter),
                         attach=SoftmaxStack, error=softmax_error, train=train)


def stack_multiclass_samples(chmms: list[MulticlassCHMM], M: int, which: str, seed: int):
    """M examples from each model, stacked: X (K, M, D), y (K, M) int64; realization k uses ``seed + k``."""
    check_choice("which", which, ("source", "target"))
    seed = check_seed("seed", seed)
    draw = [getattr(c, f"sample_{which}")(M, seed=seed + k) for k, c in enumerate(chmms)]
    return torch.stack([d.X for d in draw]), torch.stack([d.y for d in draw])


def train_multiclass_source(chmms: list[MulticlassCHMM], H: int, M_source: int,
                            config: TrainingConfig = SOURCE_DEFAULT, M_val: int = 2000, lam: float = 0.0,
                            patience: int = 0, seed: int = 0, progress: bool = True):
    """Train one C-output source network per model, Adam with early stopping (app. D).

    Returns ``(TrainingResult, init)``: the trained stack (best validation epoch) and the
    random initial stack.
    """
    H = check_positive_int("H", H)
    M_source = check_positive_int("M_source", M_source)
    M_val = check_positive_int("M_val", M_val)
    Xs, ys = stack_multiclass_samples(chmms, M_source, "source", seed)
    Xv, yv = stack_multiclass_samples(chmms, M_val, "source", seed + 10_000)
    init = init_softmax_net(len(chmms), H, chmms[0].D, chmms[0].n_classes, seed=seed + 20_000,
                            device=Xs.device, dtype=Xs.dtype)
    res = train_softmax_net(init, Xs, ys, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                            lam=lam, X_val=Xv, y_val=yv, patience=patience, seed=seed, progress=progress,
                            desc="source nets")
    return res, init


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
    D, H = check_positive_int("D", D), check_positive_int("H", H)
    C = check_positive_int("n_classes", n_classes, minimum=2)
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    M_source = check_positive_int("M_source", M_source)
    M_test = check_positive_int("M_test", M_test)
    K = check_positive_int("realizations", realizations)
    lam = check_positive_real("lam", lam)
    learners = check_learners(learners)
    seed = check_seed("seed", seed)
    dev = get_device(device)
    chmms = [MulticlassCHMM(D, L_source, L_target, C, eta, rho, q, seed=seed + k, device=dev) for k in range(K)]

    source_params, source_epochs = resolve_source_networks(
        source_params, SoftmaxStack, {"K": K, "H": H, "D": D, "C": C},
        lambda: train_multiclass_source(chmms, H, M_source, source, lam=lam, seed=seed, progress=progress)[0])
    Xs_test, ys_test = stack_multiclass_samples(chmms, M_test, "source", seed + 30_000)
    source_error = softmax_error(source_params, Xs_test, ys_test).cpu().numpy()
    W1_tf = source_params.W1
    W1_rf = init_softmax_net(K, H, D, C, seed=seed + 40_000, device=dev).W1
    Xt_test, yt_test = stack_multiclass_samples(chmms, M_test, "target", seed + 50_000)

    errors, conv = target_learning_curves(
        softmax_family(K, H, D, C, dev, max_iter=max_iter), W1_tf, W1_rf,
        lambda i, M: stack_multiclass_samples(chmms, M, "target", seed + 60_000 + 1000 * i), M_grid,
        Xt_test, yt_test, learners, lam, scratch, finetune, seed, progress=progress)
    config = dict(D=D, H=H, L_source=L_source, L_target=L_target, n_classes=C, eta=eta, rho=rho, q=q,
                  M_source=M_source, M_test=M_test, realizations=K, lam=lam, seed=seed,
                  source=source, scratch=scratch, finetune=finetune, device=str(dev))
    return TransferCurves(np.asarray(M_grid), H, errors, source_error, source_epochs, conv, config,
                          source_params)


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

    def gain(self, better: str, baseline: str) -> np.ndarray:
        """Mean error of ``baseline`` minus mean error of ``better``: (n_values, n_M); > 0 where ``better`` wins."""
        return (self.errors(baseline) - self.errors(better)).mean(-1)

    def gain_sem(self, better: str, baseline: str) -> np.ndarray:
        """Standard error over realizations of :meth:`gain` (paired differences): (n_values, n_M)."""
        d = self.errors(baseline) - self.errors(better)
        K = d.shape[-1]
        return d.std(-1, ddof=1) / np.sqrt(K) if K > 1 else np.zeros(d.shape[:-1])


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

    def gain(self, better: str = "TF", baseline: str = "RF") -> np.ndarray:
        """Mean ``baseline`` error minus mean ``better`` error: (n_L, n_M); > 0 where ``better`` wins."""
        return (self.errors(baseline) - self.errors(better)).mean(-1)

    def gain_sem(self, better: str = "TF", baseline: str = "RF") -> np.ndarray:
        d = self.errors(baseline) - self.errors(better)
        K = d.shape[-1]
        return d.std(-1, ddof=1) / np.sqrt(K) if K > 1 else np.zeros(d.shape[:-1])


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
def plot_gain_map(ax, gain_map: GainMap, better: str = "TF", baseline: str = "RF", vmax: float | None = None,
                  annotate: bool = True):
    """Heat map of ``error(baseline) - error(better)`` over (swept parameter, M/H), as in figures 3, A.1, B.1.

    Blue where ``better`` wins, red where it loses (diverging colour scale centred on 0);
    each cell is annotated with its value.  Returns the image (for a colour bar).
    """
    g = gain_map.gain(better, baseline)
    vmax = float(np.abs(g).max()) if vmax is None else vmax
    im = ax.imshow(g, origin="lower", cmap="RdBu", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_xticks(range(len(gain_map.M)), [f"{a:g}" for a in gain_map.alpha])
    ax.set_yticks(range(len(gain_map.values)), [f"{v:g}" for v in gain_map.values])
    ax.set_xlabel("samples per hidden unit  M / H")
    ax.set_ylabel({"eta": "feature correlation η", "rho": "substituted fraction ρ",
                   "q": "teacher alignment q"}[gain_map.param])
    ax.set_title(f"ε({baseline}) − ε({better})   (> 0: {better} better)")
    ax.grid(False)
    if annotate:
        for i in range(g.shape[0]):
            for j in range(g.shape[1]):
                ax.text(j, i, f"{g[i, j]:+.2f}", ha="center", va="center", fontsize="small",
                        color="white" if abs(g[i, j]) > 0.6 * vmax else "black")
    return im


def plot_asymmetric_gain(ax, asym: AsymmetricTransfer, better: str = "TF", baseline: str = "RF"):
    """``error(baseline) - error(better)`` against the target latent dimension, one line per M (figure 5b, B.2).

    Left of the symmetric point L_t = L_total / 2 the target is easier than the source
    (hard -> easy), right of it harder (easy -> hard).
    """
    g, s = asym.gain(better, baseline), asym.gain_sem(better, baseline)
    for j, a in enumerate(asym.alpha):
        ax.errorbar(asym.L_target, g[:, j], yerr=s[:, j], marker="o", ms=4, capsize=2, label=f"M/H = {a:g}")
    ax.axvline(asym.L_total / 2, color="k", lw=0.8, ls=":")
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel(f"target latent dimension L_t   (L_s + L_t = {asym.L_total})")
    ax.set_ylabel(f"ε({baseline}) − ε({better})")
    ax.set_title("hard → easy  ◀   ▶  easy → hard")
    ax.legend(fontsize="small")
    return ax
