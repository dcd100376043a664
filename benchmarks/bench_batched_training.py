"""Training K small two-layer networks at once (vmap) vs K sequential training loops.

Both sides train the same K networks (the paper's 2-layer ReLU net of eq. 6) on the
same data with the same Adam steps; the baseline is the plain way: one
``torch.nn.Module`` and one ``torch.optim.Adam`` per network, trained one after
the other.  The ratio printed is measured in this run.

    python benchmarks/bench_batched_training.py [--K 32] [--D 100] [--H 50] [--M 1000]
"""
from __future__ import annotations

import argparse
import math
import time

import torch

from tasknb.chmm import CHMM, stack_samples
from tasknb.device import get_device
from tasknb.networks.stacks import init_two_layer
from tasknb.training import train_stack


class TwoLayerNet(torch.nn.Module):
    """The same network as tasknb's, written the usual way (baseline)."""

    def __init__(self, W1, w2):
        super().__init__()
        self.W1 = torch.nn.Parameter(W1.clone())
        self.w2 = torch.nn.Parameter(w2.clone())

    def forward(self, x):
        return torch.relu(x @ self.W1.T / self.W1.shape[1]) @ self.w2 / math.sqrt(self.W1.shape[0])


def sequential(init, X, y, epochs, lr, batch_size, seed):
    out = []
    for k in range(init.K):
        net = TwoLayerNet(init.W1[k], init.w2[k])
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        M = X.shape[1]
        for _ in range(epochs):
            perm = torch.randperm(M, generator=g).to(X.device)
            for s in range(0, M - batch_size + 1, batch_size):
                idx = perm[s:s + batch_size]
                loss = torch.nn.functional.softplus(-y[k, idx] * net(X[k, idx])).mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
        out.append(net.W1.detach())
    return torch.stack(out)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--K", type=int, default=32)
    ap.add_argument("--D", type=int, default=100)
    ap.add_argument("--H", type=int, default=50)
    ap.add_argument("--M", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs per side (best is kept)")
    args = ap.parse_args(argv)
    dev = get_device(args.device)
    chmms = [CHMM(args.D, 20, 20, seed=k, device=dev) for k in range(args.K)]
    X, y = stack_samples(chmms, args.M, "source", seed=0)
    init = init_two_layer(args.K, args.H, args.D, seed=1, device=dev)
    kw = dict(epochs=args.epochs, lr=1e-2, batch_size=args.batch_size, seed=0)

    def best_of(fn, repeats):
        # one untimed warm-up call (first-call allocations, kernel selection), then the best of `repeats`
        out = fn()
        times = []
        for _ in range(repeats):
            sync(dev); t0 = time.perf_counter()
            out = fn()
            sync(dev); times.append(time.perf_counter() - t0)
        return out, min(times)

    batched, t_batched = best_of(lambda: train_stack(init, X, y, **kw), args.repeats)
    W1_seq, t_seq = best_of(lambda: sequential(init, X, y, **kw), args.repeats)

    err = float((batched.params.W1 - W1_seq).abs().max())
    steps = args.epochs * (args.M // args.batch_size)
    print(f"device {dev}, torch threads {torch.get_num_threads()}")
    print(f"K={args.K} nets, D={args.D}, H={args.H}, M={args.M}, batch {args.batch_size}, {steps} Adam steps each")
    print(f"timing: best of {args.repeats} runs after one warm-up run, both sides")
    print(f"sequential loops : {t_seq:8.3f} s")
    print(f"batched (vmap)   : {t_batched:8.3f} s")
    print(f"speed-up         : {t_seq / t_batched:8.1f}x   (goal >= 5x on CPU for K=32)")
    print(f"max |W1 batched - W1 sequential| = {err:.2e}  (same training, float32 round-off)")


if __name__ == "__main__":
    main()
