"""Training runs recorded as trajectories in prediction space (Ramesh et al. 2023, "S", §2, App. C).

A network trained on a task is recorded, at chosen checkpoints, by its predictions on a FIXED set of
N test images, read through a :class:`tasknb.readout.PredictionSet` (its own softmax head, or a head
imprinted over some classes, eqs. 7-8 of S): an (N, K) array of probability rows, the model's
coordinates in the prediction space of eq. (1) of S.  Several seeds give an array
(n_seeds, T, N, K), the input of every kernel of :mod:`tasknb.geometry`.

``RunConfig``             the validated, hashable description of a run of seeds (data, training, readout)
``run_config``            a RunConfig from a base config and/or keyword arguments (one validation)
``default_checkpoints``   0 plus roughly log-spaced steps up to the last one
``make_optimizer``, ``make_schedule``, ``batch_stream``, ``supervised_step``   the pieces of one
                          supervised step (SGD with optional Nesterov momentum or Adam; a constant or
                          cosine learning rate)
``init_seed``, ``batch_seed``   the streams of seed k of a run (initialisation, mini-batch order)
``PAPER_RECIPE``          the RunConfig fields of App. A of S at our scale (measured to interpolate)
``record_run``            run any ``train_step`` and read the model at the checkpoints (the one loop)
``record_seeds``          the per-seed loop of every recorder (supervised, episodic, contrastive, ...)
``train_supervised_seeds``  cross-entropy training of the SmallCNNs of a RunConfig, recorded
``record_trajectories``   a RunConfig run end to end -> :class:`Trajectories`
``save_trajectories`` / ``load_trajectories``   torch.save / torch.load(weights_only=True)

Seed k of a run with base seed ``seed`` draws its initialisation from ``init_seed(seed, k)`` and its
mini-batch order from ``batch_seed(seed, k)`` -- ``tasknb.device.derived_seed(seed, purpose, k)``,
one stream per purpose -- so a seed gives the same numbers whatever the other seeds are, and no
(seed, k) replays another: seed 1 of a run with seed=0 is not seed 0 of a run with seed=1 (as it
was with ``seed + k``).  The data draws (test images, training subset, imprinting images) have
their own streams under ``data_seed`` (``tasknb.data.data_draw_seed``).  ``record_trajectories``
trains the seeds one after another on the CPU (a plain loop, exactly reproducible; faster there
than the vmap of :mod:`tasknb.batched_trajectories`, ``benchmarks/bench_seed_batching.py``) and all
at once on CUDA (``batched="auto"``).  Work runs on ``tasknb.device.get_device()``.
"""
from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn.functional as F

from .batched_trajectories import train_supervised_seeds_batched
from .data import DATASETS, training_images
from .device import get_device
from .geometry import progress
from .networks.cnn import NORMS, check_channels, check_head_bias, init_cnn
from .readout import READOUTS, PredictionSet, prediction_set
from .seed_runs import (OPTIMIZERS, SCHEDULES, batch_seed, batch_stream, check_nesterov, init_seed, make_optimizer,
                        run_optimizer,
                        make_schedule, progress_bar)
from .validation import (check_choice, check_int_sequence, check_positive_int, check_positive_real,
                         check_seed)

__all__ = ["RunConfig", "RUN_FIELDS", "run_config", "Trajectories", "default_checkpoints", "record_trajectories", "record_run",
           "batch_stream", "make_optimizer", "check_checkpoints", "supervised_step", "train_supervised_seeds",
           "record_seeds", "trajectories_from_probs", "progress_bar", "save_trajectories", "load_trajectories",
           "OPTIMIZERS", "SCHEDULES", "make_schedule", "init_seed", "batch_seed", "PAPER_RECIPE", "BATCHED", "run_optimizer",
           "record_trajectories_batched", "check_nesterov"]

#: values of ``record_trajectories(batched=...)``
BATCHED = ("auto", True, False)

#: App. A of S at our scale, as RunConfig fields: a normalised penultimate layer (layer norm in
#: place of batch norm, here also over each sample's conv1 maps) without affine part, a bias-free
#: head, SGD with Nesterov momentum 0.9, cosine annealing, weight decay 5e-4, batches of 128, the
#: quick width (16, 32) (10,176 weights for 10 classes).  Measured by
#: ``benchmarks/bench_paper_recipe.py`` (1,000 steps on a 2,000-image Fashion-MNIST subset, one CPU
#: thread, seeds 0-2): train accuracy 1.000 on the ten classes and on classes (2, 4), test accuracy
#: 0.82-0.84 and 0.86-0.87, about 10 s a seed; at channels (8, 16) train accuracy 0.96 and
#: 0.98-0.997 (no interpolation).  lr = 0.01: with the norms the convolutions are scale-invariant and
#: their small default initialisation makes the effective step ~ lr / ||w||^2 large; lr = 0.02 fits
#: the ten classes but not (2, 4) (0.87-0.91), lr = 0.05 stops at 0.77-0.84; norm="layer" alone
#: reaches 0.992-0.9985.  The chapters add their own steps / n_train / classes.
PAPER_RECIPE = dict(optimizer="sgd", nesterov=True, momentum=0.9, schedule="cosine", lr=0.01,
                    weight_decay=5e-4, batch_size=128, channels=(16, 32), norm="layer_conv1",
                    head_bias=False)


@dataclass
class Trajectories:
    """Recorded predictions of several seeds along training.

    probs : float32 NumPy array (n_seeds, T, N, C), rows sum to 1 (softmax on the fixed test set)
    steps : int64 (T,), the optimizer steps of the checkpoints (0 = initialisation)
    labels : int64 (N,), labels of the fixed test images in 0..C-1
    seeds : list of the n_seeds seeds
    classes : list of the dataset classes used (label c of the task is dataset class classes[c])
    accuracy : float64 (n_seeds, T), test accuracy on the N images at each checkpoint
    config : dict of the run's :class:`RunConfig` (``RunConfig.to_dict``) and the method's own knobs
    """

    probs: np.ndarray
    steps: np.ndarray
    labels: np.ndarray
    seeds: list
    classes: list
    accuracy: np.ndarray
    config: dict

    @property
    def shape(self):
        return self.probs.shape

    def progress(self) -> np.ndarray:
        """Progress t_w (eq. 4 of S) of every checkpoint of every seed: float64 (n_seeds, T)."""
        S, T, N, C = self.probs.shape
        return np.asarray(progress(self.probs.reshape(S * T, N, C).astype(np.float64), self.labels)).reshape(S, T)

    def cross_entropy(self) -> np.ndarray:
        """Mean test cross-entropy (n_seeds, T) in nats; equals 2 x the Bhattacharyya distance to the
        one-hot truth P_* (App. C of S)."""
        p = np.take_along_axis(self.probs.astype(np.float64), self.labels[None, None, :, None], axis=-1)[..., 0]
        return -np.log(np.clip(p, 1e-300, None)).mean(-1)


def default_checkpoints(steps: int, n: int = 10) -> list[int]:
    """``n`` distinct checkpoints in [0, steps]: 0, then roughly log-spaced steps ending at ``steps``
    (early training moves fastest in prediction space).  Fewer when ``steps`` is small."""
    steps = check_positive_int("steps", steps)
    n = check_positive_int("n", n, minimum=2)
    pts = np.unique(np.round(np.geomspace(1, steps, n - 1)).astype(int))
    return [0] + [int(p) for p in pts]


def check_checkpoints(checkpoints, steps: int) -> list[int]:
    """Sorted distinct ints in [0, steps] (default :func:`default_checkpoints`)."""
    if checkpoints is None:
        return default_checkpoints(steps)
    checkpoints = check_int_sequence("checkpoints", checkpoints, minimum=0, maximum=steps)
    if checkpoints != sorted(checkpoints) or len(set(checkpoints)) != len(checkpoints):
        raise ValueError(f"checkpoints must be increasing integers in [0, {steps}], got {checkpoints}")
    return checkpoints


def record_run(model, train_step, steps: int, checkpoints, pset: PredictionSet, *, keep_states: bool = False,
               bar=None, schedule=None):
    """Run ``train_step(step)`` for step = 0..steps-1 and read ``model`` through ``pset`` before the
    steps listed in ``checkpoints`` (checkpoint s = the model after s steps; 0 = initialisation).

    ``train_step`` is any callable doing one optimizer step on ``model`` (supervised, episodic,
    contrastive, semi-supervised, fine-tuning...).  ``schedule`` (e.g. :func:`make_schedule`, or
    None) is stepped after every ``train_step``.  Returns ``probs`` float32 NumPy (T, N, K) and,
    with ``keep_states``, the list of T CPU state dicts at the checkpoints (else None).  Warns
    (RuntimeWarning) when the predictions at a checkpoint are not finite (training diverged).
    """
    steps = check_positive_int("steps", steps, minimum=0)
    if schedule is not None and not callable(getattr(schedule, "step", None)):
        raise ValueError(f"schedule must be None or a learning-rate scheduler with a step() method, "
                         f"got {type(schedule).__name__}")
    checkpoints = check_checkpoints(checkpoints, steps) if steps else check_checkpoints(checkpoints or [0], 0)
    T = len(checkpoints)
    probs = np.empty((T, len(pset.labels), pset.n_classes), dtype=np.float32)
    states = [] if keep_states else None
    wanted, t_idx = set(checkpoints), 0
    for step in range(steps + 1):
        if step in wanted:
            probs[t_idx] = pset.predict(model).float().cpu().numpy()
            if not np.isfinite(probs[t_idx]).all():
                warnings.warn(f"the predictions after {step} steps are not finite: training diverged "
                              f"(try a smaller lr)", RuntimeWarning, stacklevel=2)
            if keep_states:
                states.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
            t_idx += 1
        if step == steps:
            break
        train_step(step)
        if schedule is not None:
            schedule.step()
        if bar is not None:
            bar.update(1)
    return probs, states


@dataclass(frozen=True)
class RunConfig:
    """What a recorder runs: the task, the seeds, the training and where the models are read.

    dataset : "fashion_mnist" (default) or "digits" (upsampled to 28x28).
    classes : the task's dataset classes (>= 2 distinct in 0..9, default all ten); label c is
        dataset class classes[c] (``tasks.class_subset``).
    n_seeds : int >= 1, default 5 (the paper's five seeds, App. A of S); seed k (labelled ``seed + k``
        in ``seeds``) draws its initialisation from ``init_seed(seed, k)`` and its batch order from
        ``batch_seed(seed, k)``.
    steps : int >= 1, default 300, optimizer steps.
    checkpoints : increasing distinct ints in [0, steps]; default ``default_checkpoints(steps)``
        (filled in at construction); 0 is the initialisation.  T = len(checkpoints).
    n_test : int >= 1, default 1000, N fixed test images drawn once (``data_draw_seed(data_seed,
        "test_images")``).
    n_train : int >= 1 or None (default: every training image of the classes), drawn with
        ``data_draw_seed(data_seed, "training_subset")``.

    The training fields default to :data:`PAPER_RECIPE` (App. A of S at our scale):
    batch_size : int >= 1, default 128.   optimizer : "sgd" (default) or "adam".
    lr : float > 0, default 0.01.   momentum : float >= 0, default 0.9 (SGD only).
    nesterov : bool or None (default): Nesterov momentum; None means the recipe's choice, True for
        optimizer "sgd" with momentum > 0 and False otherwise (filled in at construction); an
        explicit True needs optimizer "sgd" and momentum > 0.
    schedule : "cosine" (default, :func:`make_schedule` over ``steps``) or "constant".
    weight_decay : float >= 0, default 5e-4.
    channels : (c1, c2) of the SmallCNN (the width), default (16, 32).
    norm : "layer_conv1" (default), "layer" or "none" (:class:`~tasknb.networks.cnn.SmallCNN`).
    head_bias : bool, default False (the paper's bias-free head); True adds a bias to the final layer.
    seed, data_seed : ints >= 0, default 0.
    readout : one of ``tasknb.readout.READOUTS``: "prototype_ml" (default: class-mean prototypes with
        a temperature fitted by maximum likelihood on the support set, unchanged by a rescaling or
        a rotation of the features, :func:`tasknb.readout.readout_probabilities`), "prototype",
        "imprint" (eqs. 7-8 of S at temperature 1), "imprint_ml", or "softmax" (the network's own head
        over ``classes``).  Feature readouts use ``n_imprint`` training images per class of
        ``union_classes`` as the support set.
    union_classes : classes of the prediction space, default ``classes`` (filled in at
        construction); other classes need a feature readout.
    n_imprint : int >= 1, default 100.

    Every field is checked in ``__post_init__`` (ValueError naming the field and what it accepts);
    sequences are stored as tuples, so a RunConfig is hashable and two configs that describe the
    same run compare and hash equal.  Method-specific knobs (way/shot, temperature, tau, mu...)
    are not part of it: they are arguments of their recorders.
    """

    dataset: str = "fashion_mnist"
    classes: tuple = tuple(range(10))
    n_seeds: int = 5
    steps: int = 300
    checkpoints: tuple | None = None
    n_test: int = 1000
    n_train: int | None = None
    batch_size: int = PAPER_RECIPE["batch_size"]
    optimizer: str = PAPER_RECIPE["optimizer"]
    lr: float = PAPER_RECIPE["lr"]
    momentum: float = PAPER_RECIPE["momentum"]
    weight_decay: float = PAPER_RECIPE["weight_decay"]
    channels: tuple = PAPER_RECIPE["channels"]
    seed: int = 0
    data_seed: int = 0
    readout: str = "prototype_ml"
    union_classes: tuple | None = None
    n_imprint: int = 100
    nesterov: bool | None = None
    schedule: str = PAPER_RECIPE["schedule"]
    norm: str = PAPER_RECIPE["norm"]
    head_bias: bool = PAPER_RECIPE["head_bias"]

    def __post_init__(self):
        check_choice("dataset", self.dataset, DATASETS)
        classes = check_int_sequence("classes", self.classes, minimum=0, maximum=9)
        if len(classes) < 2:
            raise ValueError(f"classes must hold at least 2 distinct classes in 0..9, got {classes}")
        steps = check_positive_int("steps", self.steps)
        n_train = None if self.n_train is None else check_positive_int("n_train", self.n_train)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("readout", self.readout, READOUTS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("norm", self.norm, NORMS)
        check_head_bias(self.head_bias)
        momentum = check_positive_real("momentum", self.momentum, allow_zero=True)
        nesterov = (self.optimizer == "sgd" and momentum > 0) if self.nesterov is None else self.nesterov
        nesterov = check_nesterov(nesterov, self.optimizer, momentum)
        union = classes if self.union_classes is None else check_int_sequence("union_classes", self.union_classes,
                                                                              0, 9)
        if self.readout == "softmax" and union != classes:
            raise ValueError("union_classes needs a feature readout such as readout='prototype_ml' (a softmax head only predicts its own classes)")
        if len(union) < 2:
            raise ValueError(f"union_classes must hold at least 2 distinct classes in 0..9, got {union}")
        normalised = dict(
            classes=tuple(classes), n_seeds=check_positive_int("n_seeds", self.n_seeds), steps=steps,
            checkpoints=tuple(check_checkpoints(self.checkpoints, steps)),
            n_test=check_positive_int("n_test", self.n_test), n_train=n_train,
            batch_size=check_positive_int("batch_size", self.batch_size), lr=check_positive_real("lr", self.lr),
            momentum=momentum, nesterov=nesterov,
            weight_decay=check_positive_real("weight_decay", self.weight_decay, allow_zero=True),
            channels=tuple(check_channels(self.channels)), seed=check_seed("seed", self.seed),
            data_seed=check_seed("data_seed", self.data_seed), union_classes=tuple(union),
            n_imprint=check_positive_int("n_imprint", self.n_imprint))
        for name, value in normalised.items():
            object.__setattr__(self, name, value)

    @property
    def seeds(self) -> list[int]:
        """The labels ``seed + k`` of the n_seeds seeds (k = 0..n_seeds-1); the draws of seed k come
        from ``init_seed(seed, k)`` and ``batch_seed(seed, k)``, not from its label."""
        return [self.seed + k for k in range(self.n_seeds)]

    def replace(self, **changes) -> "RunConfig":
        """A copy with some fields changed (validated again); unknown names raise ValueError.

        Fields that were filled in by default follow what they were derived from: changing
        ``steps`` (``classes``) of a config whose checkpoints (union_classes) are the defaults
        gives the new defaults, unless they are changed too; so does ``nesterov`` (the recipe's choice
        for the optimizer) when ``optimizer`` or ``momentum`` changes."""
        _check_field_names(changes)
        changes = dict(changes)
        if ("steps" in changes and "checkpoints" not in changes
                and self.checkpoints == tuple(default_checkpoints(self.steps))):
            changes["checkpoints"] = None
        if "classes" in changes and "union_classes" not in changes and self.union_classes == self.classes:
            changes["union_classes"] = None
        if (({"optimizer", "momentum"} & set(changes)) and "nesterov" not in changes
                and self.nesterov == (self.optimizer == "sgd" and self.momentum > 0)):
            changes["nesterov"] = None
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a plain dict, tuples as lists (what :class:`Trajectories` stores and
        ``torch.load(weights_only=True)`` reads back)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


#: the names of the fields of a :class:`RunConfig`
RUN_FIELDS = tuple(f.name for f in fields(RunConfig))


def _check_field_names(names) -> None:
    unknown = sorted(set(names) - set(RUN_FIELDS))
    if unknown:
        raise ValueError(f"unknown run parameter(s) {unknown}; a RunConfig has {list(RUN_FIELDS)}")


def run_config(config=None, defaults: dict | None = None, **changes) -> RunConfig:
    """The :class:`RunConfig` a recorder runs.

    ``config`` : a RunConfig (``changes`` then replace some of its fields, :meth:`RunConfig.replace`), or a dataset name, or
    None (a RunConfig is built from ``defaults`` -- the recorder's own defaults -- updated with
    ``changes``).  Every value is validated once, by RunConfig.
    """
    _check_field_names(changes)
    if isinstance(config, RunConfig):
        return config.replace(**changes) if changes else config
    if config is not None:
        changes = {"dataset": config, **changes}
    defaults = dict(defaults or {})
    _check_field_names(defaults)
    return RunConfig(**{**defaults, **changes})


def supervised_step(model, opt, X: torch.Tensor, y: torch.Tensor, batches, *, transform=None):
    """A ``train_step`` for :func:`record_run`: one cross-entropy step of ``opt`` on the next
    mini-batch (indices from ``batches``, e.g. :func:`batch_stream`) of images X (n, 1, 28, 28)
    with labels y (n,); ``transform`` (optional) maps each mini-batch of images before the model
    sees it (e.g. a data augmentation)."""
    def train_step(_step):
        b = next(batches).to(X.device)
        x = X[b] if transform is None else transform(X[b])
        loss = F.cross_entropy(model(x), y[b])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return train_step


def train_supervised_seeds(X: torch.Tensor, y: torch.Tensor, pset: PredictionSet, config: RunConfig, *,
                           keep_states: bool = False, progress: bool = False, desc: str = "training seeds"):
    """Cross-entropy training of the seeds of ``config`` on images X (n, 1, 28, 28) with task labels
    y (n,) in 0..C-1 (C = len(config.classes)), read through ``pset`` at ``config.checkpoints``.

    Seed k: ``init_cnn(C, channels, init_seed(seed, k), norm=norm, head_bias=head_bias)``,
    mini-batches from ``batch_stream(n, batch_size, batch_seed(seed, k))``, ``config.steps`` steps of
    ``make_optimizer(optimizer, lr, momentum, weight_decay, nesterov)`` with the learning rate of
    ``make_schedule(opt, steps, schedule)``.

    Returns probs float32 (n_seeds, T, N, K) and, with ``keep_states``, states[k][t] (else None).
    """
    c = config

    def build(k, s):
        model = init_cnn(len(c.classes), c.channels, s, X.device, norm=c.norm, head_bias=c.head_bias)
        opt, schedule = run_optimizer(model.parameters(), c)
        batches = batch_stream(len(y), c.batch_size, batch_seed(c.seed, k))
        return model, supervised_step(model, opt, X, y, batches), schedule

    return record_seeds(build, c.n_seeds, c.steps, c.checkpoints, pset, seed=c.seed, keep_states=keep_states,
                        progress=progress, desc=desc)


def record_seeds(build, n_seeds: int, steps: int, checkpoints, pset: PredictionSet, *, seed: int,
                 keep_states: bool = False, progress: bool = False, desc: str = "training seeds"):
    """The per-seed loop of every recorder: for k = 0..n_seeds-1, ``build(k, init_seed(seed, k))``
    returns (model, train_step) or (model, train_step, schedule) -- a fresh network, one optimizer
    step of the method and optionally a learning-rate schedule (:func:`make_schedule`) -- and
    :func:`record_run` records it through ``pset`` at ``checkpoints``.

    The second argument of ``build`` is the initialisation seed of seed k, the same for every
    method, so ``init_cnn(C, channels, s)`` starts all methods of (seed, k) from one network; a
    method's other draws (batch order, views, episodes) should come from their own streams,
    ``batch_seed(seed, k)`` or ``derived_seed(seed, purpose, k)``.

    Returns probs float32 (n_seeds, T, N, K) and, with ``keep_states``, states[k][t] (else None).
    """
    probs = np.empty((n_seeds, len(checkpoints), len(pset.labels), pset.n_classes), dtype=np.float32)
    states = [] if keep_states else None
    bar = progress_bar(n_seeds * steps, desc, progress)
    for k in range(n_seeds):
        built = build(k, init_seed(seed, k))
        if not isinstance(built, tuple) or len(built) not in (2, 3):
            raise ValueError("build must return (model, train_step) or (model, train_step, schedule)")
        model, train_step, schedule = built if len(built) == 3 else (*built, None)
        probs[k], st = record_run(model, train_step, steps, checkpoints, pset, keep_states=keep_states, bar=bar,
                                  schedule=schedule)
        if keep_states:
            states.append(st)
    if bar is not None:
        bar.close()
    return probs, states


def record_trajectories(config=None, classes=None, *, device="auto", progress: bool = False,
                        batched="auto", **changes) -> Trajectories:
    """Train the SmallCNNs of a :class:`RunConfig` on its task and record their predictions on a
    fixed test set.

    ``config`` : a RunConfig, or the dataset name; ``classes`` and any other RunConfig field given
    as a keyword (``n_seeds=``, ``steps=``, ``readout=``...) fill in or replace its fields (defaults:
    those of RunConfig).  device : "auto" (CUDA when present), "cpu" or "cuda"; progress : a tqdm
    bar.  batched : "auto" (default: the seeds in one vmap,
    :func:`tasknb.batched_trajectories.record_trajectories_batched`, on CUDA; one after another on
    the CPU, where the loop is faster), True or False (force either; they agree up to float
    reassociation amplified by training).  Training data: ``config.n_train`` images of the task
    (``tasknb.data.training_images``).
    Readout: ``prediction_set(dataset, union_classes, n_test, readout, n_imprint, data_seed)`` --
    "softmax" reads the network's own head, "imprint" with a shared ``union_classes`` puts runs on
    different tasks in one space (eqs. 7-8 of S).

    Returns
    -------
    Trajectories with ``probs`` (n_seeds, T, N, K) float32 (K = len(union_classes)), ``steps`` (T,),
    ``labels`` (N,), ``accuracy`` (n_seeds, T), ``config`` = ``RunConfig.to_dict()`` (with
    ``"batched": True`` when the vmap ran).  Same arguments -> same numbers on the same device.
    """
    if classes is not None:
        changes["classes"] = classes
    if not (batched is True or batched is False or (isinstance(batched, str) and batched == "auto")):
        raise ValueError(f"batched must be one of 'auto', True, False; got {batched!r}")
    c = run_config(config, **changes)
    dev = get_device(device)
    use_vmap = batched is True or (batched == "auto" and dev.type == "cuda")

    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    pset = prediction_set(c.dataset, c.union_classes, c.n_test, readout=c.readout, n_imprint=c.n_imprint,
                          data_seed=c.data_seed, device=dev)
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    train = train_supervised_seeds_batched if use_vmap else train_supervised_seeds
    probs, _ = train(Xtr, ytr, pset, c, progress=progress)
    return trajectories_from_probs(probs, c.checkpoints, pset, c.seeds,
                                   {**c.to_dict(), "batched": True} if use_vmap else c.to_dict())


def record_trajectories_batched(config=None, classes=None, *, device="auto", progress: bool = False,
                                **changes) -> Trajectories:
    """``record_trajectories(config, classes, device=device, progress=progress, batched=True,
    **changes)``: the seeds trained at once in one vmap on any device
    (:func:`tasknb.batched_trajectories.train_supervised_seeds_batched`); ``config["batched"]``
    is True."""
    return record_trajectories(config, classes, device=device, progress=progress, batched=True, **changes)


def trajectories_from_probs(probs, checkpoints, pset: PredictionSet, seeds, config) -> Trajectories:
    """Wrap recorded ``probs`` (n_seeds, T, N, K) read through ``pset`` as :class:`Trajectories`."""
    labels = pset.labels.cpu().numpy().astype(np.int64)
    accuracy = (probs.argmax(-1) == labels).mean(-1).astype(np.float64)
    return Trajectories(probs=probs, steps=np.asarray(checkpoints, dtype=np.int64), labels=labels,
                        seeds=list(seeds), classes=list(pset.classes), accuracy=accuracy, config=dict(config))


def save_trajectories(traj: Trajectories, path) -> None:
    """Write ``traj`` to ``path`` with ``torch.save`` (tensors, lists, numbers and strings only, so it
    loads with ``weights_only=True``)."""
    if not isinstance(traj, Trajectories):
        raise ValueError(f"traj must be a Trajectories, got {type(traj).__name__}")
    torch.save({
        "probs": torch.from_numpy(np.ascontiguousarray(traj.probs)),
        "steps": torch.from_numpy(traj.steps), "labels": torch.from_numpy(traj.labels),
        "accuracy": torch.from_numpy(traj.accuracy), "seeds": list(traj.seeds),
        "classes": list(traj.classes), "config": dict(traj.config),
    }, path)


def load_trajectories(path) -> Trajectories:
    """Read what :func:`save_trajectories` wrote (``torch.load(..., weights_only=True)``)."""
    d = torch.load(path, map_location="cpu", weights_only=True)
    return Trajectories(probs=d["probs"].numpy(), steps=d["steps"].numpy(), labels=d["labels"].numpy(),
                        seeds=list(d["seeds"]), classes=list(d["classes"]), accuracy=d["accuracy"].numpy(),
                        config=dict(d["config"]))
