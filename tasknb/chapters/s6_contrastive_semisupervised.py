"""Contrastive (SimCLR-style) and semi-supervised (FixMatch-style) training runs recorded in the
prediction space of supervised learning (Ramesh et al. 2023, "S", Result 5, Fig. 6, App. A/B).

A contrastive network never sees a label, so it has no head that predicts the ten classes; a
FixMatch network has one, but trained mostly on its own pseudo-labels.  Both are read, like the
supervised baseline, through ONE shared :func:`tasknb.readout.prediction_set` with
``readout="imprint"`` over the ten classes: at every checkpoint a head is imprinted from the
penultimate features ``phi(x; w_1)`` of a fixed set of labelled images (eq. 7 of S) and applied to
the features of the fixed test images (eq. 8).  All three methods then live in one prediction space
and the kernels of :mod:`tasknb.geometry` (progress, distances, InPCA) apply to them unchanged.

``augment``              batched, seeded augmentations of 28x28 grey images: "weak" (shift, flip) and
                         "strong" (weak + brightness/contrast jitter, cutout, noise)
``ContrastiveNet``       a SmallCNN backbone (``.features``) with a two-layer projection head
``nt_xent``              the NT-Xent loss of SimCLR (Chen et al. 2020a) with a temperature
``pseudo_labels``        FixMatch's confident pseudo-labels from weak views (threshold tau)
``fixmatch_loss``        supervised cross-entropy on labelled images + lambda_u x pseudo-label
                         cross-entropy on strong views (Sohn et al. 2020)
``record_contrastive_trajectories`` / ``record_fixmatch_trajectories``
                         train seeds and record them through the shared prediction set ->
                         :class:`tasknb.trajectories.Trajectories`

The supervised baseline is ``trajectories.record_trajectories(..., readout="imprint",
union_classes=range(10))`` with the same ``data_seed``, ``n_test`` and ``n_imprint``.

Every random draw (initialisation, batch order, augmentation) comes from a CPU generator seeded by
the caller, then moves to the device: same arguments -> same numbers on a device.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data import draw_per_class, training_images
from ..device import derived_seed, generator, get_device, stream
from ..networks.cnn import SmallCNN, init_cnn
from ..geometry import bhattacharyya, inpca_with_placed, progress, reference_points
from ..readout import prediction_set
from ..trajectory_geometry import common_range, reindex_trajectory, unfolded_progress
from ..trajectories import (RunConfig, Trajectories, batch_seed, batch_stream, record_seeds, run_config,
                           run_optimizer, supervised_step, trajectories_from_probs)
from ..validation import check_choice, check_positive_int, check_positive_real, check_real_in, check_seed

__all__ = ["STRENGTHS", "augment", "ContrastiveNet", "init_contrastive", "nt_xent", "pseudo_labels",
           "fixmatch_loss", "record_supervised_trajectories", "record_contrastive_trajectories",
           "record_fixmatch_trajectories", "SIMCLR_DEFAULTS", "FIXMATCH_DEFAULTS", "PAIRS", "family_name",
           "record_families", "shared_grid", "seed_pair_distances", "window_mean", "inpca_picture"]

#: augmentation families accepted by :func:`augment`
STRENGTHS = ("weak", "strong")


# ----------------------------------------------------------------------------- augmentations
def _check_batch(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != (1, 28, 28):
        shape = tuple(x.shape) if hasattr(x, "shape") else type(x).__name__
        raise ValueError(f"x must be a tensor of grey images with shape (B, 1, 28, 28), got {shape}")
    return x


def _shift_flip(x: torch.Tensor, g: torch.Generator, max_shift: int) -> torch.Tensor:
    """Random translation by up to ``max_shift`` pixels (zero padding + crop) and a horizontal flip
    with probability 1/2, drawn per image."""
    B, dev = x.shape[0], x.device
    off = torch.randint(0, 2 * max_shift + 1, (B, 2), generator=g).to(dev)
    flip = (torch.rand(B, generator=g) < 0.5).to(dev)
    ar = torch.arange(28, device=dev)
    cols = torch.where(flip[:, None], 27 - ar[None, :], ar[None, :]) + off[:, 1:2]  # (B, 28)
    rows = ar[None, :] + off[:, 0:1]                                                   # (B, 28)
    padded = F.pad(x, (max_shift,) * 4)
    b = torch.arange(B, device=dev)[:, None, None]
    return padded[b, 0, rows[:, :, None], cols[:, None, :]].unsqueeze(1)


def augment(x: torch.Tensor, strength: str = "weak", *, seed: int | None = None,
            generator_: torch.Generator | None = None, max_shift: int = 3) -> torch.Tensor:
    """Random views of a batch of images in [0, 1], one independent draw per image.

    x : (B, 1, 28, 28) float tensor (any device) with values in [0, 1].
    strength : "weak" -- translation by up to ``max_shift`` pixels (zero padding, default 3) and a
        horizontal flip with probability 1/2 (FixMatch's weak view);
        "strong" -- the weak view, then brightness (+-0.3) and contrast (x0.5..1.5 about the image
        mean) jitter, a random 10x10 cutout set to 0 (random erasing), and Gaussian pixel noise
        (std 0.05), clipped to [0, 1] (the SimCLR views and FixMatch's strong view; a grey-image
        stand-in for crop + colour jitter of App. A of S).
    seed / generator_ : exactly one: an integer seed, or a CPU ``torch.Generator`` to draw from (a
        training loop passes one generator and gets a fresh draw at every call).

    Returns a tensor of the same shape, dtype and device, values in [0, 1].  Same seed -> same views
    on every device (draws are made on the CPU).
    """
    _check_batch(x)
    check_choice("strength", strength, STRENGTHS)
    max_shift = check_positive_int("max_shift", max_shift, minimum=0)
    if (seed is None) == (generator_ is None):
        raise ValueError("augment needs exactly one of seed (an integer) or generator_ (a torch.Generator)")
    g = generator(check_seed("seed", seed)) if generator_ is None else generator_
    if not isinstance(g, torch.Generator):
        raise ValueError(f"generator_ must be a torch.Generator, got {type(g).__name__}")
    B, dev = x.shape[0], x.device
    out = _shift_flip(x, g, max_shift) if max_shift else x.clone()
    if strength == "weak":
        return out
    bright = ((torch.rand(B, 1, 1, 1, generator=g) - 0.5) * 0.6).to(dev, x.dtype)
    contrast = (0.5 + torch.rand(B, 1, 1, 1, generator=g)).to(dev, x.dtype)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    size = 10
    pos = torch.randint(0, 28 - size + 1, (B, 2), generator=g).to(dev)
    ar = torch.arange(28, device=dev)
    in_r = (ar[None, :] >= pos[:, 0:1]) & (ar[None, :] < pos[:, 0:1] + size)
    in_c = (ar[None, :] >= pos[:, 1:2]) & (ar[None, :] < pos[:, 1:2] + size)
    hole = (in_r[:, :, None] & in_c[:, None, :]).unsqueeze(1)
    out = out.masked_fill(hole, 0.0)
    out = out + 0.05 * torch.randn(out.shape, generator=g).to(dev, x.dtype)
    return out.clamp(0.0, 1.0)


# ----------------------------------------------------------------------------- SimCLR
class ContrastiveNet(nn.Module):
    """A :class:`SmallCNN` backbone with a projection head, for SimCLR.

    ``features(x)``: (B, 1, 28, 28) -> (B, 16*c2), the backbone's penultimate features phi(x; w_1)
    (layer-normalised with the recipe's ``norm``; what the readout reads; the projection head is
    discarded, as in SimCLR); ``forward(x)`` / ``project(x)``: (B, proj_dim), Linear(16*c2 ->
    hidden) - ReLU - Linear(hidden -> proj_dim) on the features (the ``z`` of NT-Xent).
    """

    def __init__(self, channels=(16, 32), hidden: int = 64, proj_dim: int = 32, *, norm: str = "layer_conv1",
                 head_bias: bool = False):
        super().__init__()
        hidden = check_positive_int("hidden", hidden)
        proj_dim = check_positive_int("proj_dim", proj_dim)
        self.backbone = SmallCNN(10, channels, norm=norm, head_bias=head_bias)
        d = self.backbone.head.in_features
        self.projector = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)


def init_contrastive(channels=(16, 32), hidden: int = 64, proj_dim: int = 32, seed: int = 0, device="auto", *,
                     norm: str = "layer_conv1", head_bias: bool = False) -> ContrastiveNet:
    """A :class:`ContrastiveNet` whose weights depend on ``seed`` only (drawn on the CPU, then
    moved); its backbone is ``init_cnn(10, channels, seed, norm=norm, head_bias=head_bias)``, so a
    SimCLR run starts from the same network as the other methods of that seed."""
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ContrastiveNet(channels, hidden, proj_dim, norm=norm, head_bias=head_bias)
    return model.to(get_device(device))


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5) -> torch.Tensor:
    """NT-Xent loss of SimCLR (Chen et al. 2020a), the contrastive objective of Result 5 of S.

    z1, z2 : (B, d) projections of two views of the same B images (row i of z1 and of z2 form the
    positive pair), B >= 2.  With u the 2B rows of [z1; z2] scaled to unit norm and
    s_ij = u_i . u_j / temperature,

        loss = (1 / 2B) sum_i -log( exp(s_{i,i+}) / sum_{j != i} exp(s_ij) ),

    where i+ is the other view of i's image.  The 2B - 2 other rows are the negatives.  Symmetric in
    (z1, z2); >= 0.  temperature : float > 0 (default 0.5).  Returns a scalar tensor.
    """
    for name, z in (("z1", z1), ("z2", z2)):
        if not isinstance(z, torch.Tensor) or z.dim() != 2:
            shape = tuple(z.shape) if hasattr(z, "shape") else type(z).__name__
            raise ValueError(f"{name} must be a 2-D tensor (B, d), got {shape}")
    if z1.shape != z2.shape or z1.shape[0] < 2:
        raise ValueError(f"z1 and z2 must have the same shape (B, d) with B >= 2, got {tuple(z1.shape)} "
                         f"and {tuple(z2.shape)}")
    temperature = check_positive_real("temperature", temperature)
    B = z1.shape[0]
    u = F.normalize(torch.cat([z1, z2]), dim=1)
    s = u @ u.T / temperature
    s = s.masked_fill(torch.eye(2 * B, dtype=torch.bool, device=s.device), float("-inf"))
    pos = torch.cat([torch.arange(B, 2 * B), torch.arange(B)]).to(s.device)
    return F.cross_entropy(s, pos)


# ----------------------------------------------------------------------------- FixMatch
def pseudo_labels(logits: torch.Tensor, tau: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """FixMatch's hard pseudo-labels: logits (B, C) of weak views -> (labels (B,) int64 = argmax,
    mask (B,) bool = max softmax probability >= tau).  tau in [0, 1]; no gradient flows."""
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        shape = tuple(logits.shape) if hasattr(logits, "shape") else type(logits).__name__
        raise ValueError(f"logits must be a 2-D tensor (B, C), got {shape}")
    tau = check_real_in("tau", tau, 0.0, 1.0)
    with torch.no_grad():
        conf, lab = torch.softmax(logits.detach().float(), dim=-1).max(-1)
    return lab, conf >= tau


def fixmatch_loss(model, x_l: torch.Tensor, y_l: torch.Tensor, x_weak: torch.Tensor, x_strong: torch.Tensor,
                  tau: float = 0.95, lambda_u: float = 1.0):
    """FixMatch objective (Sohn et al. 2020), the semi-supervised method of Result 5 of S.

        loss = CE(model(x_l), y_l) + lambda_u * (1/mu B) sum_b 1[max p(x_weak_b) >= tau] CE(model(x_strong_b), yhat_b)

    with yhat_b the argmax of the model's softmax on the weak view (no gradient through it); the
    mean runs over ALL unlabelled images, masked or not, as in FixMatch.
    x_l (B, 1, 28, 28), y_l (B,) labels; x_weak, x_strong (muB, 1, 28, 28) two views of the same
    unlabelled images.  Returns (loss scalar, mask (muB,) bool, fraction of the mask that is on).
    """
    if x_weak.shape != x_strong.shape:
        raise ValueError(f"x_weak and x_strong must be views of the same images (same shape), got "
                         f"{tuple(x_weak.shape)} and {tuple(x_strong.shape)}")
    if y_l.shape != (x_l.shape[0],):
        raise ValueError(f"y_l must have shape ({x_l.shape[0]},) (one label per labelled image), got {tuple(y_l.shape)}")
    lambda_u = check_positive_real("lambda_u", lambda_u, allow_zero=True)
    n_l = x_l.shape[0]
    logits = model(torch.cat([x_l, x_weak, x_strong]))
    lw, ls = logits[n_l:].chunk(2)
    yhat, mask = pseudo_labels(lw, tau)
    sup = F.cross_entropy(logits[:n_l], y_l)
    unsup = (F.cross_entropy(ls, yhat, reduction="none") * mask.to(ls.dtype)).mean()
    return sup + lambda_u * unsup, mask, float(mask.float().mean())


# ----------------------------------------------------------------------------- recorders
#: SimCLR's run defaults over the recipe: App. A of S trains SimCLR with Adam at lr 1e-3 (the other
#: fields -- cosine schedule, weight decay, width, norms -- stay those of PAPER_RECIPE)
SIMCLR_DEFAULTS = dict(optimizer="adam", lr=1e-3)
#: FixMatch and the augmented supervised baseline use PAPER_RECIPE unchanged (RunConfig's defaults)
FIXMATCH_DEFAULTS: dict = {}

#: purposes of this chapter's draws (tasknb.device.stream / derived_seed)
_AUG = "s6.augment"
_UNLABELLED = "s6.unlabelled_order"
_LABELLED_SET = "s6.labelled_set"


def _check_batch_size(c: RunConfig, n: int, what: str) -> None:
    if not 2 <= c.batch_size <= n:
        raise ValueError(f"batch_size must be an integer in [2, {n}] ({what}), got {c.batch_size}")


def _pset(c: RunConfig, dev):
    if c.readout == "softmax":
        raise ValueError("readout must be a feature readout such as 'prototype_ml' (SimCLR networks have no "
                         "class head; every method is read the same way)")
    return prediction_set(c.dataset, c.union_classes, c.n_test, readout=c.readout, n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)


def record_supervised_trajectories(config=None, *, device="auto", progress: bool = False, **changes) -> Trajectories:
    """Cross-entropy training on weakly augmented images (the baseline of Result 5 of S, augmented
    like FixMatch's labelled branch): ``kernel`` :func:`~tasknb.trajectories.train_supervised_seeds`
    with every mini-batch passed through ``augment(x, "weak")`` first.

    config / changes : a RunConfig or dataset name plus RunConfig fields (defaults RunConfig's, i.e.
    PAPER_RECIPE); the task is ``classes`` (a SmallCNN with len(classes) outputs), read through
    ``prediction_set(dataset, union_classes, n_test, readout, n_imprint, data_seed)`` (default
    readout "prototype_ml").  Seed k: ``init_cnn(C, channels, init_seed(seed, k), norm, head_bias)``,
    batches from ``batch_seed(seed, k)``, views from ``stream(seed, "s6.augment", 0, k)``.
    Returns Trajectories (n_seeds, T, n_test, len(union_classes)).
    """
    c = run_config(config, {}, **changes)
    dev = get_device(device)
    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    _check_batch_size(c, len(Xtr), "the training-set size")
    pset = _pset(c, dev)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)

    def build(k, s):
        model = init_cnn(len(c.classes), c.channels, s, dev, norm=c.norm, head_bias=c.head_bias)
        opt, sched = run_optimizer(model.parameters(), c)
        batches = batch_stream(len(ytr), c.batch_size, batch_seed(c.seed, k))
        g_aug = stream(c.seed, _AUG, 0, k)
        weak = lambda x: augment(x, "weak", generator_=g_aug)  # noqa: E731
        return model, supervised_step(model, opt, Xtr, ytr, batches, transform=weak), sched

    probs, _ = record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc=f"supervised {list(c.classes) if len(c.classes) < 10 else 'all'}")
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds,
                                   dict(method="supervised", augment="weak", **c.to_dict()))


def record_contrastive_trajectories(config=None, *, temperature: float = 0.5, hidden: int = 64, proj_dim: int = 32,
                                    device="auto", progress: bool = False, **changes) -> Trajectories:
    """Train SimCLR networks on the unlabelled images of ``classes``; record them through the shared
    feature readout over ``union_classes`` (Result 5, Result 7 / App. B of S).

    Each step draws ``batch_size`` training images of ``classes`` (labels never used), makes two
    "strong" views of each (:func:`augment`) and takes an optimizer step on :func:`nt_xent` of
    their projections.  Checkpoints are read through ``prediction_set(dataset, union_classes,
    n_test, readout, n_imprint, data_seed)`` -- the same set as the other recorders with the same
    fields; its n_imprint labelled images per class are the only labels involved, in the readout.

    config / changes : RunConfig fields over ``SIMCLR_DEFAULTS`` (Adam, lr 1e-3, App. A of S) over
    RunConfig's (PAPER_RECIPE: cosine schedule, weight decay 5e-4, width, norms).  ``classes`` may
    be any subset (Result 7 trains on two-class subsets) and ``union_classes`` any superset.
    Seed k: backbone ``init_cnn(10, channels, init_seed(seed, k), ...)`` (projection head drawn
    after it), batches from ``batch_seed(seed, k)``, views from ``stream(seed, "s6.augment", 1, k)``.
    temperature > 0 (default 0.5); hidden, proj_dim: projection head sizes.

    Returns Trajectories (n_seeds, T, n_test, len(union_classes)).
    """
    c = run_config(config, SIMCLR_DEFAULTS, **changes)
    temperature = check_positive_real("temperature", temperature)
    hidden = check_positive_int("hidden", hidden)
    proj_dim = check_positive_int("proj_dim", proj_dim)
    dev = get_device(device)
    config_dict = dict(method="simclr", temperature=temperature, hidden=hidden, proj_dim=proj_dim, **c.to_dict())
    Xtr, _ = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    _check_batch_size(c, len(Xtr), "the training-set size")
    pset = _pset(c, dev)
    Xtr = Xtr.to(dev)

    def build(k, s):
        model = init_contrastive(c.channels, hidden, proj_dim, s, dev, norm=c.norm, head_bias=c.head_bias)
        opt, sched = run_optimizer(model.parameters(), c)
        batches = batch_stream(len(Xtr), c.batch_size, batch_seed(c.seed, k))
        g_aug = stream(c.seed, _AUG, 1, k)

        def train_step(_step):
            x = Xtr[next(batches).to(dev)]
            z = model(torch.cat([augment(x, "strong", generator_=g_aug), augment(x, "strong", generator_=g_aug)]))
            loss = nt_xent(*z.chunk(2), temperature=temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model, train_step, sched

    probs, _ = record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc=f"SimCLR {list(c.classes) if len(c.classes) < 10 else 'all'}")
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)


def record_fixmatch_trajectories(config=None, *, n_labelled: int = 25, mu: int = 3, tau: float = 0.95,
                                 lambda_u: float = 1.0, device="auto", progress: bool = False,
                                 **changes) -> Trajectories:
    """Train FixMatch networks (a SmallCNN with a head over ``classes``) from ``n_labelled``
    labelled images per class plus the unlabelled training images; record them through the shared
    feature readout (Result 5 of S).

    The labelled set (n_labelled images per class, drawn from the training images with
    ``stream(data_seed, "s6.labelled_set")``) is fixed; the unlabelled set is every training
    image (labels dropped), as in FixMatch.  Each step: ``batch_size`` labelled images (weak
    views), ``mu * batch_size`` unlabelled images with a weak and a strong view each
    (:func:`augment`), one optimizer step on :func:`fixmatch_loss` with threshold ``tau`` (in
    [0, 1]) and weight ``lambda_u`` (>= 0).  ``config["mask_rate"]`` (n_seeds, steps) is the
    fraction of unlabelled images whose weak-view confidence reaches tau at every step.

    config / changes : RunConfig fields over ``FIXMATCH_DEFAULTS`` (PAPER_RECIPE, SGD-Nesterov and
    cosine, as App. A of S trains its CIFAR models).  Seed k: ``init_cnn(C, channels, init_seed(seed,
    k), ...)``, labelled batches from ``batch_seed(seed, k)``, unlabelled batches from
    ``stream(seed, "s6.unlabelled_order", k)``, views from ``stream(seed, "s6.augment", 2, k)``.

    Returns Trajectories (n_seeds, T, n_test, len(union_classes)).
    """
    c = run_config(config, FIXMATCH_DEFAULTS, **changes)
    n_labelled = check_positive_int("n_labelled", n_labelled)
    mu = check_positive_int("mu", mu)
    tau = check_real_in("tau", tau, 0.0, 1.0)
    lambda_u = check_positive_real("lambda_u", lambda_u, allow_zero=True)
    dev = get_device(device)
    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    lab = draw_per_class(ytr, range(len(c.classes)), n_labelled, stream(c.data_seed, _LABELLED_SET), "n_labelled",
                         shown=c.classes)
    Xl, yl = Xtr[lab].to(dev), ytr[lab].to(dev)
    _check_batch_size(c, len(yl), "len(classes) x n_labelled")
    if mu * c.batch_size > len(Xtr):
        raise ValueError(f"mu * batch_size must be at most {len(Xtr)} (the training-set size), got {mu * c.batch_size}")
    Xu = Xtr.to(dev)
    pset = _pset(c, dev)
    config_dict = dict(method="fixmatch", n_labelled=n_labelled, mu=mu, tau=tau, lambda_u=lambda_u, **c.to_dict())
    mask_rate = np.zeros((c.n_seeds, c.steps))

    def build(k, s):
        model = init_cnn(len(c.classes), c.channels, s, dev, norm=c.norm, head_bias=c.head_bias)
        opt, sched = run_optimizer(model.parameters(), c)
        lab_batches = batch_stream(len(yl), c.batch_size, batch_seed(c.seed, k))
        unl_batches = batch_stream(len(Xu), mu * c.batch_size, derived_seed(c.seed, _UNLABELLED, k))
        g_aug = stream(c.seed, _AUG, 2, k)

        def train_step(step):
            b = next(lab_batches).to(dev)
            xu = Xu[next(unl_batches).to(dev)]
            xl = augment(Xl[b], "weak", generator_=g_aug)
            loss, _, rate = fixmatch_loss(model, xl, yl[b], augment(xu, "weak", generator_=g_aug),
                                          augment(xu, "strong", generator_=g_aug), tau, lambda_u)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            mask_rate[k, step] = rate
        return model, train_step, sched

    probs, _ = record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc="FixMatch")
    config_dict["mask_rate"] = mask_rate.tolist()
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)


# ----------------------------------------------------------------------------- the chapter's protocol
#: Result 7's two-class subsets of Fashion-MNIST (disjoint pairs, in place of S's airplane-automobile,
#: bird-cat and ship-truck): sandal-sneaker, pullover-coat, trouser-bag
PAIRS = ((5, 7), (2, 4), (1, 8))


def family_name(method: str, classes=None) -> str:
    """"SimCLR", "SimCLR (5, 7)", "supervised (5, 7)", ...: a family's key in :func:`record_families`."""
    return method if classes is None or len(classes) == 10 else f"{method} {tuple(int(c) for c in classes)}"


def record_families(*, pairs=PAIRS, supervised_pair=0, shared: dict, simclr: dict, fixmatch: dict,
                    supervised: dict | None = None, progress: bool = False, device="auto") -> dict:
    """Every run of the chapter, all read through one prediction set over the ten classes.

    Result 5: "supervised", "SimCLR", "FixMatch" on all ten classes.  Result 7: "SimCLR (a, b)" on
    each pair of ``pairs`` and "supervised (a, b)" on ``pairs[supervised_pair]``.
    ``shared``: RunConfig fields of every run (n_seeds, steps, checkpoints, n_test, n_train,
    n_imprint, channels, seed, ...); ``simclr`` / ``fixmatch`` / ``supervised``: the fields and
    knobs of each method (batch_size, temperature, tau, mu, ...).  Returns {name: Trajectories}.
    """
    supervised = dict(supervised or {})
    ten = dict(union_classes=tuple(range(10)))
    runs = {
        "supervised": record_supervised_trajectories(**shared, **supervised, **ten, device=device, progress=progress),
        "SimCLR": record_contrastive_trajectories(**shared, **simclr, **ten, device=device, progress=progress),
        "FixMatch": record_fixmatch_trajectories(**shared, **fixmatch, **ten, device=device, progress=progress),
    }
    for pair in pairs:
        runs[family_name("SimCLR", pair)] = record_contrastive_trajectories(
            **shared, **simclr, classes=tuple(pair), **ten, device=device, progress=progress)
    pair = pairs[supervised_pair]
    runs[family_name("supervised", pair)] = record_supervised_trajectories(
        **shared, **supervised, classes=tuple(pair), **ten, device=device, progress=progress)
    return runs


def shared_grid(runs: dict, names, n_grid: int = 30, device=None):
    """Re-index every seed of the families ``names`` on ONE grid of unfolded progress: the common
    range of all their seeds (``trajectory_geometry.common_range``; runs that go back in progress
    keep every checkpoint).  Returns (grid (G,), (lo, hi), {name: (K, G, N, C) float64})."""
    names = list(names)
    u = {m: [unfolded_progress(t) for t in runs[m].progress()] for m in names}
    lo, hi = common_range(*[x for m in names for x in u[m]])
    grid = np.linspace(lo, hi, n_grid)
    out = {m: np.stack([reindex_trajectory(runs[m].probs[k].astype(np.float64), grid,
                                           progress_values=runs[m].progress()[k], device=device)
                        for k in range(len(u[m]))]) for m in names}
    return grid, (lo, hi), out


def seed_pair_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """d_B (eq. 2) between seed k of family ``a`` and seed k+1 (mod K) of family ``b`` at every grid
    value: a, b (K, G, N, C) -> (K, G).  Seed k of every method starts from the same network, so
    pairing k with k+1 compares runs of different initialisations both for a cross-family pair and
    for the seed null (``b`` = ``a``)."""
    if a.shape != b.shape:
        raise ValueError(f"families must share (K, G, N, C), got {a.shape} and {b.shape}")
    if a.shape[0] < 2:
        raise ValueError("seed pairs need at least 2 seeds per family")
    return bhattacharyya(a, np.roll(b, -1, axis=0))


def window_mean(d: np.ndarray, lo_frac: float = 0.0, hi_frac: float = 1.0) -> np.ndarray:
    """Mean over the grid values in the fraction [lo_frac, hi_frac] of the grid: (K, G) -> (K,)."""
    G = d.shape[-1]
    i0, i1 = int(round(lo_frac * (G - 1))), int(round(hi_frac * (G - 1)))
    return d[..., i0:i1 + 1].mean(-1)


def inpca_picture(runs: dict, names, k: int = 3, n_null: int = 10, seed: int = 0):
    """InPCA (eqs. 9-11) fitted on the checkpoints of the families ``names`` alone; P_0, P_* and
    each family's mean trajectory (mean over seeds at each checkpoint, App. G) placed with
    ``InPCA.project``.  Returns dict(emb, X {name: (K, T, k)}, means {name: (T, k)}, p0, pstar,
    null (n_null,) explained_stress_null of the same models)."""
    names = list(names)
    labels = runs[names[0]].labels
    P = np.concatenate([runs[m].probs.reshape(-1, *runs[m].probs.shape[2:]) for m in names]).astype(np.float64)
    sizes = [runs[m].probs.shape[:2] for m in names]
    P0, Pstar = reference_points(labels, runs[names[0]].probs.shape[-1])
    means = np.stack([runs[m].probs.astype(np.float64).mean(0) for m in names])  # (F, T, N, C)
    pic = inpca_with_placed(P, np.concatenate([P0[None], Pstar[None], means.reshape(-1, *means.shape[2:])]),
                            k=k, n_null=n_null, seed=seed)
    emb, Y = pic.embedding, pic.placed
    X, start = {}, 0
    for m, (S, T) in zip(names, sizes):
        X[m] = emb.coords[start:start + S * T].reshape(S, T, k)
        start += S * T
    T = sizes[0][1]
    return dict(emb=emb, X=X, p0=Y[0], pstar=Y[1],
                means={m: Y[2 + i * T:2 + (i + 1) * T] for i, m in enumerate(names)}, null=pic.stress_null)
