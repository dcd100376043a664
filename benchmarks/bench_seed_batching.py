"""Seeds of the small CNN trained one after another (record_trajectories(batched=False)) vs all at
once in one vmap over stacked weights (record_trajectories(batched=True),
tasknb.batched_trajectories.train_supervised_seeds_batched).

Both record the same checkpoints on the same fixed test images; both are timed in this run (after
a warm-up of each), and their largest difference in recorded probabilities is printed (float
reassociation, amplified by training as the run gets longer).  ``--recipe paper`` trains with
tasknb.trajectories.PAPER_RECIPE, ``--recipe adam`` with the Adam run of the first Part S chapters.
``record_trajectories(batched="auto")`` picks the vmap only on CUDA, from what this measures.

    python benchmarks/bench_seed_batching.py [--seeds 8] [--steps 100] [--n-test 1000] [--batch 64]
        [--recipe adam|paper] [--threads N]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from tasknb.data import load_task_images
from tasknb.device import describe_device
from tasknb.trajectories import PAPER_RECIPE, record_trajectories

RECIPES = {"adam": dict(optimizer="adam", lr=0.005), "paper": PAPER_RECIPE}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=None, help="batch size (default: the recipe's, 64 for adam)")
    ap.add_argument("--readout", default="softmax", choices=["softmax", "imprint"])
    ap.add_argument("--recipe", default="adam", choices=sorted(RECIPES))
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    if a.threads is not None:
        torch.set_num_threads(a.threads)
    kw = dict(RECIPES[a.recipe], n_seeds=a.seeds, steps=a.steps, n_test=a.n_test, readout=a.readout,
              device=a.device)
    if a.batch is not None:
        kw["batch_size"] = a.batch
    load_task_images("fashion_mnist", "train", range(10))          # warm the loader cache for both
    for batched in (False, True):                                    # warm-up (kernels, allocator)
        record_trajectories(**{**kw, "steps": 2, "n_seeds": 2}, batched=batched)
    t0 = time.perf_counter()
    seq = record_trajectories(**kw, batched=False)
    t1 = time.perf_counter()
    bat = record_trajectories(**kw, batched=True)
    t2 = time.perf_counter()
    print(f"device: {describe_device(a.device)}; recipe {a.recipe}")
    print(f"{a.seeds} seeds x {a.steps} steps (batch {seq.config['batch_size']}, channels "
          f"{tuple(seq.config['channels'])}), {len(seq.steps)} checkpoints on N = {a.n_test}, readout {a.readout}")
    print(f"sequential loop : {t1 - t0:7.2f} s")
    print(f"one vmap        : {t2 - t1:7.2f} s")
    print(f"ratio loop/vmap : {(t1 - t0) / (t2 - t1):7.2f}x   "
          f"max |difference| of probabilities {np.abs(seq.probs - bat.probs).max():.1e}")


if __name__ == "__main__":
    main()
