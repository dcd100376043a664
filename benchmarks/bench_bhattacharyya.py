"""Pairwise Bhattacharyya matrix (eq. 2 of Ramesh et al.) by tasknb.geometry vs a per-pair NumPy loop,
and InPCA top-k eigenpairs vs a full eigendecomposition.

Part 1: m models x N samples x C classes (random Dirichlet predictions stored as ``--dtype``).  The
baseline is the straightforward loop over the m(m-1)/2 pairs, each vectorised over samples
(-mean(log(sum_c sqrt(p_u * p_v)))); ``bhattacharyya_matrix`` takes the square roots once and
computes tiles of pairs on or above the diagonal by batched matmuls, chunked over samples (float32
arithmetic for float32 input).  Both are timed in this run (best of ``--repeat``) and their answers
compared.  Unless ``--skip-baseline``, the target of BOOK_PLAN (>= 10x the loop at m = 60,
N = 4000, C = 10, float32 input) is timed too and its ratio printed.

Part 2: InPCA (eqs. 9-11) of an m2 x m2 distance matrix of models on a few noisy training-like
curves: the k largest-magnitude eigenpairs (ARPACK) vs the full eigendecomposition.

    python benchmarks/bench_bhattacharyya.py [--m 200] [--N 10000] [--C 10] [--dtype float64]
                                             [--repeat 3] [--m2 2000] [--k 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tasknb.device import get_device
from tasknb.geometry import bhattacharyya_matrix, geodesic, inpca


def per_pair_numpy(P):
    m = len(P)
    tiny = np.finfo(np.float64).tiny
    D = np.zeros((m, m))
    for i in range(m):
        for j in range(i + 1, m):
            bc = np.sqrt(P[i] * P[j]).sum(axis=1)
            D[i, j] = D[j, i] = -np.mean(np.log(np.clip(bc, tiny, 1.0)))
    return D


def curve_models(m, N, C, seed=0):
    """m models along a few noisy geodesics from ignorance to truth (a distance matrix with structure)."""
    g = np.random.default_rng(seed)
    labels = g.integers(0, C, N)
    P0, Ps = np.full((N, C), 1.0 / C), np.eye(C)[labels]
    n_curves = 8
    per = -(-m // n_curves)
    out = []
    for c in range(n_curves):
        noise = g.dirichlet(np.ones(C), size=N)
        out.append(0.85 * geodesic(P0, Ps, np.linspace(0, 0.95, per)) + 0.15 * noise)
    return np.concatenate(out)[:m]


def best_time(f, repeat):
    """The shortest of ``repeat`` wall-clock timings of ``f()`` and its (last) result."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def compare(m, N, C, dtype, dev, repeat, baseline=True, label=""):
    """Time bhattacharyya_matrix (and the per-pair loop) on m x N x C Dirichlet(0.5) predictions."""
    P = np.random.default_rng(0).dirichlet(np.full(C, 0.5), size=(m, N)).astype(dtype)
    bhattacharyya_matrix(P[:4, :256], device=dev)  # warm-up
    t_fast, D = best_time(lambda: bhattacharyya_matrix(P, device=dev), repeat)
    print(f"{label}device {dev} ({torch.get_num_threads()} threads); Bhattacharyya matrix of m={m} models x "
          f"N={N} samples x C={C} classes, {np.dtype(dtype).name} input")
    print(f"bhattacharyya_matrix        : {t_fast:8.3f} s")
    if not baseline:
        return None
    t_ref, D_ref = best_time(lambda: per_pair_numpy(P), repeat)
    print(f"per-pair NumPy loop         : {t_ref:8.3f} s")
    print(f"speed-up                    : {t_ref / t_fast:8.1f}x")
    print(f"max |difference|            : {np.abs(D - D_ref).max():.1e}")
    return t_ref / t_fast


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=200)
    ap.add_argument("--N", type=int, default=10_000)
    ap.add_argument("--C", type=int, default=10)
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                    help="storage (and, by bhattacharyya_matrix's default, arithmetic) precision of the predictions")
    ap.add_argument("--repeat", type=int, default=3, help="timings per method; the best is reported")
    ap.add_argument("--m2", type=int, default=2000)
    ap.add_argument("--N2", type=int, default=500)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-baseline", action="store_true", help="time only bhattacharyya_matrix (e.g. at GPU scale)")
    args = ap.parse_args(argv)
    dev = get_device(args.device)

    compare(args.m, args.N, args.C, np.dtype(args.dtype), dev, args.repeat, baseline=not args.skip_baseline)
    if not args.skip_baseline:
        print()
        ratio = compare(60, 4000, 10, np.float32, dev, args.repeat, label="target (>= 10x): ")
        print(f"target m=60, N=4000, C=10, float32: {ratio:.1f}x ({'met' if ratio >= 10 else 'NOT met'})")

    M = curve_models(args.m2, args.N2, args.C)
    t0 = time.perf_counter()
    D2 = bhattacharyya_matrix(M, device=dev)
    t_d2 = time.perf_counter() - t0
    t0 = time.perf_counter()
    top = inpca(D2, args.k, method="eigsh")
    t_top = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = inpca(D2, args.k, method="full")
    t_full = time.perf_counter() - t0
    print(f"\nInPCA of m={args.m2} models (N={args.N2}; their distance matrix took {t_d2:.2f} s), k={args.k}")
    print(f"top-k (ARPACK eigsh, 'LM')  : {t_top:8.2f} s")
    print(f"full eigendecomposition     : {t_full:8.2f} s")
    print(f"speed-up                    : {t_full / t_top:8.1f}x")
    print(f"max |eigenvalue difference| : {np.abs(top.eigenvalues - full.eigenvalues).max():.1e}; "
          f"explained stress chi_{args.k} = {top.explained_stress:.4f} (full: {full.explained_stress:.4f})")


if __name__ == "__main__":
    main()
