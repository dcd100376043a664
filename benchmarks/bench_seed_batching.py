"""Seeds of the small CNN trained one after another (tasknb.trajectories.record_trajectories) vs all
at once in one vmap over stacked weights (tasknb.batched_trajectories.record_trajectories_batched).

Both record the same checkpoints on the same fixed test images; both are timed in this run, and
their largest difference in recorded probabilities is printed (float reassociation, amplified by
training as the run gets longer).

    python benchmarks/bench_seed_batching.py [--seeds 8] [--steps 100] [--n-test 1000] [--batch 64]
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from tasknb.batched_trajectories import record_trajectories_batched
from tasknb.device import describe_device
from tasknb.data import load_task_images
from tasknb.trajectories import record_trajectories


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--readout", default="softmax", choices=["softmax", "imprint"])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    kw = dict(n_seeds=a.seeds, steps=a.steps, n_test=a.n_test, batch_size=a.batch, optimizer="adam", lr=0.005,
              readout=a.readout, device=a.device)
    load_task_images("fashion_mnist", "train", range(10))          # warm the loader cache for both
    record_trajectories_batched(**{**kw, "steps": 2, "n_seeds": 2})  # warm-up (kernels, allocator)
    t0 = time.perf_counter()
    seq = record_trajectories(**kw)
    t1 = time.perf_counter()
    bat = record_trajectories_batched(**kw)
    t2 = time.perf_counter()
    print(f"device: {describe_device(a.device)}")
    print(f"{a.seeds} seeds x {a.steps} steps (batch {a.batch}), {len(seq.steps)} checkpoints on N = {a.n_test}, "
          f"readout {a.readout}")
    print(f"sequential loop : {t1 - t0:7.2f} s")
    print(f"one vmap        : {t2 - t1:7.2f} s")
    print(f"ratio           : {(t1 - t0) / (t2 - t1):7.2f}x   "
          f"max |difference| of probabilities {np.abs(seq.probs - bat.probs).max():.1e}")


if __name__ == "__main__":
    main()
