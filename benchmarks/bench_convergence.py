"""One SGD step of K stacked MLPs: batched matmuls + autograd (what ``tasknb.convergence`` uses) vs
``torch.func.vmap`` over ``grad`` of ``functional_call``, vs K plain nn.Module steps; and the steps
``train_until_threshold`` needs to reach loss 0.05 on 500 "fashion" images.

    python benchmarks/bench_convergence.py [--K 10 40] [--hidden 64] [--batch 32] [--steps 200]
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.func import functional_call, grad, vmap

from tasknb.convergence import ThresholdSpec, init_mlp, mlp_logits, mlp_module, train_until_threshold
from tasknb.task_family import task_data


def bench(K, hidden, B, steps, X, y):
    p = init_mlp(K, X.shape[1], hidden, seed=0, device="cpu")
    idx = torch.randint(0, X.shape[0], (K, B), generator=torch.Generator().manual_seed(0))
    xb, yb = X[idx], y[idx]

    def batched():
        q = {k: v.clone().requires_grad_(True) for k, v in p.items()}
        for _ in range(steps):
            logp = torch.log_softmax(mlp_logits(q, xb), -1)
            loss = -logp.gather(-1, yb.unsqueeze(-1)).mean(1).sum()
            gs = torch.autograd.grad(loss, list(q.values()))
            with torch.no_grad():
                q = {k: (v - 0.1 * g).requires_grad_(True) for (k, v), g in zip(q.items(), gs)}

    m = mlp_module(p, 0)
    names = {"W1": "0.weight", "b1": "0.bias", "W2": "2.weight", "b2": "2.bias"}

    def loss_one(params, x, t):
        return torch.nn.functional.cross_entropy(functional_call(m, params, (x,)), t)

    g_all = vmap(grad(loss_one))

    def vmapped():
        q = {names[k]: v.clone() for k, v in p.items()}
        for _ in range(steps):
            gs = g_all(q, xb, yb)
            q = {k: q[k] - 0.1 * gs[k] for k in q}

    mods = [mlp_module(p, k) for k in range(K)]
    opts = [torch.optim.SGD(mm.parameters(), lr=0.1) for mm in mods]

    def loop():
        for _ in range(steps):
            for k in range(K):
                opts[k].zero_grad()
                torch.nn.functional.cross_entropy(mods[k](xb[k]), yb[k]).backward()
                opts[k].step()

    out = {}
    for name, f in (("batched", batched), ("vmap", vmapped), ("loop", loop)):
        t = time.perf_counter(); f(); out[name] = (time.perf_counter() - t) / steps * 1e3
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--K", type=int, nargs="+", default=[10, 40])
    ap.add_argument("--hidden", type=int, default=64)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    a = ap.parse_args()
    T = task_data("fashion", 500, seed=0)
    for K in a.K:
        r = bench(K, a.hidden, a.batch, a.steps, T.X, T.y)
        print(f"K = {K:3d}: ms per step  batched {r['batched']:.2f}  vmap {r['vmap']:.2f}  loop {r['loop']:.2f}"
              f"  (loop / batched = {r['loop'] / r['batched']:.1f}x)")
    p = init_mlp(10, T.X.shape[1], a.hidden, seed=0, device="cpu")
    t = time.perf_counter()
    res = train_until_threshold(p, T.X, T.y, ThresholdSpec(max_steps=10000), seed=0)
    print(f"steps to loss 0.05 on 500 fashion images (lr 0.1, B 32, wd 5e-4), 10 runs: "
          f"{res.steps.mean():.0f} ± {res.steps.std(ddof=1) / 10 ** 0.5:.0f}, {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
