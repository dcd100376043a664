"""A family of named classification tasks in one 10-way label space, as flat vectors.

Each task is a set of images from Fashion-MNIST (28x28, average-pooled to ``size`` x ``size``) or
scikit-learn's digits (8x8, bilinearly upsampled to ``size`` x ``size``), flattened and centred the
same way for every task (``x - 0.5``: pixel values in [-0.5, 0.5]), with its labels kept in the
one label space 0..9 (:data:`N_CLASSES`).  So ``"fashion_0_4"`` and ``"fashion_5_9"`` use labels
0-4 and 5-9 of the same 10-way head, and their union is the task ``"fashion"``; ``"ifashion"`` is
Fashion-MNIST with inverted images (``1 - x``, so after centring the negated input).

A task's images are a fixed number ``n`` drawn balanced over its classes (``n // C`` per class, the
first ``n % C`` classes one more), from the stream ``("task_family.draw", task index, split
index)`` under the caller's seed, so each task and split has its own draw.  ``random_fraction``
replaces that fraction of the labels (``round(fraction * n)`` of them, positions chosen at random)
by labels drawn uniformly from the task's own classes, from the separate stream
``("task_family.random_labels", task index, split index)``; the images are the same as at
fraction 0.

Loaded datasets are cached in memory (one pooled copy per dataset, split and size).  A missing
Fashion-MNIST raises the ``FileNotFoundError`` of :func:`tasknb.data.load_fashion_mnist`, which says
how to install it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import torch
import torch.nn.functional as F

from .data import invert, load_digits, load_fashion_mnist, upsample
from .device import stream
from .tasks import replace_labels
from .validation import check_choice, check_positive_int, check_real_in, check_seed

__all__ = ["TASKS", "N_CLASSES", "Task", "task_data", "union", "task_classes"]

#: size of the one label space every task lives in
N_CLASSES = 10

#: name -> (source dataset, classes, inverted images?)
_TASK_SPECS = {
    "fashion": ("fashion", tuple(range(10)), False),
    "fashion_0_4": ("fashion", (0, 1, 2, 3, 4), False),
    "fashion_5_9": ("fashion", (5, 6, 7, 8, 9), False),
    "fashion_tops": ("fashion", (0, 2, 4, 6), False),
    "fashion_footwear": ("fashion", (5, 7, 9), False),
    "ifashion": ("fashion", tuple(range(10)), True),
    "digits": ("digits", tuple(range(10)), False),
    "digits_0_4": ("digits", (0, 1, 2, 3, 4), False),
    "digits_5_9": ("digits", (5, 6, 7, 8, 9), False),
}
#: the task names, in a fixed order (a task's index in it keys its streams)
TASKS = tuple(_TASK_SPECS)
_SPLITS = ("train", "test")
#: the constant subtracted from every pixel (images in [0, 1])
CENTRE = 0.5


@dataclass(frozen=True)
class Task:
    """A task: ``X`` (n, d) float32 flat centred images, ``y`` (n,) int64 labels in 0..9,
    ``classes`` the labels the task uses (a union keeps both tasks' classes)."""
    name: str
    X: torch.Tensor
    y: torch.Tensor
    classes: tuple = field(default=tuple(range(N_CLASSES)))

    @property
    def n(self) -> int:
        return int(self.y.shape[0])

    @property
    def d(self) -> int:
        return int(self.X.shape[1])


def task_classes(name: str) -> tuple:
    """The classes (labels in 0..9) of the task ``name``."""
    check_choice("name", name, TASKS)
    return _TASK_SPECS[name][1]


def _resize(X: torch.Tensor, size: int) -> torch.Tensor:
    h = X.shape[-1]
    if size == h:
        return X
    if size < h and h % size == 0:
        return F.avg_pool2d(X, kernel_size=h // size)
    if size < h:
        return F.adaptive_avg_pool2d(X, size)
    return upsample(X, size)


@lru_cache(maxsize=16)
def _pool(dataset: str, split: str, size: int, inverted: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of a dataset split, resized to size x size, flattened and centred (cached)."""
    if dataset == "fashion":
        X, y = load_fashion_mnist(split)
    else:
        X, y = load_digits(split)
    if inverted:
        X = invert(X)
    X = _resize(X, size)
    return (X.reshape(X.shape[0], -1) - CENTRE).to(torch.float32).contiguous(), y.to(torch.int64)


def task_data(name: str, n: int, split: str = "train", seed: int = 0, size: int = 14,
              random_fraction: float = 0.0) -> Task:
    """``n`` images of task ``name`` (one of :data:`TASKS`), balanced over its classes.

    ``split`` "train" or "test"; ``size`` the image side after pooling/upsampling (images are
    flattened to ``size**2`` features); ``random_fraction`` in [0, 1] the fraction of labels replaced
    by uniform labels over the task's classes (own stream, see the module docstring).
    Raises ValueError if a class has fewer than the ``n // C (+1)`` images it needs.
    """
    check_choice("name", name, TASKS)
    n = check_positive_int("n", n)
    check_choice("split", split, _SPLITS)
    seed = check_seed("seed", seed)
    size = check_positive_int("size", size, minimum=2)
    random_fraction = check_real_in("random_fraction", random_fraction, 0.0, 1.0)
    dataset, classes, inverted = _TASK_SPECS[name]
    Xall, yall = _pool(dataset, split, size, inverted)
    C = len(classes)
    if n < C:
        raise ValueError(f"n must be >= the number of classes of task {name!r} ({C}), got {n}")
    ti, si = TASKS.index(name), _SPLITS.index(split)
    g = stream(seed, "task_family.draw", ti, si)
    idx = []
    for j, c in enumerate(classes):
        want = n // C + (1 if j < n % C else 0)
        pool = torch.nonzero(yall == c).flatten()
        if want > len(pool):
            raise ValueError(f"n = {n} needs {want} images of class {c} for task {name!r} ({split}), "
                             f"but only {len(pool)} exist; use n <= {len(pool) * C}")
        idx.append(pool[torch.randperm(len(pool), generator=g)[:want]])
    idx = torch.cat(idx)
    idx = idx[torch.randperm(len(idx), generator=g)]  # interleave the classes
    X, y = Xall[idx].clone(), yall[idx].clone()
    if random_fraction > 0:
        y = replace_labels(y, random_fraction, classes, stream(seed, "task_family.random_labels", ti, si))
    return Task(name, X, y, tuple(classes))


def union(a: Task, b: Task) -> Task:
    """The task whose data is ``a``'s followed by ``b``'s (name ``"a+b"``, classes the union)."""
    for nm, t in (("a", a), ("b", b)):
        if not isinstance(t, Task):
            raise ValueError(f"{nm} must be a Task (from task_data), got {type(t).__name__}")
    if a.X.shape[1] != b.X.shape[1]:
        raise ValueError(f"a and b must have the same number of features, got {a.X.shape[1]} and {b.X.shape[1]}")
    classes = tuple(sorted(set(a.classes) | set(b.classes)))
    return Task(f"{a.name}+{b.name}", torch.cat([a.X, b.X]), torch.cat([a.y, b.y]), classes)
