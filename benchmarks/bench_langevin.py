"""First-passage times of overdamped Langevin particles: tasknb.langevin.first_passage_times (all particles as one
tensor, Euler-Maruyama, arrived particles dropped every ``compact_every`` steps) vs a per-particle Python loop
(one particle at a time, float arithmetic and NumPy normals, the same dynamics, step and target).

The landscape is the double well U = dU ((x/a)^2 - 1)^2 (dU = a = 1); particles start at x = -1 and the target is
x >= +1 (the other minimum), at D = dU / ``--ratio``.  Work is counted in particle-steps (the sum over particles of
the steps to arrival), so the per-particle-step times of the two are comparable although the ensemble simulates
``--n-ensemble`` particles and the loop ``--n-loop``.  Both are timed in this run; their mean first-passage times are
compared with each other and with the exact quadrature (agreement in distribution), and the ratio of the
per-particle-step times is printed.

    python benchmarks/bench_langevin.py [--n-ensemble 4000] [--n-loop 200] [--ratio 3] [--dt 0.005] [--device auto]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

from tasknb.device import get_device, numpy_stream
from tasknb.langevin import DoubleWell, first_passage_times, mean_first_passage, mean_first_passage_1d


def loop_first_passages(n, D, dt, max_steps, seed, barrier=1.0, width=1.0):
    """One particle at a time: the reference implementation (same Euler-Maruyama step, target x >= width)."""
    rng = numpy_stream(seed, "bench.langevin.loop")
    amp = math.sqrt(2.0 * D * dt)
    c = 4.0 * barrier / width
    times, steps = np.full(n, np.inf), 0
    for i in range(n):
        x = -width
        noise = rng.standard_normal(max_steps)
        for k in range(max_steps):
            s = x / width
            x = x - c * s * (s * s - 1.0) * dt + amp * noise[k]
            if x >= width:
                times[i] = (k + 1) * dt
                steps += k + 1
                break
        else:
            steps += max_steps
    return times, steps


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-ensemble", type=int, default=4000)
    ap.add_argument("--n-loop", type=int, default=200)
    ap.add_argument("--ratio", type=float, default=3.0, help="barrier / D")
    ap.add_argument("--dt", type=float, default=0.005)
    ap.add_argument("--max-steps", type=int, default=200000)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    dev = get_device(args.device)
    dw, D = DoubleWell(1.0, 1.0), 1.0 / args.ratio
    exact = mean_first_passage_1d(dw, -1.0, 1.0, D)
    print(f"device {dev}; double well dU = 1, a = 1, D = {D:.4g} (dU/D = {args.ratio:g}), dt = {args.dt:g}; "
          f"exact mean first-passage time {exact:.3f}")

    first_passage_times(dw, [-1.0], lambda x: x[:, 0] >= 1.0, D, args.dt, 64, 200000, 0, device=dev)   # warm-up
    t0 = time.perf_counter()
    ens = first_passage_times(dw, [-1.0], lambda x: x[:, 0] >= 1.0, D, args.dt, args.n_ensemble, args.max_steps, 0,
                              device=dev)
    t_ens = time.perf_counter() - t0
    ens_steps = float(np.round(np.asarray(ens)[np.isfinite(ens)] / args.dt).sum()
                      + ens.n_not_arrived * args.max_steps)
    t0 = time.perf_counter()
    loop, loop_steps = loop_first_passages(args.n_loop, D, args.dt, args.max_steps, 0)
    t_loop = time.perf_counter() - t0

    m_ens, m_loop = mean_first_passage(ens), mean_first_passage(loop)
    per_ens, per_loop = t_ens / ens_steps, t_loop / loop_steps
    print(f"ensemble  ({args.n_ensemble:6d} particles): {t_ens:8.3f} s, {ens_steps:.3g} particle-steps, "
          f"{per_ens * 1e9:8.1f} ns per particle-step; MFPT {m_ens.mean:.3f} ± {m_ens.se:.3f}")
    print(f"loop      ({args.n_loop:6d} particles): {t_loop:8.3f} s, {loop_steps:.3g} particle-steps, "
          f"{per_loop * 1e9:8.1f} ns per particle-step; MFPT {m_loop.mean:.3f} ± {m_loop.se:.3f}")
    z = (m_ens.mean - m_loop.mean) / math.hypot(m_ens.se, m_loop.se)
    print(f"agreement: ensemble - loop = {m_ens.mean - m_loop.mean:+.3f} ({z:+.1f} SE); ensemble / exact = "
          f"{m_ens.mean / exact:.3f}, loop / exact = {m_loop.mean / exact:.3f}")
    print(f"speed-up of the ensemble per particle-step: {per_loop / per_ens:.1f}x")


if __name__ == "__main__":
    main()
