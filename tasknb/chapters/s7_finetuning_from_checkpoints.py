"""Fine-tuning on sub-tasks from checkpoints along a supervised trajectory (Ramesh et al. 2023,
"S", Result 6, Fig. 7 and App. A).

The paper trains a network on all of CIFAR-10, keeps models at several stages of that training,
and fine-tunes each of them -- the WHOLE network, no frozen backbone -- on two binary sub-tasks
(Airplane vs Automobile, Bird vs Cat).  Every model, pre-trained or fine-tuned, is read in one
10-class prediction space (eq. 8: a head imprinted over all ten classes, eq. 7), so that one can
ask how far fine-tuning moves a model and whether it goes backwards in progress (eq. 4).

``pretrain_with_checkpoints``  train a SmallCNN on all ten classes, recording its predictions
                               AND its weights at chosen checkpoints -> :class:`Pretraining`
``finetune_from_checkpoints``  from each chosen checkpoint, fine-tune on each binary sub-task
                               with a few seeds, recording every run through the same 10-class
                               prediction set -> :class:`FineTuning`, probs
                               (n_start, n_subtasks, n_seeds, T_ft, N, 10)
``distance_travelled``         d_B between a fine-tuning run's first and last points, or its
                               Riemann length (eq. 6)
``distance_to_trajectory``     smallest d_B from a model to any checkpoint of a trajectory
``progress_along``             progress (eq. 4) of every recorded fine-tuning point

The new 2-way head.  Fine-tuning a 10-way network on a 2-way task needs a 2-output head; the
paper does not say how it was made.  ``head="imprint"`` (default) imprints it (eq. 7) from the
penultimate features of the sub-task's training images at the starting checkpoint, with zero
bias: a deterministic head that already classifies the pair as well as the backbone allows, so
fine-tuning does not start by un-doing a random head.  ``head="pretrained"`` keeps the rows
(and biases) of the two classes from the pre-trained 10-way head (the start is then exactly the
pre-trained network restricted to the pair); ``head="random"`` is a fresh ``nn.Linear`` drawn
with the fine-tuning seed.  Whatever the head, the recorded point reads the backbone only,
through the shared imprinted 10-class readout, so the first recorded point of every fine-tuning
run IS the pre-training checkpoint's point.

Seeds.  Pre-training uses ``seed`` (initialisation and batch order).  Fine-tuning seed k uses
``seed + k`` (the ``seed`` argument of :func:`finetune_from_checkpoints`) for its batch order and
(``head="random"``) its head; the same seed gives the same batch order from every start, so the
starts differ only by where they start.  The fine-tuning images of a sub-task are the
pre-training images of its two classes: the sub-task is a subset of the pre-training task, as in
the paper.  Everything runs on ``tasknb.device.get_device()`` and is deterministic given seeds.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data import training_images
from ..device import get_device
from ..geometry import bhattacharyya, bhattacharyya_matrix, progress, riemann_length
from ..networks.cnn import init_cnn
from ..readout import imprint, prediction_set
from ..trajectories import (batch_stream, check_checkpoints, default_checkpoints, make_optimizer, progress_bar,
                           record_run, run_config, supervised_step)
from ..validation import check_choice, check_int_sequence, check_positive_int, check_seed

__all__ = ["Pretraining", "FineTuning", "check_subtasks", "pretrain_with_checkpoints", "finetune_from_checkpoints",
           "distance_travelled", "distance_to_trajectory", "progress_along", "HEADS", "DEFAULT_SUBTASKS",
           "DISTANCE_KINDS", "PRETRAINING_DEFAULTS"]

#: how the 2-way head of a fine-tuned network is made (see the module docstring)
HEADS = ("imprint", "pretrained", "random")
#: Fashion-MNIST analogues of the paper's Airplane vs Automobile and Bird vs Cat: two look-alike
#: pairs, each inside one super-class -- pullover vs coat (tops) and sandal vs sneaker (footwear)
DEFAULT_SUBTASKS = ((2, 4), (5, 7))
#: what :func:`distance_travelled` measures
DISTANCE_KINDS = ("endpoints", "length")
#: run defaults of :func:`pretrain_with_checkpoints` (RunConfig fields): one network, read through
#: an imprinted head over the ten classes
PRETRAINING_DEFAULTS = dict(n_seeds=1, readout="imprint")


@dataclass
class Pretraining:
    """A supervised run on all ten classes, with its weights kept at the checkpoints.

    probs : float32 (T, N, 10), the run read through the imprinted 10-class prediction set
    steps : int64 (T,), the checkpoints (optimizer steps; 0 = initialisation)
    labels : int64 (N,), labels of the fixed test images (0..9)
    accuracy : float64 (T,), 10-class test accuracy of the imprinted readout
    states : list of T state dicts (plain CPU tensors) -- the weights at each checkpoint
    config : dict of the run (``RunConfig.to_dict()``; n_seeds = 1)
    data : (X_train, y_train, PredictionSet) the run used, kept so that fine-tuning need not
        reload them (rebuilt from ``config`` when None or on another device)
    """

    probs: np.ndarray
    steps: np.ndarray
    labels: np.ndarray
    accuracy: np.ndarray
    states: list = field(repr=False)
    config: dict
    #: (training images, labels, PredictionSet) on the run's device, reused by fine-tuning
    data: tuple | None = field(default=None, repr=False, compare=False)

    def index_of(self, step: int) -> int:
        """Position of checkpoint ``step`` in ``steps`` (ValueError if it was not recorded)."""
        hits = np.nonzero(self.steps == step)[0]
        if len(hits) == 0:
            raise ValueError(f"start_steps must be recorded checkpoints of the pre-training run "
                             f"{self.steps.tolist()}, got {step}")
        return int(hits[0])


@dataclass
class FineTuning:
    """Fine-tuning runs from several pre-training checkpoints on several binary sub-tasks.

    probs : float32 (n_start, n_subtasks, n_seeds, T_ft, N, 10), every run read through the
        pre-training run's imprinted 10-class prediction set (one prediction space)
    steps : int64 (T_ft,), fine-tuning checkpoints (0 = the starting checkpoint itself)
    start_steps : int64 (n_start,), the pre-training steps fine-tuning starts from
    start_probs : float32 (n_start, N, 10), the pre-training points at those steps
    subtasks : list of (class_a, class_b) pairs; class_a gets label 0, class_b label 1
    seeds : list of the n_seeds fine-tuning seeds
    labels : int64 (N,), labels of the fixed test images (0..9)
    accuracy : float64 (n_start, n_subtasks, n_seeds, T_ft), 10-class accuracy of the readout
    subtask_accuracy : float64 (n_start, n_subtasks, n_seeds, 2), accuracy of the network's own
        2-way head on the test images of the pair, before and after fine-tuning
    config : dict of the arguments of :func:`finetune_from_checkpoints`
    """

    probs: np.ndarray
    steps: np.ndarray
    start_steps: np.ndarray
    start_probs: np.ndarray
    subtasks: list
    seeds: list
    labels: np.ndarray
    accuracy: np.ndarray
    subtask_accuracy: np.ndarray
    config: dict


def _training_data_and_prediction_set(config, dev):
    Xtr, ytr = training_images(config["dataset"], range(10), config["n_train"], config["data_seed"])
    pset = prediction_set(config["dataset"], range(10), config["n_test"], readout="imprint",
                          n_imprint=config["n_imprint"], data_seed=config["data_seed"], device=dev)
    return Xtr.to(dev), ytr.to(dev), pset


def pretrain_with_checkpoints(config=None, *, device="auto", progress: bool = False, **changes) -> Pretraining:
    """Supervised training of one SmallCNN on all ten classes, keeping its weights at the
    checkpoints (the "standard supervised learning on CIFAR-10" of Result 6 of S).

    Parameters
    ----------
    config : a :class:`~tasknb.trajectories.RunConfig` or the dataset name; RunConfig fields as
        keywords fill in or replace its fields, defaults ``PRETRAINING_DEFAULTS`` over RunConfig's:
        one network (n_seeds must be 1; ``seed`` is its initialisation and batch order), all ten
        classes, 300 SGD steps (lr 0.05, momentum 0.9, weight_decay 0), batch 64, checkpoints
        ``default_checkpoints(steps)`` (the weights are kept at every one of them, so any can be a
        fine-tuning start), n_test 1000 images drawn with ``data_seed``, n_train (default all
        60k) drawn with ``data_seed + 1``, and readout "imprint": a head imprinted from
        ``n_imprint`` (default 100) training images per class (eq. 7), the only readout allowed.
    device : "auto" | "cpu" | "cuda".    progress : show a tqdm bar.

    Returns
    -------
    :class:`Pretraining` with probs (T, N, 10), steps (T,), the T state dicts.
    Same arguments -> same numbers on the same device.
    """
    c = run_config(config, PRETRAINING_DEFAULTS, **changes)
    if c.n_seeds != 1:
        raise ValueError(f"n_seeds must be 1 for a pre-training run (one network), got {c.n_seeds}")
    if c.classes != tuple(range(10)) or c.union_classes != tuple(range(10)):
        raise ValueError(f"classes must be all ten classes 0..9 for pre-training, got {list(c.classes)}")
    if c.readout != "imprint":
        raise ValueError(f"readout must be 'imprint' (fine-tuned networks change heads), got {c.readout!r}")
    dev = get_device(device)
    config = c.to_dict()
    steps, checkpoints, seed, channels = c.steps, c.checkpoints, c.seed, c.channels
    optimizer, lr, momentum, weight_decay, batch_size = c.optimizer, c.lr, c.momentum, c.weight_decay, c.batch_size
    Xtr, ytr, pset = _training_data_and_prediction_set(config, dev)
    model = init_cnn(10, channels, seed, dev)
    opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
    train_step = supervised_step(model, opt, Xtr, ytr, batch_stream(len(ytr), batch_size, seed))
    bar = progress_bar(steps, "pre-training on 10 classes", progress)
    probs, states = record_run(model, train_step, steps, checkpoints, pset, keep_states=True, bar=bar)
    if bar is not None:
        bar.close()
    labels = pset.labels.cpu().numpy().astype(np.int64)
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    return Pretraining(probs=probs, steps=np.asarray(checkpoints, dtype=np.int64), labels=labels,
                       accuracy=accuracy, states=states, config=config, data=(Xtr, ytr, pset))


def check_subtasks(subtasks, name: str = "subtasks") -> list[tuple[int, int]]:
    """Validate binary sub-tasks: a non-empty sequence of distinct pairs (a, b) of distinct
    classes in 0..9; returns them as a list of tuples (ValueError naming ``name`` otherwise)."""
    try:
        pairs = [tuple(p) for p in subtasks]
    except TypeError:
        raise ValueError(f"{name} must be a non-empty sequence of class pairs (a, b), got {subtasks!r}") from None
    except ValueError:
        raise ValueError(f"{name} must be a non-empty sequence of class pairs (a, b), got {subtasks!r}") from None
    if not pairs:
        raise ValueError(f"{name} must be a non-empty sequence of class pairs (a, b), got an empty one")
    out = []
    for p in pairs:
        if len(p) != 2:
            raise ValueError(f"{name} must hold pairs of two distinct classes in 0..9, got {p!r}")
        out.append(tuple(check_int_sequence(name, p, minimum=0, maximum=9)))
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a pair, got {out}")
    return out


def _new_head(model, head: str, pair, Xs, ys, seed: int, dev) -> nn.Linear:
    """The 2-way head of a network about to be fine-tuned on ``pair`` (see the module docstring)."""
    d = model.head.in_features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin = nn.Linear(d, 2)          # "random": PyTorch's default init, drawn from the seed
    lin = lin.to(dev)
    with torch.no_grad():
        if head == "pretrained":
            lin.weight.copy_(model.head.weight[list(pair)])
            lin.bias.copy_(model.head.bias[list(pair)])
        elif head == "imprint":
            was = model.training
            model.eval()
            f = torch.cat([model.features(Xs[i:i + 4096]) for i in range(0, len(Xs), 4096)])
            model.train(was)
            w = imprint(f.double(), ys, 2, device=dev)   # eq. (7): (2, d), unit rows
            lin.weight.copy_(w.to(lin.weight.dtype))
            lin.bias.zero_()
    return lin


@torch.no_grad()
def _own_accuracy(model, X, y) -> float:
    was = model.training
    model.eval()
    acc = float((model(X).argmax(-1) == y).double().mean()) if len(y) else float("nan")
    model.train(was)
    return acc


def finetune_from_checkpoints(
    pre: Pretraining,
    subtasks=DEFAULT_SUBTASKS,
    start_steps=None,
    *,
    n_seeds: int = 2,
    steps: int = 100,
    checkpoints=None,
    batch_size: int | None = None,
    optimizer: str | None = None,
    lr: float | None = None,
    momentum: float | None = None,
    weight_decay: float | None = None,
    head: str = "imprint",
    seed: int = 0,
    device="auto",
    progress: bool = False,
) -> FineTuning:
    """Fine-tune the whole network, from each chosen pre-training checkpoint, on each binary
    sub-task with ``n_seeds`` seeds, recording every run in the 10-class prediction space
    (Result 6 and Fig. 7 of S).

    Parameters
    ----------
    pre : the :class:`Pretraining` to start from (its weights, data and prediction set are used).
    subtasks : sequence of pairs of distinct classes in 0..9, default ((2, 4), (5, 7)) --
        pullover vs coat and sandal vs sneaker; label 0 = first class of the pair.
    start_steps : pre-training checkpoints to start from (each in ``pre.steps``), default all.
    n_seeds : int >= 1, default 2; fine-tuning seed k is ``seed + k``.
    steps : int >= 1, default 100, fine-tuning optimizer steps.
    checkpoints : sorted distinct ints in [0, steps] starting with 0, default
        ``default_checkpoints(steps, 8)``; T_ft = len(checkpoints).
    batch_size, optimizer, lr, momentum, weight_decay : default (None) those of the pre-training
        run; a fresh optimizer is made for every run.
    head : "imprint" (default), "pretrained" or "random": how the 2-way head is made (module
        docstring).  Every parameter is trained (no frozen backbone).
    seed : int >= 0, default 0.   device : "auto" | "cpu" | "cuda".   progress : a tqdm bar.

    Returns
    -------
    :class:`FineTuning` with probs (n_start, n_subtasks, n_seeds, T_ft, N, 10) float32; its point
    at fine-tuning step 0 equals ``pre.probs`` at the starting checkpoint exactly.
    Same arguments -> same numbers on the same device.
    """
    if not isinstance(pre, Pretraining):
        raise ValueError(f"pre must be a Pretraining (from pretrain_with_checkpoints), got {type(pre).__name__}")
    subtasks = check_subtasks(subtasks)
    if start_steps is None:
        start_steps = pre.steps.tolist()
    start_steps = check_int_sequence("start_steps", start_steps, minimum=0)
    start_idx = [pre.index_of(s) for s in start_steps]
    n_seeds = check_positive_int("n_seeds", n_seeds)
    steps = check_positive_int("steps", steps)
    checkpoints = default_checkpoints(steps, 8) if checkpoints is None else check_checkpoints(checkpoints, steps)
    if checkpoints[0] != 0:
        raise ValueError(f"checkpoints must start at 0 (the starting checkpoint itself), got {checkpoints}")
    cfg = pre.config
    batch_size = cfg["batch_size"] if batch_size is None else check_positive_int("batch_size", batch_size)
    optimizer = cfg["optimizer"] if optimizer is None else optimizer
    lr = cfg["lr"] if lr is None else lr
    momentum = cfg["momentum"] if momentum is None else momentum
    weight_decay = cfg["weight_decay"] if weight_decay is None else weight_decay
    make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr, momentum, weight_decay)  # validates
    check_choice("head", head, HEADS)
    seed = check_seed("seed", seed)
    dev = get_device(device)
    config = dict(subtasks=subtasks, start_steps=start_steps, n_seeds=n_seeds, steps=steps,
                  checkpoints=checkpoints, batch_size=batch_size, optimizer=optimizer, lr=lr,
                  momentum=momentum, weight_decay=weight_decay, head=head, seed=seed, pretraining=dict(cfg))

    if pre.data is not None and pre.data[0].device.type == dev.type:
        Xtr, ytr, pset = pre.data
    else:
        Xtr, ytr, pset = _training_data_and_prediction_set(cfg, dev)
    labels = pset.labels.cpu().numpy().astype(np.int64)
    n_start, n_sub, T = len(start_steps), len(subtasks), len(checkpoints)
    N = len(labels)
    probs = np.empty((n_start, n_sub, n_seeds, T, N, 10), dtype=np.float32)
    sub_acc = np.empty((n_start, n_sub, n_seeds, 2), dtype=np.float64)
    seeds = [seed + k for k in range(n_seeds)]
    bar = progress_bar(n_start * n_sub * n_seeds * steps, "fine-tuning on sub-tasks", progress)
    for j, pair in enumerate(subtasks):
        a, b = pair
        keep = (ytr == a) | (ytr == b)
        Xs, ys = Xtr[keep], (ytr[keep] == b).long()          # label 0 = a, 1 = b
        if batch_size > len(ys):
            raise ValueError(f"batch_size must be an integer in [1, {len(ys)}] (training images of "
                             f"sub-task {pair}), got {batch_size}")
        tkeep = (pset.labels == a) | (pset.labels == b)
        Xt, yt = pset.X[tkeep], (pset.labels[tkeep] == b).long()
        for i, si in enumerate(start_idx):
            for k, s in enumerate(seeds):
                model = init_cnn(10, cfg["channels"], 0, dev)
                model.load_state_dict(pre.states[si])
                model.head = _new_head(model, head, pair, Xs, ys, s, dev)
                opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay)
                train_step = supervised_step(model, opt, Xs, ys, batch_stream(len(ys), batch_size, s))
                sub_acc[i, j, k, 0] = _own_accuracy(model, Xt, yt)
                probs[i, j, k], _ = record_run(model, train_step, steps, checkpoints, pset, bar=bar)
                sub_acc[i, j, k, 1] = _own_accuracy(model, Xt, yt)
    if bar is not None:
        bar.close()
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    return FineTuning(probs=probs, steps=np.asarray(checkpoints, dtype=np.int64),
                      start_steps=np.asarray(start_steps, dtype=np.int64),
                      start_probs=pre.probs[start_idx].copy(), subtasks=subtasks, seeds=seeds, labels=labels,
                      accuracy=accuracy, subtask_accuracy=sub_acc, config=config)


def _runs(ft, name="ft"):
    """(..., T, N, C) float64 array of runs from a FineTuning or an array."""
    P = ft.probs if isinstance(ft, FineTuning) else ft
    if not isinstance(P, (np.ndarray, torch.Tensor)):
        raise ValueError(f"{name} must be a FineTuning or an array (..., T, N, C) of probabilities, "
                         f"got {type(ft).__name__}")
    P = np.asarray(P.detach().cpu() if isinstance(P, torch.Tensor) else P, dtype=np.float64)
    if P.ndim < 3 or P.shape[-3] < 2:
        raise ValueError(f"{name} must have shape (..., T, N, C) with T >= 2 recorded points, got {P.shape}")
    return P


def distance_travelled(ft, kind: str = "endpoints", *, device=None) -> np.ndarray:
    """How far each fine-tuning run moves in prediction space (Result 6 of S).

    ``ft`` : a :class:`FineTuning` or an array (..., T, N, C) of runs.
    ``kind`` : "endpoints" (default) -- d_B (eq. 2) between a run's first and last points;
        "length" -- its Riemann length over the recorded points, ``sum_k 2 sqrt(d_B(P_k, P_k+1))``
        (eq. 6; raw checkpoints, so an overestimate when they are far apart).
    Returns float64 (...,), e.g. (n_start, n_subtasks, n_seeds).
    """
    check_choice("kind", kind, DISTANCE_KINDS)
    P = _runs(ft)
    lead = P.shape[:-3]
    if kind == "endpoints":
        return np.asarray(bhattacharyya(P[..., 0, :, :], P[..., -1, :, :], device=device), dtype=np.float64)
    flat = P.reshape((-1,) + P.shape[-3:])
    return np.array([riemann_length(r, device=device) for r in flat], dtype=np.float64).reshape(lead)


def distance_to_trajectory(points, trajectory, *, device=None) -> np.ndarray:
    """Smallest d_B (eq. 2) from each model in ``points`` (..., N, C) to the checkpoints of
    ``trajectory`` (T, N, C) -- how far a fine-tuned model ends up from the supervised run.
    Returns float64 (...,)."""
    P = np.asarray(points, dtype=np.float64)
    Q = np.asarray(trajectory, dtype=np.float64)
    if P.ndim < 2 or Q.ndim != 3 or P.shape[-2:] != Q.shape[-2:]:
        raise ValueError(f"points (..., N, C) and trajectory (T, N, C) must share (N, C), "
                         f"got {P.shape} and {Q.shape}")
    D = bhattacharyya_matrix(P.reshape((-1,) + P.shape[-2:]), Q, device=device)
    return np.asarray(D, dtype=np.float64).min(1).reshape(P.shape[:-2])


def progress_along(ft: FineTuning, *, device=None) -> np.ndarray:
    """Progress t_w (eq. 4) on the 10-class task of every recorded fine-tuning point:
    float64 (n_start, n_subtasks, n_seeds, T_ft)."""
    if not isinstance(ft, FineTuning):
        raise ValueError(f"ft must be a FineTuning, got {type(ft).__name__}")
    P = ft.probs.astype(np.float64)
    lead = P.shape[:-2]
    return np.asarray(progress(P.reshape((-1,) + P.shape[-2:]), ft.labels, device=device)).reshape(lead)
