"""The models of a transfer experiment: a source network pre-trained once and cached, target tasks
of increasing distance from the source, and training on a target from pre-trained or random weights.

Neyshabur, Sedghi & Zhang (2020) compare four models: **P** (pre-trained on the source), **RI** (a
random initialisation), **P-T** (P trained on the target, with a new head) and **RI-T** (RI trained
on the target).  This module builds them for a small ResNet (:mod:`tasknb.networks.resnet`) on
data available offline.

``SOURCE_CLASSES``           the source task: Fashion-MNIST classes 0-4 (T-shirt ... coat)
``TARGETS``                  target tasks, ordered by how far they are from the source:
                             ``fashion_classes`` (Fashion-MNIST classes 5-9: other objects, same
                             kind of images), ``fashion_inverted`` (those images as negatives),
                             ``digits`` (scikit-learn's digits, upsampled to 28x28, 10 classes) and
                             ``fashion_brightness`` (the classes-5-9 images labelled by their mean
                             brightness: 4 equally frequent levels, a task that ignores shape)
``source_images``, ``target_images``   the images and labels of a task (a seeded subset, optionally
                             block-shuffled with :func:`tasknb.data.block_shuffle`)
``TrainSpec``                a training recipe: steps, batch, SGD with momentum, weight decay, schedule
``train_network``            one training run of one network, with evaluations and kept weights
``SourceConfig``, ``pretrained_source``   pre-training, trained once per configuration and cached
                             on disk (``model_cache_dir()``), keyed by the configuration, read back
                             with ``torch.load(weights_only=True)``
``start_state``              the start of a target run: "P" (the source weights with a fresh head)
                             or "RI" (a random network)
``target_runs``              several P-T and RI-T runs on one target, paired by seed index
``steps_to_threshold``       optimisation speed: the first evaluated step a metric reaches a level

A "state" is a dict parameter name -> tensor (CPU, detached), as ``dict(model.named_parameters())``;
the ResNet has no buffers, so a state determines the network.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import block_shuffle, draw_subset, invert, load_task_images
from .device import derived_seed, get_device
from .landscape import parameter_state
from .networks.resnet import SmallResNet, init_resnet
from .seed_runs import batch_stream, make_optimizer, make_schedule, progress_bar
from .tasks import brightness_labels
from .validation import check_choice, check_positive_int, check_positive_real, check_real_in, check_seed

__all__ = ["SOURCE_CLASSES", "TARGET_CLASSES", "TARGETS", "TaskImages", "source_images", "target_images",
           "TrainSpec", "TrainingRecord", "train_network", "evaluate", "SourceConfig", "SourceModel",
           "pretrained_source", "model_cache_dir", "start_state", "load_state", "get_state", "steps_to_threshold",
           "START_KINDS", "TargetRuns", "target_runs", "source_config"]

#: the source task's Fashion-MNIST classes (T-shirt/top, trouser, pullover, dress, coat)
SOURCE_CLASSES = (0, 1, 2, 3, 4)
#: the Fashion-MNIST classes of the image-based targets (sandal, shirt, sneaker, bag, ankle boot)
TARGET_CLASSES = (5, 6, 7, 8, 9)
#: target tasks, nearest to the source first
TARGETS = ("fashion_classes", "fashion_inverted", "digits", "fashion_brightness")
#: kinds of start of a target run
START_KINDS = ("P", "RI")
_BRIGHTNESS_LEVELS = 4
#: part of every cache key: raise it when a change of code changes what a configuration trains
CACHE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TaskImages:
    """Images X (n, 1, 28, 28) float32 in [0, 1] and labels y (n,) int64 in 0..n_classes-1."""

    X: torch.Tensor
    y: torch.Tensor
    n_classes: int
    name: str


def _subset(X, y, n, seed, split, name):
    return draw_subset(X, y, n, derived_seed(check_seed("seed", seed), f"pretraining.{name}.{split}"), name="n")


def source_images(split: str = "train", n: int | None = None, seed: int = 0) -> TaskImages:
    """The source task: Fashion-MNIST classes :data:`SOURCE_CLASSES` relabelled 0-4; ``n`` of the
    ``split``'s images drawn with a stream of ``seed`` (all of them when None)."""
    X, y = load_task_images("fashion_mnist", split, SOURCE_CLASSES)
    X, y = _subset(X, y, n, seed, split, "source")
    return TaskImages(X, y, len(SOURCE_CLASSES), "source")


def target_images(target: str, split: str = "train", n: int | None = None, seed: int = 0,
                  block_size: int | None = None, block_seed: int = 0) -> TaskImages:
    """The images and labels of one of :data:`TARGETS`.

    target : "fashion_classes" (Fashion-MNIST classes 5-9 relabelled 0-4), "fashion_inverted" (the
        same images, 1 - x), "digits" (scikit-learn's digits upsampled to 28x28; its own 75/25
        train/test split), "fashion_brightness" (the classes-5-9 images labelled 0-3 by the quartile
        of their mean pixel value; the quartile edges are always those of the whole train split).
    n : images drawn (without replacement, a stream of ``seed`` per image pool and split; the three
        Fashion-MNIST targets draw the same images, so they differ only in what is done to them);
        None: all.
    block_size : if given, every image is cut into blocks of that side and the blocks permuted
        (:func:`tasknb.data.block_shuffle`, one permutation for the task, chosen by ``block_seed``;
        the same for both splits).  Must divide 28.
    """
    check_choice("target", target, TARGETS)
    if target == "digits":
        X, y = load_task_images("digits", split, range(10))
        n_classes = 10
    else:
        X, y = load_task_images("fashion_mnist", split, TARGET_CLASSES)
        n_classes = len(TARGET_CLASSES)
        if target == "fashion_inverted":
            X = invert(X)
        elif target == "fashion_brightness":
            X_train = X if split == "train" else load_task_images("fashion_mnist", "train", TARGET_CLASSES)[0]
            _, edges = brightness_labels(X_train, _BRIGHTNESS_LEVELS)
            y, _ = brightness_labels(X, _BRIGHTNESS_LEVELS, edges=edges)
            n_classes = _BRIGHTNESS_LEVELS
    X, y = _subset(X, y, n, seed, split, "digits" if target == "digits" else "fashion_targets")
    if block_size is not None:
        X = block_shuffle(X, block_size, seed=derived_seed(check_seed("block_seed", block_seed), "pretraining.blocks"))
    return TaskImages(X, y, n_classes, target)


@dataclasses.dataclass(frozen=True)
class TrainSpec:
    """A training recipe: ``steps`` steps of SGD (momentum ``momentum``, coupled L2 ``weight_decay``)
    on mini-batches of ``batch_size`` (reshuffled epochs), peak learning rate ``lr`` with a
    ``schedule`` of "cosine" (default) or "constant"; the network is evaluated every ``eval_every``
    steps (and at the last step)."""

    steps: int = 300
    batch_size: int = 32
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    eval_every: int = 25

    def __post_init__(self):
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive_real("lr", self.lr)
        check_real_in("momentum", self.momentum, 0.0, 0.999)
        check_positive_real("weight_decay", self.weight_decay, allow_zero=True)
        check_choice("schedule", self.schedule, ("cosine", "constant"))
        check_positive_int("eval_every", self.eval_every)


@dataclasses.dataclass
class TrainingRecord:
    """What one run of :func:`train_network` kept.

    steps (T,) the evaluated steps (0 first, ``spec.steps`` last); metrics[name]["loss" |
    "accuracy"] (T,) on each evaluation set; states {step: state} at the requested checkpoints;
    final: the state after the last step; batch_loss (spec.steps,): the cross-entropy of the
    mini-batch of each step, before its update (free to record: the area under the training-loss
    curve without extra evaluations).
    """

    steps: np.ndarray
    metrics: dict
    states: dict
    final: dict
    batch_loss: np.ndarray | None = None


def get_state(model: torch.nn.Module) -> dict:
    """The parameters of ``model`` as a dict name -> detached CPU float tensor (a copy):
    :func:`tasknb.landscape.parameter_state`, moved to the CPU for caching and storing."""
    return {k: v.cpu() for k, v in parameter_state(model).items()}


def load_state(model: torch.nn.Module, state: dict) -> torch.nn.Module:
    """Copy ``state`` (every parameter of ``model``, same shapes) into ``model``; returns it."""
    own = dict(model.named_parameters())
    if set(own) != set(state):
        raise ValueError(f"state must hold exactly the model's parameters; missing {sorted(set(own) - set(state))}, "
                         f"unexpected {sorted(set(state) - set(own))}")
    with torch.no_grad():
        for k, p in own.items():
            if p.shape != state[k].shape:
                raise ValueError(f"state[{k!r}] has shape {tuple(state[k].shape)}, the model's {tuple(p.shape)}")
            p.copy_(state[k])
    return model


@torch.no_grad()
def evaluate(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` on (X, y), in batches of ``batch_size``."""
    dev = next(model.parameters()).device
    loss, correct = 0.0, 0
    was_training = model.training
    model.eval()
    for i in range(0, len(y), batch_size):
        logits = model(X[i:i + batch_size].to(dev))
        yy = y[i:i + batch_size].to(dev)
        loss += float(F.cross_entropy(logits, yy, reduction="sum"))
        correct += int((logits.argmax(1) == yy).sum())
    model.train(was_training)
    return loss / len(y), correct / len(y)


def train_network(model: torch.nn.Module, X: torch.Tensor, y: torch.Tensor, spec: TrainSpec, batch_seed: int, *,
                  eval_sets: dict | None = None, checkpoints=(), progress: bool = False,
                  desc: str = "training") -> TrainingRecord:
    """Train ``model`` in place with cross-entropy on X (n, 1, 28, 28), y (n,) under ``spec``.

    Mini-batches come from ``tasknb.seed_runs.batch_stream(n, spec.batch_size, batch_seed)``.
    ``eval_sets`` {name: (X, y)} are evaluated (loss, accuracy) at step 0, every ``spec.eval_every``
    steps and at the end; ``checkpoints`` (steps in [0, spec.steps]) say where the weights are kept.
    """
    if not isinstance(spec, TrainSpec):
        raise ValueError(f"spec must be a TrainSpec, got {type(spec).__name__}")
    checkpoints = sorted({check_positive_int("checkpoints", c, minimum=0) for c in checkpoints})
    if checkpoints and checkpoints[-1] > spec.steps:
        raise ValueError(f"checkpoints must be steps in [0, {spec.steps}], got {checkpoints[-1]}")
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"X and y must have the same length, got {X.shape[0]} and {y.shape[0]}")
    dev = next(model.parameters()).device
    X, y = X.to(dev), y.to(dev)
    eval_sets = {k: (a.to(dev), b.to(dev)) for k, (a, b) in (eval_sets or {}).items()}
    opt = make_optimizer(model.parameters(), "sgd", spec.lr, spec.momentum, spec.weight_decay)
    sched = make_schedule(opt, spec.steps, spec.schedule)
    batches = batch_stream(len(y), spec.batch_size, check_seed("batch_seed", batch_seed))
    steps, metrics, states = [], {k: {"loss": [], "accuracy": []} for k in eval_sets}, {}
    batch_losses = []
    bar = progress_bar(spec.steps, desc, progress)

    def record(s):
        if s in checkpoints:
            states[s] = get_state(model)
        if s % spec.eval_every == 0 or s == spec.steps:
            steps.append(s)
            for k, (a, b) in eval_sets.items():
                loss, acc = evaluate(model, a, b)
                metrics[k]["loss"].append(loss)
                metrics[k]["accuracy"].append(acc)

    model.train()
    record(0)
    for s in range(1, spec.steps + 1):
        b = next(batches).to(dev)
        loss = F.cross_entropy(model(X[b]), y[b])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"{desc}: the training loss became {float(loss)} at step {s} (lr {spec.lr:g} "
                                     f"too large?)")
        batch_losses.append(float(loss.detach()))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        record(s)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    metrics = {k: {m: np.array(v) for m, v in d.items()} for k, d in metrics.items()}
    return TrainingRecord(np.array(steps), metrics, states, get_state(model), np.array(batch_losses))


def steps_to_threshold(record: TrainingRecord, eval_set: str, threshold: float, metric: str = "accuracy") -> float:
    """The first evaluated step at which ``metric`` ("accuracy", >= threshold, or "loss", <=
    threshold) on ``eval_set`` reaches ``threshold``; ``inf`` if the run never does."""
    check_choice("metric", metric, ("accuracy", "loss"))
    if eval_set not in record.metrics:
        raise ValueError(f"eval_set must be one of {sorted(record.metrics)}, got {eval_set!r}")
    v = record.metrics[eval_set][metric]
    hit = np.nonzero(v >= threshold if metric == "accuracy" else v <= threshold)[0]
    return float(record.steps[hit[0]]) if len(hit) else math.inf


@dataclasses.dataclass(frozen=True)
class SourceConfig:
    """Pre-training on the source task (:func:`source_images`): a width-``width`` SmallResNet
    initialised from ``derived_seed(seed, "pretraining.source_init")``, trained on ``n_train``
    source images under ``spec`` (batch order ``derived_seed(seed, "pretraining.source_batches")``),
    weights kept at ``checkpoints`` (always including 0 and ``spec.steps``), evaluated on
    ``n_test`` source test images."""

    width: int = 8
    n_train: int = 5000
    n_test: int = 1000
    spec: TrainSpec = TrainSpec(steps=1000, batch_size=64, lr=0.05, eval_every=50)
    checkpoints: tuple = (0, 30, 100, 300, 1000)
    seed: int = 0

    def __post_init__(self):
        check_positive_int("width", self.width, minimum=2)
        check_positive_int("n_train", self.n_train, minimum=10)
        check_positive_int("n_test", self.n_test, minimum=10)
        check_seed("seed", self.seed)
        if not isinstance(self.spec, TrainSpec):
            raise ValueError(f"spec must be a TrainSpec, got {type(self.spec).__name__}")
        ck = tuple(sorted({check_positive_int("checkpoints", c, minimum=0) for c in self.checkpoints}
                          | {0, self.spec.steps}))
        if ck[-1] > self.spec.steps:
            raise ValueError(f"checkpoints must be steps in [0, {self.spec.steps}], got {ck[-1]}")
        object.__setattr__(self, "checkpoints", ck)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def key(self) -> str:
        """A 16-hex-digit hash of the configuration (and of the source task): the cache file's name."""
        text = json.dumps({"config": self.as_dict(), "source": SOURCE_CLASSES, "version": CACHE_VERSION}, sort_keys=True)
        return hashlib.sha1(text.encode()).hexdigest()[:16]


@dataclasses.dataclass
class SourceModel:
    """A pre-trained source network: ``states[step]`` its weights at each checkpoint (``states[0]``
    is its random initialisation), ``steps``/``loss``/``accuracy`` its source test curve,
    ``cached``: whether it was read from disk."""

    config: SourceConfig
    states: dict
    steps: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    cached: bool

    @property
    def final(self) -> dict:
        """The weights after the last step: the model P."""
        return self.states[self.config.spec.steps]

    def model(self, step: int | None = None, device="auto") -> SmallResNet:
        """The source network (n_classes 5) at checkpoint ``step`` (default: the last)."""
        step = self.config.spec.steps if step is None else step
        if step not in self.states:
            raise ValueError(f"step must be one of the checkpoints {sorted(self.states)}, got {step!r}")
        net = SmallResNet(len(SOURCE_CLASSES), self.config.width).to(get_device(device))
        return load_state(net, self.states[step])


def source_config(width: int = 8, n_train: int = 5000, steps: int = 1000, seed: int = 0) -> SourceConfig:
    """The book's source configuration at a width, size and length: batch 64, lr 0.05, cosine, weights
    kept at steps 0 and round(f * steps) for f in (0.03, 0.1, 0.3, 1).  The defaults are
    ``SourceConfig()``, the model every Part N chapter shares through the cache."""
    steps = check_positive_int("steps", steps, minimum=10)
    spec = dataclasses.replace(SourceConfig().spec, steps=steps, eval_every=max(1, steps // 20))
    ck = tuple(sorted({0} | {int(round(f * steps)) for f in (0.03, 0.1, 0.3, 1.0)}))
    return SourceConfig(width=width, n_train=n_train, spec=spec, checkpoints=ck, seed=seed)


def model_cache_dir() -> Path:
    """Where pre-trained models are cached: ``$TASKNB_CACHE`` or ``~/.cache/tasknb/models``."""
    return Path(os.environ.get("TASKNB_CACHE", Path.home() / ".cache" / "tasknb" / "models"))


def pretrained_source(config: SourceConfig = SourceConfig(), *, cache_dir=None, device="auto",
                      progress: bool = False) -> SourceModel:
    """The source model of ``config``, trained once and cached.

    The file ``<cache_dir>/source-<config.key()>.pt`` (``cache_dir`` default :func:`model_cache_dir`)
    holds the configuration, the checkpoints' weights and the test curve; it is read with
    ``torch.load(..., weights_only=True)`` and its stored configuration must equal ``config``
    (else it is retrained and overwritten).  Training is deterministic given the configuration.
    """
    if not isinstance(config, SourceConfig):
        raise ValueError(f"config must be a SourceConfig, got {type(config).__name__}")
    path = Path(cache_dir if cache_dir is not None else model_cache_dir()) / f"source-{config.key()}.pt"
    want = json.dumps(config.as_dict(), sort_keys=True)
    if path.exists():
        d = torch.load(path, map_location="cpu", weights_only=True)
        if d.get("config") == want:
            states = {int(s): st for s, st in d["states"].items()}
            return SourceModel(config, states, d["steps"].numpy(), d["loss"].numpy(), d["accuracy"].numpy(), True)
    train = source_images("train", config.n_train, config.seed)
    test = source_images("test", config.n_test, config.seed)
    model = init_resnet(len(SOURCE_CLASSES), config.width, derived_seed(config.seed, "pretraining.source_init"), device)
    rec = train_network(model, train.X, train.y, config.spec, derived_seed(config.seed, "pretraining.source_batches"),
                        eval_sets={"test": (test.X, test.y)}, checkpoints=config.checkpoints, progress=progress,
                        desc="pre-training the source model")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    torch.save({"config": want, "states": {str(s): st for s, st in rec.states.items()},
                "steps": torch.as_tensor(rec.steps), "loss": torch.as_tensor(rec.metrics["test"]["loss"]),
                "accuracy": torch.as_tensor(rec.metrics["test"]["accuracy"])}, tmp)
    tmp.replace(path)
    return SourceModel(config, rec.states, rec.steps, rec.metrics["test"]["loss"], rec.metrics["test"]["accuracy"], False)


def start_state(kind: str, n_classes: int, width: int, seed: int, k: int = 0, *, source: dict | None = None) -> dict:
    """The weights a target run starts from.

    kind "RI": a random SmallResNet(n_classes, width) from ``derived_seed(seed, "pretraining.random_init", k)``.
    kind "P": ``source`` (the weights of a pre-trained network, e.g. ``SourceModel.final`` or a
        checkpoint) for every module but ``fc``, and a new ``fc`` of ``n_classes`` outputs: the fc of
        a random network drawn from ``derived_seed(seed, "pretraining.new_head", k)``.
    """
    check_choice("kind", kind, START_KINDS)
    k = check_positive_int("k", k, minimum=0)
    if kind == "RI":
        return get_state(init_resnet(n_classes, width, derived_seed(seed, "pretraining.random_init", k), "cpu"))
    if source is None:
        raise ValueError("source must be given (the pre-trained weights) when kind is 'P'")
    head = get_state(init_resnet(n_classes, width, derived_seed(seed, "pretraining.new_head", k), "cpu"))
    state = {name: (head[name] if name.startswith("fc.") else t.clone()) for name, t in source.items()}
    if set(state) != set(head) or any(state[n].shape != head[n].shape for n in head if not n.startswith("fc.")):
        raise ValueError(f"source must be the weights of a SmallResNet of width {width}")
    return state


@dataclasses.dataclass
class TargetRuns:
    """Runs on one target: ``records[kind][k]`` (:class:`TrainingRecord`) and ``starts[kind][k]`` (the
    start state) for each kind in ``kinds`` ("P" gives P-T runs, "RI" gives RI-T runs) and seed index
    k < n_seeds; ``n_classes`` of the target."""

    kinds: tuple
    records: dict
    starts: dict
    n_classes: int

    def finals(self, kind: str) -> list:
        """The final states of the runs of ``kind``."""
        return [r.final for r in self.records[kind]]

    def metric(self, kind: str, eval_set: str, metric: str = "accuracy") -> np.ndarray:
        """(n_seeds, T) curves of ``metric`` on ``eval_set`` for the runs of ``kind``."""
        return np.stack([r.metrics[eval_set][metric] for r in self.records[kind]])


def target_runs(task: TaskImages, spec: TrainSpec, n_seeds: int, seed: int, *, source: dict | None = None,
                width: int = 8, kinds=START_KINDS, same_start: bool = False, eval_sets: dict | None = None,
                checkpoints=(), device="auto", progress: bool = False) -> TargetRuns:
    """Train ``n_seeds`` networks of each kind on ``task`` (its X, y) under ``spec``.

    Run k of kind "P" starts from ``start_state("P", ..., seed, k, source=source)`` (the source
    body, new head k), run k of kind "RI" from ``start_state("RI", ..., seed, k)``; with
    ``same_start`` every run of a kind starts from its k = 0 start, so runs differ only in their
    mini-batch order.  Run k of every kind uses the batch order ``derived_seed(seed,
    "pretraining.target_batches", k)``: a P-T run and an RI-T run of one k differ only in where they
    start (paired comparisons).  ``eval_sets`` and ``checkpoints`` as in :func:`train_network`;
    ``progress`` shows one bar over the runs.
    """
    if not isinstance(task, TaskImages):
        raise ValueError(f"task must be a TaskImages (target_images / source_images), got {type(task).__name__}")
    n_seeds = check_positive_int("n_seeds", n_seeds)
    kinds = tuple(check_choice("kinds", k, START_KINDS) for k in kinds)
    if not kinds or len(set(kinds)) != len(kinds):
        raise ValueError(f"kinds must be a non-empty subset of {START_KINDS} without repeats, got {kinds}")
    dev = get_device(device)
    records, starts = {}, {}
    bar = progress_bar(len(kinds) * n_seeds, f"{' and '.join(k + '-T' for k in kinds)} runs on {task.name}", progress)
    for kind in kinds:
        records[kind], starts[kind] = [], []
        for k in range(n_seeds):
            st = start_state(kind, task.n_classes, width, seed, 0 if same_start else k, source=source)
            net = load_state(SmallResNet(task.n_classes, width).to(dev), st)
            rec = train_network(net, task.X, task.y, spec, derived_seed(seed, "pretraining.target_batches", k),
                                eval_sets=eval_sets, checkpoints=checkpoints)
            records[kind].append(rec)
            starts[kind].append(st)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return TargetRuns(kinds, records, starts, task.n_classes)
