"""Task constructors: new labelled tasks built from a dataset's images and labels.

Every function takes integer class labels ``y`` of shape (n,) (and images where
needed) and returns new arrays; nothing is modified in place.  Binary tasks use
labels in {-1, +1}, the convention of the CHMM chapters.
"""
from __future__ import annotations

import torch

from .device import generator
from .validation import check_int_sequence, check_positive_int, check_real_in, check_seed

__all__ = ["class_subset", "superclass_labels", "binary_relabel", "random_labels", "replace_labels", "brightness_labels", "EVEN_ODD",
           "LESS_THAN_5"]

#: classes labelled +1 by the even/odd relabeling (even labels) and the "< 5" relabeling
EVEN_ODD = (0, 2, 4, 6, 8)
LESS_THAN_5 = (0, 1, 2, 3, 4)


def _check_labels(y) -> torch.Tensor:
    if not isinstance(y, torch.Tensor) or y.dim() != 1 or y.dtype not in (torch.int64, torch.int32, torch.uint8):
        raise ValueError(f"y must be a 1-D integer tensor of class labels, got {getattr(y, 'shape', type(y).__name__)}")
    return y.long()


def class_subset(X: torch.Tensor, y: torch.Tensor, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the examples whose label is in ``classes`` and relabel them 0..len(classes)-1
    in the order given.  X is (n, ...), y (n,)."""
    y = _check_labels(y)
    classes = check_int_sequence("classes", classes, minimum=0, maximum=int(y.max()))
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same length, got {X.shape[0]} and {y.shape[0]}")
    lookup = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    lookup[torch.tensor(classes)] = torch.arange(len(classes))
    new = lookup[y]
    keep = new >= 0
    return X[keep], new[keep]


def superclass_labels(y: torch.Tensor, groups) -> torch.Tensor:
    """Map each class to the index of its group.

    ``groups`` is a sequence (or dict, in insertion order) of disjoint class tuples
    covering every label present in ``y``, e.g. ``FASHION_SUPERCLASSES``.
    """
    y = _check_labels(y)
    groups = list(groups.values()) if isinstance(groups, dict) else list(groups)
    if not groups:
        raise ValueError("groups must be a non-empty sequence of class tuples")
    flat = [c for g in groups for c in check_int_sequence("groups", g, minimum=0)]
    if len(set(flat)) != len(flat):
        raise ValueError("groups must be disjoint: a class appears in two groups")
    present = set(torch.unique(y).tolist())
    if not present <= set(flat):
        raise ValueError(f"groups must cover every label in y; missing {sorted(present - set(flat))}")
    lookup = torch.full((max(flat) + 1,), -1, dtype=torch.long)
    for gi, g in enumerate(groups):
        lookup[torch.tensor(list(g))] = gi
    return lookup[y]


def binary_relabel(y: torch.Tensor, positive) -> torch.Tensor:
    """+1 for labels in ``positive``, -1 otherwise (e.g. ``EVEN_ODD`` or ``LESS_THAN_5``); float (n,)."""
    y = _check_labels(y)
    positive = check_int_sequence("positive", positive, minimum=0)
    pos = torch.isin(y, torch.tensor(positive))
    return torch.where(pos, 1.0, -1.0)


def random_labels(y: torch.Tensor, fraction: float, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Replace a ``fraction`` in [0, 1] of the labels (chosen at random) by uniform random
    classes in 0..num_classes-1; the others are kept.  Returns a new (n,) tensor."""
    y = _check_labels(y)
    fraction = check_real_in("fraction", fraction, 0.0, 1.0)
    num_classes = check_positive_int("num_classes", num_classes, minimum=2)
    return replace_labels(y, fraction, range(num_classes), generator(check_seed("seed", seed)))


def replace_labels(y: torch.Tensor, fraction: float, classes, g: torch.Generator) -> torch.Tensor:
    """The draw behind :func:`random_labels`, for any label set and a caller's stream ``g``.

    The positions replaced are the first round(``fraction`` * n) of one permutation drawn from ``g``,
    so with the same stream a larger fraction corrupts a superset of the positions. Their new labels
    are uniform over ``classes``, drawn from ``g`` after the permutation. Returns a new (n,) tensor.
    """
    y = _check_labels(y)
    fraction = check_real_in("fraction", fraction, 0.0, 1.0)
    cls = torch.tensor(check_int_sequence("classes", list(classes), minimum=0), dtype=torch.int64)
    if len(cls) == 0:
        raise ValueError("classes must name at least one label")
    n = y.shape[0]
    n_rand = int(round(fraction * n))
    idx = torch.randperm(n, generator=g)[:n_rand]
    out = y.clone()
    out[idx] = cls[torch.randint(0, len(cls), (n_rand,), generator=g)]
    return out


def brightness_labels(X: torch.Tensor, n_levels: int = 4, edges=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Label each image by the level of its mean pixel value: a task that ignores shape.

    X (n, c, h, w) images.  Without ``edges``, the ``n_levels - 1`` inner edges are the quantiles
    of the mean brightness over X (so the levels are equally frequent on X); pass the edges computed
    on a training split to label a test split the same way.  Returns (labels (n,) int64 in
    0..n_levels-1, edges (n_levels - 1,) float).
    """
    if not isinstance(X, torch.Tensor) or X.dim() != 4:
        raise ValueError(f"X must be a tensor of images with shape (n, c, h, w), got {getattr(X, 'shape', type(X).__name__)}")
    n_levels = check_positive_int("n_levels", n_levels, minimum=2)
    mean = X.double().mean(dim=(1, 2, 3))
    if edges is None:
        edges = torch.quantile(mean, torch.arange(1, n_levels, dtype=torch.float64) / n_levels)
    else:
        edges = torch.as_tensor(edges, dtype=torch.float64)
        if edges.shape != (n_levels - 1,) or bool((edges[1:] <= edges[:-1]).any()):
            raise ValueError(f"edges must be {n_levels - 1} increasing numbers (n_levels - 1), got {edges.tolist()}")
    return torch.bucketize(mean, edges, right=True).long(), edges
