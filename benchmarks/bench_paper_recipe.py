"""Does the paper's recipe (tasknb.trajectories.PAPER_RECIPE: App. A of S at our scale) fit its
training set?  Train accuracy (on the n_train training images), test accuracy (on n_test fixed
test images), the number of weights and the wall time of one seed, for the recipe at the widths
given, on the ten Fashion-MNIST classes and on a 2-class subset.

    OMP_NUM_THREADS=1 python benchmarks/bench_paper_recipe.py [--steps 1000] [--n-train 2000]
        [--seeds 1] [--widths 8,16 16,32] [--lr 0.01] [--norm layer_conv1]
"""
from __future__ import annotations

import argparse
import time

from tasknb.data import load_task_images, training_images
from tasknb.device import describe_device, get_device
from tasknb.networks.cnn import init_cnn
from tasknb.readout import PredictionSet, prediction_set
from tasknb.trajectories import PAPER_RECIPE, run_config, train_supervised_seeds

TASKS = {"10 classes": tuple(range(10)), "classes (2, 4)": (2, 4)}


def one_run(classes, channels, a, dev):
    c = run_config(None, {**PAPER_RECIPE, "lr": a.lr, "norm": a.norm}, classes=classes, channels=channels,
                   steps=a.steps, checkpoints=[a.steps], n_train=a.n_train, n_test=a.n_test, n_seeds=a.seeds,
                   seed=a.seed)
    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    on_train = PredictionSet(X=Xtr, labels=ytr, classes=list(c.classes))       # read on the training images
    test = prediction_set(c.dataset, c.classes, c.n_test, data_seed=c.data_seed, device=dev)
    t0 = time.perf_counter()
    _, states = train_supervised_seeds(Xtr, ytr, on_train, c, keep_states=True)
    seconds = (time.perf_counter() - t0) / c.n_seeds
    train_acc, test_acc = [], []
    for st in states:
        m = init_cnn(len(c.classes), c.channels, 0, dev, norm=c.norm, head_bias=c.head_bias)
        m.load_state_dict(st[-1])
        train_acc.append(float((on_train.predict(m).argmax(-1) == ytr).double().mean()))
        test_acc.append(float((test.predict(m).argmax(-1) == test.labels).double().mean()))
    weights = sum(p.numel() for p in m.parameters())
    return weights, train_acc, test_acc, seconds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=2000)
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--widths", nargs="+", default=["8,16", "16,32"])
    ap.add_argument("--lr", type=float, default=PAPER_RECIPE["lr"])
    ap.add_argument("--norm", default=PAPER_RECIPE["norm"])
    ap.add_argument("--device", default="auto")
    a = ap.parse_args(argv)
    dev = get_device(a.device)
    load_task_images("fashion_mnist", "train", range(10))
    print(f"device: {describe_device(dev)}; recipe {PAPER_RECIPE} with lr={a.lr}, norm={a.norm}; "
          f"{a.steps} steps on {a.n_train} training images")
    for name, classes in TASKS.items():
        for w in a.widths:
            channels = tuple(int(x) for x in w.split(","))
            weights, tr, te, sec = one_run(classes, channels, a, dev)
            print(f"{name:15s} channels {str(channels):9s} {weights:6d} weights  train acc "
                  f"{' '.join(f'{x:.4f}' for x in tr)}  test acc {' '.join(f'{x:.4f}' for x in te)}  "
                  f"{sec:5.1f} s/seed", flush=True)


if __name__ == "__main__":
    main()
