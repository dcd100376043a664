"""Readouts: a network's features read as class probabilities (Ramesh et al. 2023, "S", eqs. 7-8,
Remark 2, App. D-E; Snell et al. 2017).

A model becomes a point of prediction space through the probabilities it assigns to the classes of
N fixed images.  A network trained on another task (or with no labels at all) has no head for those
classes, so its penultimate features phi(x; w_1) are read through a head built for them:

``imprint``                 imprinted weights w_c = h_c / ||h_c||, h_c the sum of the features of class
                            c, eq. (7); ``imprinted_probabilities`` the softmax of w_c . phi(x) (App. E)
``to_union_task``           imprint on the union task's samples and predict, eq. (8) -> (..., N, K)
``imprint_accuracy``        test accuracy of the imprinted head (leading checkpoint axes at once)
``LinearProbe`` / ``linear_probe``   a trained final layer on frozen features (free or unit-norm
                            rows), the alternative of Remark 2 / App. D; deterministic full-batch Adam
``log_likelihood``          mean log-probability of the labels under a linear head, eq. (12)
``prototypes`` / ``prototypical_logits``   class-mean centroids of support features and the
                            negative squared distances to them (prototypical networks, Result 4 of S)
``readout_probabilities``   probabilities from a labelled support set by one of ``READOUT_METHODS``:
                            "imprint" (eqs. 7-8 literally, temperature 1), "prototype" (class-mean
                            prototypes, logits -||phi - mu_c||^2), or "imprint_ml" / "prototype_ml"
                            (default) with one inverse temperature fitted by maximum likelihood on
                            the support set, so the probabilities do not change when the features are
                            rescaled; ``ReadoutInfo`` reports the temperature and whether it was capped
``READOUTS``, ``PredictionSet``, ``prediction_set``   where and how a model is read: fixed test
                            images of some classes and the readout, "softmax" (the network's own
                            head) or one of ``READOUT_METHODS`` on heads built from fixed training
                            images ("imprint": eqs. 7-8)

Features are arrays (..., n, d); labels (n,) integers in [0, K-1].  Everything is deterministic and
runs on ``tasknb.device.get_device()`` unless a device is given; NumPy in -> NumPy out, torch in ->
torch out for the eq. (7)-(8) kernels and ``readout_probabilities``.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .data import DATASETS, data_draw_seed, draw_per_class, draw_subset, load_task_images
from .device import as_tensor, generator, get_device, like_input, resolve_device
from .validation import (array_shape, check_choice, check_int_sequence, check_label_tensor, check_label_vector,
                         check_positive_int, check_positive_real, check_seed)

__all__ = ["imprint", "imprinted_probabilities", "to_union_task", "imprint_accuracy", "LinearProbe", "linear_probe",
           "log_likelihood", "prototypes", "prototypical_logits", "READOUT_METHODS", "READOUT_BETA_CAP", "ReadoutInfo",
           "readout_probabilities", "READOUTS", "PredictionSet", "prediction_set"]

#: methods of :func:`readout_probabilities`: imprinted weights (eq. 7) or class-mean prototypes, each at
#: temperature 1 or with one inverse temperature fitted by maximum likelihood on the support set
READOUT_METHODS = ("imprint", "imprint_ml", "prototype", "prototype_ml")

#: readouts of :class:`PredictionSet`: the network's own softmax head, or a head built on its features
#: from fixed training images (``READOUT_METHODS``; "imprint" is eqs. 7-8 of S)
READOUTS = ("softmax",) + READOUT_METHODS

# Feature norms and norms of class sums are clamped to at least this before dividing.
_TINY = float(np.finfo(np.float64).tiny)


# ----------------------------------------------------------------------------- array helpers
# ----------------------------------------------------------------------------- eqs. (7)-(8)
def _features(name, x, dev):
    shape = array_shape(name, x)
    if len(shape) < 2:
        raise ValueError(f"{name} must have shape (..., n, d), got shape {shape}")
    t = as_tensor(x, dev)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite; it has NaN or inf entries")
    return t


def imprint(features, labels, n_classes: int, *, normalize_features: bool = False, device=None):
    """Imprinted classifier weights, eq. (7) of S (App. D).

    ``w_c = h_c / ||h_c||`` with ``h_c`` the sum of the features of the samples of class c.
    ``features`` (..., n, d) (leading axes e.g. checkpoints, handled at once); ``labels`` (n,)
    integers in [0, n_classes - 1], every class present.  With ``normalize_features`` each
    feature vector is scaled to unit norm first (cosine classifier).  Returns (..., n_classes, d).
    """
    dev = resolve_device(device, features)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    f = _features("features", features, dev)
    lab = check_label_vector(labels, f.shape[-2], n_classes, dev)
    if torch.bincount(lab, minlength=n_classes).min() == 0:
        raise ValueError(f"labels must contain every class 0..{n_classes - 1} to imprint its weights")
    if normalize_features:
        f = f / f.norm(dim=-1, keepdim=True).clamp(min=_TINY)
    onehot = torch.nn.functional.one_hot(lab, n_classes).to(torch.float64)  # (n, K)
    h = onehot.T @ f  # (..., K, d)
    w = h / h.norm(dim=-1, keepdim=True).clamp(min=_TINY)
    return like_input(w, torch.is_tensor(features))


def imprinted_probabilities(features, weights, *, normalize_features: bool = False, scale: float = 1.0, device=None):
    """Softmax predictions of an imprinted head: ``p(c|x) = softmax_c(scale * w_c . phi(x))`` (App. E).

    ``features`` (..., n, d), ``weights`` (..., K, d) from ``imprint``; returns (..., n, K).
    """
    dev = resolve_device(device, features)
    f = _features("features", features, dev)
    w = _features("weights", weights, dev)
    if f.shape[-1] != w.shape[-1]:
        raise ValueError(f"features and weights must share the feature dimension d, got {f.shape[-1]} and {w.shape[-1]}")
    scale = check_positive_real("scale", scale)
    if normalize_features:
        f = f / f.norm(dim=-1, keepdim=True).clamp(min=_TINY)
    return like_input(torch.softmax(scale * f @ w.transpose(-1, -2), dim=-1), torch.is_tensor(features))


def to_union_task(features, union_labels, n_union: int, *, eval_features=None, normalize_features: bool = False,
                  scale: float = 1.0, device=None):
    """Map a model (its backbone features) to the union task, eq. (8) of S.

    A model trained on task k predicts over its own C^k classes; to compare models of different
    tasks the paper re-heads each on the union task U (all classes) by imprinting (eq. 7) and
    then reads its predictions on U's samples.  ``features`` (..., n, d) of U's samples with
    ``union_labels`` (n,) in [0, n_union - 1] give the head; predictions are made on
    ``eval_features`` (..., N, d) (default: the same samples).  Returns (..., N, n_union).
    """
    w = imprint(features, union_labels, n_union, normalize_features=normalize_features, device=device)
    ev = features if eval_features is None else eval_features
    if torch.is_tensor(ev) and not torch.is_tensor(w):
        w = torch.as_tensor(w)
    return imprinted_probabilities(ev, w, normalize_features=normalize_features, scale=scale, device=device)


# ----------------------------------------------------------------------------- scale-free readouts
#: largest standardised inverse temperature: beta times the RMS spread of the support scores about
#: their per-sample mean over classes (a bound that is itself invariant to rescaling the features)
READOUT_BETA_CAP = 1e3

_BETA_RTOL = 1e-12    # a Newton/bisection step this small (relative) ends the fit of beta
_BETA_MAX_ITER = 200  # safeguarded Newton steps (at worst each one halves the bracket)


@dataclass(frozen=True)
class ReadoutInfo:
    """How :func:`readout_probabilities` read a model.

    method : one of ``READOUT_METHODS``.
    inverse_temperature : beta multiplying the raw scores (1 for "imprint" and "prototype"); a float,
        or a float64 NumPy array (...) when the support features have leading axes (...).
    at_cap : whether beta hit the cap ``READOUT_BETA_CAP`` (a perfectly separated support set, whose
        maximum-likelihood beta is infinite); bool or bool array (...).
    support_log_likelihood : mean log p(y|x) of the support samples under the readout; float or (...).
    """

    method: str
    inverse_temperature: float | np.ndarray
    at_cap: bool | np.ndarray
    support_log_likelihood: float | np.ndarray


def _readout_scores(method: str, support: torch.Tensor, labels: torch.Tensor, n_classes: int,
                    features: torch.Tensor) -> torch.Tensor:
    """Raw class scores (..., n, K) of ``features`` (..., n, d) against the support set (..., n_s, d):
    ``w_c . phi(x)`` with the imprinted ``w_c`` of eq. (7) ("imprint*"), or ``-||phi(x) - mu_c||^2``
    with the class means ``mu_c`` of the support features ("prototype*")."""
    if method.startswith("imprint"):
        w = imprint(support, labels, n_classes, device=support.device)  # (..., K, d)
        return features @ w.transpose(-1, -2)
    onehot = F.one_hot(labels, n_classes).to(torch.float64)  # (n_s, K)
    mu = (onehot.T @ support) / onehot.sum(0)[:, None]  # (..., K, d)
    return -torch.cdist(features, mu, compute_mode="donot_use_mm_for_euclid_dist") ** 2


def _support_nll(beta: torch.Tensor, z: torch.Tensor, labels: torch.Tensor):
    """Mean negative log-likelihood of the support labels under softmax(beta z) and its derivatives:
    ``L = mean_i [logsumexp_c(beta z_ic) - beta z_iy]``, ``L' = mean_i [E_p z_i - z_iy]``,
    ``L'' = mean_i Var_p z_i >= 0`` (L is convex in beta).  beta (B,), z (B, n, K), labels (n,)
    -> three (B,) float64 tensors."""
    logp = torch.log_softmax(beta[:, None, None] * z, -1)
    p = logp.exp()
    idx = labels[None, :, None].expand(z.shape[0], -1, 1)
    z_true = z.gather(-1, idx)[..., 0]
    mean_z = (p * z).sum(-1)
    var_z = (p * (z - mean_z[..., None]) ** 2).sum(-1)
    return -logp.gather(-1, idx)[..., 0].mean(-1), (mean_z - z_true).mean(-1), var_z.mean(-1)


def _fit_inverse_temperature(z: torch.Tensor, labels: torch.Tensor, cap: float):
    """Maximum-likelihood b in [0, cap] of softmax(b z) on the support set, one per batch element.

    z (B, n, K) standardised scores; returns b (B,) and at_cap (B,) bool.  L'(0) >= 0 gives b = 0 (the
    scores do not favour the true class on average); L'(cap) <= 0 gives b = cap (the minimum lies at
    or beyond the cap: infinite for a perfectly separated support set); otherwise the root of the
    increasing L' in (0, cap) is found by Newton steps kept inside a bracket, bisecting whenever a
    step would leave it, until a step is below ``_BETA_RTOL`` relative.  Warns if that fails.
    """
    B = z.shape[0]
    zero = torch.zeros(B, dtype=torch.float64, device=z.device)
    top = torch.full_like(zero, cap)
    _, g_zero, _ = _support_nll(zero, z, labels)
    _, g_top, _ = _support_nll(top, z, labels)
    at_cap = (g_zero < 0) & (g_top <= 0)
    active = (g_zero < 0) & ~at_cap
    b = torch.where(at_cap, top, zero)
    lo, hi = zero.clone(), top.clone()
    x = torch.ones_like(zero).clamp(max=cap / 2)
    for _ in range(_BETA_MAX_ITER):
        if not bool(active.any()):
            break
        _, g, h = _support_nll(x, z, labels)
        lo = torch.where(g < 0, x, lo)
        hi = torch.where(g > 0, x, hi)
        step = g / h
        newton = x - step
        inside = torch.isfinite(newton) & (h > 0) & (newton > lo) & (newton < hi)
        x_new = torch.where(inside, newton, 0.5 * (lo + hi))
        done = active & ((g == 0) | ((x_new - x).abs() <= _BETA_RTOL * x + 1e-300)
                         | (hi - lo <= _BETA_RTOL * hi))
        b = torch.where(done, torch.where(g == 0, x, x_new), b)
        active = active & ~done
        x = torch.where(active, x_new, x)
    if bool(active.any()):
        warnings.warn(f"readout_probabilities: the maximum-likelihood inverse temperature did not converge in "
                      f"{_BETA_MAX_ITER} steps for {int(active.sum())} of {B} support sets; using the last iterate",
                      RuntimeWarning, stacklevel=3)
        b = torch.where(active, x, b)
    return b, at_cap


def readout_probabilities(support_features, support_labels, query_features, n_classes: int,
                          method: str = "prototype_ml", *, return_info: bool = False, device=None):
    """Class probabilities of ``query_features`` from a head built on a labelled support set.

    Parameters
    ----------
    support_features : (..., n, d) features phi(x) of the support samples (leading axes, e.g.
        checkpoints or seeds, are read at once, each with its own head and temperature).
    support_labels : (n,) integers in [0, n_classes - 1]; every class must be present.
    query_features : (..., N, d) with the same leading axes and d.
    n_classes : K >= 2.
    method : one of ``READOUT_METHODS``:
        ``"imprint"``       eqs. (7)-(8) of S literally: ``w_c = h_c / ||h_c||`` (h_c the sum of the
                            support features of class c), ``p = softmax_c(w_c . phi(x))``, temperature
                            1 (the same numbers as :func:`to_union_task`);
        ``"imprint_ml"``    the same scores times one inverse temperature beta >= 0 fitted by
                            maximum likelihood on the support set;
        ``"prototype"``     logits ``-||phi(x) - mu_c||^2`` with the class means mu_c of the support
                            features (prototypical networks, Snell et al. 2017), temperature 1;
        ``"prototype_ml"``  (default) the same with beta fitted by maximum likelihood.
    return_info : also return a :class:`ReadoutInfo` (default False).
    device : default: CUDA if an input is a CUDA tensor, else ``get_device()``.

    Returns
    -------
    probabilities (..., N, n_classes) float64, rows summing to 1 (NumPy, or torch when an input is a
    torch tensor); with ``return_info`` the pair ``(probabilities, ReadoutInfo)``.

    The fitted beta maximises the mean support log-likelihood ``mean_i log softmax(beta s_i)[y_i]``
    of the raw scores s (convex in beta; safeguarded Newton in float64).  It is fitted on the scores
    divided by sigma, the RMS spread of the support scores about their per-sample mean over classes,
    and that standardised beta * sigma is capped at ``READOUT_BETA_CAP`` = 1e3: both the fit and the
    cap are then invariant to a rescaling of all features, and so are the *_ml probabilities (the
    prototype ones also to any orthogonal change of basis and a common shift; the imprint ones to an
    orthogonal change of basis).  A perfectly separated support set has an infinite ML beta: the
    cap is hit and a RuntimeWarning names it.  A support set whose scores do not favour the true
    class on average gets beta = 0 (uniform probabilities).
    """
    check_choice("method", method, READOUT_METHODS)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    if not isinstance(return_info, bool):
        raise ValueError(f"return_info must be True or False, got {return_info!r}")
    dev = resolve_device(device, support_features, query_features)
    fs = _features("support_features", support_features, dev)
    fq = _features("query_features", query_features, dev)
    if fq.shape[-1] != fs.shape[-1]:
        raise ValueError(f"query_features must have the feature dimension d = {fs.shape[-1]} of support_features, "
                         f"got {fq.shape[-1]}")
    if fq.shape[:-2] != fs.shape[:-2]:
        raise ValueError(f"query_features must have the leading axes {tuple(fs.shape[:-2])} of support_features, "
                         f"got shape {tuple(fq.shape)}")
    labels = check_label_vector(support_labels, fs.shape[-2], n_classes, dev, name="support_labels")
    counts = torch.bincount(labels, minlength=n_classes)
    if int(counts.min()) == 0:
        missing = [int(c) for c in torch.nonzero(counts == 0)[:, 0]]
        raise ValueError(f"support_labels must contain every class 0..{n_classes - 1}; classes {missing} have no "
                         f"support sample")

    lead = fs.shape[:-2]
    s_support = _readout_scores(method, fs, labels, n_classes, fs).reshape(-1, fs.shape[-2], n_classes)
    s_query = _readout_scores(method, fs, labels, n_classes, fq).reshape(-1, fq.shape[-2], n_classes)
    B = s_support.shape[0]
    if method.endswith("_ml"):
        centred = s_support - s_support.mean(-1, keepdim=True)
        sigma = centred.pow(2).mean((-1, -2)).sqrt()  # (B,)
        sigma = torch.where(sigma > 0, sigma, torch.ones_like(sigma))  # constant scores: any beta, uniform
        b, at_cap = _fit_inverse_temperature(centred / sigma[:, None, None], labels, READOUT_BETA_CAP)
        if bool(at_cap.any()):
            warnings.warn(f"readout_probabilities(method={method!r}): the support log-likelihood still grows at "
                          f"the largest inverse temperature allowed, so beta is capped at READOUT_BETA_CAP = "
                          f"{READOUT_BETA_CAP:g} (in units of the support scores' spread); the support set is "
                          f"perfectly separated (maximum-likelihood beta infinite) or nearly so",
                          RuntimeWarning, stacklevel=2)
        beta = b / sigma
    else:
        beta = torch.ones(B, dtype=torch.float64, device=dev)
        at_cap = torch.zeros(B, dtype=torch.bool, device=dev)
    probs = torch.softmax(beta[:, None, None] * s_query, -1).reshape(*lead, fq.shape[-2], n_classes)
    as_torch = torch.is_tensor(support_features) or torch.is_tensor(query_features)
    probs = like_input(probs, as_torch)
    if not return_info:
        return probs
    nll, _, _ = _support_nll(beta, s_support, labels)

    def shaped(t):
        a = t.reshape(lead).cpu().numpy()
        return a.item() if a.ndim == 0 else a

    return probs, ReadoutInfo(method=method, inverse_temperature=shaped(beta), at_cap=shaped(at_cap),
                              support_log_likelihood=shaped(-nll))


# ----------------------------------------------------------------------------- heads on frozen features
def _as_features(name, x, dev) -> torch.Tensor:
    t = torch.as_tensor(x.detach() if isinstance(x, torch.Tensor) else np.asarray(x), dtype=torch.float64).to(dev)
    if t.ndim < 2 or t.shape[-2] == 0 or t.shape[-1] == 0:
        raise ValueError(f"{name} must have shape (..., n, d) with n, d >= 1, got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite; it has NaN or inf entries")
    return t


def _as_labels(name, y, n, n_classes, dev) -> torch.Tensor:
    t = torch.as_tensor(y.detach().cpu() if isinstance(y, torch.Tensor) else np.asarray(y))
    if t.ndim != 1 or len(t) != n or t.dtype.is_floating_point or t.dtype == torch.bool:
        raise ValueError(f"{name} must be a 1-D integer array of length {n}, got dtype {t.dtype} shape {tuple(t.shape)}")
    if n and (int(t.min()) < 0 or int(t.max()) >= n_classes):
        raise ValueError(f"{name} must contain integers in [0, {n_classes - 1}]")
    return t.long().to(dev)


def imprint_accuracy(f_fit, y_fit, f_test, y_test, n_classes: int, *, device="auto"):
    """Test accuracy of the imprinted head of eq. (7) of S.

    ``f_fit`` (..., n, d) features of the images the head is imprinted from, ``y_fit`` (n,) their
    labels in [0, n_classes - 1] (every class present); ``f_test`` (..., N, d), ``y_test`` (N,).
    Leading axes (e.g. checkpoints) must match.  Returns a float, or float64 NumPy (...) accuracies.
    """
    dev = get_device(device)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    ff, ft = _as_features("f_fit", f_fit, dev), _as_features("f_test", f_test, dev)
    if ff.shape[:-2] != ft.shape[:-2] or ff.shape[-1] != ft.shape[-1]:
        raise ValueError(f"f_fit and f_test must share leading axes and d, got {tuple(ff.shape)} and {tuple(ft.shape)}")
    yf = _as_labels("y_fit", y_fit, ff.shape[-2], n_classes, dev)
    yt = _as_labels("y_test", y_test, ft.shape[-2], n_classes, dev)
    w = imprint(ff, yf, n_classes, device=dev)
    acc = (imprinted_probabilities(ft, w, device=dev).argmax(-1) == yt).double().mean(-1)
    return float(acc) if acc.ndim == 0 else acc.cpu().numpy()


@dataclass
class LinearProbe:
    """A linear head on frozen features: logits = features @ weight.T + bias.

    weight (K, d) float64, bias (K,) float64 (zeros when trained without a bias); ``unit_norm``:
    whether the rows of ``weight`` were constrained to norm 1 (the constraint of App. D).
    ``loss`` (steps,) the training objective after each step.
    """

    weight: torch.Tensor
    bias: torch.Tensor
    unit_norm: bool
    loss: np.ndarray

    def probabilities(self, features) -> torch.Tensor:
        """softmax(features @ weight.T + bias): (..., n, d) -> (..., n, K) float64."""
        f = _as_features("features", features, self.weight.device)
        if f.shape[-1] != self.weight.shape[1]:
            raise ValueError(f"features must have d = {self.weight.shape[1]}, got {f.shape[-1]}")
        return torch.softmax(f @ self.weight.T + self.bias, -1)

    def accuracy(self, features, labels) -> float:
        """Fraction of ``labels`` (n,) predicted by the argmax of :meth:`probabilities`."""
        p = self.probabilities(features)
        y = _as_labels("labels", labels, p.shape[-2], p.shape[-1], p.device)
        return float((p.argmax(-1) == y).double().mean())


def linear_probe(features, labels, n_classes: int, *, unit_norm: bool = False, bias: bool = True,
                 steps: int = 300, lr: float = 0.05, weight_decay: float = 0.0, init=None,
                 device="auto") -> LinearProbe:
    """Train a final layer on frozen features: the alternative to imprinting of Remark 2 / App. D of S.

    Minimises the mean cross-entropy (minus eq. 12 averaged over samples) of
    ``softmax(features @ W.T + b)`` by full-batch Adam for ``steps`` steps (float64, no randomness:
    same inputs -> same head).

    Parameters
    ----------
    features : (n, d) frozen backbone features; labels : (n,) ints in [0, n_classes - 1].
    unit_norm : False (default) -- a free linear probe; True -- the problem of App. D: each row of
        W is parametrised as v_c / ||v_c|| (norm 1, no bias), the constraint under which the
        imprinted weights maximise the first term of eq. (12).
    bias : learn a bias (default True; ignored with ``unit_norm``).
    steps : int >= 1, default 300.  lr : Adam step size > 0, default 0.05.
    weight_decay : >= 0, default 0 (L2 penalty 0.5 * weight_decay * ||W||^2 added to the loss).
    init : (n_classes, d) starting weights; default zeros (free) or the imprinted weights (unit_norm).

    Returns a :class:`LinearProbe`.
    """
    dev = get_device(device)
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    f = _as_features("features", features, dev)
    if f.ndim != 2:
        raise ValueError(f"features must have shape (n, d), got {tuple(f.shape)}")
    y = _as_labels("labels", labels, f.shape[0], n_classes, dev)
    steps = check_positive_int("steps", steps)
    lr = check_positive_real("lr", lr)
    weight_decay = check_positive_real("weight_decay", weight_decay, allow_zero=True)
    for name, flag in (("unit_norm", unit_norm), ("bias", bias)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    d = f.shape[1]
    if init is None:
        if unit_norm:
            w0 = imprint(f, y, n_classes, device=dev)
        else:
            w0 = torch.zeros(n_classes, d, dtype=torch.float64, device=dev)
    else:
        w0 = _as_features("init", init, dev)
        if tuple(w0.shape) != (n_classes, d):
            raise ValueError(f"init must have shape (n_classes, d) = ({n_classes}, {d}), got {tuple(w0.shape)}")
    V = w0.clone().requires_grad_(True)
    use_bias = bias and not unit_norm
    b = torch.zeros(n_classes, dtype=torch.float64, device=dev, requires_grad=use_bias)
    opt = torch.optim.Adam([V, b] if use_bias else [V], lr=lr)

    def weight():
        return V / V.norm(dim=1, keepdim=True).clamp(min=1e-300) if unit_norm else V

    losses = np.empty(steps)
    for s in range(steps):
        W = weight()
        loss = F.cross_entropy(f @ W.T + b, y)
        if weight_decay:
            loss = loss + 0.5 * weight_decay * (W * W).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses[s] = float(loss.detach())
    with torch.no_grad():
        return LinearProbe(weight=weight().detach().clone(), bias=b.detach().clone(), unit_norm=unit_norm,
                           loss=losses)


def log_likelihood(features, labels, weight, bias=None, *, device="auto") -> float:
    """Mean log-probability of the labels under the linear head ``softmax(features @ weight.T + bias)``:
    eq. (12) of S summed over classes and divided by the number of samples.

    features (n, d), labels (n,) in [0, K-1], weight (K, d), bias (K,) or None.  Imprinted weights
    maximise only the first term of eq. (12) under ||w_c|| = 1, so a unit-norm head trained on the
    whole of eq. (12) scores at least as high (App. D)."""
    dev = get_device(device)
    f = _as_features("features", features, dev)
    W = _as_features("weight", weight, dev)
    if f.ndim != 2 or W.ndim != 2 or f.shape[1] != W.shape[1]:
        raise ValueError(f"features (n, d) and weight (K, d) must share d, got {tuple(f.shape)} and {tuple(W.shape)}")
    y = _as_labels("labels", labels, f.shape[0], W.shape[0], dev)
    logits = f @ W.T
    if bias is not None:
        bt = torch.as_tensor(bias.detach() if isinstance(bias, torch.Tensor) else np.asarray(bias),
                             dtype=torch.float64).to(dev)
        if tuple(bt.shape) != (W.shape[0],):
            raise ValueError(f"bias must have shape ({W.shape[0]},), got {tuple(bt.shape)}")
        logits = logits + bt
    return float(-F.cross_entropy(logits, y))


# ----------------------------------------------------------------------------- class-mean prototypes
def _check_feats(name, f):
    if not isinstance(f, torch.Tensor) or f.ndim != 2:
        raise ValueError(f"{name} must be a 2-D torch tensor (n, d), got {getattr(f, 'shape', type(f).__name__)}")


def prototypes(support_features: torch.Tensor, support_labels: torch.Tensor, way: int) -> torch.Tensor:
    """Class centroids phi_c = mean of the support features of class c (Result 4 of S):
    (n_s, d) features, (n_s,) labels in 0..way-1 (every class present) -> (way, d)."""
    way = check_positive_int("way", way, minimum=2)
    _check_feats("support_features", support_features)
    check_label_tensor("support_labels", support_labels, support_features.shape[0], way)
    counts = torch.bincount(support_labels, minlength=way)
    if int(counts.min()) == 0:
        raise ValueError(f"support_labels must contain every episode class 0..{way - 1}")
    onehot = F.one_hot(support_labels, way).to(support_features.dtype)  # (n_s, way)
    return (onehot.T @ support_features) / counts.to(support_features.dtype)[:, None]


def prototypical_logits(support_features, support_labels, query_features, way: int) -> torch.Tensor:
    """Logits ``-||phi(x_q) - phi_c||^2`` (squared Euclidean, Snell et al. 2017) of the query
    features (n_q, d) against the centroids of :func:`prototypes` -> (n_q, way)."""
    protos = prototypes(support_features, support_labels, way)
    _check_feats("query_features", query_features)
    if query_features.shape[1] != protos.shape[1]:
        raise ValueError(f"query_features must have the feature dimension of the support ({protos.shape[1]}), "
                         f"got {query_features.shape[1]}")
    return -((query_features[:, None, :] - protos[None, :, :]) ** 2).sum(-1)


# ----------------------------------------------------------------------------- prediction sets
@dataclass
class PredictionSet:
    """Where and how a model is read as a point of prediction space.

    X : (N, 1, 28, 28) fixed test images; labels : (N,) their labels in 0..K-1 (K = len(classes));
    classes : the dataset classes of the K columns.
    readout : one of ``READOUTS``.  "softmax" -- the model's own head, which must have K outputs;
        "imprint" -- eq. (7) of S: a fresh head is imprinted from the penultimate features of
        ``X_imprint`` (labels ``y_imprint`` in 0..K-1) and applied to the features of X (eq. 8, the
        union task); "imprint_ml", "prototype", "prototype_ml" -- the other methods of
        :func:`readout_probabilities`, with ``X_imprint``/``y_imprint`` as the support set.  Any
        network with a ``features(x) -> (B, d)`` method can be read with these, whatever its own head
        (or none: prototypical and contrastive networks).
    """

    X: torch.Tensor
    labels: torch.Tensor
    classes: list
    readout: str = "softmax"
    X_imprint: torch.Tensor | None = None
    y_imprint: torch.Tensor | None = None

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @torch.no_grad()
    def predict(self, model, batch: int = 2048) -> torch.Tensor:
        """Float64 probabilities (N, K) of ``model`` on the fixed images (model put in eval mode and
        restored)."""
        was_training = model.training
        model.eval()
        try:
            if self.readout == "softmax":
                p = torch.cat([torch.softmax(model(self.X[i:i + batch]).double(), -1)
                               for i in range(0, len(self.X), batch)])
                if p.shape[-1] != self.n_classes:
                    raise ValueError(f"the model has {p.shape[-1]} outputs but this prediction set has "
                                     f"{self.n_classes} classes; use a feature readout such as readout='prototype_ml'")
            else:
                f_imp = torch.cat([model.features(self.X_imprint[i:i + batch]).double()
                                   for i in range(0, len(self.X_imprint), batch)])
                f_test = torch.cat([model.features(self.X[i:i + batch]).double()
                                    for i in range(0, len(self.X), batch)])
                p = self.read_features(f_imp, f_test)
        finally:
            model.train(was_training)
        return p / p.sum(-1, keepdim=True)

    def read_features(self, f_imprint, f_test) -> torch.Tensor:
        """Probabilities (..., N, K) of a feature readout: ``f_imprint`` (..., n_imprint, d) features of
        ``X_imprint`` (the support set) and ``f_test`` (..., N, d) features of X, leading axes (e.g.
        stacked seeds) read at once.  "imprint" is :func:`to_union_task` (eqs. 7-8); the other
        feature readouts are :func:`readout_probabilities` with that method."""
        if self.readout == "softmax":
            raise ValueError("readout 'softmax' reads the model's own head, not features; use one of "
                             + ", ".join(repr(r) for r in READOUTS[1:]))
        if self.readout == "imprint":
            return to_union_task(f_imprint, self.y_imprint, self.n_classes, eval_features=f_test)
        return readout_probabilities(f_imprint, self.y_imprint, f_test, self.n_classes, self.readout)


def prediction_set(dataset: str = "fashion_mnist", classes=tuple(range(10)), n_test: int = 1000, *,
                   readout: str = "prototype_ml", n_imprint: int = 100, data_seed: int = 0,
                   device="auto") -> PredictionSet:
    """The fixed test images of ``classes`` (``n_test`` drawn once, with the seed
    ``data.data_draw_seed(data_seed, "test_images")``) and, for a feature readout (any of
    ``READOUTS`` but "softmax"), ``n_imprint`` training images per class to build heads from (eq. 7
    for "imprint"; the support set of :func:`readout_probabilities`), drawn with
    ``generator(data_draw_seed(data_seed, "imprint_images"))``: each draw its own stream.

    Models trained on different tasks (class subsets, relabelings, no labels at all) become points
    of one prediction space when read through the same ``prediction_set(..., readout="imprint")``
    over the union of their classes (eq. 8 of S).
    """
    check_choice("dataset", dataset, DATASETS)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=9)
    if len(classes) < 2:
        raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
    n_test = check_positive_int("n_test", n_test)
    check_choice("readout", readout, READOUTS)
    data_seed = check_seed("data_seed", data_seed)
    dev = get_device(device)
    Xte, yte = load_task_images(dataset, "test", classes)
    Xte, yte = draw_subset(Xte, yte, n_test, data_draw_seed(data_seed, "test_images"), name="n_test")
    Xi = yi = None
    if readout != "softmax":
        n_imprint = check_positive_int("n_imprint", n_imprint)
        Xtr, ytr = load_task_images(dataset, "train", classes)
        g = generator(data_draw_seed(data_seed, "imprint_images"))
        sel = draw_per_class(ytr, range(len(classes)), n_imprint, g, "n_imprint", shown=classes)
        Xi, yi = Xtr[sel].to(dev), ytr[sel].to(dev)
    return PredictionSet(X=Xte.to(dev), labels=yte.to(dev), classes=classes, readout=readout,
                         X_imprint=Xi, y_imprint=yi)
