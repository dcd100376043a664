"""Transfer experiments on real images: the real-data side of Gerace et al. (2022).

The paper backs its synthetic model (the CHMM) with transfer experiments on
EMNIST-letters, MNIST and notMNIST (section 4.1 / figure 2a, section 4.2 /
figure 4a, appendix C).  None of those sets is available offline here, so this
module rebuilds the same *kinds* of source/target pairs from Fashion-MNIST (or
scikit-learn's digits upsampled to 28x28):

==================  =========================================  ==========================
experiment          source -> target                            paper
==================  =========================================  ==========================
``substitution``    two groups of 4 classes -> one class        fig. 2a (EMNIST letters)
                    swapped in each group
``relabeling``      all classes, even/odd -> all classes, < 5   app. C.2 (notMNIST)
``edge``            edge-enhanced images -> original images,    app. C.1 (MNIST)
                    even/odd labels on both
``brightness``      labels from mean brightness only ->         app. C.2 (MNIST)
                    even/odd ("orthogonal" tasks)
``hard_to_easy``    all classes even/odd -> a 4-class subset    fig. 4a, top
                    with the same labels
``easy_to_hard``    the 4-class subset -> all classes           fig. 4a, bottom
==================  =========================================  ==========================

:func:`make_task_pair` builds one pair of tasks (flattened, standardised images
with labels in {-1, +1}); :func:`learning_curves_on_tasks` runs the transfer
protocol of section 2.2 / appendix D on any pair (source network with early
stopping, then TF, RF, 2L and ft-TF on growing target sets), batched over K
realizations, and returns a :class:`tasknb.feature_transfer.TransferCurves`;
:func:`real_data_experiments` runs several experiments in a row.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from ..book.plotting import new_figure, plot_learning_curves
from ..data import DATASETS, load_dataset
from ..device import derived_seed, get_device, stream
from ..feature_transfer import (LEARNERS, TransferCurves, binary_family, check_learners, paired_standard_error,
                                resolve_source_networks, target_learning_curves)
from ..networks.stacks import TwoLayerStack, classification_error, init_two_layer
from ..tasks import EVEN_ODD, LESS_THAN_5, binary_relabel
from ..training import FINETUNE_DEFAULT, SCRATCH_DEFAULT, SOURCE_DEFAULT, TrainingConfig, train_stack
from ..validation import (check_choice, check_int_sequence, check_positive_int, check_positive_real, check_real_in,
                         check_seed)

__all__ = ["EXPERIMENTS", "PAPER_FIGURE", "SUBSTITUTION_SOURCE", "SUBSTITUTION_TARGET", "EASY_CLASSES",
           "edge_enhance", "mean_brightness", "brightness_labels", "standardize", "TaskPair", "make_task_pair",
           "learning_curves_on_tasks", "real_data_experiments", "transfer_gain", "transfer_gain_sem",
           "experiment_figure"]

#: the experiments :func:`make_task_pair` knows, in the order the book shows them
EXPERIMENTS = ("substitution", "relabeling", "edge", "brightness", "hard_to_easy", "easy_to_hard")

#: where each experiment sits in the paper
PAPER_FIGURE = {"substitution": "fig. 2a", "relabeling": "fig. C.2a", "edge": "fig. C.1",
                "brightness": "fig. C.2b", "hard_to_easy": "fig. 4a (top)", "easy_to_hard": "fig. 4a (bottom)"}

#: fig. 2a analogue on Fashion-MNIST: group +1 = {T-shirt, Trouser, Pullover, Dress},
#: group -1 = {Coat, Sandal, Shirt, Sneaker} ...
SUBSTITUTION_SOURCE = ((0, 1, 2, 3), (4, 5, 6, 7))
#: ... and the target swaps one class per group: Dress -> Bag, Sneaker -> Ankle boot
SUBSTITUTION_TARGET = ((0, 1, 2, 8), (4, 5, 6, 9))
#: the "easy" task of fig. 4a: a 4-class slice, two even and two odd classes
#: (Fashion-MNIST: T-shirt, Pullover | Trouser, Dress: no footwear, no bags)
EASY_CLASSES = (0, 2, 1, 3)


# ----------------------------------------------------------------------------- image transforms
def _check_images(x, name: str = "x") -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"{name} must be a float tensor of images with shape (n, c, h, w), got {shape}")
    return x


def edge_enhance(x: torch.Tensor, alpha=(0.5, 0.7), seed: int = 0) -> torch.Tensor:
    """Blend each image with its Laplacian edge map, like imgaug's ``EdgeDetect`` (app. C.1 / D.1).

    Each image is convolved with the kernel ``(1 - a) * identity + a * Laplacian``, where the
    Laplacian is ``[[0, 1, 0], [1, -4, 1], [0, 1, 0]]`` and the blend ``a`` is drawn uniformly
    in ``alpha`` per image (the paper uses imgaug with alpha in (0.5, 0.7)); the result is
    clipped to [0, 1].  Flat regions are dimmed to a fraction ``1 - a`` of their value while
    the outlines of the object light up.

    Parameters
    ----------
    x : (n, c, h, w) float tensor of images in [0, 1].
    alpha : float in [0, 1] or a pair (low, high) with 0 <= low <= high <= 1; default (0.5, 0.7).
    seed : int >= 0, draws the per-image blend factors.

    Returns
    -------
    (n, c, h, w) tensor in [0, 1], same dtype and device as ``x``.
    """
    _check_images(x)
    if isinstance(alpha, (tuple, list)):
        if len(alpha) != 2:
            raise ValueError(f"alpha must be a number in [0, 1] or a pair (low, high), got {alpha!r}")
        low, high = (check_real_in("alpha", a, 0.0, 1.0) for a in alpha)
        if low > high:
            raise ValueError(f"alpha must be a pair (low, high) with low <= high, got {alpha!r}")
    else:
        low = high = check_real_in("alpha", alpha, 0.0, 1.0)
    seed = check_seed("seed", seed)
    n, c = x.shape[:2]
    a = low + (high - low) * torch.rand(n, generator=stream(seed, "c8.edge-strength"), dtype=torch.float64)
    a = a.to(x.device, x.dtype).view(n, 1, 1, 1)
    # the 5-point Laplacian with zero padding, as four shifted copies (faster than conv2d on a CPU)
    p = torch.nn.functional.pad(x, (1, 1, 1, 1))
    edges = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4.0 * x
    return ((1.0 - a) * x + a * edges).clamp(0.0, 1.0)


def mean_brightness(x: torch.Tensor) -> torch.Tensor:
    """Mean pixel value of each image: (n, c, h, w) -> (n,) float64."""
    _check_images(x)
    return x.reshape(x.shape[0], -1).to(torch.float64).mean(dim=1)


def brightness_labels(x: torch.Tensor, edges=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels that depend on nothing but an image's mean brightness (app. C.2's "orthogonal" source).

    The paper puts MNIST images with mean brightness below 20, or within (35, 59), in one
    group and the rest in the other.  We keep that interleaved shape but choose the cut
    points as the quartiles of the brightness, so the two groups are balanced on any
    dataset: label +1 for the darkest quarter and the third quarter, -1 for the second
    and the brightest quarter.

    Parameters
    ----------
    x : (n, c, h, w) float images.
    edges : None (use the quartiles of ``x``'s brightness) or 3 increasing cut points,
        e.g. the ``edges`` returned for the training images, to label a test set.

    Returns
    -------
    (labels, edges): labels (n,) float in {-1, +1}; edges (3,) float64 tensor.
    """
    b = mean_brightness(x)
    if edges is None:
        edges = torch.quantile(b, torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64))
    else:
        edges = torch.as_tensor(edges, dtype=torch.float64).flatten()
        if edges.numel() != 3 or not bool(torch.all(edges[1:] > edges[:-1])):
            raise ValueError(f"edges must be 3 increasing cut points, got {edges.tolist()}")
    bin_index = torch.bucketize(b, edges.to(b.device))          # 0..3
    labels = torch.where(bin_index % 2 == 0, 1.0, -1.0).to(torch.float32)
    return labels, edges


def standardize(x: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """Flatten images (n, c, h, w) to (n, D = c h w) and map pixels to ``(pixel - mean) / std``.

    One scalar shift and scale for every pixel (not per-pixel statistics), so that the
    inputs of all tasks of a pair, edge-enhanced or not, go through the same map and have
    O(1) entries as in the CHMM; then ``ReLU(x W1^T / D)`` of eq. (6) has O(1/sqrt(D)) entries.
    """
    _check_images(x)
    mean = float(mean)
    std = check_positive_real("std", std)
    return ((x.reshape(x.shape[0], -1) - mean) / std).contiguous()


# ----------------------------------------------------------------------------- task pairs
@dataclass
class TaskPair:
    """A source task and a target task, ready for :func:`learning_curves_on_tasks`.

    ``source_X`` (N_s, D), ``source_y`` (N_s,) in {-1, +1}: the pool the source training and
    validation sets are drawn from; ``source_test_X``, ``source_test_y``: held-out source
    examples; ``target_X`` (N_t, D), ``target_y``: the pool the target training sets are drawn
    from; ``target_test_X``, ``target_test_y``: the target test set.  ``name``, ``description``
    and ``info`` (classes, cut points, ...) document the construction; ``images`` holds a few
    example source and target images (n, h, w) for display.
    """

    name: str
    description: str
    source_X: torch.Tensor
    source_y: torch.Tensor
    source_test_X: torch.Tensor
    source_test_y: torch.Tensor
    target_X: torch.Tensor
    target_y: torch.Tensor
    target_test_X: torch.Tensor
    target_test_y: torch.Tensor
    info: dict = field(default_factory=dict)
    images: dict = field(default_factory=dict)

    @property
    def D(self) -> int:
        return self.source_X.shape[1]

    def sizes(self) -> dict:
        """Pool sizes: source, source test, target, target test."""
        return {"source": self.source_X.shape[0], "source_test": self.source_test_X.shape[0],
                "target": self.target_X.shape[0], "target_test": self.target_test_X.shape[0]}

    def summary(self) -> "TaskPair":
        """A copy without the data pools (empty tensors), keeping name, description, info,
        images and the pool sizes (in ``info["sizes"]``)."""
        e, ey = torch.empty(0, self.D), torch.empty(0)
        return TaskPair(self.name, self.description, e, ey, e, ey, e, ey, e, ey,
                        {**self.info, "sizes": self.sizes()}, self.images)


def _group_labels(y: torch.Tensor, groups) -> tuple[torch.Tensor, torch.Tensor]:
    """Keep the examples whose class is in one of two groups; label group 0 as +1, group 1 as -1."""
    pos, neg = groups
    keep = torch.isin(y, torch.tensor(list(pos) + list(neg)))
    return keep, torch.where(torch.isin(y[keep], torch.tensor(list(pos))), 1.0, -1.0)


def _check_groups(name: str, groups, n_classes: int):
    try:
        pos, neg = groups
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of class groups ((a, b, ...), (c, d, ...)), got {groups!r}") from None
    pos = check_int_sequence(name, pos, minimum=0, maximum=n_classes - 1)
    neg = check_int_sequence(name, neg, minimum=0, maximum=n_classes - 1)
    if set(pos) & set(neg):
        raise ValueError(f"{name}: the two groups must be disjoint, both contain {sorted(set(pos) & set(neg))}")
    return tuple(pos), tuple(neg)


def _load(dataset: str, data):
    if data is not None:
        try:
            (Xtr, ytr), (Xte, yte) = data
        except (TypeError, ValueError):
            raise ValueError("data must be ((X_train, y_train), (X_test, y_test)) with images (n, c, h, w) "
                             "and integer labels (n,)") from None
        _check_images(Xtr, "data train images")
        _check_images(Xte, "data test images")
        return Xtr, ytr.long(), Xte, yte.long()
    kwargs = {"size": 28} if dataset == "digits" else {}
    Xtr, ytr = load_dataset(dataset, "train", **kwargs)
    Xte, yte = load_dataset(dataset, "test", **kwargs)
    return Xtr, ytr, Xte, yte


def make_task_pair(name: str, dataset: str = "fashion_mnist", *, groups=SUBSTITUTION_SOURCE,
                   target_groups=SUBSTITUTION_TARGET, easy_classes=EASY_CLASSES, alpha=(0.5, 0.7),
                   seed: int = 0, data=None) -> TaskPair:
    """Build the source and target tasks of one experiment of :data:`EXPERIMENTS`.

    Parameters
    ----------
    name : one of "substitution", "relabeling", "edge", "brightness", "hard_to_easy",
        "easy_to_hard" (see the module docstring for what each builds).
    dataset : "fashion_mnist" (default; 60,000 / 10,000 images) or "digits" (scikit-learn's
        1,797 digits upsampled to 28x28).  Ignored when ``data`` is given.
    groups, target_groups : the two class groups of the source and of the target task of
        "substitution" (defaults: :data:`SUBSTITUTION_SOURCE`, :data:`SUBSTITUTION_TARGET`).
    easy_classes : the classes of the "easy" task of "hard_to_easy" / "easy_to_hard"
        (default :data:`EASY_CLASSES`); it must hold both even and odd classes.
    alpha : the edge-enhancement blend range of "edge" (default (0.5, 0.7), as in app. D.1).
    seed : int >= 0, the random blend factors of "edge".
    data : optional ((X_train, y_train), (X_test, y_test)) images (n, 1, h, w) in [0, 1] and
        integer labels, used instead of loading ``dataset`` (tests use small fakes).

    Returns
    -------
    TaskPair with inputs standardised by :func:`standardize` using the mean and standard
    deviation of the pixels of the (untransformed) training images, and labels in {-1, +1}.
    """
    check_choice("name", name, EXPERIMENTS)
    check_choice("dataset", dataset, DATASETS)
    seed = check_seed("seed", seed)
    Xtr, ytr, Xte, yte = _load(dataset, data)
    n_classes = int(max(ytr.max(), yte.max())) + 1
    mean, std = float(Xtr.mean()), float(Xtr.std())
    info: dict = {"dataset": dataset if data is None else "custom", "pixel_mean": mean, "pixel_std": std}

    def flat(x):
        return standardize(x, mean, std)

    if name == "substitution":
        src_g = _check_groups("groups", groups, n_classes)
        tgt_g = _check_groups("target_groups", target_groups, n_classes)
        ks, ys = _group_labels(ytr, src_g)
        kst, yst = _group_labels(yte, src_g)
        kt, yt = _group_labels(ytr, tgt_g)
        ktt, ytt = _group_labels(yte, tgt_g)
        S, St, T, Tt = Xtr[ks], Xte[kst], Xtr[kt], Xte[ktt]
        info.update(source_groups=src_g, target_groups=tgt_g, source_task=f"groups {src_g}",
                    target_task=f"groups {tgt_g}")
        desc = f"classes {src_g[0]} vs {src_g[1]} -> {tgt_g[0]} vs {tgt_g[1]}"
    elif name in ("relabeling", "edge", "brightness"):
        ys, yst = binary_relabel(ytr, EVEN_ODD), binary_relabel(yte, EVEN_ODD)
        yt, ytt = ys.clone(), yst.clone()
        S, St, T, Tt = Xtr, Xte, Xtr, Xte
        info.update(source_task="all classes, even/odd", target_task="all classes, even/odd")
        if name == "relabeling":
            yt, ytt = binary_relabel(ytr, LESS_THAN_5), binary_relabel(yte, LESS_THAN_5)
            info.update(target_task="all classes, < 5")
            desc = "even/odd class -> class < 5, same images"
        elif name == "edge":
            S, St = (edge_enhance(Xtr, alpha, derived_seed(seed, "edge.train")),
                     edge_enhance(Xte, alpha, derived_seed(seed, "edge.test")))
            info.update(alpha=alpha, source_task=f"all classes, even/odd, edges {alpha} seed {seed}")
            desc = f"edge-enhanced images (alpha in {alpha}) -> original images, even/odd class"
        else:
            ys, edges = brightness_labels(Xtr)
            yst, _ = brightness_labels(Xte, edges)
            info.update(brightness_edges=edges.tolist(), source_task="brightness quartiles 1, 3",
                        label_agreement=float((ys == yt).float().mean()))
            desc = "labels from mean brightness only -> even/odd class"
    else:  # hard_to_easy, easy_to_hard
        easy = check_int_sequence("easy_classes", easy_classes, minimum=0, maximum=n_classes - 1)
        if not (set(easy) & set(EVEN_ODD)) or not (set(easy) - set(EVEN_ODD)):
            raise ValueError(f"easy_classes must contain both even and odd classes, got {easy}")
        e_tr, e_te = torch.isin(ytr, torch.tensor(easy)), torch.isin(yte, torch.tensor(easy))
        hard = (Xtr, binary_relabel(ytr, EVEN_ODD), Xte, binary_relabel(yte, EVEN_ODD))
        easy_t = (Xtr[e_tr], binary_relabel(ytr[e_tr], EVEN_ODD), Xte[e_te], binary_relabel(yte[e_te], EVEN_ODD))
        (S, ys, St, yst), (T, yt, Tt, ytt) = (hard, easy_t) if name == "hard_to_easy" else (easy_t, hard)
        info.update(easy_classes=tuple(easy))
        keys = ("all classes, even/odd", f"classes {tuple(easy)}, even/odd")
        info.update(zip(("source_task", "target_task"), keys if name == "hard_to_easy" else keys[::-1]))
        desc = ("all classes, even/odd -> classes " + str(tuple(easy)) if name == "hard_to_easy"
                else "classes " + str(tuple(easy)) + " -> all classes, even/odd")
    images = {"source": S[:8, 0].clone(), "target": T[:8, 0].clone(),
              "source_labels": ys[:8].float().clone(), "target_labels": yt[:8].float().clone()}
    return TaskPair(name, desc, flat(S), ys.float(), flat(St), yst.float(), flat(T), yt.float(), flat(Tt),
                    ytt.float(), info, images)


# ----------------------------------------------------------------------------- the protocol
def _check_pool(name_X: str, X, name_y: str, y, D: int | None = None):
    if not isinstance(X, torch.Tensor) or X.dim() != 2 or not X.is_floating_point():
        raise ValueError(f"{name_X} must be a float tensor of shape (N, D), got "
                         f"{tuple(X.shape) if hasattr(X, 'shape') else type(X).__name__}")
    if D is not None and X.shape[1] != D:
        raise ValueError(f"{name_X} must have D = {D} columns like source_X, got {X.shape[1]}")
    if not isinstance(y, torch.Tensor) or y.shape != X.shape[:1]:
        raise ValueError(f"{name_y} must be a tensor of shape ({X.shape[0]},) matching {name_X}, got "
                         f"{tuple(y.shape) if hasattr(y, 'shape') else type(y).__name__}")
    if not bool(torch.all((y == 1) | (y == -1))):
        raise ValueError(f"{name_y} must hold binary labels in {{-1, +1}}")


def learning_curves_on_tasks(source_X: torch.Tensor, source_y: torch.Tensor, target_X: torch.Tensor,
                             target_y: torch.Tensor, target_test_X: torch.Tensor, target_test_y: torch.Tensor,
                             H: int = 100, M_grid=(10, 30, 100, 300), realizations: int = 3, lam: float = 1e-4,
                             *, M_source: int = 3000, M_val: int = 1000, M_test: int | None = None,
                             source_test_X: torch.Tensor | None = None, source_test_y: torch.Tensor | None = None,
                             learners=LEARNERS, source: TrainingConfig = SOURCE_DEFAULT,
                             scratch: TrainingConfig = SCRATCH_DEFAULT, finetune: TrainingConfig = FINETUNE_DEFAULT,
                             patience: int = 0, seed: int = 0, device="auto", progress: bool = True,
                             desc: str = "target sizes",
                             source_params: TwoLayerStack | None = None) -> TransferCurves:
    """Learning curves of TF, RF, 2L and ft-TF for a real source/target pair (figs. 2a, 4a, C.1, C.2).

    The protocol of section 2.2 and appendix D, batched over K = ``realizations``:

    1. realization k draws, from the source pool, M_source training and M_val validation
       examples (disjoint) and trains a two-layer net (eq. 6, N(0, 1) initialisation) with
       Adam and early stopping on the validation loss (``patience`` 0: stop at the first
       increase, keep the best epoch);
    2. for each M of ``M_grid`` it takes the first M examples of its own random permutation of
       the target pool (so the training sets of one realization are nested) and fits
       TF (source W1 frozen + L2-logistic head), RF (fresh N(0, 1) W1 frozen + head),
       2L (both layers from scratch) and ft-TF (both layers, starting from TF);
    3. every model is scored on the same target test set.

    Parameters
    ----------
    source_X (N_s, D), source_y (N_s,) : the source pool, labels in {-1, +1}.
    target_X (N_t, D), target_y (N_t,) : the target pool.
    target_test_X (N_test, D), target_test_y (N_test,) : the target test set.
    H : int >= 1, hidden width (default 100).
    M_grid : increasing target training sizes, each <= N_t (default (10, 30, 100, 300)).
    realizations : int >= 1, K (default 3).
    lam : float > 0, L2 strength on the last layer of every learner (default 1e-4).
    M_source, M_val : source training / validation sizes per realization, M_source + M_val <= N_s
        (defaults 3000, 1000).
    M_test : optional cap on the number of target test examples used (default: all).
    source_test_X, source_test_y : optional held-out source examples; the source error reported
        is measured on them (else on each realization's validation set).
    learners : subset of ("TF", "RF", "2L", "ft-TF"); "ft-TF" needs "TF".
    source, scratch, finetune : :class:`tasknb.feature_transfer.TrainingConfig` of the Adam runs
        (defaults: appendix D's settings).
    patience : int >= 0, early-stopping patience of the source net (default 0, the paper's).
    seed : int >= 0; device : "auto", "cpu" or "cuda"; progress : tqdm bars; desc : bar label.
    source_params : optional trained source networks (K, H, D), e.g. ``curves.source_params``
        of an earlier call on the same source task: step 1 is then skipped (``source_epochs``
        is -1) and the source error is still measured.

    Returns
    -------
    :class:`tasknb.feature_transfer.TransferCurves` with errors[name] of shape (len(M_grid), K).
    """
    _check_pool("source_X", source_X, "source_y", source_y)
    D = source_X.shape[1]
    _check_pool("target_X", target_X, "target_y", target_y, D)
    _check_pool("target_test_X", target_test_X, "target_test_y", target_test_y, D)
    H = check_positive_int("H", H)
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    if any(b <= a for a, b in zip(M_grid, M_grid[1:])):
        raise ValueError(f"M_grid must be increasing, got {M_grid}")
    if M_grid[-1] > target_X.shape[0]:
        raise ValueError(f"M_grid must not exceed the target pool size {target_X.shape[0]}, got {M_grid[-1]}")
    K = check_positive_int("realizations", realizations)
    lam = check_positive_real("lam", lam)
    M_source = check_positive_int("M_source", M_source)
    M_val = check_positive_int("M_val", M_val)
    if M_source + M_val > source_X.shape[0]:
        raise ValueError(f"M_source + M_val must be <= the source pool size {source_X.shape[0]}, got "
                         f"{M_source} + {M_val}; lower M_source")
    if M_test is not None:
        M_test = check_positive_int("M_test", M_test)
    if (source_test_X is None) != (source_test_y is None):
        raise ValueError("source_test_X and source_test_y must be given together")
    if source_test_X is not None:
        _check_pool("source_test_X", source_test_X, "source_test_y", source_test_y, D)
    learners = list(learners)
    if not learners:
        raise ValueError(f"learners must be a non-empty subset of {LEARNERS}")
    learners = check_learners(learners)
    for cname, cfg in (("source", source), ("scratch", scratch), ("finetune", finetune)):
        if not isinstance(cfg, TrainingConfig):
            raise ValueError(f"{cname} must be a tasknb.feature_transfer.TrainingConfig, got {type(cfg).__name__}")
    patience = check_positive_int("patience", patience, minimum=0)
    seed = check_seed("seed", seed)
    dev = get_device(device)
    dtype = torch.float32

    def permutations(n, purpose):
        """One random permutation of range(n) per realization, each from its own stream: (K, n)."""
        return torch.stack([torch.randperm(n, generator=stream(seed, purpose, k)) for k in range(K)])

    def gather(pool_X, pool_y, idx):
        return pool_X[idx].to(dev, dtype), pool_y[idx].to(dev, dtype)

    # 1. source networks: realization k trains on perm_k[:M_source], validates on the next M_val
    perms = permutations(source_X.shape[0], "c8.source-pool")
    Xv, yv = gather(source_X, source_y, perms[:, M_source:M_source + M_val])

    def train_sources():
        Xs, ys = gather(source_X, source_y, perms[:, :M_source])
        init = init_two_layer(K, H, D, seed=derived_seed(seed, "init.source"), device=dev, dtype=dtype)
        return train_stack(init, Xs, ys, epochs=source.epochs, lr=source.lr, batch_size=source.batch_size,
                               lam=lam, X_val=Xv, y_val=yv, patience=patience,
                               seed=derived_seed(seed, "batches.source"), progress=progress,
                               desc="source nets")

    given = source_params is not None
    source_params, source_epochs = resolve_source_networks(source_params, TwoLayerStack, {"K": K, "H": H, "D": D},
                                                           train_sources)
    if given:
        source_params = TwoLayerStack(source_params.W1.to(dev, dtype), source_params.w2.to(dev, dtype))
    if source_test_X is not None:
        Xst = source_test_X.to(dev, dtype).unsqueeze(0).expand(K, -1, -1)
        yst = source_test_y.to(dev, dtype).unsqueeze(0).expand(K, -1)
        source_error = classification_error(source_params, Xst, yst).cpu().numpy()
    else:
        source_error = classification_error(source_params, Xv, yv).cpu().numpy()

    # 2. target learners
    n_test = target_test_X.shape[0] if M_test is None else min(M_test, target_test_X.shape[0])
    Xt_test = target_test_X[:n_test].to(dev, dtype).unsqueeze(0).expand(K, -1, -1)
    yt_test = target_test_y[:n_test].to(dev, dtype).unsqueeze(0).expand(K, -1)
    W1_tf = source_params.W1
    W1_rf = init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev, dtype=dtype).W1
    perms = permutations(target_X.shape[0], "c8.target-pool")

    errors, conv = target_learning_curves(
        binary_family(K, H, D, dev, dtype), W1_tf, W1_rf, lambda i, M: gather(target_X, target_y, perms[:, :M]),
        M_grid, Xt_test, yt_test, learners, lam, scratch, finetune, seed, progress=progress, desc=desc, leave=False)
    config = dict(D=D, H=H, M_source=M_source, M_val=M_val, M_test=n_test, realizations=K, lam=lam,
                  seed=seed, patience=patience, source=source, scratch=scratch, finetune=finetune,
                  device=str(dev))
    return TransferCurves(np.asarray(M_grid), H, errors, source_error, source_epochs, conv, config,
                          source_params)


def real_data_experiments(names=EXPERIMENTS, dataset: str = "fashion_mnist", *, H: int = 100,
                          M_grid=(10, 30, 100, 300), realizations: int = 3, lam: float = 1e-4,
                          M_source: int = 3000, M_val: int = 1000, M_test: int | None = 2000,
                          learners=LEARNERS, source: TrainingConfig = SOURCE_DEFAULT,
                          scratch: TrainingConfig = SCRATCH_DEFAULT, finetune: TrainingConfig = FINETUNE_DEFAULT,
                          patience: int = 0, seed: int = 0, device="auto", progress: bool = True,
                          pair_kwargs: dict | None = None, data=None):
    """Run :func:`learning_curves_on_tasks` on several experiments of :data:`EXPERIMENTS`.

    ``names`` is a non-empty sequence of distinct experiment names; ``pair_kwargs`` (optional) is
    passed to :func:`make_task_pair` (e.g. ``{"easy_classes": (0, 2, 1, 3)}``); ``data`` (optional)
    replaces loading ``dataset`` (see :func:`make_task_pair`); every other argument is that of
    :func:`learning_curves_on_tasks`.  The dataset is loaded once, and every experiment uses the
    same ``seed``.  Work shared between experiments is done once, with identical results:

    * experiments with the same source task (``info["source_task"]``, e.g. "relabeling" and
      "hard_to_easy": all classes, even/odd) share the trained source networks;
    * experiments with the same target task (e.g. "edge", "brightness" and "easy_to_hard") share
      the 2L curve, which does not depend on the source.

    Returns ``(curves, pairs)``: two dicts keyed by experiment name, holding the
    :class:`~tasknb.feature_transfer.TransferCurves` and the :class:`TaskPair` summaries (pools dropped
    to free memory; ``description``, ``info`` and ``images`` kept).
    """
    if isinstance(names, str) or not hasattr(names, "__iter__"):
        raise ValueError(f"names must be a sequence of experiment names from {EXPERIMENTS}, got {names!r}")
    names = list(names)
    if not names:
        raise ValueError(f"names must be a non-empty sequence of experiment names from {EXPERIMENTS}")
    for n in names:
        check_choice("names", n, EXPERIMENTS)
    if len(set(names)) != len(names):
        raise ValueError(f"names must not repeat an experiment, got {names}")
    check_choice("dataset", dataset, DATASETS)
    learners = list(learners)
    pair_kwargs = dict(pair_kwargs or {})
    if data is None:
        Xtr, ytr, Xte, yte = _load(dataset, None)
        data = ((Xtr, ytr), (Xte, yte))
    curves, pairs = {}, {}
    sources: dict = {}       # source_task -> TransferCurves that trained it
    scratch_curves: dict = {}  # target_task -> 2L errors
    for name in tqdm(names, desc="experiments", disable=not progress):
        pair = make_task_pair(name, dataset, data=data, seed=seed, **pair_kwargs)
        src_key, tgt_key = pair.info["source_task"], pair.info["target_task"]
        shared = sources.get(src_key)
        todo = [n for n in learners if not (n == "2L" and tgt_key in scratch_curves)]
        c = learning_curves_on_tasks(
            pair.source_X, pair.source_y, pair.target_X, pair.target_y, pair.target_test_X, pair.target_test_y,
            H=H, M_grid=M_grid, realizations=realizations, lam=lam, M_source=M_source, M_val=M_val,
            M_test=M_test, source_test_X=pair.source_test_X, source_test_y=pair.source_test_y, learners=todo,
            source=source, scratch=scratch, finetune=finetune, patience=patience, seed=seed, device=device,
            progress=progress, desc=name, source_params=None if shared is None else shared.source_params)
        if shared is not None:
            c.source_epochs = shared.source_epochs.copy()
        else:
            sources[src_key] = c
        if "2L" in learners:
            if "2L" in c.errors:
                scratch_curves[tgt_key] = c.errors["2L"]
            c.errors = {n: (c.errors[n] if n in c.errors else scratch_curves[tgt_key].copy()) for n in learners}
        c.config.update(experiment=name, dataset=dataset, description=pair.description)
        curves[name] = c
        pairs[name] = pair.summary()
        del pair
    return curves, pairs


def _paired_gains(curves: TransferCurves, transfer: str, baseline: str, index) -> np.ndarray:
    """err(baseline) - err(transfer) per realization at the grid points ``index``: (len(index), K)."""
    if not isinstance(curves, TransferCurves):
        raise ValueError(f"curves must be a tasknb.feature_transfer.TransferCurves, got {type(curves).__name__}")
    check_choice("transfer", transfer, list(curves.errors))
    check_choice("baseline", baseline, list(curves.errors))
    n = len(curves.M)
    idx = [index] if isinstance(index, (int, np.integer)) and not isinstance(index, bool) else index
    try:
        idx = list(idx)
    except TypeError:
        idx = None
    if not idx or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not -n <= i < n for i in idx):
        raise ValueError(f"index must be an integer in [{-n}, {n - 1}] or a non-empty list of them, got {index!r}")
    return curves.errors[baseline][idx] - curves.errors[transfer][idx]


def transfer_gain(curves: TransferCurves, transfer: str = "TF", baseline: str = "RF", *, index=0) -> float:
    """The gain err(baseline) - err(transfer) (positive: the ``transfer`` learner is better),
    averaged over realizations, at ``M_grid[index]``; ``index`` may also be a sequence of grid
    indices, e.g. ``[0, 1]`` for the two smallest target sets, averaged over them."""
    return float(np.mean(_paired_gains(curves, transfer, baseline, index)))


def transfer_gain_sem(curves: TransferCurves, transfer: str = "TF", baseline: str = "RF", *, index=0) -> float:
    """Standard error of :func:`transfer_gain` from the paired realizations: the per-realization
    gain (averaged over the grid points ``index``), std with ddof=1 / sqrt(K); 0 when K = 1."""
    return float(paired_standard_error(_paired_gains(curves, transfer, baseline, index).mean(0)))


def experiment_figure(curves: TransferCurves, pair: TaskPair | None = None, title: str | None = None,
                      n_images: int = 5, width: float = 9.0, ylim=None):
    """One experiment at a glance, as a ``matplotlib.figure.Figure`` (no pyplot; a widget frame).

    Left: ``n_images`` example source images above target images from ``pair.images`` (omitted
    when ``pair`` is None).  Right: the learning curves of every learner
    (:func:`tasknb.book.plotting.plot_learning_curves`), y-limits ``ylim`` (a pair) when given.
    """
    if not isinstance(curves, TransferCurves):
        raise ValueError(f"curves must be a tasknb.feature_transfer.TransferCurves, got {type(curves).__name__}")
    n_images = check_positive_int("n_images", n_images)
    if pair is None:
        fig, ax = new_figure(width * 0.6, 3.6)
    else:
        fig, (ax_img, ax) = new_figure(width, 3.6, ncols=2)
        rows, h, w, sep = [], *pair.images["source"].shape[1:], 4
        for key in ("source", "target"):
            imgs = pair.images[key][:n_images].float()
            lo, hi = imgs.amin(dim=(1, 2), keepdim=True), imgs.amax(dim=(1, 2), keepdim=True)
            imgs = (imgs - lo) / (hi - lo).clamp_min(1e-8)
            pad = torch.zeros(h, sep)
            rows.append(torch.cat([torch.cat([im, pad], dim=1) for im in imgs], dim=1))
        gap = torch.zeros(sep + 8, rows[0].shape[1])
        ax_img.imshow(torch.cat([gap, rows[0], gap, rows[1]], dim=0).numpy(), cmap="gray_r", vmin=0, vmax=1)
        for r, key in enumerate(("source", "target")):
            labels = pair.images.get(f"{key}_labels")
            if labels is None:
                continue
            for j, lab in enumerate(labels[:n_images].tolist()):
                ax_img.text(j * (w + sep) + w / 2, (r + 1) * (sep + 8) + r * h - 1, f"y = {int(lab):+d}",
                            ha="center", va="bottom", fontsize=7)
        ax_img.set_xticks([])
        ax_img.set_yticks([sep + 8 + h / 2, 2 * (sep + 8) + 1.5 * h], ["source", "target"])
        ax_img.grid(False)
        for side in ax_img.spines.values():
            side.set_visible(False)
        ax_img.set_title(pair.description, fontsize="small", wrap=True)
        fig.get_layout_engine().set(w_pad=0.05)
    plot_learning_curves(ax, curves, title=title)
    if ylim is not None:
        ax.set_ylim(*ylim)
    return fig
