"""Readouts, imprinting, the union task and InPCA of runs on two tasks (Ramesh et al. 2023, "S",
§2 eqs. 7-11, Remark 2, App. A.2, D-F).

A network trained on task 1 has a backbone phi(x; w_1) and a head w_2 over task 1's classes.  To
read it on task 2 the paper replaces the head by *imprinted* weights, eq. (7): w_c = h_c / ||h_c||
with h_c the sum of the features of task 2's samples of class c.  The readouts themselves are
kernels of :mod:`tasknb.readout` (``readout_probabilities``, ``linear_probe``, ``PredictionSet``);
the geometry is :mod:`tasknb.geometry` and :mod:`tasknb.trajectory_geometry`.  This module holds the
loops of chapter S3:

``record_task``          train the seeds of a :class:`~tasknb.trajectories.RunConfig` on one task
                         (optionally on shuffled labels, the control of S3), read every checkpoint
                         through a shared :class:`~tasknb.readout.PredictionSet` (e.g. the union
                         task, eq. 8), keep the weights of every checkpoint
``model_from_state``     a :class:`~tasknb.networks.cnn.SmallCNN` with the weights of a checkpoint
``backbone_features``    features phi(x; w_1) of some images at every checkpoint -> (T, n, d)
``read_checkpoints``     every checkpoint of every seed read through each readout (the network's own
                         softmax head, "imprint", "imprint_ml", "prototype", "prototype_ml"):
                         accuracy, progress (eq. 4) and the mean feature norm -> ``ReadoutCurves``
``reheaded_heads``       App. D: final backbones re-headed for another task by imprinting, by the
                         default readout and by trained final layers (accuracy, eq. 12)
``union_distances``      eq. (8): d_traj across the two tasks vs same-task seed pairs (the null),
                         each over the pair's common progress range, and d_B of the end points
``stress_with_null``     chi_k of each seed's models vs ``geometry.explained_stress_null``
``projection_agreement`` App. A.2: Procrustes disparity of the projected embedding vs the exact one,
                         and of an embedding of sample-permuted models (the control)
``random_orthogonal``    a Haar-random orthogonal matrix, for the invariances of App. E (unit tests)

Every random draw has its own stream (``tasknb.device.stream`` / ``numpy_stream`` /
``derived_seed``).  Everything is deterministic given its seeds and runs on
``tasknb.device.get_device()``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import procrustes

from ..data import training_images
from ..device import derived_seed, get_device, numpy_stream, stream
from ..geometry import bhattacharyya, bhattacharyya_matrix, explained_stress_null, inpca, progress, stochastic_projection
from ..networks.cnn import NORMS, SmallCNN
from ..readout import (READOUT_METHODS, PredictionSet, imprint, linear_probe, log_likelihood,
                       readout_probabilities)
from ..trajectories import PAPER_RECIPE, Trajectories, run_config, train_supervised_seeds, trajectories_from_probs
from ..paired import paired_difference
from ..trajectory_geometry import compare_trajectories
from ..validation import check_choice, check_positive_int, check_seed

__all__ = ["record_task", "model_from_state", "backbone_features", "ReadoutCurves", "read_checkpoints",
           "CURVE_READOUTS", "reheaded_heads", "union_distances", "stress_with_null", "projection_agreement",
           "random_orthogonal", "OLD_RECIPE", "control_gaps"]

#: the readouts ``read_checkpoints`` compares: the network's own head, then the feature readouts
CURVE_READOUTS = ("softmax",) + READOUT_METHODS


# ----------------------------------------------------------------------------- training runs
def record_task(config=None, classes=None, pset: PredictionSet | None = None, *, shuffle_labels: bool = False,
                device="auto", progress: bool = False, **changes) -> tuple[Trajectories, list]:
    """Train the seeds of a run on the task ``classes`` and read each checkpoint through ``pset``.

    The training is that of :func:`tasknb.trajectories.record_trajectories` (same data draw,
    initialisation and batch order for a seed, cross-entropy on the task's own head), but the models
    are read through the given ``pset`` -- e.g. ``prediction_set(dataset, range(10))``, so runs on
    different tasks land in the prediction space of the union task (eq. 8 of S) -- and the weights of
    every checkpoint are kept (to re-head the backbone later).

    Parameters
    ----------
    config : a :class:`~tasknb.trajectories.RunConfig` or the dataset name; ``classes`` and other
        RunConfig fields as keywords fill in or replace its fields (defaults: the paper's recipe,
        ``PAPER_RECIPE``).  Its n_test / readout / union_classes / n_imprint are not used: ``pset``
        says where the models are read.
    classes : the task (labels 0..C-1 in the order of ``classes``), C >= 2.
    pset : PredictionSet where the models are read (N images, K classes).
    shuffle_labels : train on the training labels permuted once (the stream
        ``stream(data_seed, "s3.shuffled_labels")``): the same images and class balance, no relation
        between image and label (the shuffled-label control).  Default False.
    device : "auto", "cpu" or "cuda".   progress : a tqdm bar.

    Returns
    -------
    (Trajectories with probs (n_seeds, T, N, K) float32, states) where ``states[k][t]`` is the CPU
    state dict of seed k at checkpoint t.  Same arguments -> same numbers on the same device.
    """
    if classes is not None:
        changes["classes"] = classes
    c = run_config(config, **changes)
    if not isinstance(pset, PredictionSet):
        raise ValueError(f"pset must be a PredictionSet (tasknb.readout.prediction_set), got {type(pset).__name__}")
    if not isinstance(shuffle_labels, bool):
        raise ValueError(f"shuffle_labels must be True or False, got {shuffle_labels!r}")
    if pset.readout == "softmax" and pset.n_classes != len(c.classes):
        raise ValueError(f"pset reads the model's own head (readout='softmax') over {pset.n_classes} classes but the "
                         f"task has {len(c.classes)}; use a prediction_set with a feature readout ('prototype_ml')")
    dev = get_device(device)
    config_dict = {k: v for k, v in c.to_dict().items() if k not in ("n_test", "n_imprint")}
    config_dict.update(readout=pset.readout, union_classes=list(pset.classes), shuffle_labels=shuffle_labels)
    Xtr, ytr = training_images(c.dataset, c.classes, c.n_train, c.data_seed)
    if shuffle_labels:
        ytr = ytr[torch.randperm(len(ytr), generator=stream(c.data_seed, "s3.shuffled_labels"))]
    Xtr, ytr = Xtr.to(dev), ytr.to(dev)
    desc = f"{'shuffled labels of' if shuffle_labels else 'training on'} classes {list(c.classes)}"
    probs, states = train_supervised_seeds(Xtr, ytr, pset, c, keep_states=True, progress=progress, desc=desc)
    traj = trajectories_from_probs(probs, c.checkpoints, pset, c.seeds, config_dict)
    return traj, states


def _channels_of(state: dict) -> tuple[int, int]:
    return int(state["conv1.weight"].shape[0]), int(state["conv2.weight"].shape[0])


def model_from_state(state: dict, device="auto", *, norm: str = PAPER_RECIPE["norm"]) -> SmallCNN:
    """A SmallCNN (eval mode) holding the weights ``state`` (a state dict from :func:`record_task`).
    The width and the number of classes are read off the weights, the head's bias from whether the
    state has one; ``norm`` (which has no weights) must be the run's (default the recipe's)."""
    if not isinstance(state, dict) or not {"head.weight", "conv1.weight", "conv2.weight"} <= set(state):
        raise ValueError("state must be a SmallCNN state dict (with conv1/conv2/head weights)")
    check_choice("norm", norm, NORMS)
    model = SmallCNN(int(state["head.weight"].shape[0]), _channels_of(state), norm=norm,
                     head_bias="head.bias" in state)
    model.load_state_dict(state)
    return model.to(get_device(device)).eval()


@torch.no_grad()
def backbone_features(states, X, *, norm: str = PAPER_RECIPE["norm"], batch: int = 2048,
                      device="auto") -> torch.Tensor:
    """Penultimate features phi(x; w_1) of images ``X`` (n, 1, 28, 28) under each state dict of
    ``states`` (a list of T checkpoints, or a single state dict) -> float64 tensor (T, n, d) (or
    (n, d) for one state), d = 16 * c2.  The backbone is frozen: nothing is trained."""
    single = isinstance(states, dict)
    states = [states] if single else list(states)
    if not states:
        raise ValueError("states must be a state dict or a non-empty list of state dicts")
    batch = check_positive_int("batch", batch)
    dev = get_device(device)
    X = torch.as_tensor(X)
    if X.ndim != 4 or tuple(X.shape[1:]) != (1, 28, 28):
        raise ValueError(f"X must have shape (n, 1, 28, 28), got {tuple(X.shape)}")
    X = X.to(dev)
    out = []
    for st in states:
        m = model_from_state(st, dev, norm=norm)
        out.append(torch.cat([m.features(X[i:i + batch]).double() for i in range(0, len(X), batch)]))
    f = torch.stack(out)
    return f[0] if single else f


# ----------------------------------------------------------------------------- readouts along training
@dataclass
class ReadoutCurves:
    """Checkpoints of several seeds read through several readouts on one prediction set.

    ``readouts`` the names (``CURVE_READOUTS`` or a subset; "softmax" only where the network's head
    has the prediction set's classes); ``probs[r]`` (S, T, N, K) float64; ``accuracy[r]`` and
    ``progress[r]`` (S, T) (progress of eq. 4 of S towards the truth of the N labels);
    ``feature_norm`` (S, T) the mean ||phi(x)|| over the N test images; ``steps`` (T,).
    """

    readouts: tuple
    probs: dict
    accuracy: dict
    progress: dict
    feature_norm: np.ndarray
    steps: np.ndarray


def read_checkpoints(states, pset: PredictionSet, steps, *, readouts=CURVE_READOUTS,
                     norm: str = PAPER_RECIPE["norm"], device="auto") -> ReadoutCurves:
    """Read every checkpoint of every seed through each readout (S3's comparison of readouts).

    ``states`` : states[k][t] (from :func:`record_task`), S seeds x T checkpoints; ``pset`` : a
    :class:`~tasknb.readout.PredictionSet` with a support set (any feature readout), whose support
    images (``X_imprint``/``y_imprint``) build every feature head and whose test images (``X``) are
    the N points read.  ``steps`` : (T,) the checkpoints' steps.  ``readouts`` : names among
    ``CURVE_READOUTS``: "softmax" (the network's own head; needs len(pset.classes) outputs) and the
    methods of :func:`tasknb.readout.readout_probabilities` ("imprint" = eq. 7 at temperature 1).
    ``norm`` : the runs' SmallCNN norm.  Features of a checkpoint are computed once and shared by
    all readouts.  Returns :class:`ReadoutCurves`.
    """
    if not isinstance(pset, PredictionSet) or pset.X_imprint is None:
        raise ValueError("pset must be a PredictionSet with a support set (prediction_set(..., readout='prototype_ml'))")
    readouts = tuple(readouts)
    if not readouts:
        raise ValueError("readouts must name at least one readout")
    for r in readouts:
        check_choice("readouts", r, CURVE_READOUTS)
    dev = get_device(device)
    S, T = len(states), len(states[0])
    steps = np.asarray(steps, dtype=np.int64)
    if len(steps) != T or any(len(s) != T for s in states):
        raise ValueError(f"every seed must hold len(steps) = {len(steps)} checkpoints")
    K = pset.n_classes
    labels = pset.labels.to(dev)
    y_sup = pset.y_imprint.to(dev)
    probs = {r: np.empty((S, T, len(labels), K)) for r in readouts}
    fnorm = np.empty((S, T))
    for k in range(S):
        f_sup = backbone_features(states[k], pset.X_imprint, norm=norm, device=dev)   # (T, n, d)
        f_test = backbone_features(states[k], pset.X, norm=norm, device=dev)          # (T, N, d)
        fnorm[k] = f_test.norm(dim=-1).mean(-1).cpu().numpy()
        for r in readouts:
            if r == "softmax":
                W = torch.stack([st["head.weight"].to(dev, torch.float64) for st in states[k]])   # (T, K', d)
                if W.shape[1] != K:
                    raise ValueError(f"readout 'softmax' needs the network's head to have the prediction set's "
                                     f"{K} classes, it has {W.shape[1]}")
                logits = f_test @ W.transpose(1, 2)
                if "head.bias" in states[k][0]:
                    logits = logits + torch.stack([st["head.bias"].to(dev, torch.float64) for st in states[k]])[:, None]
                p = torch.softmax(logits, -1)
            else:
                p = readout_probabilities(f_sup, y_sup, f_test, K, r)
            probs[r][k] = p.cpu().numpy()
    lab = labels.cpu().numpy()
    acc = {r: (probs[r].argmax(-1) == lab).mean(-1) for r in readouts}
    prog = {r: np.asarray(progress(probs[r].reshape(S * T, len(lab), K), lab)).reshape(S, T) for r in readouts}
    return ReadoutCurves(readouts=readouts, probs=probs, accuracy=acc, progress=prog, feature_norm=fnorm, steps=steps)


# ----------------------------------------------------------------------------- App. D
def reheaded_heads(states, X_fit, y_fit, X_eval, y_eval, n_classes: int, *, probe_steps: int = 200,
                   probe_lr: float = 0.05, norm: str = PAPER_RECIPE["norm"], device="auto") -> dict:
    """Remark 2 / App. D: backbones (one state dict per seed) re-headed for another task.

    Heads built on the frozen features of ``X_fit`` (labels ``y_fit`` in 0..n_classes-1) and scored on
    ``X_eval``/``y_eval``: ``imprint`` (eq. 7; its argmax is also that of imprint_ml), ``prototype_ml``
    (the default readout), ``unit`` (the best unit-norm bias-free head, App. D's problem, trained on
    eq. 12 from the imprinted weights) and ``probe`` (a free linear layer with a bias), both by
    full-batch Adam (``linear_probe``).  Also ``ll_imp`` / ``ll_unit``: the mean log-likelihood per
    fit image (eq. 12) of the imprinted and of the trained unit-norm head.  Returns a dict of (S,)
    float arrays.
    """
    n_classes = check_positive_int("n_classes", n_classes, minimum=2)
    dev = get_device(device)
    y_fit_t, y_eval_t = torch.as_tensor(y_fit).to(dev), torch.as_tensor(y_eval).to(dev)
    rows = []
    for st in states:
        f_fit = backbone_features(st, X_fit, norm=norm, device=dev)
        f_ev = backbone_features(st, X_eval, norm=norm, device=dev)
        w_imp = imprint(f_fit, y_fit_t, n_classes)
        imp = float(((f_ev @ w_imp.T).argmax(-1) == y_eval_t).double().mean())
        proto = float((readout_probabilities(f_fit, y_fit_t, f_ev, n_classes).argmax(-1) == y_eval_t).double().mean())
        unit = linear_probe(f_fit, y_fit_t, n_classes, unit_norm=True, steps=probe_steps, lr=probe_lr, device=dev)
        free = linear_probe(f_fit, y_fit_t, n_classes, steps=probe_steps, lr=probe_lr, device=dev)
        rows.append(dict(imprint=imp, prototype_ml=proto, unit=unit.accuracy(f_ev, y_eval_t),
                         probe=free.accuracy(f_ev, y_eval_t),
                         ll_imp=log_likelihood(f_fit, y_fit_t, w_imp, device=dev),
                         ll_unit=log_likelihood(f_fit, y_fit_t, unit.weight, device=dev)))
    return {key: np.array([r[key] for r in rows]) for key in rows[0]}


# ----------------------------------------------------------------------------- eq. (8)
def union_distances(trajs_1, trajs_2, labels, *, n_grid: int = 50, device=None) -> dict:
    """Eq. (8) of S against its null: runs of two tasks on the union task vs seeds of one task.

    ``trajs_1``, ``trajs_2`` (S, T, N, C): S >= 2 seeds of each task read on the union task (eq. 8);
    ``labels`` (N,) the union labels (progress, eq. 4).  Every distance is
    ``compare_trajectories(...).mean_distance``: d_traj (eq. 5) over the pair's common range of
    unfolded progress divided by the range's length (ranges differ between pairs).  Seed k of both
    tasks starts from the same backbone (``init_seed``), so every pair below joins seed k to seed
    j = k + 1 (mod S), two different initialisations, in the claim and in its null alike:
    ``cross[k]`` = mean of d(1_k, 2_j) and d(2_k, 1_j) (two tasks), ``null[k]`` = mean of d(1_k, 1_j)
    and d(2_k, 2_j) (same task, other seed).  ``end_cross`` / ``end_null`` (S,): the same for d_B
    (eq. 2) between the final checkpoints.  ``ranges`` (S, 4, 2): the common ranges of the four
    pairs (1_k 2_j, 2_k 1_j, 1_k 1_j, 2_k 2_j).
    """
    a, b = np.asarray(trajs_1, dtype=np.float64), np.asarray(trajs_2, dtype=np.float64)
    if a.ndim != 4 or b.ndim != 4 or a.shape[0] != b.shape[0] or a.shape[0] < 2:
        raise ValueError(f"trajs_1 and trajs_2 must be (S, T, N, C) with the same S >= 2, got {a.shape} and {b.shape}")
    S = a.shape[0]
    kw = dict(labels=labels, n_grid=n_grid, device=device)
    out = {key: [] for key in ("cross", "null", "end_cross", "end_null", "ranges")}
    for k in range(S):
        j = (k + 1) % S
        pairs = [compare_trajectories(x, y, **kw) for x, y in ((a[k], b[j]), (b[k], a[j]), (a[k], a[j]), (b[k], b[j]))]
        ends = [float(bhattacharyya(x[-1], y[-1], device=device))
                for x, y in ((a[k], b[j]), (b[k], a[j]), (a[k], a[j]), (b[k], b[j]))]
        out["cross"].append(0.5 * (pairs[0].mean_distance + pairs[1].mean_distance))
        out["null"].append(0.5 * (pairs[2].mean_distance + pairs[3].mean_distance))
        out["end_cross"].append(0.5 * (ends[0] + ends[1]))
        out["end_null"].append(0.5 * (ends[2] + ends[3]))
        out["ranges"].append([p.range for p in pairs])
    return {key: np.array(v) for key, v in out.items()}


# ----------------------------------------------------------------------------- eq. (11) and its null
def stress_with_null(models_by_seed, k: int = 3, n_null: int = 10, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """chi_k (eq. 11) of each seed's models and the mean of its null (``explained_stress_null``).

    ``models_by_seed`` : a sequence of S arrays (m, N, C) (e.g. the checkpoints of seed s of both
    tasks).  Null draws of seed s come from ``derived_seed(seed, "s3.stress_null", s)``.  Returns
    (chi (S,), null mean (S,)).
    """
    seed = check_seed("seed", seed)
    chi, null = [], []
    for s, P in enumerate(models_by_seed):
        P = np.asarray(P, dtype=np.float64)
        chi.append(inpca(bhattacharyya_matrix(P), k).explained_stress)
        null.append(explained_stress_null(P, k, n_null, seed=derived_seed(seed, "s3.stress_null", s)).mean())
    return np.array(chi), np.array(null)


# ----------------------------------------------------------------------------- App. A.2
def _disparity(A: np.ndarray, B: np.ndarray) -> float:
    return float(procrustes(A, B)[2])


def projection_agreement(P, n_out: int, n_draws: int = 5, k: int = 3, seed: int = 0) -> dict:
    """App. A.2: does a random stochastic projection of the classes keep the InPCA embedding?

    ``P`` (m, N, C) models.  The exact embedding is the top-k InPCA of ``bhattacharyya_matrix(P)``.
    For draw r (``derived_seed(seed, "s3.projection", r)``): ``projected[r]`` the Procrustes disparity
    (0 identical, 1 unrelated, after the best translation, rotation/reflection and scale) between
    the exact embedding and that of ``stochastic_projection(P, n_out)``; ``control[r]`` the disparity
    between the exact embedding and that of the same models with their N samples permuted
    independently per model (``numpy_stream(seed, "s3.projection_control", r)``, the permutation of
    ``explained_stress_null``) -- the same numbers, no shared structure: what a measure that can
    fail reports for an unrelated embedding.  Also ``correlation[r]`` of projected vs exact distances.
    Returns a dict of (n_draws,) arrays.
    """
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 3 or P.shape[0] < k + 1:
        raise ValueError(f"P must be (m, N, C) with m > k = {k}, got shape {P.shape}")
    n_draws = check_positive_int("n_draws", n_draws)
    m, N, _ = P.shape
    D = bhattacharyya_matrix(P)
    D = D.cpu().numpy() if torch.is_tensor(D) else np.asarray(D)
    X = inpca(D, k).coords
    iu = np.triu_indices(m, 1)
    out = dict(projected=[], control=[], correlation=[])
    for r in range(n_draws):
        Dp = np.asarray(bhattacharyya_matrix(stochastic_projection(P, n_out, seed=derived_seed(seed, "s3.projection", r))))
        out["projected"].append(_disparity(X, inpca(Dp, k).coords))
        out["correlation"].append(float(np.corrcoef(D[iu], Dp[iu])[0, 1]))
        perm = numpy_stream(seed, "s3.projection_control", r).permuted(np.broadcast_to(np.arange(N), (m, N)), axis=1)
        Dc = np.asarray(bhattacharyya_matrix(P[np.arange(m)[:, None], perm]))
        out["control"].append(_disparity(X, inpca(Dc, k).coords))
    return {key: np.array(v) for key, v in out.items()}


def random_orthogonal(d: int, seed: int = 0) -> np.ndarray:
    """A Haar-distributed random orthogonal matrix (d, d) float64 (QR of a Gaussian matrix with the
    signs of R's diagonal moved into Q; ``numpy_stream(seed, "s3.orthogonal")``), for the
    invariances of App. E."""
    d = check_positive_int("d", d)
    seed = check_seed("seed", seed)
    A = numpy_stream(seed, "s3.orthogonal").standard_normal((d, d))
    Q, R = np.linalg.qr(A)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


# ----------------------------------------------------------------------------- controls of S3
#: the book's earlier training recipe (un-normalised SmallCNN with a head bias, Adam at a constant
#: rate), kept to show what a temperature-1 readout measures when the feature scale is free
OLD_RECIPE = dict(optimizer="adam", lr=0.005, batch_size=32, channels=(8, 16), norm="none", head_bias=True,
                  schedule="constant", weight_decay=0.0)


def control_gaps(trained: ReadoutCurves, shuffled: ReadoutCurves) -> dict:
    """Paired gains of training over its two controls, per readout and metric, seed by seed.

    ``trained`` / ``shuffled``: :class:`ReadoutCurves` of the same seeds (same initialisations)
    trained on the true and on shuffled labels.  For readout r and metric "accuracy" / "progress":
    ``(r, metric, "untrained")`` = final minus checkpoint 0 (the untrained network of the same seed:
    random features read by the same readout) and ``(r, metric, "shuffled")`` = final minus the
    shuffled-label network's final value, as :class:`tasknb.paired.PairedDifference` (K = seeds).
    """
    out = {}
    for r in trained.readouts:
        if r not in shuffled.readouts:
            continue
        for metric in ("accuracy", "progress"):
            t, s = getattr(trained, metric)[r], getattr(shuffled, metric)[r]
            out[(r, metric, "untrained")] = paired_difference(t[:, -1], t[:, 0], label=f"{r} {metric}: trained - untrained")
            out[(r, metric, "shuffled")] = paired_difference(t[:, -1], s[:, -1], label=f"{r} {metric}: trained - shuffled labels")
    return out
