"""Comparing trained networks: feature similarity (CKA), distances in parameter space, the loss along
straight lines between two networks (interpolation, barriers), rewinding one module, module
criticality and the PAC-Bayes bound built on it.

Paper-agnostic: every function works for any ``torch.nn.Module``.  Two words used throughout:

*state*    a dict ``parameter name -> tensor`` holding the model's parameters only (no buffers), as
           ``parameter_state(model)`` returns it (``dict(model.named_parameters())``, detached copies);
*modules*  a dict ``module name -> list of parameter names``, by default ``module_groups(model)``
           (the top-level children that own parameters: for a ResNet conv1, layer1 ... layer4, fc).

Feature similarity
    ``linear_cka(X, Y, debiased=False)``, ``rbf_cka``: centred kernel alignment of Kornblith et al.
    (2019), CKA(K, L) = HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)), with the biased HSIC estimator
    or the unbiased one of Song et al. (2012) ("debiased CKA").  ``layer_representations``,
    ``layer_cka``: the same for the outputs of named submodules of two networks.
Parameter space
    ``module_groups``, ``parameter_state``, ``parameter_distance`` (Frobenius norm of the difference,
    whole network and per module), ``interpolate_states`` ((1 - lam) a + lam b).
Interpolation
    ``interpolation_curve``: loss and accuracy of theta_lam = (1 - lam) theta_a + lam theta_b for many
    lam at once (``torch.func.vmap`` over ``functional_call``, chunked over lam and data);
    ``interpolation_curve_loop`` the plain per-lam reference; ``barrier`` (Frankle et al. 2020).
    ``vectorize`` ("auto", "vmap", "sequential"; see ``VECTORIZE``) chooses how a stack of parameter
    settings is run: vmap on CUDA, one functional_call per setting on the CPU (measured faster there).
Rewinding and criticality
    ``rewind_module``, ``module_path_curve`` (the path theta_i^alpha = (1 - alpha) theta_i^0 +
    alpha theta_i^F of one module, the rest at theta^F), ``module_criticality`` (mu_i(eps) of
    Chatterji, Neyshabur & Sedghi 2020, as on the slides of Neyshabur, Sedghi & Zhang 2020),
    ``module_criticalities`` (every module), ``network_criticality``, ``pac_bayes_bound`` (the theorem
    slide), ``criticality_bound``.

BatchNorm.  A network with running statistics (BatchNorm) is refused by the functions that evaluate
interpolated or perturbed parameters: the running statistics of theta_lam are not the interpolation
of the endpoints' statistics, and recomputing them per lam would need the training data and a
pass per lam.  Use a normalisation without running statistics (GroupNorm, LayerNorm), as the
book's ResNet does.  Integer tensors of a state (``num_batches_tracked``) are never interpolated.
"""
from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vmap

from .device import stream
from .validation import (
    check_bool,
    check_choice,
    check_finite_array,
    check_positive_int,
    check_positive_real,
    check_real_in,
    check_seed,
)

__all__ = [
    "linear_cka",
    "rbf_cka",
    "layer_representations",
    "layer_cka",
    "module_groups",
    "parameter_state",
    "parameter_distance",
    "interpolate_states",
    "VECTORIZE",
    "InterpolationCurve",
    "interpolation_curve",
    "interpolation_curve_loop",
    "barrier",
    "rewind_module",
    "ModulePathCurve",
    "module_path_curve",
    "ModuleCriticality",
    "module_criticality",
    "module_criticalities",
    "network_criticality",
    "pac_bayes_bound",
    "criticality_bound",
]


# ============================================================================ CKA
def _feature_matrix(name: str, X, minimum_n: int) -> np.ndarray:
    a = check_finite_array(name, X)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n, features), got shape {a.shape}")
    if a.shape[0] < minimum_n:
        raise ValueError(f"{name} must have at least {minimum_n} rows (samples), got {a.shape[0]}")
    if a.shape[1] < 1:
        raise ValueError(f"{name} must have at least one column (feature), got shape {a.shape}")
    return a


def _pair(X, Y, debiased: bool) -> tuple[np.ndarray, np.ndarray]:
    debiased = check_bool("debiased", debiased)
    minimum_n = 4 if debiased else 2
    X = _feature_matrix("X", X, minimum_n)
    Y = _feature_matrix("Y", Y, minimum_n)
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows (samples), got {X.shape[0]} and {Y.shape[0]}")
    return X, Y


def _unbiased_hsic_terms(tr_kl: float, diag_k: np.ndarray, diag_l: np.ndarray, sum_k: float, sum_l: float,
                         k_rowsum: np.ndarray, l_rowsum: np.ndarray, n: int) -> float:
    """Song et al. (2012) unbiased HSIC from the pieces of K and L (K~, L~ = K, L with zero diagonal):
    [tr(K~L~) + 1'K~1 1'L~1 / ((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3))."""
    tr_t = tr_kl - float(diag_k @ diag_l)
    sk, sl = sum_k - diag_k.sum(), sum_l - diag_l.sum()
    kt1, lt1 = k_rowsum - diag_k, l_rowsum - diag_l
    return (tr_t + sk * sl / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * float(kt1 @ lt1)) / (n * (n - 3))


def _cka_ratio(hsic_xy: float, hsic_xx: float, hsic_yy: float, debiased: bool) -> float:
    if not (hsic_xx > 0 and hsic_yy > 0):
        which = "X" if not hsic_xx > 0 else "Y"
        how = "debiased HSIC estimate" if debiased else "HSIC"
        raise ValueError(f"CKA is undefined: the {how} of {which} with itself is {min(hsic_xx, hsic_yy):.3g} "
                         f"(<= 0; constant features, or too few samples for the debiased estimator)")
    return float(hsic_xy / math.sqrt(hsic_xx * hsic_yy))


def linear_cka(X, Y, debiased: bool = False) -> float:
    """Linear centred kernel alignment of two representations of the same n samples.

    X : (n, p), Y : (n, q) -- NumPy arrays or torch tensors; arithmetic in float64.
    debiased : False (default) uses the biased HSIC estimator of Kornblith et al. (2019),

        CKA = ||Y_c^T X_c||_F^2 / (||X_c^T X_c||_F ||Y_c^T Y_c||_F),   X_c, Y_c column-centred,

      which equals HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L)) for K = X X^T, L = Y Y^T; it lies in
      [0, 1] but is biased upwards at small n (two independent 2,000-wide Gaussian matrices of 50
      rows give about 0.98).  True uses the unbiased HSIC estimator of Song et al. (2012),

        HSIC_1(K, L) = [tr(K~L~) + (1'K~1)(1'L~1)/((n-1)(n-2)) - 2/(n-2) 1'K~L~1] / (n(n-3)),

      K~, L~ the kernel matrices with zeroed diagonals (needs n >= 4); near 0 for independent
      representations, and it can be slightly negative.

    The products are taken in the cheaper of the feature form (p x q matrices) and the n x n Gram
    form.  Raises ``ValueError`` for non-2-D or non-finite input, different n, too few samples, or a
    representation that is constant (CKA undefined).
    """
    X, Y = _pair(X, Y, debiased)
    n, p = X.shape
    q = Y.shape[1]
    X = X - X.mean(axis=0)
    Y = Y - Y.mean(axis=0)
    if n * (p + q) < p * q + p * p + q * q:       # n x n Grams are cheaper
        K, L = X @ X.T, Y @ Y.T
        tr_kl, tr_kk, tr_ll = float((K * L).sum()), float((K * K).sum()), float((L * L).sum())
    else:
        tr_kl = float(np.sum((Y.T @ X) ** 2))
        tr_kk = float(np.sum((X.T @ X) ** 2))
        tr_ll = float(np.sum((Y.T @ Y) ** 2))
    if not debiased:
        return _cka_ratio(tr_kl, tr_kk, tr_ll, False)
    # Centred features: K1 = 0 and 1'K1 = 0, so the zero-diagonal row sums are -diag(K).
    dk, dl = np.sum(X * X, axis=1), np.sum(Y * Y, axis=1)
    zeros = np.zeros(n)
    h = lambda tr, da, db: _unbiased_hsic_terms(tr, da, db, 0.0, 0.0, zeros, zeros, n)  # noqa: E731
    return _cka_ratio(h(tr_kl, dk, dl), h(tr_kk, dk, dk), h(tr_ll, dl, dl), True)


def _hsic_from_grams(K: np.ndarray, L: np.ndarray, debiased: bool) -> float:
    n = K.shape[0]
    if debiased:
        return _unbiased_hsic_terms(float((K * L).sum()), np.diag(K).copy(), np.diag(L).copy(), float(K.sum()),
                                    float(L.sum()), K.sum(axis=1), L.sum(axis=1), n)
    H = np.eye(n) - 1.0 / n
    return float(((H @ K @ H) * L).sum()) / (n - 1) ** 2


def _rbf_gram(X: np.ndarray, sigma_fraction: float, name: str) -> np.ndarray:
    sq = np.sum(X * X, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * X @ X.T, 0.0)
    np.fill_diagonal(d2, 0.0)
    iu = np.triu_indices(len(X), 1)
    median = float(np.median(np.sqrt(d2[iu])))
    if median <= 0:
        raise ValueError(f"rbf_cka: the median pairwise distance of {name} is 0 (more than half the rows "
                         f"coincide), so the bandwidth sigma_fraction x median is 0")
    sigma = sigma_fraction * median
    return np.exp(-d2 / (2.0 * sigma * sigma))


def rbf_cka(X, Y, sigma_fraction: float = 0.5, debiased: bool = False) -> float:
    """CKA with Gaussian kernels K_ij = exp(-||x_i - x_j||^2 / (2 s_X^2)), s_X = sigma_fraction x the
    median distance between distinct rows of X (i < j); likewise L for Y (Kornblith et al. 2019).

    X : (n, p), Y : (n, q); sigma_fraction > 0 (default 0.5); ``debiased`` as in :func:`linear_cka`
    (biased: HSIC = tr(K H L H) / (n-1)^2 with H = I - 11'/n).  Costs O(n^2 (p + q)) time and O(n^2)
    memory.
    """
    X, Y = _pair(X, Y, debiased)
    sigma_fraction = check_positive_real("sigma_fraction", sigma_fraction)
    K, L = _rbf_gram(X, sigma_fraction, "X"), _rbf_gram(Y, sigma_fraction, "Y")
    return _cka_ratio(_hsic_from_grams(K, L, debiased), _hsic_from_grams(K, K, debiased),
                      _hsic_from_grams(L, L, debiased), debiased)


def _check_model(model) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def _check_inputs(X, name: str = "X") -> torch.Tensor:
    if not torch.is_tensor(X) or X.ndim < 2 or X.shape[0] < 1:
        raise ValueError(f"{name} must be a torch tensor of shape (n, ...) with n >= 1 inputs, "
                         f"got {type(X).__name__} {tuple(getattr(X, 'shape', ()))}")
    if not X.dtype.is_floating_point:
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {X.dtype}")
    if not bool(torch.isfinite(X).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return X


def layer_representations(model, X, layers, batch_size: int = 512) -> dict[str, torch.Tensor]:
    """Outputs of the named submodules of ``model`` on the inputs ``X``, one row per sample.

    model : nn.Module, evaluated in eval mode without gradients (its mode is restored afterwards).
    X : (n, ...) float tensor.   layers : names from ``model.named_modules()`` (e.g. ``"layer1"``).
    batch_size : int >= 1, default 512.
    Returns ``{name: (n, d) tensor}`` on the CPU, each output flattened per sample (forward hooks).
    """
    model = _check_model(model)
    X = _check_inputs(X)
    batch_size = check_positive_int("batch_size", batch_size)
    named = dict(model.named_modules())
    if isinstance(layers, str) or not hasattr(layers, "__iter__"):
        raise ValueError(f"layers must be a list of submodule names, got {layers!r}")
    layers = list(layers)
    if not layers:
        raise ValueError("layers must name at least one submodule")
    unknown = [name for name in layers if name not in named]
    if unknown:
        raise ValueError(f"layers {unknown} are not submodules of the model; allowed: {sorted(k for k in named if k)}")
    outputs: dict[str, list] = {name: [] for name in layers}

    def hook_for(name):
        def hook(module, inputs, output):
            if not torch.is_tensor(output):
                raise ValueError(f"layer {name!r} returns {type(output).__name__}, not a tensor; pick another layer")
            outputs[name].append(output.detach().reshape(output.shape[0], -1).cpu())
        return hook

    handles = [named[name].register_forward_hook(hook_for(name)) for name in layers]
    was_training = model.training
    device = _model_device(model)
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, X.shape[0], batch_size):
                model(X[start:start + batch_size].to(device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return {name: torch.cat(outputs[name]) for name in layers}


def layer_cka(model_a, model_b, X, layers, debiased: bool = False, batch_size: int = 512,
              kernel: str = "linear") -> dict[str, float]:
    """CKA between the outputs of the same named layers of two networks on the inputs ``X``.

    ``layers`` as in :func:`layer_representations`; ``kernel`` "linear" (default, :func:`linear_cka`)
    or "rbf" (:func:`rbf_cka`, sigma_fraction 0.5); ``debiased`` selects the HSIC estimator.
    Returns ``{layer: CKA}``.
    """
    check_choice("kernel", kernel, ("linear", "rbf"))
    debiased = check_bool("debiased", debiased)
    ra = layer_representations(model_a, X, layers, batch_size)
    rb = layer_representations(model_b, X, layers, batch_size)
    f = linear_cka if kernel == "linear" else rbf_cka
    return {name: f(ra[name], rb[name], debiased=debiased) for name in ra}


# ============================================================================ parameter space
def module_groups(model) -> dict[str, list[str]]:
    """The top-level children of ``model`` that own parameters: ``{child name: [full parameter names]}``,
    in the order of ``model.named_parameters()``.  A parameter registered on ``model`` itself is its own
    group (named after it).  Buffers are never included."""
    model = _check_model(model)
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        groups.setdefault(name.split(".", 1)[0], []).append(name)
    if not groups:
        raise ValueError("model has no parameters")
    return groups


def parameter_state(model) -> dict[str, torch.Tensor]:
    """``{name: detached copy}`` of the parameters of ``model`` (no buffers): a *state* of this module."""
    model = _check_model(model)
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _check_state(name: str, state) -> dict:
    if not isinstance(state, dict) or not state:
        raise ValueError(f"{name} must be a non-empty dict parameter name -> tensor, got {type(state).__name__}")
    for k, v in state.items():
        if not torch.is_tensor(v):
            raise ValueError(f"{name}[{k!r}] must be a tensor, got {type(v).__name__}")
    return state


def _check_state_pair(state_a, state_b, names=("state_a", "state_b")) -> None:
    _check_state(names[0], state_a)
    _check_state(names[1], state_b)
    if set(state_a) != set(state_b):
        only_a, only_b = sorted(set(state_a) - set(state_b)), sorted(set(state_b) - set(state_a))
        raise ValueError(f"{names[0]} and {names[1]} must hold the same parameter names; only in {names[0]}: "
                         f"{only_a[:5]}, only in {names[1]}: {only_b[:5]}")
    for k in state_a:
        if state_a[k].shape != state_b[k].shape:
            raise ValueError(f"{names[0]}[{k!r}] has shape {tuple(state_a[k].shape)} but {names[1]}[{k!r}] "
                             f"has shape {tuple(state_b[k].shape)}")


def _check_modules(modules, state, name: str = "modules") -> dict[str, list[str]]:
    if not isinstance(modules, dict) or not modules:
        raise ValueError(f"{name} must be a non-empty dict module name -> list of parameter names")
    for mod, params in modules.items():
        if isinstance(params, str) or not hasattr(params, "__iter__") or not list(params):
            raise ValueError(f"{name}[{mod!r}] must be a non-empty list of parameter names, got {params!r}")
        missing = [p for p in params if p not in state]
        if missing:
            raise ValueError(f"{name}[{mod!r}] names parameters absent from the state: {missing[:5]}")
    return {mod: list(params) for mod, params in modules.items()}


def _frobenius_sq(state_a, state_b, names) -> float:
    return float(sum(torch.sum((state_a[k].double() - state_b[k].to(state_a[k].device).double()) ** 2)
                     for k in names))


def parameter_distance(state_a, state_b, modules=None) -> dict[str, float]:
    """l2 (Frobenius) distance between two states: ``{"whole": ||a - b||, module: ||a_i - b_i||, ...}``.

    ||a - b|| = sqrt(sum over parameters of sum of squared entry differences), over every name of the
    states ("whole") and over each module's names (``modules``: dict module -> parameter names;
    None gives only "whole").  The states must have the same names and shapes.  float64 arithmetic.
    """
    _check_state_pair(state_a, state_b)
    out = {"whole": math.sqrt(_frobenius_sq(state_a, state_b, list(state_a)))}
    if modules is not None:
        modules = _check_modules(modules, state_a)
        if "whole" in modules:
            raise ValueError("modules must not contain a module named 'whole' (the key of the whole network)")
        for mod, names in modules.items():
            out[mod] = math.sqrt(_frobenius_sq(state_a, state_b, names))
    return out


def _check_real(name: str, value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite real number, got {value!r}") from None
    if not math.isfinite(v) or isinstance(value, bool):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return v


def interpolate_states(state_a, state_b, lam) -> dict[str, torch.Tensor]:
    """theta_lam = (1 - lam) a + lam b for every floating tensor of the states; lam any finite real
    (lam < 0 or > 1 extrapolates).  Integer tensors (e.g. ``num_batches_tracked`` of a state_dict)
    are never interpolated: they are copied from ``state_a``."""
    _check_state_pair(state_a, state_b)
    lam = _check_real("lam", lam)
    out = {}
    for k, a in state_a.items():
        b = state_b[k].to(a.device)
        out[k] = (1.0 - lam) * a + lam * b if a.dtype.is_floating_point else a.clone()
    return out


# ============================================================================ evaluation of stacked parameters
def _refuse_running_statistics(model: nn.Module, what: str) -> None:
    for name, module in model.named_modules():
        if getattr(module, "track_running_stats", False) and getattr(module, "running_mean", None) is not None:
            raise ValueError(
                f"{what}: module {name!r} ({type(module).__name__}) keeps running statistics; those of an "
                f"interpolated or perturbed network are not the interpolation of the endpoints' and would "
                f"have to be recomputed on training data for each point. Use a normalisation without running "
                f"statistics (GroupNorm, LayerNorm) or set track_running_stats=False")


def _check_model_state(model: nn.Module, state, name: str) -> None:
    _check_state(name, state)
    params = dict(model.named_parameters())
    if set(state) != set(params):
        missing, extra = sorted(set(params) - set(state)), sorted(set(state) - set(params))
        raise ValueError(f"{name} must hold exactly the model's parameters; missing {missing[:5]}, "
                         f"not parameters of the model {extra[:5]} (buffers are never part of a state)")
    for k, p in params.items():
        if state[k].shape != p.shape:
            raise ValueError(f"{name}[{k!r}] has shape {tuple(state[k].shape)}, the model's parameter "
                             f"{tuple(p.shape)}")


def _check_data(X, y) -> tuple[torch.Tensor, torch.Tensor]:
    X = _check_inputs(X)
    if not torch.is_tensor(y) or y.shape != (X.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"y must be an integer tensor of shape (n,) = ({X.shape[0]},), got "
                         f"{type(y).__name__} {tuple(getattr(y, 'shape', ()))}")
    if int(y.min()) < 0:
        raise ValueError("y must hold class indices >= 0")
    return X, y


def _grid(name: str, values, low=None, high=None) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}") from None
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be a non-empty sequence of finite numbers, got {values!r}")
    if low is not None and (arr.min() < low or arr.max() > high):
        raise ValueError(f"{name} must lie in [{low:g}, {high:g}], got values from {arr.min():g} to {arr.max():g}")
    return arr


#: how a stack of parameter settings is evaluated: "vmap" (torch.func.vmap over functional_call),
#: "sequential" (functional_call once per setting, no state_dict copies) or "auto" (vmap on CUDA,
#: sequential on the CPU, where vmap's batched (grouped) convolutions measured 2-5x slower than one
#: call per setting for the SmallCNN and the SmallResNet on one thread; on CUDA vmap is the expected
#: winner but has not been timed here yet -- benchmarks/bench_interpolation.py prints all three)
VECTORIZE = ("auto", "vmap", "sequential")


class _StackedEvaluator:
    """Cross-entropy sums and correct-prediction counts of P parameter settings of ``model`` on (X, y):
    the settings are a dict of stacked tensors ``{name: (P, *shape)}`` for the varying parameters and
    the model's own tensors (or ``fixed``) for the rest; evaluated with vmap(functional_call) in chunks
    of ``chunk`` settings and ``batch_size`` inputs."""

    def __init__(self, model, X, y, fixed, batch_size, chunk, vectorize="auto"):
        self.model = model
        self.device = _model_device(model)
        vectorize = check_choice("vectorize", vectorize, VECTORIZE)
        self.use_vmap = vectorize == "vmap" or (vectorize == "auto" and self.device.type == "cuda")
        self.X, self.y = X, y
        self.fixed = {k: v.to(self.device) for k, v in fixed.items()}
        self.buffers = {k: b for k, b in model.named_buffers()}
        self.batch_size, self.chunk = batch_size, chunk

    def _forward(self, varying, fixed, x):
        return functional_call(self.model, {**fixed, **varying, **self.buffers}, (x,))

    def __call__(self, make_chunk, n_settings: int, want_loss: bool = True):
        """``make_chunk(start, stop)`` -> ``{name: (stop - start, *shape)}``; returns (loss, accuracy) (P,)."""
        loss = np.zeros(n_settings)
        correct = np.zeros(n_settings)
        n = self.X.shape[0]
        batched = vmap(self._forward, in_dims=(0, None, None))
        was_training = self.model.training
        try:
            self.model.eval()
            with torch.no_grad():
                for start in range(0, n_settings, self.chunk):
                    stop = min(start + self.chunk, n_settings)
                    varying = make_chunk(start, stop)
                    for b0 in range(0, n, self.batch_size):
                        xb = self.X[b0:b0 + self.batch_size].to(self.device)
                        yb = self.y[b0:b0 + self.batch_size].to(self.device)
                        if self.use_vmap:
                            logits = batched(varying, self.fixed, xb)      # (c, B, C)
                        else:
                            logits = torch.stack([self._forward({k: v[i] for k, v in varying.items()}, self.fixed,
                                                                xb) for i in range(stop - start)])
                        if not bool(torch.isfinite(logits).all()):
                            bad = (~torch.isfinite(logits)).flatten(1).any(1).nonzero().flatten() + start
                            raise ValueError(f"the network's outputs are not finite (NaN or inf) for parameter "
                                             f"setting(s) {bad.tolist()[:5]} of this evaluation (an extreme "
                                             f"interpolation or noise level?)")
                        if int(yb.max()) >= logits.shape[-1]:
                            raise ValueError(f"y holds class {int(yb.max())} but the model has "
                                             f"{logits.shape[-1]} outputs")
                        correct[start:stop] += (logits.argmax(-1) == yb).sum(-1).double().cpu().numpy()
                        if want_loss:
                            c = logits.shape[0]
                            ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), yb.repeat(c),
                                                 reduction="none").reshape(c, -1).sum(-1)
                            loss[start:stop] += ce.cpu().numpy()
        finally:
            self.model.train(was_training)
        return loss / n, correct / n


def _loop_evaluate(model, X, y, batch_size):
    device = _model_device(model)
    loss = correct = 0.0
    with torch.no_grad():
        for b0 in range(0, X.shape[0], batch_size):
            xb, yb = X[b0:b0 + batch_size].to(device), y[b0:b0 + batch_size].to(device)
            logits = model(xb)
            loss += float(F.cross_entropy(logits.double(), yb, reduction="sum"))
            correct += float((logits.argmax(-1) == yb).sum())
    return loss / X.shape[0], correct / X.shape[0]


# ============================================================================ interpolation
@dataclass
class InterpolationCurve:
    """Loss and accuracy along theta_lam = (1 - lam) theta_a + lam theta_b.

    lambdas, loss (mean cross-entropy, nats), accuracy : (L,) arrays, in the order of the grid given;
    n_samples : the number of inputs evaluated.  ``error`` = 1 - accuracy.
    """

    lambdas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    n_samples: int

    @property
    def error(self) -> np.ndarray:
        return 1.0 - self.accuracy


def _prepare_curve(model, state_a, state_b, lambdas, X, y, batch_size, what):
    model = _check_model(model)
    _refuse_running_statistics(model, what)
    _check_model_state(model, state_a, "state_a")
    _check_model_state(model, state_b, "state_b")
    lambdas = _grid("lambdas", lambdas)
    X, y = _check_data(X, y)
    batch_size = check_positive_int("batch_size", batch_size)
    return model, lambdas, X, y, batch_size


def interpolation_curve(model, state_a, state_b, lambdas, X, y, batch_size: int = 512,
                        chunk: int = 8, vectorize: str = "auto") -> InterpolationCurve:
    """Cross-entropy loss and accuracy on (X, y) of theta_lam = (1 - lam) theta_a + lam theta_b for every
    lam of ``lambdas`` (any finite reals; the chapters use [-1, 2]).

    model : nn.Module whose architecture is evaluated (its own parameters are not used or changed; its
        buffers are); refused if it keeps BatchNorm running statistics (see the module docstring).
    state_a, state_b : states of the model (exactly its parameter names and shapes).
    X : (n, ...) float inputs; y : (n,) integer labels.
    batch_size : inputs per evaluation (default 512); chunk : lam values evaluated at once (default 8).
        Memory grows as chunk x batch_size x the activations of one input.
    The interpolated parameters of a chunk of lam are stacked, (chunk, *shape), and evaluated with
    ``torch.func.vmap(functional_call(model, ...))`` in eval mode without gradients.
    vectorize : "auto" (default: vmap on CUDA, one functional_call per lam of the chunk on the CPU, where
        it is faster), "vmap" or "sequential" (see ``VECTORIZE``); the results agree to rounding.
    """
    model, lambdas, X, y, batch_size = _prepare_curve(model, state_a, state_b, lambdas, X, y, batch_size,
                                                      "interpolation_curve")
    chunk = check_positive_int("chunk", chunk)
    device = _model_device(model)
    a = {k: v.to(device) for k, v in state_a.items()}
    b = {k: v.to(device) for k, v in state_b.items()}
    dtype = next(iter(a.values())).dtype

    def make_chunk(start, stop):
        lam = torch.as_tensor(lambdas[start:stop], dtype=dtype, device=device)
        return {k: (1.0 - lam).reshape(-1, *[1] * a[k].ndim) * a[k] + lam.reshape(-1, *[1] * a[k].ndim) * b[k]
                for k in a}

    evaluate = _StackedEvaluator(model, X, y, {}, batch_size, chunk, vectorize)
    loss, acc = evaluate(make_chunk, len(lambdas))
    return InterpolationCurve(lambdas, loss, acc, int(X.shape[0]))


def interpolation_curve_loop(model, state_a, state_b, lambdas, X, y, batch_size: int = 512) -> InterpolationCurve:
    """The plain reference of :func:`interpolation_curve`: for each lam, a copy of the model's
    state_dict with the parameters replaced by :func:`interpolate_states`, one ``load_state_dict``
    into a copy of the model, and a forward pass over (X, y) in batches.  Same arguments and result."""
    model, lambdas, X, y, batch_size = _prepare_curve(model, state_a, state_b, lambdas, X, y, batch_size,
                                                      "interpolation_curve_loop")
    work = copy.deepcopy(model).eval()
    loss, acc = np.zeros(len(lambdas)), np.zeros(len(lambdas))
    for i, lam in enumerate(lambdas):
        sd = {k: v.clone() for k, v in model.state_dict().items()}
        sd.update(interpolate_states(state_a, state_b, float(lam)))
        work.load_state_dict(sd)
        loss[i], acc[i] = _loop_evaluate(work, X, y, batch_size)
    return InterpolationCurve(lambdas, loss, acc, int(X.shape[0]))


def barrier(curve: InterpolationCurve, metric: str = "accuracy") -> float:
    """The performance barrier along an interpolation (Frankle et al. 2020): the largest drop below the
    straight line between the endpoints, over the grid points with lam in [0, 1],

        accuracy: max_lam [(1 - lam) acc(0) + lam acc(1) - acc(lam)]
        loss:     max_lam [L(lam) - ((1 - lam) L(0) + lam L(1))]

    >= 0 (the endpoints give 0); 0 means no barrier on the grid.  The grid must contain lam = 0 and 1.
    """
    if not isinstance(curve, InterpolationCurve):
        raise ValueError(f"curve must be an InterpolationCurve, got {type(curve).__name__}")
    metric = check_choice("metric", metric, ("accuracy", "loss"))
    lam = np.asarray(curve.lambdas, dtype=float)
    i0, i1 = np.flatnonzero(np.abs(lam) < 1e-12), np.flatnonzero(np.abs(lam - 1) < 1e-12)
    if len(i0) == 0 or len(i1) == 0:
        raise ValueError("barrier needs lam = 0 and lam = 1 in the curve's grid (curve.lambdas)")
    values = np.asarray(curve.accuracy if metric == "accuracy" else curve.loss, dtype=float)
    inside = (lam >= 0) & (lam <= 1)
    line = (1 - lam[inside]) * values[i0[0]] + lam[inside] * values[i1[0]]
    gap = line - values[inside] if metric == "accuracy" else values[inside] - line
    return float(max(gap.max(), 0.0))


# ============================================================================ rewinding
def _resolve_module(model, module, modules, state):
    if modules is None:
        modules = module_groups(model)
    modules = _check_modules(modules, state)
    if module not in modules:
        raise ValueError(f"module must be one of {list(modules)}; got {module!r}")
    return modules


def rewind_module(state_final, state_init, module, modules) -> dict[str, torch.Tensor]:
    """A state with the parameters of ``module`` (``modules[module]``) at their initial values
    (``state_init``) and every other parameter at its final value; tensors are copies."""
    _check_state_pair(state_final, state_init, ("state_final", "state_init"))
    modules = _check_modules(modules, state_final)
    if module not in modules:
        raise ValueError(f"module must be one of {list(modules)}; got {module!r}")
    rewound = set(modules[module])
    return {k: (state_init[k] if k in rewound else v).detach().clone() for k, v in state_final.items()}


@dataclass
class ModulePathCurve:
    """Loss, accuracy and zero-one error along theta_i^alpha = (1 - alpha) theta_i^0 + alpha theta_i^F of
    one module, the other modules at theta^F (alpha = 0: the module rewound, 1: the final network).
    alphas, loss, accuracy, error : (A,) arrays; module : its name; distance : ||theta_i^F - theta_i^0||_F."""

    module: str
    alphas: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    error: np.ndarray
    distance: float


def _module_tensors(model, state_init, state_final, module, modules, what):
    model = _check_model(model)
    _refuse_running_statistics(model, what)
    _check_model_state(model, state_init, "state_init")
    _check_model_state(model, state_final, "state_final")
    modules = _resolve_module(model, module, modules, state_final)
    device = _model_device(model)
    names = modules[module]
    theta0 = {k: state_init[k].to(device) for k in names}
    thetaF = {k: state_final[k].to(device) for k in names}
    fixed = {k: v.to(device) for k, v in state_final.items() if k not in set(names)}
    distance = math.sqrt(_frobenius_sq(thetaF, theta0, names))
    return model, names, theta0, thetaF, fixed, distance


def module_path_curve(model, state_init, state_final, module, alphas, X, y, modules=None, batch_size: int = 512,
                      chunk: int = 8, vectorize: str = "auto") -> ModulePathCurve:
    """Loss / accuracy / zero-one error on (X, y) along the straight path of one module from its initial
    to its final value, theta_i^alpha = (1 - alpha) theta_i^0 + alpha theta_i^F, every other parameter at
    theta^F (the slides' "convex combination path from final to initial value of modules"; alpha = 0 is
    rewinding).  alphas : any finite reals (usually [0, 1]); vectorised over alpha (vmap, ``chunk`` at a
    time; ``vectorize`` as in :func:`interpolation_curve`).  modules : dict module -> parameter names, default
    ``module_groups(model)``."""
    model, names, theta0, thetaF, fixed, distance = _module_tensors(model, state_init, state_final, module, modules,
                                                                    "module_path_curve")
    alphas = _grid("alphas", alphas)
    X, y = _check_data(X, y)
    batch_size = check_positive_int("batch_size", batch_size)
    chunk = check_positive_int("chunk", chunk)
    dtype, device = theta0[names[0]].dtype, theta0[names[0]].device

    def make_chunk(start, stop):
        al = torch.as_tensor(alphas[start:stop], dtype=dtype, device=device)
        return {k: (1 - al).reshape(-1, *[1] * theta0[k].ndim) * theta0[k] + al.reshape(-1, *[1] * theta0[k].ndim)
                * thetaF[k] for k in names}

    loss, acc = _StackedEvaluator(model, X, y, fixed, batch_size, chunk, vectorize)(make_chunk, len(alphas))
    return ModulePathCurve(module, alphas, loss, acc, 1.0 - acc, distance)


# ============================================================================ criticality
@dataclass
class ModuleCriticality:
    """The result of :func:`module_criticality` for one module.

    mu : mu_i(eps) (``math.inf`` when no (alpha, sigma) on the search grid meets the constraint).
    alpha, sigma : the minimiser (None when infeasible); noisy_error : its Monte-Carlo E_u[L_S] (None
        when infeasible).  feasible : whether any point met the constraint; message : why not.
    distance : ||theta_i^F - theta_i^0||_F; n_params : k_i; epsilon, noise, n_noise, seed as given.
    alphas : (A,) the alpha grid; sigma_feasible : (A,) for each alpha the largest sigma found feasible
        (0.0 if none); sigma_infeasible : (A,) the smallest sigma found infeasible (inf if none; the
        bisection bracket is [sigma_feasible, sigma_infeasible]); objective : (A,)
        alpha^2 distance^2 / sigma_feasible^2 (inf where infeasible or pruned before feasibility).
    evaluations : (E, 3) every evaluated point (alpha, sigma, Monte-Carlo noisy zero-one error).
    """

    module: str
    epsilon: float
    mu: float
    alpha: float | None
    sigma: float | None
    noisy_error: float | None
    feasible: bool
    message: str
    distance: float
    n_params: int
    noise: str
    n_noise: int
    seed: int
    alphas: np.ndarray = field(repr=False)
    sigma_feasible: np.ndarray = field(repr=False)
    sigma_infeasible: np.ndarray = field(repr=False)
    objective: np.ndarray = field(repr=False)
    evaluations: np.ndarray = field(repr=False)


def module_criticality(model, state_init, state_final, module, X, y, epsilon, *,
                       alphas=np.linspace(0.0, 1.0, 11), sigma_steps: int = 8, sigma_min: float = 1e-4,
                       n_noise: int = 8, seed: int = 0, noise: str = "absolute", modules=None,
                       batch_size: int = 512, chunk: int = 16, prune: bool = True,
                       vectorize: str = "auto") -> ModuleCriticality:
    """Module criticality (Chatterji, Neyshabur & Sedghi 2020; slides of Neyshabur, Sedghi & Zhang 2020):

        mu_i(eps) = min_{0 <= alpha, sigma <= 1} alpha^2 ||theta_i^F - theta_i^0||_F^2 / sigma^2
                    subject to  E_{u ~ N(0, sigma^2 I)} [L_S(f(theta_i^alpha + u, Theta^F_{-i}))] <= eps,

    theta_i^alpha = (1 - alpha) theta_i^0 + alpha theta_i^F, L_S the empirical zero-one loss on (X, y),
    the other modules at their final values.

    model, state_init, state_final : the network and its two states (exactly its parameters).
    module : a key of ``modules`` (default ``module_groups(model)``).  X (n, ...), y (n,).
    epsilon : in [0, 1], the allowed noisy training error.
    alphas : the alpha grid, values in [0, 1], must contain 1 (default 0, 0.1, ..., 1).
    sigma_steps : bisection steps per alpha (default 8); sigma_min : the smallest sigma tried (default
        1e-4; the definition's sigma -> 0 is replaced by sigma >= sigma_min).
    n_noise : Monte-Carlo draws of u (default 8).  Draw r is the standard normal z_r from
        ``stream(seed, "landscape.criticality." + module, r)``, shared by every (alpha, sigma) (common
        random numbers: the estimate is a deterministic function of (alpha, sigma)); u = sigma z_r.
    noise : "absolute" (default, the definition: u ~ N(0, sigma^2 I)) or "relative" (the slides'
        extension, "noise proportional to the Frobenius norm of the weight matrix":
        u ~ N(0, sigma^2 ||theta_i^alpha||_F^2 / k_i I), k_i the module's number of parameters).
    batch_size, chunk : inputs and (alpha, draw) settings evaluated at once; vectorize : as in
        :func:`interpolation_curve`.  prune : skip an alpha whose
        smallest possible objective (alpha^2 d^2 / sigma_upper^2) cannot beat the best found (exact under
        the assumption below; False evaluates every alpha to the end, e.g. to plot sigma*(alpha)).

    Search.  The objective falls as sigma grows, so for each alpha the best sigma is the largest feasible
    one.  Assuming the noisy error grows with sigma (checked on the slides' ResNets, not guaranteed),
    it is found by bisection in log sigma on [sigma_min, 1]: sigma_min is tried first (infeasible: that
    alpha is infeasible), then sigma = 1 (feasible: done), then ``sigma_steps`` halvings of the log
    bracket.  The reported sigma is the largest one *verified* feasible, so mu is attained by an
    evaluated point (an upper bound of the grid optimum, within the bracket's resolution).  All active
    alphas x n_noise draws of a step are evaluated at once with vmap.  alpha = 0 (rewinding) feasible
    gives mu = 0.  If nothing is feasible (e.g. eps below the noisy error at alpha = 1, sigma_min), mu
    is inf, ``feasible`` False, and a warning says so; never NaN.
    """
    model, names, theta0, thetaF, fixed, distance = _module_tensors(model, state_init, state_final, module, modules,
                                                                    "module_criticality")
    X, y = _check_data(X, y)
    epsilon = check_real_in("epsilon", epsilon, 0.0, 1.0)
    alphas = np.unique(_grid("alphas", alphas, 0.0, 1.0))
    if not np.any(alphas == 1.0):
        raise ValueError("alphas must contain 1 (the final value of the module)")
    sigma_steps = check_positive_int("sigma_steps", sigma_steps, minimum=0)
    sigma_min = check_real_in("sigma_min", sigma_min, 1e-12, 1.0)
    if sigma_min >= 1.0:
        raise ValueError("sigma_min must be < 1")
    n_noise = check_positive_int("n_noise", n_noise)
    seed = check_seed("seed", seed)
    noise = check_choice("noise", noise, ("absolute", "relative"))
    batch_size = check_positive_int("batch_size", batch_size)
    chunk = check_positive_int("chunk", chunk)
    prune = check_bool("prune", prune)
    if not isinstance(module, str):
        raise ValueError(f"module must be a module name (str), got {module!r}")

    device = theta0[names[0]].device
    dtype = theta0[names[0]].dtype
    k_i = int(sum(theta0[k].numel() for k in names))
    z = {k: [] for k in names}
    for r in range(n_noise):
        g = stream(seed, "landscape.criticality." + module, r)
        for k in names:   # one generator per draw, parameters in module order
            z[k].append(torch.randn(theta0[k].shape, generator=g, dtype=torch.float64))
    z = {k: torch.stack(v).to(device=device, dtype=dtype) for k, v in z.items()}      # (R, *shape)

    A = len(alphas)
    theta_alpha_norm = np.zeros(A)
    for j, a in enumerate(alphas):
        theta_alpha_norm[j] = math.sqrt(sum(float(torch.sum(((1 - a) * theta0[k].double() + a * thetaF[k].double())
                                                            ** 2)) for k in names))
    scale = np.ones(A) if noise == "absolute" else theta_alpha_norm / math.sqrt(k_i)
    evaluate = _StackedEvaluator(model, X, y, fixed, batch_size, chunk, vectorize)
    records: list[tuple[float, float, float]] = []

    def noisy_error(idx: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        """Mean over draws of the zero-one error at (alphas[idx], sigmas), one value per index."""
        P = len(idx) * n_noise
        al_all = np.repeat(alphas[idx], n_noise)
        sd_all = np.repeat(sigmas * scale[idx], n_noise)
        draw_all = np.tile(np.arange(n_noise), len(idx))

        def make_chunk(start, stop):
            al = torch.as_tensor(al_all[start:stop], dtype=dtype, device=device)
            sd = torch.as_tensor(sd_all[start:stop], dtype=dtype, device=device)
            dr = torch.as_tensor(draw_all[start:stop], device=device)
            out = {}
            for k in names:
                shape = (-1,) + (1,) * theta0[k].ndim
                out[k] = ((1 - al).reshape(shape) * theta0[k] + al.reshape(shape) * thetaF[k]
                          + sd.reshape(shape) * z[k][dr])
            return out

        _, acc = evaluate(make_chunk, P, want_loss=False)
        err = (1.0 - acc).reshape(len(idx), n_noise).mean(axis=1)
        records.extend(zip(alphas[idx].tolist(), sigmas.tolist(), err.tolist()))
        return err

    lo = np.zeros(A)              # largest sigma verified feasible (0: none)
    hi = np.full(A, np.inf)       # smallest sigma verified infeasible
    active = np.ones(A, dtype=bool)
    d2 = distance ** 2

    def best_mu():
        feas = lo > 0
        return float(np.min(alphas[feas] ** 2 * d2 / lo[feas] ** 2)) if feas.any() else math.inf

    def prune_hopeless():
        """Stop the alphas that cannot beat the best objective found: even at sigma = min(hi, 1) (the
        largest sigma not yet ruled out) their objective alpha^2 d^2 / sigma^2 is >= the best one."""
        if not prune:
            return
        bound = alphas ** 2 * d2 / np.minimum(hi, 1.0) ** 2
        active[:] &= ~(bound >= best_mu())

    # 1. sigma = sigma_min: an alpha infeasible there is infeasible (under the monotonicity assumption);
    #    alpha = 0 feasible gives mu = 0 and prunes every other alpha at once
    idx = np.flatnonzero(active)
    err = noisy_error(idx, np.full(len(idx), sigma_min))
    ok = err <= epsilon
    lo[idx[ok]] = sigma_min
    hi[idx[~ok]] = sigma_min
    active[idx[~ok]] = False
    prune_hopeless()
    # 2. sigma = 1 for the alphas still in play
    idx = np.flatnonzero(active)
    if len(idx):
        err = noisy_error(idx, np.ones(len(idx)))
        ok = err <= epsilon
        lo[idx[ok]] = 1.0
        hi[idx[~ok]] = 1.0
        active[idx[ok]] = False
        prune_hopeless()
    # 3. bisection in log sigma on [lo, hi]
    for _ in range(sigma_steps):
        idx = np.flatnonzero(active & (lo > 0) & np.isfinite(hi))
        if not len(idx):
            break
        mid = np.sqrt(lo[idx] * hi[idx])
        err = noisy_error(idx, mid)
        ok = err <= epsilon
        lo[idx[ok]] = mid[ok]
        hi[idx[~ok]] = mid[~ok]
        prune_hopeless()

    feasible_alpha = lo > 0
    objective = np.full(A, np.inf)
    objective[feasible_alpha] = alphas[feasible_alpha] ** 2 * d2 / lo[feasible_alpha] ** 2
    evaluations = np.asarray(records, dtype=float).reshape(-1, 3)
    common = dict(module=module, epsilon=epsilon, distance=distance, n_params=k_i, noise=noise, n_noise=n_noise,
                  seed=seed, alphas=alphas, sigma_feasible=lo.copy(), sigma_infeasible=hi.copy(),
                  objective=objective, evaluations=evaluations)
    if not feasible_alpha.any():
        message = (f"no (alpha, sigma) with sigma in [{sigma_min:g}, 1] meets E_u[L_S] <= epsilon = {epsilon:g} "
                   f"for module {module!r} (the noisy zero-one error at alpha = 1, sigma = {sigma_min:g} exceeds "
                   f"it); mu = inf")
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return ModuleCriticality(mu=math.inf, alpha=None, sigma=None, noisy_error=None, feasible=False,
                                 message=message, **common)
    j = int(np.argmin(objective))
    match = [e for (a, s, e) in records if a == alphas[j] and s == lo[j]]
    return ModuleCriticality(mu=float(objective[j]), alpha=float(alphas[j]), sigma=float(lo[j]),
                             noisy_error=float(min(match)), feasible=True, message="", **common)


def module_criticalities(model, state_init, state_final, X, y, epsilon, modules=None,
                         **kwargs) -> dict[str, ModuleCriticality]:
    """:func:`module_criticality` for every module of ``modules`` (default ``module_groups(model)``), in
    order: ``{module: ModuleCriticality}``.  Keyword arguments are passed on (the same ``seed`` gives each
    module its own noise stream, keyed by the module's name)."""
    model = _check_model(model)
    if modules is None:
        modules = module_groups(model)
    modules = _check_modules(modules, state_final)
    return {module: module_criticality(model, state_init, state_final, module, X, y, epsilon, modules=modules,
                                       **kwargs) for module in modules}


def _criticality_value(mu, not_a_number: str, negative: str) -> float:
    """``mu`` as a float >= 0 (inf allowed); ValueError ``not_a_number`` if it is not a number,
    ``negative.format(mu)`` if it is NaN or negative."""
    try:
        mu = float(mu)
    except (TypeError, ValueError):
        raise ValueError(not_a_number) from None
    if math.isnan(mu) or mu < 0:
        raise ValueError(negative.format(mu))
    return mu


def network_criticality(criticalities) -> float:
    """Network criticality mu(eps) = sum_i mu_i(eps) over modules.  ``criticalities`` : a dict or list
    of :class:`ModuleCriticality` or of numbers >= 0; inf if any module is infeasible."""
    values = list(criticalities.values()) if isinstance(criticalities, dict) else list(criticalities)
    if not values:
        raise ValueError("criticalities must hold at least one module criticality")
    total = 0.0
    for v in values:
        total += _criticality_value(v.mu if isinstance(v, ModuleCriticality) else v,
                                    f"criticalities must be ModuleCriticality results or numbers >= 0, got {v!r}",
                                    "criticalities must be >= 0 (inf allowed), got {}")
    return total


def _per_module(name: str, values, d: int | None) -> np.ndarray:
    arr = _grid(name, values)
    if d is not None and len(arr) != d:
        raise ValueError(f"{name} must have one value per module ({d}), got {len(arr)}")
    return arr


def pac_bayes_bound(noisy_train_error, alphas, sigmas, distances, n_params, m, delta: float = 0.05) -> float:
    """The right-hand side of the theorem slide (Neyshabur, Sedghi & Zhang 2020; Chatterji et al. 2020):

        E_U[L_S] + sqrt( (1/4 sum_i k_i log(1 + alpha_i^2 d_i^2 / (k_i sigma_i^2)) + log(m / delta)) / (m - 1) ),

    an upper bound, with probability 1 - delta, on the expected test zero-one error of the noisy network
    Theta^alpha + U, U_i ~ N(0, sigma_i^2 I) (the "absolute" noise of :func:`module_criticality`).  The
    theorem's O~(1) term is dropped, so this is the bound up to that term.

    noisy_train_error : E_U[L_S] in [0, 1].  alphas (in [0, 1]), sigmas (in (0, 1]), distances
    d_i = ||theta_i^F - theta_i^0||_F (>= 0), n_params k_i (integers >= 1): one value per module.
    m : training-set size (integer >= 2); delta in (0, 1), default 0.05.
    """
    err = check_real_in("noisy_train_error", noisy_train_error, 0.0, 1.0)
    alphas = _per_module("alphas", alphas, None)
    d = len(alphas)
    sigmas = _per_module("sigmas", sigmas, d)
    distances = _per_module("distances", distances, d)
    k = _per_module("n_params", n_params, d)
    if alphas.min() < 0 or alphas.max() > 1:
        raise ValueError(f"alphas must lie in [0, 1], got {alphas}")
    if sigmas.min() <= 0 or sigmas.max() > 1:
        raise ValueError(f"sigmas must lie in (0, 1], got {sigmas}")
    if distances.min() < 0:
        raise ValueError(f"distances must be >= 0, got {distances}")
    if k.min() < 1 or np.any(k != np.round(k)):
        raise ValueError(f"n_params must be integers >= 1, got {k}")
    m = check_positive_int("m", m, minimum=2)
    delta = check_real_in("delta", delta, 0.0, 1.0)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta:g}")
    kl = 0.25 * float(np.sum(k * np.log1p(alphas ** 2 * distances ** 2 / (k * sigmas ** 2))))
    return err + math.sqrt((kl + math.log(m / delta)) / (m - 1))


def criticality_bound(epsilon, mu, m, delta: float = 0.05) -> float:
    """The slides' simplified bound: test error <~ eps + sqrt((mu(eps) / 4 + log(m / delta)) / m), for a
    network whose (noisy) training error is at most eps and whose network criticality is mu(eps).
    epsilon in [0, 1]; mu >= 0 (inf gives inf: the bound is vacuous); m integer >= 1; delta in (0, 1)."""
    epsilon = check_real_in("epsilon", epsilon, 0.0, 1.0)
    mu = _criticality_value(mu, f"mu must be a number >= 0, got {mu!r}", "mu must be a number >= 0 (inf allowed), got {}")
    m = check_positive_int("m", m)
    delta = check_real_in("delta", delta, 0.0, 1.0)
    if not 0 < delta < 1:
        raise ValueError(f"delta must be in (0, 1), got {delta:g}")
    if math.isinf(mu):
        return math.inf
    return epsilon + math.sqrt((0.25 * mu + math.log(m / delta)) / m)
