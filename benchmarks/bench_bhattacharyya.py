"""Pairwise Bhattacharyya matrix (eq. 2 of Ramesh et al.) by tasknb.geometry vs a per-pair NumPy loop,
and InPCA top-k eigenpairs vs a full eigendecomposition.

Part 1: m models x N samples x C classes (random Dirichlet predictions).  The baseline is the
straightforward loop over the m(m-1)/2 pairs, each vectorised over samples
(-mean(log(sum_c sqrt(p_u * p_v)))); ``bhattacharyya_matrix`` takes the square roots once and
computes blocks of pairs by batched matmuls, chunked over samples.  Both are timed in this run
and their answers compared.

Part 2: InPCA (eqs. 9-11) of an m2 x m2 distance matrix of models on a few noisy training-like
curves: the k largest-magnitude eigenpairs (ARPACK) vs the full eigendecomposition.

    python benchmarks/bench_bhattacharyya.py [--m 200] [--N 10000] [--C 10] [--m2 2000] [--k 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--m", type=int, default=200)
    ap.add_argument("--N", type=int, default=10_000)
    ap.add_argument("--C", type=int, default=10)
    ap.add_argument("--m2", type=int, default=2000)
    ap.add_argument("--N2", type=int, default=500)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--skip-baseline", action="store_true", help="time only bhattacharyya_matrix (e.g. at GPU scale)")
    args = ap.parse_args(argv)
    dev = get_device(args.device)

    P = np.random.default_rng(0).dirichlet(np.full(args.C, 0.5), size=(args.m, args.N))
    bhattacharyya_matrix(P[:4, :256], device=dev)  # warm-up
    t0 = time.perf_counter()
    D = bhattacharyya_matrix(P, device=dev)
    t_fast = time.perf_counter() - t0
    print(f"device {dev}; Bhattacharyya matrix of m={args.m} models x N={args.N} samples x C={args.C} classes")
    print(f"bhattacharyya_matrix        : {t_fast:8.2f} s")
    if not args.skip_baseline:
        t0 = time.perf_counter()
        D_ref = per_pair_numpy(P)
        t_ref = time.perf_counter() - t0
        print(f"per-pair NumPy loop         : {t_ref:8.2f} s")
        print(f"speed-up                    : {t_ref / t_fast:8.1f}x")
        print(f"max |difference|            : {np.abs(D - D_ref).max():.1e}")

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
