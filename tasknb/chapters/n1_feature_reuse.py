"""Feature reuse: P-T against RI-T on targets of increasing distance and on block-shuffled targets
(Neyshabur, Sedghi & Zhang 2020, "What is being transferred in transfer learning?", the slides'
"Problem setup", "Notation" and "Role of feature reuse").

The four models.  **P** is the shared source network (:func:`tasknb.pretraining.pretrained_source`),
**RI** a random initialisation, **P-T** P trained on a target (its body, a new head) and **RI-T**
RI trained on it.  Run k of P-T and run k of RI-T share the mini-batch order
(:func:`tasknb.pretraining.target_runs`), so P-T minus RI-T is a paired difference over k.

Block shuffling.  The slides cut every target image into equal blocks and permute the blocks: the
smaller the block, the less of the source's visual features survives, while low-level statistics
(the histogram of pixel values, and at block size >= 2 the local statistics inside a block) survive.
The permutation defines a task: it is ONE draw per block size, from the stream
``derived_seed(seed, "n1.blocks", block_size)`` (fed to ``target_images(block_seed=...)``), shared by
the train and test images and by every training seed k of one notebook seed; another notebook
``seed`` draws other permutations (and other images, heads and batch orders).  Block size 28 is
the unshuffled task.  Run k at every block size starts from the same weights and sees the same
batch order (the same images, permuted), so differences between block sizes are paired too.

``block_seed``       the block-permutation seed of a block size
``run_sweep``        P-T and RI-T runs of one target at several block sizes -> :class:`Sweep`
``relative_drop``    (acc(P-T) - acc(RI-T)) / acc(P-T), per block size and seed
``loss_area``        mean mini-batch training loss over the run (the area under the training-loss
                     curve divided by the number of steps): the optimisation-speed measure
``steps_to``         first evaluated step whose training accuracy reaches a threshold (inf: never)
``example_images``   a few images of a task at each block size (for the figures)
``image_grid``, ``block_frame``, ``sweep_figure``, ``curves_figure``   the chapter's figures
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import torch
from matplotlib.figure import Figure

from ..device import derived_seed, get_device
from ..networks.resnet import SmallResNet
from ..pretraining import (TARGETS, TrainSpec, evaluate, load_state, target_images, target_runs)
from ..seed_runs import progress_bar
from ..validation import check_choice, check_int_sequence, check_positive_int, check_real_in, check_seed

__all__ = ["BLOCK_SIZES", "IMAGE_SIDE", "Sweep", "block_seed", "check_block_sizes", "run_sweep", "relative_drop",
           "loss_area", "steps_to", "example_images", "image_grid", "block_frame", "sweep_figure",
           "curves_figure", "KIND_COLORS"]

IMAGE_SIDE = 28
#: the block sizes that divide the image side, from unshuffled (28) to a pixel permutation (1)
BLOCK_SIZES = (28, 14, 7, 4, 2, 1)
KIND_COLORS = {"P": "C0", "RI": "C3"}
_LABEL = {"P": "P-T", "RI": "RI-T"}


def block_seed(seed: int, block_size: int) -> int:
    """The seed of the block permutation of ``block_size`` (one task per block size and notebook seed)."""
    return derived_seed(check_seed("seed", seed), "n1.blocks", check_block_sizes([block_size])[0])


def check_block_sizes(block_sizes, name: str = "block_sizes") -> list[int]:
    """Distinct divisors of 28, in decreasing order (the first may be 28, the unshuffled task)."""
    sizes = check_int_sequence(name, block_sizes, minimum=1, maximum=IMAGE_SIDE)
    bad = [b for b in sizes if IMAGE_SIDE % b]
    if bad:
        raise ValueError(f"{name} must divide the image side {IMAGE_SIDE} (allowed {list(BLOCK_SIZES)}), got {bad}")
    if len(set(sizes)) != len(sizes) or sizes != sorted(sizes, reverse=True):
        raise ValueError(f"{name} must be distinct and decreasing, got {sizes}")
    return sizes


@dataclasses.dataclass
class Sweep:
    """P-T and RI-T runs of one target at several block sizes.

    block_sizes (B,); steps (T,) the evaluated steps; for each kind "P" (P-T) and "RI" (RI-T):
    test_accuracy[kind] (B, K) of the final networks on the test images; train_accuracy[kind] and
    train_loss[kind] (B, K, T) on the training images at the evaluated steps; batch_loss[kind]
    (B, K, steps) the mini-batch losses; examples (B, n_show, 28, 28) training images as shuffled.
    """

    target: str
    block_sizes: list
    steps: np.ndarray
    test_accuracy: dict
    train_accuracy: dict
    train_loss: dict
    batch_loss: dict
    examples: np.ndarray
    n_train: int
    n_test: int

    @property
    def n_seeds(self) -> int:
        return self.test_accuracy["P"].shape[1]

    def index(self, block_size: int) -> int:
        if block_size not in self.block_sizes:
            raise ValueError(f"block_size must be one of {self.block_sizes}, got {block_size!r}")
        return self.block_sizes.index(block_size)


def run_sweep(target: str, block_sizes, source: dict, spec: TrainSpec, n_seeds: int, seed: int, *,
              n_train: int = 200, n_test: int = 500, width: int = 8, n_show: int = 6, device="auto",
              progress: bool = False) -> Sweep:
    """Train ``n_seeds`` P-T and RI-T networks on ``target`` at each block size.

    The ``n_train`` training and ``n_test`` test images are drawn with ``seed`` (the same images at
    every block size); block size b permutes them with :func:`block_seed` (seed, b).  ``source`` is
    P's state (``SourceModel.final``).  The training set is evaluated every ``spec.eval_every``
    steps; the test set once, on the final networks.  ``progress``: one bar over the block sizes.
    """
    check_choice("target", target, TARGETS)
    sizes = check_block_sizes(block_sizes)
    n_seeds = check_positive_int("n_seeds", n_seeds, minimum=2)
    n_show = check_positive_int("n_show", n_show)
    dev = get_device(device)
    acc, tr_acc, tr_loss, b_loss = ({k: [] for k in ("P", "RI")} for _ in range(4))
    examples = []
    steps = None
    bar = progress_bar(len(sizes), f"{target}: block sizes {sizes}, {n_seeds} P-T + {n_seeds} RI-T runs each", progress)
    for b in sizes:
        bs = block_seed(seed, b)
        train = target_images(target, "train", n_train, seed, block_size=b, block_seed=bs)
        test = target_images(target, "test", n_test, seed, block_size=b, block_seed=bs)
        examples.append(train.X[:n_show, 0].numpy())
        runs = target_runs(train, spec, n_seeds, seed, source=source, width=width, eval_sets={"train": (train.X, train.y)},
                           device=dev)
        for kind in ("P", "RI"):
            net = SmallResNet(train.n_classes, width).to(dev)
            acc[kind].append([evaluate(load_state(net, st), test.X, test.y)[1] for st in runs.finals(kind)])
            tr_acc[kind].append(runs.metric(kind, "train", "accuracy"))
            tr_loss[kind].append(runs.metric(kind, "train", "loss"))
            b_loss[kind].append(np.stack([r.batch_loss for r in runs.records[kind]]))
        steps = runs.records["P"][0].steps
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    arr = lambda d: {k: np.array(v, dtype=float) for k, v in d.items()}  # noqa: E731
    return Sweep(target, sizes, steps, arr(acc), arr(tr_acc), arr(tr_loss), arr(b_loss), np.stack(examples),
                 n_train, n_test)


def relative_drop(acc_pt, acc_rit) -> np.ndarray:
    """(acc(P-T) - acc(RI-T)) / acc(P-T), elementwise: the share of P-T's accuracy RI-T lacks."""
    p, r = np.asarray(acc_pt, dtype=float), np.asarray(acc_rit, dtype=float)
    if p.shape != r.shape:
        raise ValueError(f"acc_pt and acc_rit must have the same shape, got {p.shape} and {r.shape}")
    if np.any(p <= 0):
        raise ValueError("acc_pt must be positive (a relative drop divides by it)")
    return (p - r) / p


def loss_area(batch_loss) -> np.ndarray:
    """Mean over the last axis (steps) of mini-batch losses: the area under the training-loss curve
    per step.  Smaller is faster optimisation."""
    a = np.asarray(batch_loss, dtype=float)
    if a.ndim == 0 or a.shape[-1] == 0:
        raise ValueError("batch_loss must hold at least one step along its last axis")
    return a.mean(-1)


def steps_to(train_accuracy, steps, threshold: float) -> np.ndarray:
    """The first of ``steps`` (T,) where ``train_accuracy`` (..., T) reaches ``threshold``; inf if never."""
    threshold = check_real_in("threshold", threshold, 0.0, 1.0)
    a, s = np.asarray(train_accuracy, dtype=float), np.asarray(steps, dtype=float)
    if a.shape[-1] != s.shape[0]:
        raise ValueError(f"train_accuracy's last axis ({a.shape[-1]}) must match steps ({s.shape[0]})")
    hit = a >= threshold
    first = np.argmax(hit, axis=-1)
    return np.where(hit.any(-1), s[first], math.inf)


def example_images(target: str, block_sizes, seed: int, n: int = 4) -> np.ndarray:
    """(B, n, 28, 28): ``n`` training images of ``target`` permuted at each block size (the
    permutations of :func:`block_seed`)."""
    sizes = check_block_sizes(block_sizes)
    return np.stack([target_images(target, "train", n, seed, block_size=b, block_seed=block_seed(seed, b)).X[:, 0].numpy()
                     for b in sizes])


def image_grid(images: dict, block_sizes, title: str | None = None) -> Figure:
    """Rows = tasks ({name: (B, n, 28, 28)}), columns = block sizes (first image of each), plus the
    next images of the unshuffled task on the left."""
    names = list(images)
    B = len(block_sizes)
    fig = Figure(figsize=(1.25 * B + 0.4, 1.3 * len(names) + 0.3), layout="constrained")
    axes = fig.subplots(len(names), B, squeeze=False)
    for i, name in enumerate(names):
        for j, b in enumerate(block_sizes):
            ax = axes[i, j]
            ax.imshow(images[name][j, 0], cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]); ax.set_yticks([])
            if i == 0:
                ax.set_title(f"block {b}" + (" (none)" if b == IMAGE_SIDE else ""), fontsize="small")
            if j == 0:
                ax.set_ylabel(name.replace("fashion_", "fashion\n"), fontsize="small")
    if title:
        fig.suptitle(title, fontsize="small")
    return fig


def _mean_band(ax, x, y, color, label, ls="-"):
    m = y.mean(0)
    se = y.std(0, ddof=1) / np.sqrt(y.shape[0])
    ax.plot(x, m, ls, color=color, label=label)
    ax.fill_between(x, m - se, m + se, color=color, alpha=0.2, lw=0)


def curves_figure(curves: dict, steps, ylabel: str, title: str = "", logy: bool = False) -> Figure:
    """One panel per task: P-T and RI-T curves (mean over seeds ± SE). ``curves`` {task: {kind: (K, T)}}."""
    names = list(curves)
    fig = Figure(figsize=(3.0 * len(names), 2.8), layout="constrained")
    axes = fig.subplots(1, len(names), sharey=True, squeeze=False)[0]
    for ax, name in zip(axes, names):
        for kind in ("P", "RI"):
            _mean_band(ax, np.asarray(steps), np.asarray(curves[name][kind]), KIND_COLORS[kind], _LABEL[kind])
        ax.set_title(name, fontsize="small"); ax.set_xlabel("step")
        if logy:
            ax.set_yscale("log")
    axes[0].set_ylabel(ylabel); axes[0].legend(fontsize="small")
    if title:
        fig.suptitle(title, fontsize="small")
    return fig


def sweep_figure(sweeps: list) -> Figure:
    """Per target (rows): final test accuracy, relative drop and loss area vs block size."""
    fig = Figure(figsize=(11, 2.9 * len(sweeps)), layout="constrained")
    axes = fig.subplots(len(sweeps), 3, squeeze=False)
    for row, sw in zip(axes, sweeps):
        x = np.arange(len(sw.block_sizes))
        K = sw.n_seeds
        for kind in ("P", "RI"):
            a = sw.test_accuracy[kind]
            row[0].errorbar(x, a.mean(1), a.std(1, ddof=1) / np.sqrt(K), marker="o", capsize=3,
                            color=KIND_COLORS[kind], label=_LABEL[kind])
            la = loss_area(sw.batch_loss[kind])
            row[2].errorbar(x, la.mean(1), la.std(1, ddof=1) / np.sqrt(K), marker="o", capsize=3,
                            color=KIND_COLORS[kind], label=_LABEL[kind])
        rd = relative_drop(sw.test_accuracy["P"], sw.test_accuracy["RI"])
        row[1].errorbar(x, rd.mean(1), rd.std(1, ddof=1) / np.sqrt(K), marker="o", capsize=3, color="k")
        row[1].axhline(0, color="grey", lw=0.8, ls=":")
        titles = ("final test accuracy", "relative drop (P-T - RI-T) / P-T", "mean training loss (loss area / steps)")
        for ax, t in zip(row, titles):
            ax.set_xticks(x, [str(b) for b in sw.block_sizes]); ax.set_xlabel("block size")
            ax.set_title(f"{sw.target}: {t}", fontsize="small")
        row[0].legend(fontsize="small")
    return fig


def block_frame(sweeps: list, i: int, n_show: int = 4) -> Figure:
    """The slider's frame for block size index ``i``: per target, ``n_show`` shuffled training images
    and the mean mini-batch training loss of P-T and RI-T (mean over seeds ± SE, smoothed over 5 steps)."""
    fig = Figure(figsize=(10, 2.4 * len(sweeps)), layout="constrained")
    gs = fig.add_gridspec(len(sweeps), n_show + 3)
    lo = min(float(sw.batch_loss[k].mean(1).min()) for sw in sweeps for k in ("P", "RI"))
    hi = max(float(sw.batch_loss[k].mean(1).max()) for sw in sweeps for k in ("P", "RI"))
    for r, sw in enumerate(sweeps):
        for j in range(min(n_show, sw.examples.shape[1])):
            ax = fig.add_subplot(gs[r, j])
            ax.imshow(sw.examples[i, j], cmap="gray", vmin=0, vmax=1); ax.set_xticks([]); ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(sw.target, fontsize="small")
        ax = fig.add_subplot(gs[r, n_show:])
        kernel = np.ones(5) / 5
        for kind in ("P", "RI"):
            y = np.stack([np.convolve(c, kernel, mode="valid") for c in sw.batch_loss[kind][i]])
            _mean_band(ax, np.arange(y.shape[1]) + 3, y, KIND_COLORS[kind],
                       f"{_LABEL[kind]}: test acc {sw.test_accuracy[kind][i].mean():.3f}")
        ax.set_yscale("log"); ax.set_ylim(max(lo, 1e-3), hi * 1.1)
        ax.set_xlabel("step"); ax.set_ylabel("mini-batch loss"); ax.legend(fontsize="x-small")
        ax.set_title(f"{sw.target}, block size {sw.block_sizes[i]}", fontsize="small")
    return fig
