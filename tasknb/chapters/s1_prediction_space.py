"""Prediction space: models as product distributions over N samples (Ramesh et al. 2023, "S", §2).

The loop of chapter S1 that is not a kernel:

``product_hellinger_vs_n``  the Hellinger distance between the product models of §2 and the averaged
                            Bhattacharyya distance of eq. (2), on the first N samples, for a range of N
                            -- why the paper averages over samples (the product distance saturates)
"""
from __future__ import annotations

import numpy as np
import torch

from ..device import generator
from ..validation import check_int_sequence, check_seed

__all__ = ["product_hellinger_vs_n"]


def product_hellinger_vs_n(P, Q, n_values, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Product-Hellinger distance and averaged Bhattacharyya distance on N samples, for each N.

    With per-sample coefficients BC_n = sum_c sqrt(p^n(c) q^n(c)) (samples taken in an order
    shuffled once with ``seed``, the first N kept):

        H(N)   = 2 (1 - prod_{n<=N} BC_n)      the Hellinger distance between the product models
                                               (as written in §2 of S; it lies in [0, 2])
        d_B(N) = -(1/N) sum_{n<=N} log BC_n     eq. (2) of S

    H(N) is non-decreasing in N and tends to 2 once N d_B >> 1; d_B(N) is an average and stays
    O(1).  P, Q : arrays (N_total, C) of probabilities; n_values : ints in [1, N_total].
    Returns (H, d_B), each float64 (len(n_values),).
    """
    P = np.asarray(P, dtype=np.float64)
    Q = np.asarray(Q, dtype=np.float64)
    if P.ndim != 2 or P.shape != Q.shape:
        raise ValueError(f"P and Q must be arrays (N, C) of the same shape, got {P.shape} and {Q.shape}")
    for name, X in (("P", P), ("Q", Q)):
        if not np.isfinite(X).all() or X.min() < 0 or np.abs(X.sum(-1) - 1).max() > 1e-4:
            raise ValueError(f"{name} must hold probability rows (>= 0, summing to 1)")
    P, Q = P / P.sum(-1, keepdims=True), Q / Q.sum(-1, keepdims=True)  # float32 rows -> exact float64 sums
    n_values = check_int_sequence("n_values", n_values, minimum=1, maximum=P.shape[0])
    perm = torch.randperm(P.shape[0], generator=generator(check_seed("seed", seed))).numpy()
    logbc = np.log(np.clip(np.sqrt(P * Q).sum(-1), 1e-300, 1.0))[perm]
    cum = np.cumsum(logbc)
    idx = np.asarray(n_values) - 1
    return 2.0 * (1.0 - np.exp(cum[idx])), -cum[idx] / np.asarray(n_values, dtype=np.float64)
