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
from ..device import generator, get_device
from ..networks.cnn import SmallCNN, init_cnn
from ..readout import prediction_set
from ..trajectories import (RunConfig, Trajectories, batch_stream, make_optimizer, record_seeds, run_config,
                           trajectories_from_probs)
from ..validation import check_choice, check_positive_int, check_positive_real, check_real_in, check_seed

__all__ = ["STRENGTHS", "augment", "ContrastiveNet", "init_contrastive", "nt_xent", "pseudo_labels",
           "fixmatch_loss", "record_contrastive_trajectories", "record_fixmatch_trajectories", "CONTRASTIVE_DEFAULTS",
           "FIXMATCH_DEFAULTS"]

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
    (what the imprinted readout of eq. 7 reads; the projection head is discarded, as in SimCLR);
    ``forward(x)`` / ``project(x)``: (B, proj_dim), Linear(16*c2 -> hidden) - ReLU - Linear(hidden ->
    proj_dim) on the features (the ``z`` of NT-Xent).
    """

    def __init__(self, channels=(8, 16), hidden: int = 64, proj_dim: int = 32):
        super().__init__()
        hidden = check_positive_int("hidden", hidden)
        proj_dim = check_positive_int("proj_dim", proj_dim)
        self.backbone = SmallCNN(10, channels)
        d = self.backbone.head.in_features
        self.projector = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, proj_dim))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.features(x)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        return self.projector(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(x)


def init_contrastive(channels=(8, 16), hidden: int = 64, proj_dim: int = 32, seed: int = 0,
                     device="auto") -> ContrastiveNet:
    """A :class:`ContrastiveNet` whose weights depend on ``seed`` only (drawn on the CPU, then moved)."""
    seed = check_seed("seed", seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ContrastiveNet(channels, hidden, proj_dim)
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
#: run defaults of the two recorders (RunConfig fields; App. A of S trains both with Adam)
CONTRASTIVE_DEFAULTS = dict(n_seeds=2, batch_size=128, optimizer="adam", lr=0.003, readout="imprint")
FIXMATCH_DEFAULTS = dict(n_seeds=2, batch_size=32, optimizer="adam", lr=0.005, readout="imprint")


def _ten_class_run(config, defaults, changes) -> RunConfig:
    """The RunConfig of a recorder that reads all ten classes through an imprinted head."""
    c = run_config(config, defaults, **changes)
    if c.classes != tuple(range(10)) or c.union_classes != tuple(range(10)):
        raise ValueError(f"classes must be all ten classes 0..9 for this recorder, got {list(c.classes)}")
    if c.readout != "imprint":
        raise ValueError(f"readout must be 'imprint' (the networks are read through an imprinted head), "
                         f"got {c.readout!r}")
    if c.batch_size < 2:
        raise ValueError(f"batch_size must be an integer >= 2, got {c.batch_size}")
    return c


def record_contrastive_trajectories(config=None, *, temperature: float = 0.5, hidden: int = 64, proj_dim: int = 32,
                                    device="auto", progress: bool = False, **changes) -> Trajectories:
    """Train the SimCLR networks of a run on unlabelled images; record them through the imprinted
    readout over the ten classes (Result 5 and App. B of S).

    Each step draws ``batch_size`` training images (labels never used), makes two "strong" views
    of each (:func:`augment`), and takes an optimizer step on :func:`nt_xent` of their projections.
    Checkpoints are read through ``prediction_set(dataset, range(10), n_test, readout="imprint",
    n_imprint=n_imprint, data_seed=data_seed)``, the same set as the supervised baseline
    ``record_trajectories(..., readout="imprint", union_classes=range(10))`` with the same
    ``n_test``, ``n_imprint`` and ``data_seed``; the n_imprint labelled images per class are the
    only labels involved, and only in the readout.

    config : a :class:`~tasknb.trajectories.RunConfig` or the dataset name; RunConfig fields as
        keywords fill in or replace its fields, defaults ``CONTRASTIVE_DEFAULTS`` (2 seeds, batch
        128, Adam as in App. A, lr 0.003, readout "imprint") over RunConfig's.  classes must be all
        ten; batch_size >= 2; seed k uses ``seed + k`` for the weights, the batch order and the
        views; n_train images drawn with ``data_seed + 1`` (default all 60,000).
    temperature > 0 (default 0.5); hidden, proj_dim: projection head sizes.

    Returns Trajectories with probs (n_seeds, T, n_test, 10) float32.
    """
    c = _ten_class_run(config, CONTRASTIVE_DEFAULTS, changes)
    temperature = check_positive_real("temperature", temperature)
    hidden = check_positive_int("hidden", hidden)
    proj_dim = check_positive_int("proj_dim", proj_dim)
    dev = get_device(device)
    dataset, classes, channels, batch_size = c.dataset, list(c.classes), c.channels, c.batch_size
    config_dict = dict(method="simclr", temperature=temperature, hidden=hidden, proj_dim=proj_dim, **c.to_dict())
    Xtr, _ = training_images(dataset, classes, c.n_train, c.data_seed)
    if batch_size > len(Xtr):
        raise ValueError(f"batch_size must be an integer in [2, {len(Xtr)}] (the training-set size), got {batch_size}")
    pset = prediction_set(dataset, classes, c.n_test, readout="imprint", n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)
    Xtr = Xtr.to(dev)

    def build(_k, s):
        model = init_contrastive(channels, hidden, proj_dim, s, dev)
        opt = make_optimizer(model.parameters(), c.optimizer, c.lr, c.momentum, c.weight_decay)
        batches = batch_stream(len(Xtr), batch_size, s)
        g_aug = generator(s + 7919)

        def train_step(_step):
            x = Xtr[next(batches).to(dev)]
            z = model(torch.cat([augment(x, "strong", generator_=g_aug), augment(x, "strong", generator_=g_aug)]))
            loss = nt_xent(*z.chunk(2), temperature=temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        return model, train_step

    probs, _ = record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc="SimCLR seeds")
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)


def record_fixmatch_trajectories(config=None, *, n_labelled: int = 30, mu: int = 3, tau: float = 0.95,
                                 lambda_u: float = 1.0, device="auto", progress: bool = False,
                                 **changes) -> Trajectories:
    """Train ``n_seeds`` FixMatch networks (a SmallCNN with a ten-class head) from ``n_labelled``
    labelled images per class plus the unlabelled training images; record them through the
    imprinted readout over the ten classes (Result 5 of S).

    The labelled set (10 x n_labelled images, drawn with ``data_seed + 3`` from the training images)
    is fixed; the unlabelled set is every training image (labels dropped), as in FixMatch.  Each
    step: ``batch_size`` labelled images (weak views), ``mu * batch_size`` unlabelled images with a
    weak and a strong view each (:func:`augment`), one optimizer step on :func:`fixmatch_loss`
    with threshold ``tau`` (in [0, 1], default 0.95) and weight ``lambda_u`` (>= 0, default 1).

    Reading: as :func:`record_contrastive_trajectories` (imprinted head from n_imprint images per
    class, the same prediction set as the supervised baseline), so the three methods share one
    space.  ``config["mask_rate"]`` (n_seeds, steps) records the fraction of unlabelled images
    above the threshold at every step.

    config : a :class:`~tasknb.trajectories.RunConfig` or the dataset name; RunConfig fields as
    keywords fill in or replace its fields, defaults ``FIXMATCH_DEFAULTS`` (2 seeds, batch 32, Adam,
    lr 0.005, readout "imprint") over RunConfig's; classes must be all ten, batch_size >= 2.

    Returns Trajectories with probs (n_seeds, T, n_test, 10) float32.
    """
    c = _ten_class_run(config, FIXMATCH_DEFAULTS, changes)
    n_labelled = check_positive_int("n_labelled", n_labelled)
    mu = check_positive_int("mu", mu)
    tau = check_real_in("tau", tau, 0.0, 1.0)
    lambda_u = check_positive_real("lambda_u", lambda_u, allow_zero=True)
    dev = get_device(device)
    dataset, classes, channels, batch_size, n_seeds, steps = (c.dataset, list(c.classes), c.channels, c.batch_size,
                                                              c.n_seeds, c.steps)
    Xtr, ytr = training_images(dataset, classes, c.n_train, c.data_seed)
    g = generator(c.data_seed + 3)
    lab = draw_per_class(ytr, classes, n_labelled, g, "n_labelled")
    Xl, yl = Xtr[lab].to(dev), ytr[lab].to(dev)
    if batch_size > len(yl):
        raise ValueError(f"batch_size must be an integer in [2, {len(yl)}] (10 x n_labelled), got {batch_size}")
    if mu * batch_size > len(Xtr):
        raise ValueError(f"mu * batch_size must be at most {len(Xtr)} (the training-set size), got {mu * batch_size}")
    Xu = Xtr.to(dev)
    pset = prediction_set(dataset, classes, c.n_test, readout="imprint", n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)
    config_dict = dict(method="fixmatch", n_labelled=n_labelled, mu=mu, tau=tau, lambda_u=lambda_u, **c.to_dict())
    mask_rate = np.zeros((n_seeds, steps))

    def build(k, s):
        model = init_cnn(10, channels, s, dev)
        opt = make_optimizer(model.parameters(), c.optimizer, c.lr, c.momentum, c.weight_decay)
        lab_batches = batch_stream(len(yl), batch_size, s)
        unl_batches = batch_stream(len(Xu), mu * batch_size, s + 104729)
        g_aug = generator(s + 7919)

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
        return model, train_step

    probs, _ = record_seeds(build, n_seeds, steps, c.checkpoints, pset, seed=c.seed, progress=progress,
                            desc="FixMatch seeds")
    config_dict["mask_rate"] = mask_rate.tolist()
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)
