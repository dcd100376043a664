"""One phase-diagram slice (alpha x teacher alignment q) by the vectorised replica solver
vs the same points solved one by one, at the default ridge and at a tiny one.

The slice is the shape of figure 3 of Gerace et al.: 50 values of alpha = M/H times 20
teachers theta_q = q theta + sqrt(1 - q^2) theta_tilde sharing one feature model (Omega, Phi),
L2-logistic loss.  The feature model is a random non-isotropic Gaussian covariate model
(v = W^T c / sqrt(L) + noise) with H = 500, L = 200.  The vectorised call does one
eigendecomposition of Omega and iterates all 1,000 points together; the baseline calls the
same solver once per point (an eigendecomposition and an iteration each).  Both are timed in
this run, and their answers are compared.

Two slices are run: ``--lam`` (default 1e-3), with the baseline on every point, and
``--small-lam`` (default 1e-7, where q reaches 1e4 - 1e6 near the separability threshold and
the adaptive quadrature matters), with the baseline on ``--subset`` evenly spaced points of
the slice (default 100; 0 = every point); the speed-up is then per point.  ``--small-lam 0``
skips the second slice.

    python benchmarks/bench_replica_slice.py [--H 500] [--L 200] [--n-alpha 50] [--n-q 20]
                                             [--lam 1e-3] [--small-lam 1e-7] [--subset 100]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from tasknb.device import get_device
from tasknb.replica import solve_saddle_point


def gaussian_covariates(L, H, seed=0):
    g = np.random.default_rng(seed)
    W = g.standard_normal((L, H))
    Omega = W.T @ W / L + 0.5 * np.diag(g.uniform(0.2, 2.0, H))
    return Omega, W / math.sqrt(L), g.standard_normal(L), g.standard_normal(L)


def run_slice(Omega, Phi, thetas, alphas, lam, dev, subset=0):
    """Time the vectorised call and the one-point-per-call baseline (on ``subset`` evenly spaced
    points, all when 0); print the comparison; return the two timings (s, s per point)."""
    n = thetas.shape[0] * alphas.size
    t0 = time.perf_counter()
    grid = solve_saddle_point(Omega, Phi, thetas, alphas, lam, device=dev, warn=False)
    t_vec = time.perf_counter() - t0

    flat = np.arange(n) if subset <= 0 or subset >= n else np.unique(np.linspace(0, n - 1, subset).round().astype(int))
    t0 = time.perf_counter()
    single = np.zeros(flat.size)
    single_ok = np.zeros(flat.size, dtype=bool)
    for k, p in enumerate(flat):
        i, j = divmod(int(p), alphas.size)
        sp = solve_saddle_point(Omega, Phi, thetas[i], alphas[j], lam, device=dev, warn=False)
        single[k], single_ok[k] = sp.eps_g, sp.converged
    t_one = time.perf_counter() - t0

    n_conv = int(grid.converged.sum())
    its = grid.iterations
    print(f"-- lam={lam:g}: slice of {n} points ({alphas.size} alpha x {thetas.shape[0]} q), logistic loss")
    print(f"vectorised, one call : {t_vec:8.2f} s   ({n_conv} of {n} points converged, {100 * n_conv / n:.1f} %; "
          f"iterations median {int(np.median(its))}, max {int(its.max())})")
    if flat.size == n:
        print(f"one point per call   : {t_one:8.2f} s   ({int(single_ok.sum())} of {n} converged)")
        print(f"speed-up             : {t_one / t_vec:8.1f}x")
    else:
        per_point = t_one / flat.size
        print(f"one point per call   : {t_one:8.2f} s on a subset of {flat.size} of the {n} points (evenly spaced; "
              f"{int(single_ok.sum())} converged), {per_point:.3f} s per point, ~{per_point * n:.0f} s for the "
              f"whole slice (extrapolated, not run)")
        print(f"speed-up per point   : {per_point * n / t_vec:8.1f}x   (extrapolated baseline / vectorised)")
    diff = np.abs(grid.eps_g.reshape(-1)[flat] - single)
    print(f"max |eps_g difference| between the two on the {flat.size} compared points: {diff.max():.1e}")
    return t_vec, t_one / flat.size


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--H", type=int, default=500)
    ap.add_argument("--L", type=int, default=200)
    ap.add_argument("--n-alpha", type=int, default=50)
    ap.add_argument("--n-q", type=int, default=20)
    ap.add_argument("--lam", type=float, default=1e-3)
    ap.add_argument("--small-lam", type=float, default=1e-7, help="second slice's ridge (0: skip it)")
    ap.add_argument("--subset", type=int, default=100,
                    help="points of the small-lam slice solved one per call (0: all of them)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    for name in ("H", "L", "n_alpha", "n_q"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1")
    if not args.lam > 0 or args.small_lam < 0 or args.subset < 0:
        ap.error("--lam must be > 0, --small-lam >= 0 and --subset >= 0")
    Omega, Phi, theta, tilde = gaussian_covariates(args.L, args.H)
    qs = np.linspace(0.0, 1.0, args.n_q)
    thetas = np.stack([q * theta + math.sqrt(1 - q * q) * tilde for q in qs])
    alphas = np.logspace(-1, 1, args.n_alpha)
    dev = get_device(args.device)
    print(f"device {dev}; H={args.H}, L={args.L}")
    run_slice(Omega, Phi, thetas, alphas, args.lam, dev)
    if args.small_lam > 0:
        run_slice(Omega, Phi, thetas, alphas, args.small_lam, dev, subset=args.subset)


if __name__ == "__main__":
    main()
