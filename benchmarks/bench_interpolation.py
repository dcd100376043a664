"""Loss and accuracy along theta_lam = (1 - lam) theta_a + lam theta_b: tasknb.landscape.interpolation_curve
(parameters of a chunk of lam stacked, then evaluated with torch.func.vmap over functional_call, or with one
functional_call per lam: ``vectorize`` "vmap" / "sequential" / "auto" = vmap on CUDA only) vs
interpolation_curve_loop (one state_dict copy and load_state_dict per lam), and optionally the time of
module_criticality for every module of the same network.

The network is Part N's SmallResNet (``tasknb.networks.resnet.init_resnet``, width ``--width``).  Endpoints are two
seeds of the network, inputs are ``--n`` Gaussian 28x28 images labelled by network b's own predictions (so
network b has training error 0 and the criticality search has something to find).  Both curves are timed
in this run (best of ``--repeat``), compared, and their ratio printed.

    python benchmarks/bench_interpolation.py [--n 512] [--lambdas 31] [--chunk 8] [--batch-size 512]
                                             [--repeat 2] [--criticality] [--n-noise 4] [--alphas 6]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tasknb.device import get_device, stream
from tasknb.landscape import (
    interpolation_curve,
    interpolation_curve_loop,
    module_criticality,
    module_groups,
    network_criticality,
    parameter_state,
)
from tasknb.networks.resnet import init_resnet


def make_network(n_classes, width, seed, device):
    """(network, description): Part N's SmallResNet at ``width``."""
    return init_resnet(n_classes, width=width, seed=seed, device=device), f"SmallResNet(width={width})"


def best_time(f, repeat):
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=512, help="evaluation images")
    ap.add_argument("--lambdas", type=int, default=31, help="lam values in [-1, 2] (>= 25 for the book's target)")
    ap.add_argument("--chunk", type=int, default=8, help="lam values per vmap call")
    ap.add_argument("--batch-size", type=int, default=512)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=2, help="timings per method; the best is reported")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--criticality", action="store_true", help="also time module_criticality for every module")
    ap.add_argument("--n-noise", type=int, default=4)
    ap.add_argument("--alphas", type=int, default=6, help="alpha grid size in [0, 1]")
    ap.add_argument("--sigma-steps", type=int, default=6)
    ap.add_argument("--epsilon", type=float, default=0.1)
    args = ap.parse_args(argv)
    dev = get_device(args.device)

    net_a, what = make_network(args.classes, args.width, 0, dev)
    net_b, _ = make_network(args.classes, args.width, 1, dev)
    sa, sb = parameter_state(net_a), parameter_state(net_b)
    X = torch.randn(args.n, 1, 28, 28, generator=stream(0, "bench.interpolation.images")).to(dev)
    with torch.no_grad():
        y = net_b(X).argmax(-1)
    lambdas = np.linspace(-1.0, 2.0, args.lambdas)
    n_params = sum(v.numel() for v in sa.values())
    print(f"device {dev} ({torch.get_num_threads()} threads); {what}, {n_params:,} parameters; "
          f"{args.n} images, {len(lambdas)} lam values in [-1, 2]")

    interpolation_curve(net_a, sa, sb, lambdas[:2], X[:8], y[:8])          # warm-up
    t_loop, slow = best_time(lambda: interpolation_curve_loop(net_a, sa, sb, lambdas, X, y,
                                                              batch_size=args.batch_size), args.repeat)
    print(f"interpolation_curve_loop (load_state_dict per lam): {t_loop:8.3f} s")
    for vectorize in ("vmap", "sequential", "auto"):
        t_fast, fast = best_time(lambda: interpolation_curve(net_a, sa, sb, lambdas, X, y, batch_size=args.batch_size,
                                                             chunk=args.chunk, vectorize=vectorize), args.repeat)
        print(f"interpolation_curve vectorize={vectorize!r:12s} (chunk {args.chunk}): {t_fast:8.3f} s, "
              f"speed-up over the loop {t_loop / t_fast:6.2f}x; max |loss difference| "
              f"{np.abs(fast.loss - slow.loss).max():.1e}, max |accuracy difference| "
              f"{np.abs(fast.accuracy - slow.accuracy).max():.1e}")

    if args.criticality:
        groups = module_groups(net_b)
        alphas = np.linspace(0.0, 1.0, args.alphas)
        t0 = time.perf_counter()
        results = {}
        for module in groups:
            t1 = time.perf_counter()
            res = module_criticality(net_b, sa, sb, module, X, y, args.epsilon, alphas=alphas, n_noise=args.n_noise,
                                     sigma_steps=args.sigma_steps, seed=0, modules=groups)
            results[module] = res
            print(f"  criticality {module:8s}: mu = {res.mu:10.4g} (alpha {res.alpha}, sigma "
                  f"{res.sigma if res.sigma is None else round(res.sigma, 4)}), {len(res.evaluations)} points x "
                  f"{args.n_noise} draws, {time.perf_counter() - t1:6.2f} s")
        print(f"module_criticality, {len(groups)} modules ({args.alphas} alphas, {args.n_noise} draws, "
              f"{args.sigma_steps} bisection steps, {args.n} images): {time.perf_counter() - t0:.2f} s; "
              f"network criticality {network_criticality(results):.4g}")


if __name__ == "__main__":
    main()
