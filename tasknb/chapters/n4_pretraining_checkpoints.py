"""Which pre-training checkpoint to transfer (Neyshabur, Sedghi & Zhang 2020, "What is being
transferred in transfer learning?", section "Which pre-trained checkpoint is most useful for
transfer learning?" and the summary slide after it).

The source network of :func:`tasknb.pretraining.pretrained_source` keeps its weights at several
pre-training steps (``SourceModel.states``: 0, 30, 100, 300, 1000 at the book's scale).  Fine-tuning
starts from EACH of them (the body of that checkpoint and a new head, ``start_state("P", ...,
source=states[step])``), plus the RI-T control (a random network, ``start_state("RI", ...)``).

``checkpoint_runs``   n_seeds target runs from every checkpoint and from RI -> :class:`CheckpointRuns`;
                      run k of every start shares the new head k (for the P starts) and the batch
                      order ``derived_seed(seed, "n4.target_batches", k)``: runs from two starts with
                      the same k differ only in the body they start from (paired comparisons)
``loss_area``         optimisation speed: the area under the training-loss curve divided by the
                      number of steps (trapezoid over the evaluated steps), the mean training loss
                      of the run; lower is faster
``saturation``        along the checkpoints, the first one whose paired difference to the last
                      checkpoint is within a tolerance at 2 SE (``PairedDifference.within``):
                      where a benefit stops growing
``benefit_fraction``  how much of the last checkpoint's benefit over checkpoint 0 each checkpoint
                      already gives (per seed, then mean), beside the same fraction of the
                      source's own test accuracy

Checkpoint 0 is the source's random initialisation with a new head: an RI-T run with another
random draw.  The separate RI-T runs are the control for "an untrained start gives nothing".
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..device import derived_seed, get_device
from ..networks.resnet import SmallResNet
from ..paired import paired_difference
from ..pretraining import (SourceModel, source_images, TaskImages, TrainSpec, evaluate, load_state, start_state,
                           steps_to_threshold, train_network)
from ..seed_runs import progress_bar
from ..validation import check_positive_int, check_positive_real

__all__ = ["CheckpointRuns", "checkpoint_runs", "loss_area", "saturation", "benefit_fraction", "source_accuracy_at"]


@dataclass
class CheckpointRuns:
    """Target runs from every pre-training checkpoint and from RI.

    ``checkpoints`` the source steps started from; ``records[c]`` the K runs (TrainingRecord, with a
    "train" evaluation set) from checkpoint c, ``records["RI"]`` the RI-T runs; ``test_accuracy[c]``
    and ``test_loss[c]`` (K,) the final test metrics; ``spec`` the fine-tuning recipe.
    """

    checkpoints: tuple
    records: dict
    test_accuracy: dict
    test_loss: dict
    spec: TrainSpec
    n_seeds: int

    @property
    def starts(self) -> tuple:
        """Every start: the checkpoints, then "RI"."""
        return tuple(self.checkpoints) + ("RI",)

    def curves(self, start, metric: str = "loss") -> np.ndarray:
        """(K, T) training-set curves of ``metric`` for the runs from ``start``."""
        return np.stack([r.metrics["train"][metric] for r in self.records[start]])

    def speed(self, start) -> np.ndarray:
        """(K,) :func:`loss_area` of the runs from ``start``."""
        return np.array([loss_area(r) for r in self.records[start]])

    def steps_to(self, start, threshold: float) -> np.ndarray:
        """(K,) first evaluated step with training accuracy >= ``threshold`` (inf if never)."""
        return np.array([steps_to_threshold(r, "train", threshold) for r in self.records[start]])

    @property
    def eval_steps(self) -> np.ndarray:
        return self.records["RI"][0].steps


def loss_area(record, eval_set: str = "train") -> float:
    """Area under the ``eval_set`` loss curve of a run divided by its length (trapezoid rule over the
    evaluated steps): the run's mean training loss, the slides' "optimisation speed" read as one
    number (lower: faster).  Uses every evaluation, so it does not depend on a threshold."""
    if eval_set not in record.metrics:
        raise ValueError(f"eval_set must be one of {sorted(record.metrics)}, got {eval_set!r}")
    s = np.asarray(record.steps, dtype=float)
    v = np.asarray(record.metrics[eval_set]["loss"], dtype=float)
    if len(s) < 2 or s[-1] <= s[0]:
        raise ValueError("record must hold at least two evaluated steps")
    return float(np.trapezoid(v, s) / (s[-1] - s[0]))


def checkpoint_runs(source: SourceModel, task: TaskImages, test: TaskImages, spec: TrainSpec, n_seeds: int,
                    seed: int, *, checkpoints=None, device="auto", progress: bool = False) -> CheckpointRuns:
    """Fine-tune from every checkpoint of ``source`` (default: all of ``source.states``) and train the
    RI-T control, ``n_seeds`` runs each, on ``task``; final accuracy/loss on ``test``.

    Run k from checkpoint c starts from ``start_state("P", n_classes, width, seed, k,
    source=source.states[c])``; RI-T run k from ``start_state("RI", n_classes, width, seed, k)``; all
    runs k share the batch order ``derived_seed(seed, "n4.target_batches", k)``.  The training set is
    evaluated every ``spec.eval_every`` steps (the speed measures), the test set at the end.
    """
    if not isinstance(source, SourceModel):
        raise ValueError(f"source must be a SourceModel (pretrained_source), got {type(source).__name__}")
    for name, t in (("task", task), ("test", test)):
        if not isinstance(t, TaskImages):
            raise ValueError(f"{name} must be a TaskImages (target_images), got {type(t).__name__}")
    if task.n_classes != test.n_classes:
        raise ValueError(f"task and test must have the same classes, got {task.n_classes} and {test.n_classes}")
    n_seeds = check_positive_int("n_seeds", n_seeds, minimum=2)
    if checkpoints is None:
        checkpoints = tuple(sorted(source.states))
    checkpoints = tuple(int(c) for c in checkpoints)
    missing = [c for c in checkpoints if c not in source.states]
    if missing or not checkpoints:
        raise ValueError(f"checkpoints must be steps of the source's checkpoints {sorted(source.states)}, got "
                         f"{list(checkpoints)}")
    width = source.config.width
    dev = get_device(device)
    records, acc, loss = {}, {}, {}
    bar = progress_bar((len(checkpoints) + 1) * n_seeds, f"runs from {len(checkpoints)} checkpoints and RI", progress)
    for c in checkpoints + ("RI",):
        records[c], acc[c], loss[c] = [], [], []
        for k in range(n_seeds):
            if c == "RI":
                st = start_state("RI", task.n_classes, width, seed, k)
            else:
                st = start_state("P", task.n_classes, width, seed, k, source=source.states[c])
            net = load_state(SmallResNet(task.n_classes, width).to(dev), st)
            rec = train_network(net, task.X, task.y, spec, derived_seed(seed, "n4.target_batches", k),
                                eval_sets={"train": (task.X, task.y)})
            if bar is not None:
                bar.update(1)
            l, a = evaluate(net, test.X, test.y)
            records[c].append(rec)
            acc[c].append(a)
            loss[c].append(l)
    if bar is not None:
        bar.close()
    return CheckpointRuns(checkpoints, records, {c: np.array(v) for c, v in acc.items()},
                          {c: np.array(v) for c, v in loss.items()}, spec, n_seeds)


def saturation(values: dict, checkpoints, tol: float, sign: int = 1):
    """Where a benefit stops growing along the checkpoints.

    ``values[c]`` (K,) is a per-run measure, larger is better when ``sign`` is +1 (accuracy) and
    smaller is better when -1 (loss area).  Returns ``(index, diffs)``: ``diffs[i]`` the paired
    difference value(last) - value(c_i) (oriented by ``sign``, so positive means the last checkpoint
    is better), and ``index`` the first i whose difference is within ``tol`` at 2 SE
    (``PairedDifference.within``), or ``None`` if none is (not even the last, whose difference is 0
    by construction, is counted: the search stops before it).
    """
    tol = check_positive_real("tol", tol)
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    checkpoints = list(checkpoints)
    last = np.asarray(values[checkpoints[-1]], dtype=float)
    diffs = [paired_difference(sign * last, sign * np.asarray(values[c], dtype=float),
                               label=f"checkpoint {checkpoints[-1]} - checkpoint {c}") for c in checkpoints[:-1]]
    index = next((i for i, d in enumerate(diffs) if bool(d.within(tol))), None)
    return index, diffs


def benefit_fraction(values: dict, checkpoints) -> np.ndarray:
    """(C,) mean over runs of (value(c) - value(c_0)) / (value(last) - value(c_0)) per checkpoint c:
    how much of the last checkpoint's change over checkpoint 0 each checkpoint gives (ratio of the
    seed means, so a single noisy run cannot blow it up)."""
    checkpoints = list(checkpoints)
    m = np.array([np.mean(values[c]) for c in checkpoints])
    span = m[-1] - m[0]
    if span == 0:
        return np.full(len(m), np.nan)
    return (m - m[0]) / span


def source_accuracy_at(source: SourceModel, checkpoints=None, device="auto") -> np.ndarray:
    """The source network's own test accuracy at each checkpoint (default: all of ``source.states``),
    evaluated on the source configuration's test images (the ``n_test`` images its curve uses)."""
    checkpoints = sorted(source.states) if checkpoints is None else list(checkpoints)
    cfg = source.config
    test = source_images("test", cfg.n_test, cfg.seed)
    return np.array([evaluate(source.model(c, device), test.X, test.y)[1] for c in checkpoints])
