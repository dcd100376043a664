"""Real datasets, offline, and image transforms.

* Fashion-MNIST (70,000 28x28 grey images, 10 classes) from the files of the
  Debian package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``),
  loaded with torchvision's ``FashionMNIST`` loader (``download=False``) from a
  root this module prepares.  ``TASKNB_DATA`` overrides where that root lives;
  ``TASKNB_FASHION_MNIST`` overrides where the ``*-ubyte.gz`` files are read.
* scikit-learn's bundled digits (1,797 8x8 images, 10 classes), optionally
  upsampled to 28x28.

Images are returned as float tensors in [0, 1] of shape (n, 1, h, w) with integer
labels of shape (n,).  Nothing is downloaded.

``load_task_images`` gives the 28x28 images of a class subset with task labels 0..C-1, and
``draw_subset`` a seeded sample of them (the training and test pools of Part S).  The draws of a
run's data each have their own stream under the user's ``data_seed``: ``data_draw_seed(data_seed,
draw)`` for ``draw`` in ``DATA_DRAWS`` (the fixed test images, the training subset, the imprinting
images), so no ``data_seed`` replays another one's draws.
"""
from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import torch

from .device import derived_seed, generator
from .tasks import class_subset
from .validation import check_choice, check_positive_int, check_seed

__all__ = ["DATASETS", "FASHION_CLASSES", "FASHION_SUPERCLASSES", "load_dataset", "load_fashion_mnist",
           "load_digits", "data_root", "block_shuffle", "invert", "upsample", "load_task_images", "draw_subset",
           "training_images", "draw_per_class", "DATA_DRAWS", "data_draw_seed"]

DATASETS = ("fashion_mnist", "digits")
SPLITS = ("train", "test")
DEBIAN_FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
_FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                  "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

#: Fashion-MNIST class names, by label
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
#: the natural hierarchy of Fashion-MNIST: tops, footwear, and the rest
FASHION_SUPERCLASSES = {"tops": (0, 2, 4, 6), "footwear": (5, 7, 9), "other": (1, 3, 8)}

_MISSING_HELP = ("Fashion-MNIST files not found in {src}. Install them with\n"
                 "    sudo apt-get install -y dataset-fashion-mnist\n"
                 "(Debian/Ubuntu; it puts the four *-ubyte.gz files in /usr/share/datasets/fashion-mnist), "
                 "or point TASKNB_FASHION_MNIST at a folder holding {files}.")


def data_root() -> Path:
    """Folder where tasknb prepares datasets: ``$TASKNB_DATA`` or ``~/.cache/tasknb/data``."""
    return Path(os.environ.get("TASKNB_DATA", Path.home() / ".cache" / "tasknb" / "data"))


def _prepare_fashion_root() -> Path:
    """Unpack the Debian ``.gz`` files into ``<root>/FashionMNIST/raw`` as torchvision expects."""
    src = Path(os.environ.get("TASKNB_FASHION_MNIST", DEBIAN_FASHION_DIR))
    root = data_root()
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in _FASHION_FILES):
        return root
    missing = [f for f in _FASHION_FILES if not (src / f"{f}.gz").exists() and not (src / f).exists()]
    if missing:
        raise FileNotFoundError(_MISSING_HELP.format(src=src, files=", ".join(f + ".gz" for f in _FASHION_FILES)))
    raw.mkdir(parents=True, exist_ok=True)
    for f in _FASHION_FILES:
        tmp = raw / f"{f}.part"
        if (src / f).exists():
            shutil.copyfile(src / f, tmp)
        else:
            with gzip.open(src / f"{f}.gz", "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        tmp.replace(raw / f)
    return root


def load_fashion_mnist(split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST images (n, 1, 28, 28) in [0, 1] and labels (n,) int64.

    ``split``: "train" (60,000) or "test" (10,000).  Raises FileNotFoundError, with
    the command that installs the files, when they are missing.
    """
    check_choice("split", split, SPLITS)
    from torchvision.datasets import FashionMNIST

    ds = FashionMNIST(str(_prepare_fashion_root()), train=(split == "train"), download=False)
    X = ds.data.unsqueeze(1).to(torch.float32) / 255.0
    return X, ds.targets.to(torch.int64)


def load_digits(split: str = "train", size: int = 8, test_fraction: float = 0.25,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's digits: images (n, 1, size, size) in [0, 1] and labels (n,) int64.

    The 1,797 images are split once, by a seeded permutation, into train and test
    (``test_fraction`` of them, default 0.25).  ``size`` 8 keeps the native
    resolution; any other size (e.g. 28, to sit beside Fashion-MNIST) upsamples
    bilinearly.
    """
    check_choice("split", split, SPLITS)
    size = check_positive_int("size", size, minimum=2)
    if not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    X = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(d.target, dtype=torch.int64)
    perm = torch.randperm(len(y), generator=generator(check_seed("seed", seed)))
    n_test = int(round(test_fraction * len(y)))
    idx = perm[:n_test] if split == "test" else perm[n_test:]
    X, y = X[idx], y[idx]
    if size != 8:
        X = upsample(X, size)
    return X, y


def load_dataset(name: str, split: str = "train", **kwargs) -> tuple[torch.Tensor, torch.Tensor]:
    """Load one of :data:`DATASETS` ("fashion_mnist", "digits") by name."""
    check_choice("name", name, DATASETS)
    return load_fashion_mnist(split) if name == "fashion_mnist" else load_digits(split, **kwargs)


def _check_images(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"x must be a tensor of images with shape (n, c, h, w), got {shape}")
    return x


def upsample(x: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of images (n, c, h, w) to (n, c, size, size), values clipped to [0, 1]."""
    _check_images(x)
    size = check_positive_int("size", size, minimum=1)
    out = torch.nn.functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return out.clamp(0.0, 1.0)


def invert(x: torch.Tensor) -> torch.Tensor:
    """Photographic negative of images in [0, 1]: ``1 - x``."""
    return 1.0 - _check_images(x)


def _derangement(n: int, g: torch.Generator) -> torch.Tensor:
    """A uniformly random permutation of range(n) with no fixed point (n >= 2), by rejection."""
    ar = torch.arange(n)
    while True:
        p = torch.randperm(n, generator=g)
        if not bool((p == ar).any()):
            return p


def block_shuffle(x: torch.Tensor, block_size: int, seed: int = 0) -> torch.Tensor:
    """Cut each image into square blocks of side ``block_size`` and permute the blocks.

    The same permutation is applied to every image of one call (it defines a task,
    as in Neyshabur et al.'s block-shuffled targets).  Whenever there are at least
    two blocks the permutation moves every block (a derangement), so the result is
    never the identity; with one block (``block_size`` equal to the image side) the
    images are returned unchanged.

    Parameters
    ----------
    x : (n, c, h, w) tensor with h == w.
    block_size : int dividing h, e.g. 1, 2, 4, 7, 14 or 28 for 28x28 images.
    seed : int >= 0, chooses the permutation.
    """
    _check_images(x)
    n, c, h, w = x.shape
    if h != w:
        raise ValueError(f"x must hold square images, got h={h}, w={w}")
    divisors = [b for b in range(1, h + 1) if h % b == 0]
    if isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size not in divisors:
        raise ValueError(f"block_size must divide the image side {h}; allowed: {divisors}; got {block_size!r}")
    seed = check_seed("seed", seed)
    k = h // block_size
    nb = k * k
    if nb < 2:
        return x.clone()
    perm = _derangement(nb, generator(seed)).to(x.device)
    blocks = x.reshape(n, c, k, block_size, k, block_size).permute(0, 1, 2, 4, 3, 5).reshape(n, c, nb, block_size, block_size)
    blocks = blocks[:, :, perm]
    return blocks.reshape(n, c, k, k, block_size, block_size).permute(0, 1, 2, 4, 3, 5).reshape(n, c, h, w)


def load_task_images(dataset: str, split: str, classes) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, 1, 28, 28) of the dataset classes ``classes`` and their task labels 0..C-1 (label c
    = dataset class ``classes[c]``, :func:`tasknb.tasks.class_subset`); digits are upsampled to 28x28."""
    check_choice("dataset", dataset, DATASETS)
    kw = {"size": 28} if dataset == "digits" else {}
    X, y = load_dataset(dataset, split, **kw)
    return class_subset(X, y, classes)


def draw_subset(X, y, n, seed: int, name: str = "n_train"):
    """``n`` samples of (X, y) drawn without replacement with ``seed`` (all of them when n is None);
    ``name`` is the parameter named in the error when n is out of range."""
    if n is None:
        return X, y
    n = check_positive_int(name, n)
    if n > len(y):
        raise ValueError(f"{name} must be an integer in [1, {len(y)}] for these classes, got {n}")
    idx = torch.randperm(len(y), generator=generator(seed))[:n]
    return X[idx], y[idx]


#: the data draws of a Part S run, each with its own stream (:func:`data_draw_seed`)
DATA_DRAWS = ("test_images", "training_subset", "imprint_images")


def data_draw_seed(data_seed: int, draw: str) -> int:
    """The seed of one data draw of a run: ``derived_seed(data_seed, "data." + draw)``
    (:func:`tasknb.device.derived_seed`), ``draw`` one of ``DATA_DRAWS`` -- "test_images" (the
    fixed test images of ``readout.prediction_set``), "training_subset" (``training_images``),
    "imprint_images" (the images an imprinted head is built from).  Distinct draws and distinct
    ``data_seed`` values never share a stream (unlike ``data_seed + j``, where data_seed=1's
    training subset was data_seed=0's imprinting draw)."""
    check_choice("draw", draw, DATA_DRAWS)
    return derived_seed(check_seed("data_seed", data_seed), "data." + draw)


def training_images(dataset: str, classes, n_train, data_seed: int):
    """The training pool of a run: the train-split images of ``classes`` (:func:`load_task_images`),
    ``n_train`` of them drawn with ``data_draw_seed(data_seed, "training_subset")`` (all when
    ``n_train`` is None).

    Returns X (n, 1, 28, 28) float32 in [0, 1] (8x8 for digits) and y (n,) int64 on the CPU.
    """
    X, y = load_task_images(dataset, "train", classes)
    return draw_subset(X, y, n_train, data_draw_seed(data_seed, "training_subset"))


def draw_per_class(labels: torch.Tensor, values, n: int, g: torch.Generator, name: str, shown=None) -> torch.Tensor:
    """Indices of ``n`` samples of each class, drawn without replacement with the generator ``g``.

    ``labels`` (N,) int tensor; ``values`` the label values to draw from, in order (the result
    concatenates their draws); ``shown`` the class names used in the error (default ``values``),
    raised, naming the parameter ``name``, when a class has fewer than ``n`` samples.
    """
    picks = []
    for value, label in zip(values, values if shown is None else shown):
        idx = torch.nonzero(labels == value).flatten()
        if n > len(idx):
            raise ValueError(f"{name} must be an integer in [1, {len(idx)}] for class {label}, got {n}")
        picks.append(idx[torch.randperm(len(idx), generator=g)[:n]])
    return torch.cat(picks)
