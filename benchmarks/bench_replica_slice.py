"""One phase-diagram slice (alpha x teacher alignment q) by the vectorised replica solver
vs the same points solved one by one.

The slice is the shape of figure 3 of Gerace et al.: 50 values of alpha = M/H times 20
teachers theta_q = q theta + sqrt(1 - q^2) theta_tilde sharing one feature model (Omega, Phi),
L2-logistic loss.  The feature model is a random non-isotropic Gaussian covariate model
(v = W^T c / sqrt(L) + noise) with H = 500, L = 200.  The vectorised call does one
eigendecomposition of Omega and iterates all 1,000 points together; the baseline calls the
same solver once per point (an eigendecomposition and an iteration each).  Both are timed in
this run, and their answers are compared.

    python benchmarks/bench_replica_slice.py [--H 500] [--L 200] [--n-alpha 50] [--n-q 20] [--lam 1e-3]
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


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--H", type=int, default=500)
    ap.add_argument("--L", type=int, default=200)
    ap.add_argument("--n-alpha", type=int, default=50)
    ap.add_argument("--n-q", type=int, default=20)
    ap.add_argument("--lam", type=float, default=1e-3)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    Omega, Phi, theta, tilde = gaussian_covariates(args.L, args.H)
    qs = np.linspace(0.0, 1.0, args.n_q)
    thetas = np.stack([q * theta + math.sqrt(1 - q * q) * tilde for q in qs])
    alphas = np.logspace(-1, 1, args.n_alpha)
    dev = get_device(args.device)
    n = len(qs) * len(alphas)

    t0 = time.perf_counter()
    grid = solve_saddle_point(Omega, Phi, thetas, alphas, args.lam, device=dev)
    t_vec = time.perf_counter() - t0

    t0 = time.perf_counter()
    single = np.zeros((len(qs), len(alphas)))
    for i in range(len(qs)):
        for j in range(len(alphas)):
            single[i, j] = solve_saddle_point(Omega, Phi, thetas[i], alphas[j], args.lam, device=dev, warn=False).eps_g
    t_one = time.perf_counter() - t0

    print(f"device {dev}; slice of {n} points ({len(alphas)} alpha x {len(qs)} q), H={args.H}, L={args.L}, "
          f"lam={args.lam:g}, logistic loss")
    print(f"vectorised, one call : {t_vec:8.2f} s   ({grid.converged.mean() * 100:.1f} % of points converged)")
    print(f"one point per call   : {t_one:8.2f} s")
    print(f"speed-up             : {t_one / t_vec:8.1f}x")
    print(f"max |eps_g difference| between the two: {np.abs(grid.eps_g - single).max():.1e}")


if __name__ == "__main__":
    main()
