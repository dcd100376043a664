"""Information geometry of probabilistic models in prediction space (Ramesh et al. 2023, "S").

A model trained on a task is read as the product distribution of its predictions on N fixed
samples, ``P_w(y_1..y_N) = prod_n p_w^n(y_n)`` (eq. 1 of S): an array of shape (N, C) whose rows
are probability vectors.  A stack of m models is an array (m, N, C).  This module holds the
kernels of Part S, written from the formulas of the paper:

``bhattacharyya_matrix``   pairwise sample-averaged Bhattacharyya distance, eq. (2), batched/chunked
``bhattacharyya``          the same distance between matching models (broadcast over leading axes)
``geodesic``               great-circle geodesic on the product of spheres, eq. (3)
``geodesic_pairs``         the same for L pairs of models at once, one lam per pair
``check_probabilities``    the shared input check: finite, >= 0, rows summing to 1
``reference_points``       the ignorance model P_0 (uniform rows) and the truth P_* (one-hot rows)
``progress``               progress t_w along the ignorance -> truth geodesic, eq. (4)
``interpolate_trajectory`` checkpoints -> points at a uniform grid of progress (text after eq. 4)
``trajectory_distance``    integral of d_B along two re-indexed trajectories, eq. (5)
``riemann_length``         Riemann length of a trajectory, eq. (6)
``mean_trajectory``, ``tube_radius``, ``normalized_distance``   App. G and Remark 5
``inpca``                  intensive PCA, eqs. (9)-(11) and App. F; ``InPCA.project`` places new points
``explained_stress_null``  chi_k of models whose samples are permuted independently: a null for eq. (11)
``symmetric_kl_matrix``    pairwise sample-averaged symmetric KL divergence (App. C), an alternative to d_B
``stochastic_projection``, ``inpca_projected``                  the projection trick of App. A.2

Comparing runs over the progress they both cover (unfolded progress, common ranges, families of
seeds) is :mod:`tasknb.trajectory_geometry`'s job.

Reading a network as such an array (softmax head, imprinted head of eqs. 7-8) is
:mod:`tasknb.readout`'s job; this module only measures points of prediction space.

Everything accepts NumPy arrays or torch tensors; heavy work runs in torch on
``tasknb.device.get_device()`` (CUDA when present, CPU otherwise).  Results come back as NumPy
arrays for NumPy inputs and as torch tensors for torch inputs.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from .device import as_tensor, get_device, like_input, numpy_stream, resolve_device
from .validation import (array_shape, check_choice, check_label_vector, check_positive_int, check_positive_real,
                         check_real_in, check_seed)

__all__ = [
    "PROB_ATOL",
    "PlacedInPCA",
    "inpca_with_placed",
    "bhattacharyya_matrix",
    "bhattacharyya",
    "geodesic",
    "geodesic_pairs",
    "check_probabilities",
    "reference_points",
    "progress",
    "interpolate_trajectory",
    "trajectory_distance",
    "riemann_length",
    "mean_trajectory",
    "tube_radius",
    "normalized_distance",
    "InPCA",
    "inpca",
    "explained_stress_null",
    "KL_EPS",
    "symmetric_kl_matrix",
    "stochastic_projection",
    "inpca_projected",
]

#: Rows of a probability array must sum to 1 within this absolute tolerance (float32 softmax
#: outputs of a thousand classes stay well inside it).
PROB_ATOL = 1e-4

# Per-sample Bhattacharyya coefficients are clamped to [_TINY, 1] before the logarithm, so a
# sample on which two models have disjoint support adds -log(_TINY) ~ 708.4 to N * d_B instead
# of infinity.  ``bhattacharyya_matrix`` multiplies _GROUP coefficients before taking one
# logarithm (log of a product = sum of logs: a quarter of the logarithms); groups whose product
# falls below _UNDERFLOW (float64) or _UNDERFLOW_FLOAT32 (a coefficient that small is rare) are
# redone sample by sample in float64 with the clamp, so the result is the per-sample clamped sum
# either way.  _GROUP must be a power of 2 (groups are formed by halving in place).  On the CPU a
# slice of samples holds at most _CPU_WORK coefficients of one tile (a buffer of a few MiB: larger
# ones cost memory traffic, smaller ones Python overhead per tile).
_GROUP = 4
_TINY = float(np.finfo(np.float64).tiny)
_UNDERFLOW = 1e-280
_UNDERFLOW_FLOAT32 = 1e-35
_CPU_WORK = 2**21
_NUMPY_FLOATS = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))  # native byte order
_SMALL_ANGLE = 1e-7


# ----------------------------------------------------------------------------- helpers
def _check_probs(name: str, t: torch.Tensor) -> None:
    """Raise ValueError unless ``t`` (..., C) holds finite, non-negative rows summing to 1.

    Fast path: one minimum and one row sum (NaN and inf propagate into both); the detailed
    diagnosis runs only when that fails.
    """
    if t.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(t.shape)}")
    lo = float(t.min())
    err = float((t.sum(-1, dtype=torch.float64) - 1).abs().max())
    if lo >= 0 and err <= PROB_ATOL:
        return
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must contain finite probabilities; it has NaN or inf entries")
    if lo < 0:
        raise ValueError(f"{name} must contain probabilities >= 0; its smallest entry is {lo:.3g}")
    raise ValueError(
        f"{name} rows (last axis, classes) must sum to 1 within {PROB_ATOL:g}; the worst row is off by {err:.3g}"
    )


def _check_ndim(name: str, shape, allowed: tuple[int, ...], what: str) -> None:
    if len(shape) not in allowed:
        raise ValueError(f"{name} must have shape {what}, got shape {shape}")


def _probs(name, x, device, ndims, what):
    shape = array_shape(name, x)
    _check_ndim(name, shape, ndims, what)
    t = as_tensor(x, device)
    _check_probs(name, t)
    return t


# ----------------------------------------------------------------------------- eq. (2)
def _compute_dtype(dtype, *arrays) -> torch.dtype:
    """The precision policy of ``bhattacharyya_matrix``: an explicit float32/float64, or (None)
    float32 when every input is stored in float32 or a narrower float type, else float64."""
    if dtype is not None:
        check_choice("dtype", dtype, (None, torch.float32, torch.float64))
        return dtype
    for x in arrays:
        narrow = x.dtype.is_floating_point and x.dtype.itemsize <= 4 if torch.is_tensor(x) else \
            np.dtype(x.dtype).kind == "f" and np.dtype(x.dtype).itemsize <= 4
        if not narrow:
            return torch.float64
    return torch.float32


def _slice_tensor(X, n0: int, n1: int, dev) -> torch.Tensor:
    """Samples n0:n1 of a stack (m, N, C) as a tensor on ``dev`` without a copy where possible."""
    t = X[:, n0:n1, :]
    if torch.is_tensor(t):
        return t.detach().to(dev)
    a = np.asarray(t)
    if a.dtype not in _NUMPY_FLOATS or not a.flags.writeable:  # torch cannot wrap it as it is
        a = np.array(a, dtype=a.dtype if a.dtype in _NUMPY_FLOATS else np.float64)
    return torch.from_numpy(a).to(dev)


def _check_row_sums(name: str, sums: torch.Tensor, raw_slice) -> None:
    """``sums`` (...,) of sum_c (sqrt p)^2 = sum_c p over rows of a slice: NaN/inf/negative entries
    make them NaN or inf (the square root of a negative number is NaN).  On failure the detailed
    diagnosis of ``_check_probs`` runs on the raw slice."""
    lo, hi = torch.aminmax(sums)
    if float(lo) >= 1 - PROB_ATOL and float(hi) <= 1 + PROB_ATOL:
        return
    _check_probs(name, raw_slice() if callable(raw_slice) else raw_slice)
    raise ValueError(f"{name} must contain probabilities (finite, >= 0, rows summing to 1 within {PROB_ATOL:g})")


def bhattacharyya_matrix(P, Q=None, *, chunk: int = 2**24, block: int | None = None, device=None, dtype=None):
    """Pairwise sample-averaged Bhattacharyya distance, eq. (2) of S.

    ``d_B(P_u, P_v) = -(1/N) sum_n log sum_c sqrt(p_u^n(c) p_v^n(c))``.

    Parameters
    ----------
    P : array (m, N, C)
        m models, each N rows of probabilities over C classes (NumPy, NumPy memmap or torch).
    Q : array (m', N, C), optional
        A second stack of models; ``None`` compares ``P`` with itself.
    chunk : int, default 2**24
        Largest number of per-sample coefficients held at once (2**24 float64 = 128 MiB).  Memory
        is bounded by about ``chunk`` coefficients plus the square roots of one slice of samples for
        all models (at most ``chunk`` numbers), whatever m and N are.  On the CPU a slice holds at
        most ``_CPU_WORK`` = 2**21 coefficients per tile (larger slices cost memory traffic,
        smaller ones Python overhead).
    block : int, optional
        Models per row block and per column block of the output.  Default: row blocks of
        ``min(128, max(16, ceil(m / 4)))`` models and column blocks of up to 1024.
    device : default ``get_device()`` (CUDA when present, else CPU; a CUDA tensor input keeps its GPU).
    dtype : None (default), ``torch.float32`` or ``torch.float64``
        Precision of the square roots, the per-sample coefficients and their logarithms within one
        slice of samples.  ``None``: float32 when P (and Q) are stored in float32 (or a narrower
        float type), float64 otherwise, so float64 input keeps float64 precision (1e-15).  The sum
        over slices is always accumulated in float64.  In float32 a coefficient is accurate to
        ~1e-7 relative (it lies in [0, 1]) and the distances agree with the float64 ones within
        ``1e-6 * (1 + d_B)`` (measured: below ``1e-7 * (1 + d_B)``; ``tests/test_geometry.py``
        checks the stated bound).  Coefficients below 1e-35 are recomputed in float64 (see Method),
        so tiny overlaps and disjoint supports count as they do in float64.

    Returns
    -------
    D : (m, m') float64 (NumPy for NumPy input, torch for torch input).  With ``Q=None`` it is
    exactly symmetric with a zero diagonal.  All entries are >= 0 and finite.

    Method: the input is read one slice of samples at a time (so a memmap never has to fit in
    memory) and its square roots are taken once for all models.  The output is cut into tiles of
    a row block by a column block (with ``Q=None`` only tiles on or above the diagonal: a row block
    starting at model i is paired with models i..m-1); a tile's per-sample coefficients are one
    batched matmul over C (samples as the batch) into a reused buffer.  They are multiplied in
    groups of ``_GROUP`` = 4 samples (log of a product = sum of logs: a quarter of the
    logarithms), the group products clamped to at most 1, logged and summed over the slice, and
    the slice's sum added to the float64 output.  Each coefficient counts as clamped to [tiny, 1],
    tiny = 2.2e-308: a group whose product falls below 1e-280 (float64) or 1e-35 (float32) is
    redone sample by sample in float64 with the clamp, so a sample with disjoint supports adds
    -log(tiny) = 708.4 to N * d_B.  Validation: with ``Q=None`` the diagonal of each diagonal tile
    is sum_c p(c) of every row (NaN or inf for NaN, inf or negative entries), checked for every
    slice (finite, >= 0, rows sum to 1 within ``PROB_ATOL``); with ``Q`` each slice is checked
    before its square root.
    """
    P_shape = array_shape("P", P)
    _check_ndim("P", P_shape, (3,), "(m, N, C)")
    sym = Q is None
    if not sym:
        Q_shape = array_shape("Q", Q)
        _check_ndim("Q", Q_shape, (3,), "(m', N, C)")
        if Q_shape[1:] != P_shape[1:]:
            raise ValueError(f"Q must have the same (N, C) as P, got Q {Q_shape} and P {P_shape}")
    else:
        Q_shape = P_shape
    chunk = check_positive_int("chunk", chunk)
    if block is not None:
        block = check_positive_int("block", block)
    dtype = _compute_dtype(dtype, P) if sym else _compute_dtype(dtype, P, Q)
    m, N, C = P_shape
    mq = Q_shape[0]
    if m == 0 or mq == 0 or N == 0 or C == 0:
        raise ValueError(f"P and Q must have at least one model, sample and class, got {P_shape} and {Q_shape}")
    dev = resolve_device(device, P, Q)
    like_torch = torch.is_tensor(P)

    if block is None:
        br, bcol = min(m, 128, max(16, -(-m // 4))), min(mq, 1024)
    else:
        br, bcol = min(m, block), min(mq, block)
    # samples per slice: the coefficient buffer (n, br, bcol) within ``chunk`` (and _CPU_WORK on
    # the CPU) and the square roots (n, m + m', C) within ``chunk``; n is a multiple of _GROUP.
    work = chunk if dev.type != "cpu" else min(chunk, _CPU_WORK)
    n_s = min(work // (br * bcol), chunk // ((m + (0 if sym else mq)) * C))
    n_s = max(_GROUP, (n_s // _GROUP) * _GROUP)
    n_s = min(n_s, -(-N // _GROUP) * _GROUP)
    sbuf_P = torch.empty(m * n_s * C, dtype=dtype, device=dev)
    sbuf_Q = sbuf_P if sym else torch.empty(mq * n_s * C, dtype=dtype, device=dev)
    buf = torch.empty(n_s * br * bcol, dtype=dtype, device=dev)
    out = torch.zeros((m, mq), dtype=torch.float64, device=dev)
    tiles = [(i0, min(i0 + br, m), j0, min(j0 + bcol, mq))
             for i0 in range(0, m, br) for j0 in range(i0 if sym else 0, mq, bcol)]
    underflow = _UNDERFLOW if dtype == torch.float64 else _UNDERFLOW_FLOAT32
    group_offsets = torch.arange(_GROUP, device=dev)

    def sqrt_slice(name, X, sbuf, n0, n1, check):
        raw = _slice_tensor(X, n0, n1, dev)
        s = sbuf[: raw.numel()].view(raw.shape)
        if check:  # rows validated before the square root (Q given)
            s.copy_(raw)
            _check_row_sums(name, s.view(-1, C).sum(-1), raw)
            return s.sqrt_()
        return torch.sqrt(raw, out=s) if raw.dtype == dtype else s.copy_(raw).sqrt_()

    for n0 in range(0, N, n_s):
        n1 = min(N, n0 + n_s)
        n = n1 - n0
        ng = -(-n // _GROUP)  # groups of this slice; samples k + q * ng (q < _GROUP) form group k
        sP = sqrt_slice("P", P, sbuf_P, n0, n1, not sym)  # (m, n, C)
        sQ = sP if sym else sqrt_slice("Q", Q, sbuf_Q, n0, n1, True)
        for i0, i1, j0, j1 in tiles:
            a, b = i1 - i0, j1 - j0
            bc = buf[: ng * _GROUP * a * b].view(ng * _GROUP, a, b)
            torch.bmm(sP[i0:i1].transpose(0, 1), sQ[j0:j1].permute(1, 2, 0), out=bc[:n])
            if sym and j0 == i0:  # the diagonal: sum_c p(c) of every row of models i0..i1-1
                _check_row_sums("P", bc[:n].diagonal(dim1=1, dim2=2), lambda: _slice_tensor(P, n0, n1, dev))
            if n < ng * _GROUP:  # pad the last group with coefficient 1 (log 1 = 0)
                bc[n:].fill_(1.0)
            g, k = bc, ng * _GROUP
            while k > ng:  # halve in place: g[k'] *= g[k' + k/2], _GROUP = 2^L samples per group
                k //= 2
                g = g[:k].mul_(g[k:2 * k])
            lo, hi = torch.aminmax(g)
            if float(hi) > 1.0:
                g.clamp_(max=1.0)
            has_low = float(lo) < underflow
            if has_low:
                gk, gi, gj = (g < underflow).nonzero(as_tuple=True)
            g.log_()
            if has_low:  # redo those groups sample by sample in float64 with the clamp to [tiny, 1]
                g[gk, gi, gj] = 0.0
                samples = gk[:, None] + ng * group_offsets  # (L, _GROUP)
                real = samples < n
                samples = samples.clamp(max=n - 1)
                coef = (sP[(i0 + gi)[:, None], samples].double() * sQ[(j0 + gj)[:, None], samples].double()).sum(-1)
                logs = torch.where(real, coef.clamp(min=_TINY, max=1.0).log(), 0.0).sum(-1)
                out.index_put_((i0 + gi, j0 + gj), -logs, accumulate=True)
            out[i0:i1, j0:j1] -= g.sum(0)

    out /= N
    if sym:
        up = torch.triu(out, diagonal=1)
        out = up + up.T
    return like_input(out, like_torch)


def bhattacharyya(P, Q, *, device=None):
    """Bhattacharyya distance of eq. (2) of S between matching models (no pairing of all with all).

    ``P`` and ``Q`` of shapes (..., N, C) that broadcast against each other; returns the
    distances of shape (...) (a float for two single models).  Coefficients are clamped to
    (tiny, 1] as in ``bhattacharyya_matrix``; accumulation is float64.
    """
    dev = resolve_device(device, P, Q)
    for name, x in (("P", P), ("Q", Q)):
        if len(array_shape(name, x)) < 2:
            raise ValueError(f"{name} must have shape (..., N, C), got shape {array_shape(name, x)}")
    if array_shape("P", P)[-2:] != array_shape("Q", Q)[-2:]:
        raise ValueError(f"P and Q must share (N, C), got {array_shape('P', P)} and {array_shape('Q', Q)}")
    tP, tQ = as_tensor(P, dev), as_tensor(Q, dev)
    _check_probs("P", tP)
    _check_probs("Q", tQ)
    d = _bhat_paired(tP, tQ)
    like_torch = torch.is_tensor(P) or torch.is_tensor(Q)
    if d.ndim == 0 and not like_torch:
        return float(d)
    return like_input(d, like_torch)


def _bhat_paired(tP: torch.Tensor, tQ: torch.Tensor) -> torch.Tensor:
    bc = (tP.sqrt() * tQ.sqrt()).sum(-1).clamp(min=_TINY, max=1.0)
    return -bc.log().mean(-1)


# ----------------------------------------------------------------------------- eq. (3)
def _slerp_sqrt(sP: torch.Tensor, sQ: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Great-circle points between unit vectors sP, sQ (..., N, C) at lam (L,) -> (L, ..., N, C)."""
    return _slerp_core(sP, sQ, lam.reshape((-1,) + (1,) * sP.ndim))


def _slerp_core(sP: torch.Tensor, sQ: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Great-circle points between unit vectors sP, sQ (..., C) at ``lam`` broadcastable against them."""
    cos = (sP * sQ).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    theta = torch.arccos(cos)
    sin = torch.sin(theta)
    small = theta < _SMALL_ANGLE
    safe = torch.where(small, torch.ones_like(sin), sin)
    wa = torch.where(small, 1 - lam, torch.sin((1 - lam) * theta) / safe)
    wb = torch.where(small, lam, torch.sin(lam * theta) / safe)
    z = wa * sP + wb * sQ
    return z / z.norm(dim=-1, keepdim=True)  # remove rounding; exact value already has norm 1


def geodesic(P, Q, lam, *, device=None):
    """Point(s) on the geodesic from P to Q in prediction space, eq. (3) of S.

    For each sample n the vector sqrt(p^n) lies on the unit sphere in R^C; the geodesic of the
    Fisher metric is the great circle, per sample:

        sqrt(p^n_lam) = [sin((1-lam) d^n) sqrt(p^n) + sin(lam d^n) sqrt(q^n)] / sin(d^n),
        d^n = arccos(sum_c sqrt(p^n(c) q^n(c))).

    Samples where sqrt(p^n) and sqrt(q^n) coincide (d^n < 1e-7) use the limit (1-lam, lam)
    weights.  The result is renormalised so every row sums to 1 to machine precision.

    Parameters: P, Q of shape (N, C); ``lam`` a scalar in [0, 1] -> returns (N, C), or a 1-D
    array of values in [0, 1] -> returns (len(lam), N, C).  Probabilities, float64.
    """
    dev = resolve_device(device, P, Q)
    tP = _probs("P", P, dev, (2,), "(N, C)")
    tQ = _probs("Q", Q, dev, (2,), "(N, C)")
    if tP.shape != tQ.shape:
        raise ValueError(f"P and Q must have the same shape (N, C), got {tuple(tP.shape)} and {tuple(tQ.shape)}")
    scalar = isinstance(lam, numbers.Real) or (np.ndim(lam) == 0 and not torch.is_tensor(lam)) or (
        torch.is_tensor(lam) and lam.ndim == 0
    )
    lam_arr = np.atleast_1d(np.asarray(lam.cpu() if torch.is_tensor(lam) else lam, dtype=np.float64))
    if lam_arr.ndim != 1 or lam_arr.size == 0:
        raise ValueError(f"lam must be a number or a non-empty 1-D array in [0, 1], got shape {lam_arr.shape}")
    if not np.all(np.isfinite(lam_arr)) or lam_arr.min() < 0 or lam_arr.max() > 1:
        raise ValueError(f"lam must be in [0, 1], got values from {lam_arr.min():g} to {lam_arr.max():g}")
    z = _slerp_sqrt(tP.sqrt(), tQ.sqrt(), torch.as_tensor(lam_arr, device=dev))
    out = z * z
    if scalar:
        out = out[0]
    return like_input(out, torch.is_tensor(P) or torch.is_tensor(Q))


def geodesic_pairs(P, Q, lam, *, device=None):
    """Points on the geodesics between matching pairs of models, eq. (3) of S, one lam per pair.

    ``P``, ``Q`` of shape (L, N, C): L pairs of models; ``lam`` (L,) values in [0, 1].  Row l of
    the result is ``geodesic(P[l], Q[l], lam[l])``, computed for all pairs at once (one batched
    great-circle step, no loop): (L, N, C) probabilities, float64 (NumPy, or torch for torch input).
    """
    dev = resolve_device(device, P, Q)
    tP = _probs("P", P, dev, (3,), "(L, N, C)")
    tQ = _probs("Q", Q, dev, (3,), "(L, N, C)")
    if tP.shape != tQ.shape:
        raise ValueError(f"P and Q must have the same shape (L, N, C), got {tuple(tP.shape)} and {tuple(tQ.shape)}")
    lam_arr = np.asarray(lam.detach().cpu() if torch.is_tensor(lam) else lam, dtype=np.float64)
    if lam_arr.shape != (tP.shape[0],):
        raise ValueError(f"lam must have one value per pair, shape ({tP.shape[0]},), got shape {lam_arr.shape}")
    if not np.all(np.isfinite(lam_arr)) or lam_arr.min() < 0 or lam_arr.max() > 1:
        raise ValueError(f"lam must be in [0, 1], got values from {lam_arr.min():g} to {lam_arr.max():g}")
    lam_t = torch.as_tensor(lam_arr, device=dev).reshape(-1, 1, 1)
    z = _slerp_core(tP.sqrt(), tQ.sqrt(), lam_t)
    return like_input(z * z, torch.is_tensor(P) or torch.is_tensor(Q))


def check_probabilities(name: str, x, *, shape: str, device=None) -> torch.Tensor:
    """``x`` (NumPy array or torch tensor) as a float64 tensor on ``device``, checked as probabilities.

    ``shape`` names the axes, e.g. ``"(K, T, N, C)"``: the number of axes must match it.  Raises
    ValueError naming ``name`` unless every entry is finite and >= 0 and every row (last axis)
    sums to 1 within ``PROB_ATOL``.  The check other kernels of prediction space share.
    """
    if not isinstance(shape, str) or not shape.startswith("(") or not shape.endswith(")"):
        raise ValueError(f"shape must name the axes like '(T, N, C)', got {shape!r}")
    ndim = len([a for a in shape[1:-1].split(",") if a.strip()])
    return _probs(name, x, resolve_device(device, x), (ndim,), shape)


# ----------------------------------------------------------------------------- eq. (4)
def reference_points(labels, n_classes: int, *, clip: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The two ends of the geodesic of eq. (4) of S for the labels of N samples.

    ``P0`` (N, C): the ignorance model, every row uniform (1/C); ``Pstar`` (N, C): the truth, row n
    the one-hot vector of ``labels[n]``.  ``labels`` (N,) integers in [0, n_classes - 1] (NumPy or
    torch); ``n_classes`` C >= 2.  With ``clip`` (a float in (0, 1)) every entry of P_* is raised to
    at least ``clip`` and the rows renormalised (a truth with no exact zeros); default None, exact
    one-hot rows.  Returns float64 NumPy arrays (P0, Pstar).
    """
    C = check_positive_int("n_classes", n_classes, minimum=2)
    lab = labels.detach().cpu().numpy() if torch.is_tensor(labels) else np.asarray(labels)
    if lab.ndim != 1 or lab.size == 0:
        raise ValueError(f"labels must be a non-empty 1-D array of integers in [0, {C - 1}], got shape {lab.shape}")
    check_label_vector(lab, lab.shape[0], C, "cpu")
    P0 = np.full((lab.shape[0], C), 1.0 / C)
    Pstar = np.eye(C)[lab]
    if clip is not None:
        clip = check_real_in("clip", clip, 0.0, 1.0)
        Pstar = np.clip(Pstar, clip, None)
        Pstar /= Pstar.sum(-1, keepdims=True)
    return P0, Pstar


def progress(P, labels, *, tol: float = 1e-10, device=None):
    """Progress t_w of eq. (4) of S: where along the ignorance -> truth geodesic a model sits.

    ``t_w = argmin_{lam in [0,1]} d_B(P_w, P_{0,*}^lam)`` with P_0 the uniform model (1/C
    everywhere), P_* the one-hot model of ``labels`` and P^lam the geodesic of eq. (3).

    Parameters: ``P`` of shape (m, N, C) or (N, C); ``labels`` integers (N,) in [0, C-1];
    ``tol`` the width of the final bracket (default 1e-10).  Returns (m,) values in [0, 1]
    (a float for one model; NumPy, or torch for torch input).  Needs C >= 2.

    Reduction: per sample the geodesic's amplitude is u(lam) = cos(lam th) u0 + sin(lam th) v
    with u0 = 1/sqrt(C), th = arccos(1/sqrt(C)) and v the unit vector towards e_y orthogonal to
    u0, so the coefficient with the model is g_n(lam) = a_n cos(lam th) + b_n sin(lam th), where
    a_n = sum_c sqrt(p_n(c)) / sqrt(C) and b_n = (sqrt(p_n(y_n)) - a_n / sqrt(C)) / sin th.
    The objective f(lam) = -(1/N) sum_n log g_n(lam) needs two numbers per sample.

    Unimodality: g_n(lam) = R_n cos(lam th - phi_n) is positive on [0, 1) (both unit vectors lie
    in the non-negative orthant and a_n > 0), and log cos is concave where positive, so f is
    convex on [0, 1]: its derivative f'(lam) = -(1/N) sum_n g_n'/g_n is non-decreasing.  We
    bisect on the sign of f' for all models at once (f'(0) >= 0 -> t = 0, f'(1) <= 0 -> t = 1),
    ceil(log2(1/tol)) steps, so the answer is within ``tol`` of the exact minimiser.
    """
    dev = resolve_device(device, P)
    shape = array_shape("P", P)
    _check_ndim("P", shape, (2, 3), "(m, N, C) or (N, C)")
    tol = check_real_in("tol", tol, 1e-15, 0.5)
    tP = as_tensor(P, dev)
    _check_probs("P", tP)
    single = tP.ndim == 2
    if single:
        tP = tP[None]
    m, N, C = tP.shape
    if C < 2:
        raise ValueError(f"P must have at least C = 2 classes for progress, got C = {C}")
    lab = check_label_vector(labels, N, C, dev)
    sq = tP.sqrt()
    a = sq.sum(-1) / math.sqrt(C)  # (m, N)
    r = sq.gather(-1, lab.view(1, N, 1).expand(m, N, 1)).squeeze(-1)
    th = math.acos(1.0 / math.sqrt(C))
    b = (r - a / math.sqrt(C)) / math.sin(th)
    t = _progress_from_ab(a, b, th, tol)
    return float(t[0]) if single and not torch.is_tensor(P) else like_input(t[0] if single else t, torch.is_tensor(P))


def _progress_from_ab(a: torch.Tensor, b: torch.Tensor, th: float, tol: float) -> torch.Tensor:
    tiny = float(np.finfo(np.float64).tiny)

    def slope(lam):  # f'(lam) for every model, lam of shape (m,)
        x = lam[:, None] * th
        c, s = torch.cos(x), torch.sin(x)
        g = (a * c + b * s).clamp(min=tiny)
        return -(th * (b * c - a * s) / g).mean(-1)

    m = a.shape[0]
    lo = torch.zeros(m, dtype=torch.float64, device=a.device)
    hi = torch.ones_like(lo)
    at0 = slope(lo) >= 0
    at1 = slope(hi) <= 0
    for _ in range(max(1, math.ceil(math.log2(1.0 / tol)))):
        mid = 0.5 * (lo + hi)
        up = slope(mid) < 0
        lo = torch.where(up, mid, lo)
        hi = torch.where(up, hi, mid)
    t = 0.5 * (lo + hi)
    t = torch.where(at0, torch.zeros_like(t), torch.where(at1, torch.ones_like(t), t))
    return t


# ----------------------------------------------------------------------------- trajectories
def _traj(name, x, dev, ndims=(3,), what="(T, N, C)"):
    return _probs(name, x, dev, ndims, what)


def interpolate_trajectory(traj, t_grid, *, labels=None, progress_values=None, device=None):
    """Re-index a recorded trajectory by progress: checkpoints -> points at ``t_grid`` (S, after eq. 4).

    ``traj`` (T, N, C): T >= 2 checkpoints of one model, in training order.  Their progress t_k
    (eq. 4) is taken from ``progress_values`` (T,) or computed from ``labels`` (N,).  For each
    t in ``t_grid`` (1-D, values in [0, 1]; e.g. ``np.linspace(0, 1, 100)`` as in the paper) the
    first consecutive pair (k, k+1) whose progress values bracket t (in either order: progress
    may go backwards) gives the point ``geodesic(P_k, P_{k+1}, lam)`` with
    lam = (t - t_k) / (t_{k+1} - t_k), i.e. linear in progress along the geodesic between the
    two checkpoints (eq. 3).  Grid values below the smallest (above the largest) recorded
    progress map to the checkpoint of smallest (largest) progress.

    Two consequences: a run that goes back in progress loses the legs after the first pair that
    brackets a value, and a run that stops at progress 0.4 sits frozen at its end point for the
    grid values above 0.4.  ``tasknb.trajectory_geometry.reindex_trajectory`` (unfolded progress,
    no extrapolation) and ``compare_trajectories`` (over the range both runs cover) avoid both.

    Returns (len(t_grid), N, C) probabilities (NumPy, or torch for torch input).
    """
    dev = resolve_device(device, traj)
    tr = _traj("traj", traj, dev)
    T = tr.shape[0]
    if T < 2:
        raise ValueError(f"traj must hold at least 2 checkpoints (T >= 2), got T = {T}")
    grid = np.asarray(t_grid.cpu() if torch.is_tensor(t_grid) else t_grid, dtype=np.float64)
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or grid.min() < 0 or grid.max() > 1:
        raise ValueError("t_grid must be a non-empty 1-D array of values in [0, 1]")
    if progress_values is None:
        if labels is None:
            raise ValueError("interpolate_trajectory needs labels (N,) or progress_values (T,)")
        tk = np.asarray(like_input(progress(tr, labels, device=dev), False), dtype=np.float64)
    else:
        tk = np.asarray(progress_values.cpu() if torch.is_tensor(progress_values) else progress_values, dtype=np.float64)
        if tk.shape != (T,) or not np.all(np.isfinite(tk)):
            raise ValueError(f"progress_values must be {T} finite numbers (one per checkpoint), got shape {tk.shape}")
    sq = tr.sqrt()
    out = torch.empty((len(grid),) + tuple(tr.shape[1:]), dtype=torch.float64, device=dev)
    k_lo, k_hi = int(np.argmin(tk)), int(np.argmax(tk))
    for i, t in enumerate(grid):
        if t <= tk[k_lo]:
            out[i] = tr[k_lo]
            continue
        if t >= tk[k_hi]:
            out[i] = tr[k_hi]
            continue
        for k in range(T - 1):
            a, b = tk[k], tk[k + 1]
            if min(a, b) <= t <= max(a, b):
                lam = 0.0 if a == b else (t - a) / (b - a)
                z = _slerp_sqrt(sq[k], sq[k + 1], torch.tensor([lam], dtype=torch.float64, device=dev))[0]
                out[i] = z * z
                break
    return like_input(out, torch.is_tensor(traj))


def _grid_weights(T: int, t_grid, dev) -> torch.Tensor:
    """Trapezoid weights on ``t_grid`` (default: uniform grid of T points on [0, 1])."""
    if t_grid is None:
        if T == 1:
            return torch.ones(1, dtype=torch.float64, device=dev)
        t = torch.linspace(0, 1, T, dtype=torch.float64, device=dev)
    else:
        t = torch.as_tensor(np.asarray(t_grid.cpu() if torch.is_tensor(t_grid) else t_grid, dtype=np.float64), device=dev)
        if t.shape != (T,):
            raise ValueError(f"t_grid must have one value per trajectory point ({T}), got shape {tuple(t.shape)}")
    w = torch.zeros(T, dtype=torch.float64, device=dev)
    dt = t[1:] - t[:-1]
    w[:-1] += dt / 2
    w[1:] += dt / 2
    return w


def trajectory_distance(traj_a, traj_b, *, t_grid=None, return_integrand: bool = False, device=None):
    """Distance between two trajectories re-indexed by progress, eq. (5) of S.

    ``d_traj = integral_0^1 d_B(P_a(t), P_b(t)) dt``, by the trapezoid rule on ``t_grid``
    (default: T points uniform on [0, 1], the grid ``interpolate_trajectory`` produced).
    ``traj_a``, ``traj_b``: (T, N, C) on the same grid (map both to one task first, eq. 8).
    Returns a float, or ``(float, integrand (T,))`` with ``return_integrand`` (the curves of
    App. G / Fig. A3 show the integrand).
    """
    dev = resolve_device(device, traj_a, traj_b)
    a = _traj("traj_a", traj_a, dev)
    b = _traj("traj_b", traj_b, dev)
    if a.shape != b.shape:
        raise ValueError(f"traj_a and traj_b must have the same shape (T, N, C), got {tuple(a.shape)} and {tuple(b.shape)}")
    d = _bhat_paired(a, b)
    total = float((d * _grid_weights(a.shape[0], t_grid, dev)).sum())
    if return_integrand:
        return total, like_input(d, torch.is_tensor(traj_a))
    return total


def riemann_length(traj, *, device=None):
    """Riemann length of a trajectory, eq. (6) of S: ``sum_k 2 sqrt(d_B(P_k, P_{k+1}))``.

    ``traj`` (T, N, C), T >= 2 points in order.  Since ds^2 = 4 d_B for nearby models, each
    step contributes the chord length 2 sqrt(d_B) between consecutive points (the paper's
    definition).  As -log cos x >= x^2 / 2, coarse steps overestimate; on a finely interpolated
    curve the sum converges to the Fisher-metric length (for a great circle whose per-sample
    angles are theta_n it tends to sqrt(2 mean_n theta_n^2)), so interpolate first
    (``interpolate_trajectory``) when checkpoints are far apart.
    Returns a float.
    """
    dev = resolve_device(device, traj)
    tr = _traj("traj", traj, dev)
    if tr.shape[0] < 2:
        raise ValueError(f"traj must hold at least 2 points (T >= 2), got T = {tr.shape[0]}")
    return float((2 * _bhat_paired(tr[:-1], tr[1:]).clamp(min=0).sqrt()).sum())


def mean_trajectory(trajs, *, device=None):
    """Mean of K trajectories on a common progress grid, App. G of S.

    The Bhattacharyya centroid has no closed form, so (as the paper does) the mean is the
    arithmetic mean of the probabilities: ``trajs`` (K, T, N, C) -> (T, N, C).
    """
    dev = resolve_device(device, trajs)
    t = _probs("trajs", trajs, dev, (4,), "(K, T, N, C)")
    return like_input(t.mean(0), torch.is_tensor(trajs))


def tube_radius(trajs, mean=None, *, integrated: bool = False, t_grid=None, device=None):
    """Radius of the tube of K trajectories around their mean, App. G and Remark 5 of S.

    Per progress value: ``r(t) = max_k d_B(P_k(t), P_mean(t))`` -> (T,).  With
    ``integrated=True`` the App. G scalar ``max_k d_traj(tau_k, tau_mean)`` (eq. 5) instead.
    ``trajs`` (K, T, N, C); ``mean`` (T, N, C), default ``mean_trajectory(trajs)``.
    """
    dev = resolve_device(device, trajs)
    t = _probs("trajs", trajs, dev, (4,), "(K, T, N, C)")
    mu = t.mean(0) if mean is None else _probs("mean", mean, dev, (3,), "(T, N, C)")
    if mu.shape != t.shape[1:]:
        raise ValueError(f"mean must have shape {tuple(t.shape[1:])} (T, N, C), got {tuple(mu.shape)}")
    d = _bhat_paired(t, mu[None])  # (K, T)
    if integrated:
        return float((d * _grid_weights(t.shape[1], t_grid, dev)).sum(1).max())
    return like_input(d.max(0).values, torch.is_tensor(trajs))


def normalized_distance(trajs_1, trajs_2, *, device=None):
    """Distance between two families of trajectories in units of their tubes, Remark 5 of S.

    ``2 d_B(mean_1(t), mean_2(t)) / (r_1(t) + r_2(t))`` per progress value, with the means and
    tube radii of ``mean_trajectory`` / ``tube_radius``.  ``trajs_1`` (K1, T, N, C), ``trajs_2``
    (K2, T, N, C) on the same grid, mapped to one task.  Below 1 the two tubes intersect.
    Returns (T,).
    """
    dev = resolve_device(device, trajs_1, trajs_2)
    a = _probs("trajs_1", trajs_1, dev, (4,), "(K1, T, N, C)")
    b = _probs("trajs_2", trajs_2, dev, (4,), "(K2, T, N, C)")
    if a.shape[1:] != b.shape[1:]:
        raise ValueError(f"trajs_1 and trajs_2 must share (T, N, C), got {tuple(a.shape)} and {tuple(b.shape)}")
    ma, mb = a.mean(0), b.mean(0)
    ra = _bhat_paired(a, ma[None]).max(0).values
    rb = _bhat_paired(b, mb[None]).max(0).values
    d = 2 * _bhat_paired(ma, mb) / (ra + rb).clamp(min=_TINY)
    return like_input(d, torch.is_tensor(trajs_1))


# ----------------------------------------------------------------------------- eqs. (9)-(11)
@dataclass
class InPCA:
    """An InPCA embedding (eqs. 9-11 of S).

    ``coords`` (m, k): eigenvector * sqrt(|eigenvalue|); ``eigenvalues`` (k,) signed, by
    decreasing magnitude (negative ones are time-like directions of the Minkowski embedding:
    ``d_B(u, v) ~= sum_i sign(eig_i) (x_ui - x_vi)^2``, exact with all m components, eq. 10);
    ``explained_stress`` chi_k of eq. (11) for the k components kept; ``stress_by_k`` (k,) chi_j
    for j = 1..k; ``method`` the eigensolver used.

    To place new points into the embedding (``project``) it also keeps ``eigenvectors`` (m, k)
    (the unit columns v_i with coords = v_i sqrt(|s_i|)), ``column_means`` (m,) the column means of
    the (symmetrised) D it was fitted on and ``grand_mean`` the mean of all its entries.  ``inpca``
    fills them; an ``InPCA`` built by hand without them still works, except ``project``.
    """

    coords: np.ndarray
    eigenvalues: np.ndarray
    explained_stress: float
    stress_by_k: np.ndarray
    method: str
    eigenvectors: np.ndarray | None = None
    column_means: np.ndarray | None = None
    grand_mean: float | None = None

    @property
    def signature(self) -> np.ndarray:
        return np.sign(self.eigenvalues)

    def distances(self) -> np.ndarray:
        """Pairwise d_B reproduced by the kept components, eq. (10) -> (m, m)."""
        x = self.coords
        diff = x[:, None, :] - x[None, :, :]
        return (diff**2 * self.signature).sum(-1)

    def project(self, D_new) -> np.ndarray:
        """Place new points into this embedding without refitting it (out-of-sample InPCA).

        ``D_new`` (n_new, m) (or (m,) for one point): the distances (d_B, or whatever matrix the
        embedding was fitted on) from each new point to the m fitted points, in the order of
        ``coords``.  Returns (n_new, k) (or (k,)) coordinates in the same signed coordinates as
        ``coords``: ``d(new, u) ~= sum_i sign(s_i) (y_i - x_ui)^2`` as in eq. (10).  This is how
        P_0, P_* or mean trajectories are placed into a picture fitted on the models alone.

        Formula (the classical-MDS out-of-sample rule, Gower 1968), derived for InPCA: the fitted
        W = -L D L / 2 (eq. 9) has entries W_uv = sum_i sign(s_i) x_ui x_vi with x_ui = v_ui sqrt(|s_i|).
        Centring a new row of distances the same way,
            b_u = -1/2 (D_new,u - mean_v D_new,v - mean_w D_wu + mean D),
        gives its signed inner products with the fitted points, b_u = sum_i sign(s_i) x_ui y_i; as the
        v_i are orthonormal, v_i . b = sign(s_i) sqrt(|s_i|) y_i, so
            y_i = sign(s_i) (v_i . b) / sqrt(|s_i|).
        A fitted point's own row of D gives b = its row of W, and v_i . W_u = s_i v_ui returns
        y_i = x_ui exactly: projecting the fitted rows reproduces ``coords``.  A component with
        eigenvalue 0 gets coordinate 0, as the fitted points have; one whose eigenvalue is at
        rounding level (the centring's null direction, the constant vector, when k = m) is noise of
        size sqrt(eps |s_1|) here as in ``coords``.  Only the k kept components are
        placed; a new point's distance to the fitted ones is reproduced as well as the k components
        reproduce theirs (exactly for a configuration the k components embed exactly).
        """
        if self.eigenvectors is None or self.column_means is None or self.grand_mean is None:
            raise ValueError("this InPCA has no eigenvectors / column_means / grand_mean to project with; "
                             "fit it with tasknb.geometry.inpca(D, k)")
        m, k = self.coords.shape
        Dn = np.asarray(D_new.detach().cpu() if torch.is_tensor(D_new) else D_new, dtype=np.float64)
        single = Dn.ndim == 1
        if single:
            Dn = Dn[None]
        if Dn.ndim != 2 or Dn.shape[1] != m:
            raise ValueError(f"D_new must have shape (n_new, m) = (n_new, {m}) or ({m},): distances from each new "
                             f"point to the {m} fitted points, got shape {np.shape(D_new)}")
        if not np.all(np.isfinite(Dn)):
            raise ValueError("D_new must be finite; it has NaN or inf entries")
        b = -0.5 * (Dn - Dn.mean(1, keepdims=True) - self.column_means[None, :] + self.grand_mean)
        s = self.eigenvalues
        root = np.sqrt(np.abs(s))
        scale = np.where(root > 0, np.sign(s) / np.where(root > 0, root, 1.0), 0.0)
        y = (b @ self.eigenvectors) * scale
        return y[0] if single else y


_INPCA_METHODS = ("auto", "full", "eigsh", "lobpcg")


def inpca(D, k: int = 3, method: str = "auto", *, seed: int = 0):
    """Intensive PCA of a matrix of Bhattacharyya distances, eqs. (9)-(11) of S.

    ``W = -L D L / 2`` with L = I - 11^T/m (double centring); W = U S U^T with eigenvalues
    ordered by decreasing |S|; coordinates X = U sqrt(S), stored as U sqrt(|S|) with the signs
    in ``eigenvalues``.  Keeps the k eigenpairs of largest magnitude.  Explained stress
    chi_k = 1 - sqrt(sum_{i>k} S_i^2 / sum_i S_i^2), where sum_i S_i^2 = ||W||_F^2, so it is
    exact without the discarded eigenvalues.

    Parameters
    ----------
    D : (m, m) symmetric, finite (tolerance 1e-8 relative), e.g. ``bhattacharyya_matrix(P)``.
    k : components kept, 1 <= k <= m (default 3).
    method : ``"full"`` (dense eigh), ``"eigsh"`` (SciPy ARPACK, which='LM': largest magnitude,
        both signs), ``"lobpcg"`` (torch.lobpcg on W^2, whose top eigenvectors are W's
        largest-|S| ones; signs from Rayleigh quotients; needs m >= 3k; runs on the GPU), or
        ``"auto"``: full when m <= 500 or k > m / 10, else eigsh.
    seed : start vector of the iterative solvers (deterministic results).

    Eigenvector signs are fixed so that each column's largest-|.| entry is positive.
    Returns an ``InPCA``.
    """
    Dn = np.asarray(D.detach().cpu() if torch.is_tensor(D) else D, dtype=np.float64)
    if Dn.ndim != 2 or Dn.shape[0] != Dn.shape[1] or Dn.shape[0] < 2:
        raise ValueError(f"D must be a square (m, m) matrix with m >= 2, got shape {Dn.shape}")
    if not np.all(np.isfinite(Dn)):
        raise ValueError("D must be finite; it has NaN or inf entries")
    scale = max(float(np.abs(Dn).max()), _TINY)
    if float(np.abs(Dn - Dn.T).max()) > 1e-8 * scale:
        raise ValueError("D must be symmetric (within 1e-8 of its largest entry)")
    m = Dn.shape[0]
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer in [1, m] = [1, {m}], got {k!r}")
    k = int(k)
    check_choice("method", method, _INPCA_METHODS)
    seed = check_seed("seed", seed)
    Dn = (Dn + Dn.T) / 2
    W = Dn - Dn.mean(0, keepdims=True) - Dn.mean(1, keepdims=True) + Dn.mean()
    W *= -0.5
    if method == "auto":
        method = "full" if (m <= 500 or k > m / 10) else "eigsh"
    if method == "eigsh" and k >= m - 1:
        method = "full"
    if method == "lobpcg" and m < 3 * k:
        raise ValueError(f"method='lobpcg' needs m >= 3k, got m = {m}, k = {k}; use 'full' or 'eigsh'")
    if method == "full":
        vals, vecs = np.linalg.eigh(W)
    elif method == "eigsh":
        from scipy.sparse.linalg import eigsh

        v0 = np.random.default_rng(seed).standard_normal(m)
        vals, vecs = eigsh(W, k=k, which="LM", v0=v0, tol=1e-12, maxiter=max(1000, 20 * m))
    else:
        dev = get_device()
        Wt = torch.as_tensor(W, device=dev)
        g = torch.Generator(device="cpu").manual_seed(seed)
        X0 = torch.randn(m, min(m // 3, max(2 * k, k + 2)), generator=g, dtype=torch.float64).to(dev)
        _, vecs_t = torch.lobpcg(Wt @ Wt, X=X0, k=X0.shape[1], largest=True, tol=1e-12, niter=2000)
        vecs = vecs_t.cpu().numpy()
        vals = np.einsum("ij,ij->j", vecs, W @ vecs)
    order = np.argsort(-np.abs(vals), kind="stable")[:k]
    vals, vecs = vals[order], vecs[:, order]
    flip = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(k)])
    vecs = vecs * np.where(flip == 0, 1.0, flip)
    total = float((W * W).sum())
    cum = np.cumsum(vals**2)
    stress = 1.0 - np.sqrt(np.clip(total - cum, 0.0, None) / max(total, _TINY))
    return InPCA(coords=vecs * np.sqrt(np.abs(vals)), eigenvalues=vals, explained_stress=float(stress[-1]),
                 stress_by_k=stress, method=method, eigenvectors=vecs, column_means=Dn.mean(0),
                 grand_mean=float(Dn.mean()))


def explained_stress_null(P, k: int = 3, n_null: int = 20, seed: int = 0, *, device=None, **matrix_kwargs) -> np.ndarray:
    """A null distribution for the explained stress chi_k (eq. 11 of S) of models P.

    Is "the top k InPCA components explain a fraction chi_k of the stress" a property of how the
    models are related, or of any m models with these prediction rows?  Each null draw permutes
    the N samples of every model independently (model u's row n moves to a position of its own
    random permutation), which destroys the sample-by-sample correspondence the models share
    while keeping each model's set of prediction rows (hence its confidence, entropy and class
    balance); it then recomputes the Bhattacharyya matrix (eq. 2, ``bhattacharyya_matrix``) and
    chi_k of its InPCA (``inpca(D, k).explained_stress``).  A real chi_k above the null's range
    says the low-dimensional picture comes from the shared structure of the models.

    Parameters
    ----------
    P : (m, N, C) models (probabilities), m >= 2.
    k : components, 1 <= k <= m (default 3).
    n_null : number of null draws (default 20).
    seed : draw i uses the stream ``numpy_stream(seed, "inpca.stress_null", i)`` (deterministic;
        draw i is the same whatever n_null is).
    device : where the matrices are computed (default ``get_device()``).
    **matrix_kwargs : passed to ``bhattacharyya_matrix`` (``chunk``, ``block``, ``dtype``).

    Returns (n_null,) float64 null values of chi_k.  Cost: n_null Bhattacharyya matrices and
    InPCAs (m = 200, N = 1000, C = 10, n_null = 20: a few seconds on a 2-core CPU).
    """
    dev = resolve_device(device, P)
    t = _probs("P", P, dev, (3,), "(m, N, C)")
    m, N, _ = t.shape
    if m < 2:
        raise ValueError(f"P must hold at least m = 2 models, got m = {m}")
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or not 1 <= k <= m:
        raise ValueError(f"k must be an integer in [1, m] = [1, {m}], got {k!r}")
    n_null = check_positive_int("n_null", n_null)
    seed = check_seed("seed", seed)
    rows = torch.arange(m, device=dev)[:, None]
    out = np.empty(n_null, dtype=np.float64)
    for i in range(n_null):
        rng = numpy_stream(seed, "inpca.stress_null", i)
        perm = rng.permuted(np.broadcast_to(np.arange(N), (m, N)), axis=1)
        shuffled = t[rows, torch.as_tensor(perm, device=dev)]  # (m, N, C)
        D = bhattacharyya_matrix(shuffled, device=dev, **matrix_kwargs)
        out[i] = inpca(D.cpu().numpy(), int(k)).explained_stress
    return out


@dataclass
class PlacedInPCA:
    """An InPCA picture of some models with other points placed into it (:func:`inpca_with_placed`).

    ``embedding`` : the :class:`InPCA` fitted on the models alone; its ``coords`` (m, k) are theirs.
    ``placed`` : (n, k) coordinates of the placed points (``InPCA.project``), float64.
    ``stress_null`` : (n_null,) null values of chi_k (:func:`explained_stress_null`), empty if none.
    """

    embedding: InPCA
    placed: np.ndarray
    stress_null: np.ndarray


def inpca_with_placed(models, placed=None, *, k: int = 3, n_null: int = 0, seed: int = 0, device=None) -> PlacedInPCA:
    """InPCA (eqs. 9-11 of S) fitted on ``models`` alone, with ``placed`` points put in out of sample.

    Reference points (P_0, P_*) and summaries (mean trajectories) are not models: fitted together
    with the models they would move the axes and inflate the explained stress.  They are placed
    with :meth:`InPCA.project` from their Bhattacharyya distances to the models instead.

    models : (m, N, C) probabilities, m >= 2.   placed : (n, N, C) or None.
    k : components (default 3).   n_null : draws of :func:`explained_stress_null` of the models
    (default 0: none); ``seed`` seeds them.   device : where the matrices are computed.
    Returns a :class:`PlacedInPCA`.
    """
    dev = resolve_device(device, models)
    t = _probs("models", models, dev, (3,), "(m, N, C)")
    n_null = check_positive_int("n_null", n_null, minimum=0)
    emb = inpca(bhattacharyya_matrix(t, device=dev).cpu().numpy(), k=k)
    if placed is None:
        xy = np.empty((0, emb.coords.shape[1]))
    else:
        q = _probs("placed", placed, dev, (3,), "(n, N, C)")
        if q.shape[1:] != t.shape[1:]:
            raise ValueError(f"placed must share (N, C) = {tuple(t.shape[1:])} with models, got {tuple(q.shape[1:])}")
        xy = emb.project(bhattacharyya_matrix(q, t, device=dev).cpu().numpy())
    null = explained_stress_null(t, k, n_null, seed, device=dev) if n_null else np.empty(0)
    return PlacedInPCA(embedding=emb, placed=np.asarray(xy, dtype=np.float64), stress_null=null)


# ----------------------------------------------------------------------------- App. C
#: default floor of probabilities inside the logarithms of the symmetric KL divergence
KL_EPS = 1e-12


def symmetric_kl_matrix(P, Q=None, *, eps: float = KL_EPS, chunk: int = 2**24, device=None):
    """Pairwise sample-averaged symmetric KL divergence between models, App. C of S.

    ``D_uv = (1/N) sum_n [KL(p_u^n || q_v^n) + KL(q_v^n || p_u^n)]
           = (1/N) sum_n sum_c (p_u^n(c) - q_v^n(c)) (log p_u^n(c) - log q_v^n(c))``.

    The paper notes (App. C) that every analysis can be done with it instead of d_B, for the same
    reason (the logarithm keeps it from saturating in N); ``inpca`` accepts it.  For nearby models
    both expand to second order in dp: d_B ~ (1/8) sum_c dp^2/p, symKL ~ sum_c dp^2/p, so
    symKL ~ 8 d_B (and 4 d_B = ds^2 = symKL / 2).

    Probabilities are floored at ``eps`` inside the logarithms only (log max(p, eps)); the weights
    (p - q) are not changed.  Without the floor a class with probability 0 in one model and > 0 in
    the other makes the divergence infinite; with it that class adds about q (log q - log eps)
    (q * 27.6 at the default eps = 1e-12).  The floored sum is still >= 0 term by term (log max(., eps)
    is non-decreasing) and 0 for identical models.

    Parameters
    ----------
    P : (m, N, C) models; Q : (m2, N, C), optional (default: P against itself).
    eps : the floor, in (0, 1e-3] (default ``KL_EPS`` = 1e-12).
    chunk : largest number of entries of P and Q (and their logarithms) held at once per slice of
        samples (default 2**24).
    device : default ``get_device()``.

    Method: expanding the product, D = (a_u + b_v - <p_u, log q_v> - <log p_u, q_v>) / N with
    a_u = <p_u, log p_u>, b_v = <q_v, log q_v> and <.,.> the sum over samples and classes: two
    float64 matmuls per slice of samples.  The expansion costs precision for nearly identical
    models: the absolute error is about 1e-16 times the per-sample sum of |p log p| (as d_B's is
    about 1e-16 from the logarithm of a coefficient near 1), so values below ~1e-8 keep only a
    few digits.  Returns (m, m2) float64 >= 0 (NumPy, or torch for torch
    input); with Q None, exactly symmetric with a zero diagonal.
    """
    P_shape = array_shape("P", P)
    _check_ndim("P", P_shape, (3,), "(m, N, C)")
    sym = Q is None
    Q_shape = P_shape
    if not sym:
        Q_shape = array_shape("Q", Q)
        _check_ndim("Q", Q_shape, (3,), "(m2, N, C)")
        if Q_shape[1:] != P_shape[1:]:
            raise ValueError(f"Q must have the same (N, C) as P, got Q {Q_shape} and P {P_shape}")
    eps = check_real_in("eps", eps, 0.0, 1e-3)
    if eps == 0:
        raise ValueError("eps must be in (0, 1e-3]: a zero floor makes the divergence infinite; got 0")
    chunk = check_positive_int("chunk", chunk)
    m, N, C = P_shape
    m2 = Q_shape[0]
    if m == 0 or m2 == 0 or N == 0 or C == 0:
        raise ValueError(f"P and Q must have at least one model, sample and class, got {P_shape} and {Q_shape}")
    dev = resolve_device(device, P, Q)
    n_s = max(1, min(N, chunk // ((m + (0 if sym else m2)) * C)))
    out = torch.zeros((m, m2), dtype=torch.float64, device=dev)
    self_p = torch.zeros(m, dtype=torch.float64, device=dev)
    self_q = self_p if sym else torch.zeros(m2, dtype=torch.float64, device=dev)

    def piece(name, X, n0, n1):
        t = as_tensor(X[:, n0:n1, :] if torch.is_tensor(X) else np.asarray(X[:, n0:n1, :]), dev)
        _check_probs(name, t)
        flat = t.reshape(t.shape[0], -1)
        return flat, flat.clamp(min=eps).log_()

    for n0 in range(0, N, n_s):
        n1 = min(N, n0 + n_s)
        p, lp = piece("P", P, n0, n1)
        q, lq = (p, lp) if sym else piece("Q", Q, n0, n1)
        self_p += (p * lp).sum(1)
        if not sym:
            self_q += (q * lq).sum(1)
        cross = p @ lq.T
        out -= cross + (cross.T if sym else lp @ q.T)
    out += self_p[:, None] + self_q[None, :]
    out /= N
    out.clamp_(min=0.0)
    if sym:
        up = torch.triu(out, diagonal=1)
        out = up + up.T
    return like_input(out, torch.is_tensor(P))


# ----------------------------------------------------------------------------- App. A.2
def stochastic_projection(P, n_out: int, *, seed: int = 0, concentration: float = 1.0, device=None):
    """The random stochastic projection of App. A.2 of S: predictions over C classes -> n_out "classes".

    A random column-stochastic matrix R (n_out, C) (each column drawn from a Dirichlet with the
    given ``concentration``; small values map each class mostly to one output, i.e. random
    merges of classes) gives p'(j) = sum_c R[j, c] p(c), again a probability vector.  The same
    R (fixed by ``seed``) must be used for every model that is compared.  ``P`` (..., N, C) ->
    (..., N, n_out).  Stochastic maps can only shrink d_B (data processing), so the embedding
    of projected models agrees with the exact one up to that contraction.
    """
    dev = resolve_device(device, P)
    shape = array_shape("P", P)
    if len(shape) < 2:
        raise ValueError(f"P must have shape (..., N, C), got shape {shape}")
    n_out = check_positive_int("n_out", n_out, minimum=2)
    seed = check_seed("seed", seed)
    concentration = check_positive_real("concentration", concentration)
    C = shape[-1]
    R = np.random.default_rng(seed).dirichlet(np.full(n_out, concentration), size=C).T  # (n_out, C)
    t = as_tensor(P, dev)
    _check_probs("P", t)
    out = t @ torch.as_tensor(R.T, device=dev)
    return like_input(out, torch.is_tensor(P))


def inpca_projected(P, k: int = 3, n_out: int = 16, *, seed: int = 0, concentration: float = 1.0,
                    method: str = "auto", device=None, **matrix_kwargs):
    """InPCA of models after the stochastic projection of App. A.2 (cheaper when C is large).

    ``P`` (m, N, C) -> ``inpca(bhattacharyya_matrix(stochastic_projection(P, n_out)), k)``.

    The result supports ``InPCA.project``, provided the new points go through the SAME projection:
    ``D_new = bhattacharyya_matrix(stochastic_projection(P_new, n_out, seed=seed,
    concentration=concentration), stochastic_projection(P, n_out, seed=seed,
    concentration=concentration))`` (the projection matrix is fixed by ``seed``, n_out and C).
    """
    Pp = stochastic_projection(P, n_out, seed=seed, concentration=concentration, device=device)
    D = bhattacharyya_matrix(Pp, device=device, **matrix_kwargs)
    return inpca(D, k, method, seed=seed)
