"""Fine-tuning on sub-tasks from checkpoints along a supervised trajectory (Ramesh et al. 2023,
"S", Result 6, Fig. 7 and App. A).

The paper trains a network on all of CIFAR-10, keeps models at several stages of that training,
and fine-tunes each of them -- the WHOLE network, no frozen backbone -- on two binary sub-tasks
(Airplane vs Automobile, Bird vs Cat).  Every model, pre-trained or fine-tuned, is read in one
10-class prediction space (eq. 8: a readout built over all ten classes from the model's
penultimate features), so that one can ask how far fine-tuning moves a model and whether it goes
backwards in progress (eq. 4).

``pretrain_with_checkpoints``  train ``n_seeds`` SmallCNNs on all ten classes of a training
                               subset with the paper's recipe (``PAPER_RECIPE``), keeping their
                               predictions AND weights at the checkpoints -> :class:`Pretraining`
``finetune_from_checkpoints``  from each chosen checkpoint of every pre-training seed, fine-tune
                               on each binary sub-task, recording every run through the same
                               10-class prediction set -> :class:`FineTuning`, probs
                               (n_start, n_subtasks, n_seeds, T_ft, N, 10)
``distance_travelled``         d_B between a run's first and last points, or its Riemann length (eq. 6)
``distance_to_trajectory``     smallest d_B from a model to any checkpoint of a trajectory
``progress_along``             progress (eq. 4) of every recorded fine-tuning point
``progress_change``            progress at each fine-tuning checkpoint minus progress at the start
``family_comparisons``         per start: Remark 5's normalised distance between two families of
                               fine-tuning runs over their common range of unfolded progress
                               travelled since the start (``trajectory_geometry.compare_families``)
``paired_run_distances``       per start and pre-training seed: d_traj (eq. 5) between two runs from
                               the same checkpoint, over their common unfolded-progress range
``seed_spread``                d_B between the models of pre-training seeds k and k+1 (mod K)
``inpca_picture``              InPCA fitted on the models alone; means, P_0 and P_* projected

Recipe.  Pre-training and fine-tuning use ``RunConfig``'s defaults, the paper's recipe at our
scale (App. A of S: LayerNorm'd penultimate layer -- the paper used layer norm for its
fine-tuning experiments --, a bias-free head, SGD with Nesterov momentum, cosine schedule, weight
decay).  Pre-training runs long enough on a small training subset that its last checkpoint FITS
that subset (``Pretraining.train_accuracy``), the paper's regime ("a fully-trained CIFAR-10 model
which interpolates the training data").  Fine-tuning has its own cosine schedule over its steps
and a fresh optimizer; ``optimizer="adam"`` gives the control of the notebook (is a drop in
progress an artefact of restarting an adaptive optimizer?).

The new 2-way head.  ``head="pretrained"`` (default) keeps the rows of the two classes of the
pre-trained (bias-free) 10-way head: fine-tuning is then the pre-trained network trained with the
loss restricted to the pair's two logits, so a start that already fits the pair has little left
to learn -- the paper's reason why fine-tuning an interpolating model barely moves it.
``head="imprint"`` imprints a head (eq. 7, unit rows) from the sub-task's training features at the
start; ``head="random"`` is a fresh bias-free ``nn.Linear`` drawn from the run's stream.  Whatever
the head, the recorded point reads the backbone through the shared 10-class readout
(``prediction_set``'s default, "prototype_ml": unchanged by a rescaling or rotation of the
features), so every fine-tuning run starts exactly at its checkpoint's point.

Seeds.  Pre-training seed k is seed k of the RunConfig (``init_seed``/``batch_seed`` streams).
Fine-tuning run (pre-training seed k, replicate r) draws its batch order (and a random head) from
``derived_seed(seed, "s7.finetune.batch_order", k, r)``: the same order from every start (the
starts of one seed differ only by where they start) and for both sub-tasks' index streams; a second
replicate r = 1 is the same-task null of the notebook.  The fine-tuning images of a sub-task are the
pre-training images of its two classes.  Deterministic given seeds on one device.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..data import training_images
from ..device import derived_seed, get_device
from ..geometry import (bhattacharyya, bhattacharyya_matrix, inpca_with_placed, progress, reference_points,
                        riemann_length)
from ..networks.cnn import init_cnn
from ..readout import imprint, prediction_set
from ..trajectories import (check_checkpoints, default_checkpoints, make_optimizer, make_schedule, progress_bar,
                            record_run, run_config, supervised_step, train_supervised_seeds)
from ..seed_runs import batch_stream
from ..trajectory_geometry import compare_families, compare_trajectories
from ..validation import check_choice, check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["Pretraining", "FineTuning", "check_subtasks", "pretrain_with_checkpoints", "finetune_from_checkpoints",
           "distance_travelled", "distance_to_trajectory", "progress_along", "progress_change",
           "family_comparisons", "paired_run_distances", "seed_spread", "inpca_picture", "InPCAPicture",
           "HEADS", "DEFAULT_SUBTASKS", "DISTANCE_KINDS", "PRETRAINING_DEFAULTS", "FT_PURPOSE"]

#: how the 2-way head of a fine-tuned network is made (see the module docstring)
HEADS = ("pretrained", "imprint", "random")
#: Fashion-MNIST analogues of the paper's Airplane vs Automobile and Bird vs Cat: two look-alike
#: pairs, each inside one super-class -- pullover vs coat (tops) and sandal vs sneaker (footwear)
DEFAULT_SUBTASKS = ((2, 4), (5, 7))
#: what :func:`distance_travelled` measures
DISTANCE_KINDS = ("endpoints", "length")
#: run defaults of :func:`pretrain_with_checkpoints` over RunConfig's (the paper's recipe): five
#: seeds on a 1,000-image subset of the ten classes, long enough to fit it
PRETRAINING_DEFAULTS = dict(n_seeds=5, n_train=1000, steps=600)
#: purpose of the fine-tuning batch-order streams
FT_PURPOSE = "s7.finetune.batch_order"


@dataclass
class Pretraining:
    """Supervised runs of K seeds on all ten classes, with their weights kept at the checkpoints.

    probs : float32 (K, T, N, 10), the runs read through the 10-class prediction set
    steps : int64 (T,), the checkpoints (optimizer steps; 0 = initialisation)
    labels : int64 (N,), labels of the fixed test images (0..9)
    accuracy : float64 (K, T), 10-class test accuracy of the readout
    train_accuracy : float64 (K, T), accuracy of the network's own head on its training subset
    states : states[k][t], CPU state dicts of seed k at checkpoint t
    config : dict of the run (``RunConfig.to_dict()``)
    data : (X_train, y_train, PredictionSet) the runs used (rebuilt from ``config`` when None)
    """

    probs: np.ndarray
    steps: np.ndarray
    labels: np.ndarray
    accuracy: np.ndarray
    train_accuracy: np.ndarray
    states: list = field(repr=False)
    config: dict
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
    """Fine-tuning runs from checkpoints of every pre-training seed on several binary sub-tasks.

    probs : float32 (n_start, n_subtasks, K, T_ft, N, 10), run (start i, sub-task j, pre-training
        seed k) read through the pre-training runs' 10-class prediction set (one space)
    steps : int64 (T_ft,), fine-tuning checkpoints (0 = the starting checkpoint itself)
    start_steps : int64 (n_start,), the pre-training steps fine-tuning starts from
    start_probs : float32 (n_start, K, N, 10), the pre-training points at those steps
    subtasks : list of (class_a, class_b) pairs; class_a gets label 0, class_b label 1
    labels : int64 (N,), labels of the fixed test images (0..9)
    accuracy : float64 (n_start, n_subtasks, K, T_ft), 10-class accuracy of the readout
    subtask_accuracy : float64 (n_start, n_subtasks, K, 2), accuracy of the network's own 2-way
        head on the pair's test images, before and after fine-tuning
    config : dict of the arguments of :func:`finetune_from_checkpoints`
    """

    probs: np.ndarray
    steps: np.ndarray
    start_steps: np.ndarray
    start_probs: np.ndarray
    subtasks: list
    labels: np.ndarray
    accuracy: np.ndarray
    subtask_accuracy: np.ndarray
    config: dict


def _training_data_and_prediction_set(config, dev):
    Xtr, ytr = training_images(config["dataset"], range(10), config["n_train"], config["data_seed"])
    pset = prediction_set(config["dataset"], range(10), config["n_test"], readout=config["readout"],
                          n_imprint=config["n_imprint"], data_seed=config["data_seed"], device=dev)
    return Xtr.to(dev), ytr.to(dev), pset


def _model(config, state, dev, n_classes: int = 10):
    model = init_cnn(n_classes, config["channels"], 0, dev, norm=config["norm"], head_bias=config["head_bias"])
    model.load_state_dict(state)
    return model


@torch.no_grad()
def _own_accuracy(model, X, y, batch: int = 4096) -> float:
    was = model.training
    model.eval()
    hits = sum(int((model(X[i:i + batch]).argmax(-1) == y[i:i + batch]).sum()) for i in range(0, len(y), batch))
    model.train(was)
    return hits / len(y) if len(y) else float("nan")


def pretrain_with_checkpoints(config=None, *, device="auto", progress: bool = False, **changes) -> Pretraining:
    """Supervised training of K SmallCNNs on all ten classes, keeping their weights at the
    checkpoints (the "standard supervised learning on CIFAR-10" of Result 6 of S).

    ``config`` : a :class:`~tasknb.trajectories.RunConfig` or the dataset name; RunConfig fields as
    keywords fill in or replace its fields; defaults ``PRETRAINING_DEFAULTS`` over RunConfig's (the
    paper's recipe): 5 seeds, 600 steps on ``n_train`` = 1,000 training images, batch 128, the
    readout "prototype_ml" over the ten classes.  ``classes`` must be all ten and the readout a
    feature readout (fine-tuned networks change heads).  device : "auto" | "cpu" | "cuda";
    progress : a tqdm bar.

    Returns :class:`Pretraining` (probs (K, T, N, 10), states[k][t], train_accuracy (K, T) of the
    network's own head on its training subset).  Same arguments -> same numbers on one device.
    """
    c = run_config(config, PRETRAINING_DEFAULTS, **changes)
    if c.classes != tuple(range(10)) or c.union_classes != tuple(range(10)):
        raise ValueError(f"classes must be all ten classes 0..9 for pre-training, got {list(c.classes)}")
    if c.readout == "softmax":
        raise ValueError("readout must be a feature readout such as 'prototype_ml' (fine-tuned networks change "
                         "heads), got 'softmax'")
    dev = get_device(device)
    config = c.to_dict()
    Xtr, ytr, pset = _training_data_and_prediction_set(config, dev)
    probs, states = train_supervised_seeds(Xtr, ytr, pset, c, keep_states=True, progress=progress,
                                           desc="pre-training on 10 classes")
    train_acc = np.array([[_own_accuracy(_model(config, st, dev), Xtr, ytr) for st in seed_states]
                          for seed_states in states], dtype=np.float64)
    labels = pset.labels.cpu().numpy().astype(np.int64)
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    return Pretraining(probs=probs, steps=np.asarray(c.checkpoints, dtype=np.int64), labels=labels,
                       accuracy=accuracy, train_accuracy=train_acc, states=states, config=config,
                       data=(Xtr, ytr, pset))


def check_subtasks(subtasks, name: str = "subtasks") -> list[tuple[int, int]]:
    """Validate binary sub-tasks: a non-empty sequence of distinct pairs (a, b) of distinct
    classes in 0..9; returns them as a list of tuples (ValueError naming ``name`` otherwise)."""
    try:
        pairs = [tuple(p) for p in subtasks]
    except (TypeError, ValueError):
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
    """The bias-free 2-way head of a network about to be fine-tuned on ``pair`` (module docstring)."""
    d = model.head.in_features
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        lin = nn.Linear(d, 2, bias=False)          # "random": PyTorch's default init, from the run's stream
    lin = lin.to(dev)
    with torch.no_grad():
        if head == "pretrained":
            lin.weight.copy_(model.head.weight[list(pair)])
        elif head == "imprint":
            was = model.training
            model.eval()
            f = torch.cat([model.features(Xs[i:i + 4096]) for i in range(0, len(Xs), 4096)])
            model.train(was)
            w = imprint(f.double(), ys, 2, device=dev)   # eq. (7): (2, d), unit rows
            lin.weight.copy_(w.to(lin.weight.dtype))
    return lin


def finetune_from_checkpoints(
    pre: Pretraining,
    subtasks=DEFAULT_SUBTASKS,
    start_steps=None,
    *,
    steps: int = 150,
    checkpoints=None,
    batch_size: int | None = None,
    optimizer: str = "sgd",
    lr: float | None = None,
    weight_decay: float | None = None,
    schedule: str | None = None,
    head: str = "pretrained",
    seed: int = 0,
    replicate: int = 0,
    device="auto",
    progress: bool = False,
) -> FineTuning:
    """Fine-tune the whole network, from each chosen checkpoint of every pre-training seed, on each
    binary sub-task, recording every run in the 10-class prediction space (Result 6, Fig. 7 of S).

    Parameters
    ----------
    pre : the :class:`Pretraining` to start from (its weights, data and prediction set are used).
    subtasks : pairs of distinct classes in 0..9, default ((2, 4), (5, 7)); label 0 = first class.
    start_steps : pre-training checkpoints to start from (each in ``pre.steps``), default all.
    steps : int >= 1, default 150 fine-tuning steps.
    checkpoints : increasing ints in [0, steps] starting with 0, default ``default_checkpoints(steps, 8)``.
    batch_size : default that of pre-training; at most the sub-task's number of training images.
    optimizer : "sgd" (default: the paper's, SGD-Nesterov with the pre-training momentum) or
        "adam" (the control).  lr : default the pre-training lr for "sgd", 1e-3 for "adam".
    weight_decay, schedule : default those of pre-training (the schedule runs over ``steps``).
    head : "pretrained" (default), "imprint" or "random" (module docstring); every parameter is trained.
    seed : int >= 0; replicate : int >= 0 -- run (k, replicate) draws its batch order from
        ``derived_seed(seed, FT_PURPOSE, k, replicate)``.
    device : "auto" | "cpu" | "cuda".   progress : a tqdm bar.

    Returns :class:`FineTuning`, probs (n_start, n_subtasks, K, T_ft, N, 10) float32.
    """
    if not isinstance(pre, Pretraining):
        raise ValueError(f"pre must be a Pretraining (from pretrain_with_checkpoints), got {type(pre).__name__}")
    subtasks = check_subtasks(subtasks)
    if start_steps is None:
        start_steps = pre.steps.tolist()
    start_steps = check_int_sequence("start_steps", start_steps, minimum=0)
    start_idx = [pre.index_of(s) for s in start_steps]
    steps = check_positive_int("steps", steps)
    checkpoints = default_checkpoints(steps, 8) if checkpoints is None else check_checkpoints(checkpoints, steps)
    if checkpoints[0] != 0:
        raise ValueError(f"checkpoints must start at 0 (the starting checkpoint itself), got {checkpoints}")
    cfg = pre.config
    batch_size = cfg["batch_size"] if batch_size is None else check_positive_int("batch_size", batch_size)
    check_choice("optimizer", optimizer, ("sgd", "adam"))
    lr = (cfg["lr"] if optimizer == "sgd" else 1e-3) if lr is None else check_positive_real("lr", lr)
    weight_decay = cfg["weight_decay"] if weight_decay is None else weight_decay
    schedule = cfg["schedule"] if schedule is None else schedule
    momentum = cfg["momentum"]
    nesterov = optimizer == "sgd" and momentum > 0
    make_optimizer([torch.zeros(1, requires_grad=True)], optimizer, lr, momentum, weight_decay, nesterov)
    make_schedule(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0), steps, schedule)  # validates
    check_choice("head", head, HEADS)
    seed = check_seed("seed", seed)
    replicate = check_positive_int("replicate", replicate, minimum=0)
    dev = get_device(device)
    config = dict(subtasks=subtasks, start_steps=start_steps, steps=steps, checkpoints=checkpoints,
                  batch_size=batch_size, optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                  weight_decay=weight_decay, schedule=schedule, head=head, seed=seed, replicate=replicate,
                  pretraining=dict(cfg))

    if pre.data is not None and pre.data[0].device.type == dev.type:
        Xtr, ytr, pset = pre.data
    else:
        Xtr, ytr, pset = _training_data_and_prediction_set(cfg, dev)
    labels = pset.labels.cpu().numpy().astype(np.int64)
    K = len(pre.states)
    n_start, n_sub, T, N = len(start_steps), len(subtasks), len(checkpoints), len(labels)
    probs = np.empty((n_start, n_sub, K, T, N, 10), dtype=np.float32)
    sub_acc = np.empty((n_start, n_sub, K, 2), dtype=np.float64)
    bar = progress_bar(n_start * n_sub * K * steps, f"fine-tuning on sub-tasks ({optimizer})", progress)
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
            for k in range(K):
                s = derived_seed(seed, FT_PURPOSE, k, replicate)
                model = _model(cfg, pre.states[k][si], dev)
                model.head = _new_head(model, head, pair, Xs, ys, s, dev)
                opt = make_optimizer(model.parameters(), optimizer, lr, momentum, weight_decay, nesterov)
                train_step = supervised_step(model, opt, Xs, ys, batch_stream(len(ys), batch_size, s))
                sub_acc[i, j, k, 0] = _own_accuracy(model, Xt, yt)
                probs[i, j, k], _ = record_run(model, train_step, steps, checkpoints, pset, bar=bar,
                                               schedule=make_schedule(opt, steps, schedule))
                sub_acc[i, j, k, 1] = _own_accuracy(model, Xt, yt)
    if bar is not None:
        bar.close()
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    start_probs = np.stack([pre.probs[:, si] for si in start_idx])
    return FineTuning(probs=probs, steps=np.asarray(checkpoints, dtype=np.int64),
                      start_steps=np.asarray(start_steps, dtype=np.int64), start_probs=start_probs,
                      subtasks=subtasks, labels=labels, accuracy=accuracy, subtask_accuracy=sub_acc, config=config)


# ----------------------------------------------------------------------------- measurements
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
    Returns float64 (...,), e.g. (n_start, n_subtasks, K).
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
    float64 (n_start, n_subtasks, K, T_ft)."""
    if not isinstance(ft, FineTuning):
        raise ValueError(f"ft must be a FineTuning, got {type(ft).__name__}")
    P = ft.probs.astype(np.float64)
    lead = P.shape[:-2]
    return np.asarray(progress(P.reshape((-1,) + P.shape[-2:]), ft.labels, device=device)).reshape(lead)


def progress_change(ft: FineTuning, *, device=None) -> np.ndarray:
    """Progress at each fine-tuning checkpoint minus progress at its start (negative: the run went
    backwards, "unlearning" in Fig. 7b of S): float64 (n_start, n_subtasks, K, T_ft)."""
    t = progress_along(ft, device=device)
    return t - t[..., :1]


def _progress_since_start(P: np.ndarray, labels, device) -> np.ndarray:
    """Progress (eq. 4) of runs (..., T, N, C) minus each run's progress at its first point: (..., T)."""
    N, C = P.shape[-2:]
    t = np.asarray(progress(P.reshape(-1, N, C), labels, device=device), dtype=np.float64).reshape(P.shape[:-2])
    return t - t[..., :1]


def family_comparisons(runs_1, runs_2, labels, *, n_grid: int = 60, device=None) -> list:
    """Remark 5 of S for two families of fine-tuning runs from the same starts:
    ``compare_families(runs_1[i], runs_2[i])`` for every start i.

    The runs of a family start from the checkpoints of different pre-training seeds, whose progress
    differs by more than a fine-tuning run travels, so the runs are aligned by the UNFOLDED progress
    each has travelled since its own start (its coordinate ``u - u_0``; runs that go back in
    progress are kept whole) and compared over the range all of them cover, ``[0, min_k (u_end - u_0)]``.

    ``runs_1``, ``runs_2`` : (n_start, K, T, N, C), e.g. ``ft.probs[:, 0]`` and ``ft.probs[:, 1]``.
    Returns a list of n_start ``FamilyComparison`` (``.range``, ``.mean_normalized_distance``...).
    """
    a, b = _runs(runs_1, "runs_1"), _runs(runs_2, "runs_2")
    if a.ndim != 5 or b.ndim != 5 or a.shape[0] != b.shape[0]:
        raise ValueError(f"runs_1 and runs_2 must be (n_start, K, T, N, C) with the same n_start, "
                         f"got {a.shape} and {b.shape}")
    ta, tb = _progress_since_start(a, labels, device), _progress_since_start(b, labels, device)
    return [compare_families(a[i], b[i], progress_1=ta[i], progress_2=tb[i], n_grid=n_grid, device=device)
            for i in range(a.shape[0])]


def paired_run_distances(runs_1, runs_2, labels, *, n_grid: int = 60, device=None):
    """Per start i and pre-training seed k: d_traj (eq. 5 of S, ``compare_trajectories``) between
    ``runs_1[i, k]`` and ``runs_2[i, k]`` -- two fine-tuning runs from the same checkpoint --
    over the common range of the unfolded progress both have travelled since that start, as the
    mean d_B per unit of progress.

    Returns (mean_distance (n_start, K), lo (n_start, K), hi (n_start, K)) float64.
    """
    a, b = _runs(runs_1, "runs_1"), _runs(runs_2, "runs_2")
    if a.ndim != 5 or a.shape[:2] != b.shape[:2]:
        raise ValueError(f"runs_1 and runs_2 must be (n_start, K, T, N, C) with the same (n_start, K), "
                         f"got {a.shape} and {b.shape}")
    ta, tb = _progress_since_start(a, labels, device), _progress_since_start(b, labels, device)
    out = np.empty((3,) + a.shape[:2])
    for i in range(a.shape[0]):
        for k in range(a.shape[1]):
            c = compare_trajectories(a[i, k], b[i, k], progress_a=ta[i, k], progress_b=tb[i, k], n_grid=n_grid,
                                     device=device)
            out[:, i, k] = c.mean_distance, c.range[0], c.range[1]
    return out[0], out[1], out[2]


def seed_spread(models, *, device=None) -> np.ndarray:
    """d_B (eq. 2) between the models of seeds k and k+1 (mod K): ``models`` (K, N, C), K >= 2 ->
    (K,) float64; the natural scale of "how different two trainings of one task end up"."""
    P = np.asarray(models, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] < 2:
        raise ValueError(f"models must be (K, N, C) with K >= 2, got {P.shape}")
    return np.asarray(bhattacharyya(P, np.roll(P, -1, axis=0), device=device), dtype=np.float64)


@dataclass
class InPCAPicture:
    """An InPCA picture fitted on models alone (eqs. 9-11 of S), with projected extra points.

    embedding : the ``InPCA`` (``explained_stress``, ``coords`` of the m fitted models)
    pre : (K, T, k) coordinates of the pre-training checkpoints
    ft : (n_start, n_subtasks, K, T_ft, k) of the fine-tuning runs
    pre_mean, ft_mean : projected seed-mean trajectories (T, k) and (n_start, n_subtasks, T_ft, k)
    p0, p_star : (k,) projected ignorance P_0 (uniform) and truth P_* (one-hot, clipped)
    stress_null : (n_null,) ``explained_stress_null`` of the fitted models
    """

    embedding: object
    pre: np.ndarray
    ft: np.ndarray
    pre_mean: np.ndarray
    ft_mean: np.ndarray
    p0: np.ndarray
    p_star: np.ndarray
    stress_null: np.ndarray


def inpca_picture(pre: Pretraining, ft: FineTuning, *, k: int = 3, n_null: int = 5, seed: int = 0,
                  device=None) -> InPCAPicture:
    """InPCA (eqs. 9-11 of S) fitted on the models alone -- every pre-training checkpoint and every
    fine-tuning point -- with the seed-mean trajectories, P_0 and P_* placed by
    ``InPCA.project`` (out of sample), and the explained stress against ``explained_stress_null``
    (``n_null`` draws from ``seed``)."""
    K, T, N, C = pre.probs.shape
    models = np.concatenate([pre.probs.reshape(-1, N, C), ft.probs.reshape(-1, N, C)]).astype(np.float64)
    p0, p_star = reference_points(pre.labels, C, clip=1e-6)
    extra = np.concatenate([pre.probs.astype(np.float64).mean(0), ft.probs.astype(np.float64).mean(2).reshape(-1, N, C),
                            p0[None], p_star[None]])
    pic = inpca_with_placed(models, extra, k=k, n_null=n_null, seed=seed, device=device)
    emb, Y, null = pic.embedding, pic.placed, pic.stress_null
    n_ft = ft.probs.shape[:4]
    return InPCAPicture(embedding=emb, pre=emb.coords[:K * T].reshape(K, T, k),
                        ft=emb.coords[K * T:].reshape(n_ft + (k,)), pre_mean=Y[:T],
                        ft_mean=Y[T:-2].reshape((n_ft[0], n_ft[1], n_ft[3], k)), p0=Y[-2], p_star=Y[-1],
                        stress_null=null)
