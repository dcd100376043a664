"""Feature transfer between two tasks, measured against its baselines: the TF / RF / 2L / ft-TF
protocol (section 2.2 and appendix D of Gerace et al. 2022), for K realizations at once.

The protocol has two steps:

1. train a two-layer network on M_s source examples, Adam with early stopping
   (:func:`train_source` does it on CHMMs; :func:`resolve_source_networks` accepts networks
   trained elsewhere);
2. for each target size M in a grid, fit on the same M target examples four learners and
   measure their test errors:

   ``TF``     transferred features: the source first layer W1, frozen; only the read-out is fitted;
   ``RF``     random features: a Gaussian W1, frozen; only the read-out is fitted;
   ``2L``     the whole network trained from scratch;
   ``ft-TF``  TF followed by fine-tuning of both layers.

Step 2 (:func:`fit_target_learners`, :func:`target_learning_curves`) works on any kind of
two-layer stack through a :class:`NetworkFamily`: :func:`binary_family` (one output, labels in
{-1, +1}) or :func:`softmax_family` (C outputs).  :func:`transfer_learning_curves` runs both
steps on the binary CHMM and returns :class:`TransferCurves`.  The networks are those of
:mod:`tasknb.networks.stacks`, fitted by :mod:`tasknb.training`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .chmm import CHMM, MulticlassCHMM, stack_samples
from .device import derived_seed, get_device
from .paired import PairedDifference, paired_difference, paired_standard_error
from .networks.stacks import (SoftmaxStack, TwoLayerStack, classification_error, features, init_softmax_net,
                              init_two_layer, softmax_error)
from .training import (FINETUNE_DEFAULT, SCRATCH_DEFAULT, SOURCE_DEFAULT, TrainingConfig, fit_logistic_head,
                       fit_softmax_head, train_stack)
from .validation import check_choice, check_int_sequence, check_positive_int, check_positive_real, check_seed

__all__ = ["LEARNERS", "TransferCurves", "NetworkFamily", "binary_family", "softmax_family", "check_learners",
           "resolve_source_networks", "fit_target_learners", "target_learning_curves", "train_source",
           "transfer_learning_curves", "paired_standard_error", "TheoryAndNumericsGains"]

#: the four learners, in the order the book plots them
LEARNERS = ("TF", "RF", "2L", "ft-TF")


@dataclass(frozen=True)
class NetworkFamily:
    """The operations step 2 of the protocol needs, for one kind of two-layer network.

    ``init(seed)`` K fresh networks with N(0, 1) weights; ``fit_head(V, y, lam)`` the frozen-feature
    read-out on features V (K, M, H), returning an object with ``.w`` and ``.converged`` (K,);
    ``attach(W1, w)`` a network from a first layer and a read-out; ``error(net, X, y)`` the (K,)
    test errors; ``train(net, X, y, config, lam, seed)`` an Adam run (a :class:`TrainingConfig`)
    returning an object with ``.params``.  :func:`binary_family` gives the binary networks of
    eq. (6); :func:`softmax_family` the soft-max ones.
    """

    init: Callable
    fit_head: Callable
    attach: Callable
    error: Callable
    train: Callable


def binary_family(K: int, H: int, D: int, device, dtype: torch.dtype = torch.float32) -> NetworkFamily:
    """K binary two-layer networks of width H on D inputs: logistic heads, Adam on eq. (6)."""
    def train(net, X, y, config, lam, seed):
        return train_stack(net, X, y, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                           lam=lam, seed=seed)

    return NetworkFamily(init=lambda seed: init_two_layer(K, H, D, seed=seed, device=device, dtype=dtype),
                         fit_head=fit_logistic_head, attach=TwoLayerStack, error=classification_error,
                         train=train)


def softmax_family(K: int, H: int, D: int, n_classes: int, device, max_iter: int = 200) -> NetworkFamily:
    """K soft-max networks with C = ``n_classes`` outputs: multinomial logistic heads (``max_iter``
    Newton steps), Adam on the multi-class eq. (6)."""
    def train(net, X, y, config, lam, seed):
        return train_stack(net, X, y, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                           lam=lam, seed=seed)

    return NetworkFamily(init=lambda seed: init_softmax_net(K, H, D, n_classes, seed=seed, device=device),
                         fit_head=lambda V, y, lam: fit_softmax_head(V, y, n_classes, lam, max_iter=max_iter),
                         attach=SoftmaxStack, error=softmax_error, train=train)


def fit_target_learners(family: NetworkFamily, W1_tf: torch.Tensor, W1_rf: torch.Tensor, X: torch.Tensor,
                        y: torch.Tensor, X_test: torch.Tensor, y_test: torch.Tensor, learners, lam: float,
                        scratch: TrainingConfig, finetune: TrainingConfig, init_seed: int,
                        train_seed: int, finetune_seed: int | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Step 2 of the protocol (sec. 2.2, app. D) at one target size, for K realizations at once.

    Fits the learners named in ``learners`` on the target examples X (K, M, D), y (K, M):
    TF (``W1_tf`` (K, H, D) frozen + read-out), RF (``W1_rf`` frozen + read-out), 2L (fresh
    networks drawn with ``init_seed``, Adam with ``scratch``) and ft-TF (Adam with ``finetune``
    on both layers, starting from TF); the 2L run shuffles with ``train_seed``, the ft-TF run with
    ``finetune_seed`` (default: ``train_seed``).  Returns
    ``(errors, converged)``: ``errors[name]`` (K,) test errors on X_test, y_test and
    ``converged[name]`` (K,) flags of the TF and RF read-outs.
    """
    errors, converged, heads = {}, {}, {}
    for name, W1 in (("TF", W1_tf), ("RF", W1_rf)):
        if name in learners:
            fit = family.fit_head(features(W1, X), y, lam)
            heads[name] = family.attach(W1, fit.w)
            converged[name] = fit.converged.cpu().numpy()
            errors[name] = family.error(heads[name], X_test, y_test).cpu().numpy()
    if "2L" in learners:
        r = family.train(family.init(init_seed), X, y, scratch, lam, train_seed)
        errors["2L"] = family.error(r.params, X_test, y_test).cpu().numpy()
    if "ft-TF" in learners:
        r = family.train(heads["TF"], X, y, finetune, lam, train_seed if finetune_seed is None else finetune_seed)
        errors["ft-TF"] = family.error(r.params, X_test, y_test).cpu().numpy()
    return errors, converged


def target_learning_curves(family: NetworkFamily, W1_tf: torch.Tensor, W1_rf: torch.Tensor, draw, M_grid,
                           X_test: torch.Tensor, y_test: torch.Tensor, learners, lam: float,
                           scratch: TrainingConfig, finetune: TrainingConfig, seed: int, progress: bool = True,
                           desc: str = "target sizes", leave: bool = True):
    """Step 2 of the protocol over a grid of target sizes: :func:`fit_target_learners` at each M.

    ``draw(i, M)`` returns the K target training sets of the i-th size, X (K, M, D) and y (K, M).
    Size i draws its 2L networks with ``derived_seed(seed, "init.scratch", i)`` and shuffles its
    2L and ft-TF Adam runs with ``derived_seed(seed, "batches.scratch", i)`` and
    ``derived_seed(seed, "batches.finetune", i)``.  Returns ``(errors, converged)``: ``errors[name]`` (len(M_grid), K) test errors
    and ``converged[name]`` (len(M_grid), K) flags of the TF and RF read-outs.
    """
    K = W1_tf.shape[0]
    errors = {n: np.zeros((len(M_grid), K)) for n in learners}
    converged = {n: np.zeros((len(M_grid), K), dtype=bool) for n in ("TF", "RF") if n in learners}
    for i, M in enumerate(tqdm(M_grid, desc=desc, disable=not progress, leave=leave)):
        X, y = draw(i, M)
        err_i, conv_i = fit_target_learners(family, W1_tf, W1_rf, X, y, X_test, y_test, learners, lam,
                                            scratch, finetune, init_seed=derived_seed(seed, "init.scratch", i),
                                            train_seed=derived_seed(seed, "batches.scratch", i),
                                            finetune_seed=derived_seed(seed, "batches.finetune", i))
        for name in err_i:
            errors[name][i] = err_i[name]
        for name in conv_i:
            converged[name][i] = conv_i[name]
    return errors, converged


def check_learners(learners) -> list[str]:
    """Return ``learners`` as a list if each is one of LEARNERS and ft-TF comes with TF, else raise."""
    learners = list(learners)
    for n in learners:
        check_choice("learners", n, LEARNERS)
    if "ft-TF" in learners and "TF" not in learners:
        raise ValueError("learners: 'ft-TF' starts from the TF solution, so it needs 'TF' too")
    return learners


def train_source(chmms: list[CHMM], H: int, M_source: int, config: TrainingConfig = SOURCE_DEFAULT,
                 M_val: int = 2000, lam: float = 0.0, patience: int = 0, seed: int = 0,
                 progress: bool = True):
    """Step (b) of the pipeline: train one source network per CHMM, with early stopping.

    Binary :class:`~tasknb.chmm.CHMM` models get one-output networks, :class:`~tasknb.chmm.MulticlassCHMM`
    models C-output soft-max networks. Returns ``(TrainingResult, W1_init)``: the trained stack (best validation epoch)
    and the random initial stack.  Streams: training set ``derived_seed(seed, "source.train")``,
    validation set ``"source.validation"``, initialisation ``"init.source"``, batch order
    ``"batches.source"``.  The initial first layer is TF's starting point; an RF baseline drawn
    independently of it is ``init_two_layer(..., seed=derived_seed(seed, "init.rf"))``.
    """
    H = check_positive_int("H", H)
    M_source = check_positive_int("M_source", M_source)
    M_val = check_positive_int("M_val", M_val)
    seed = check_seed("seed", seed)
    Xs, ys = stack_samples(chmms, M_source, "source", derived_seed(seed, "source.train"))
    Xv, yv = stack_samples(chmms, M_val, "source", derived_seed(seed, "source.validation"))
    init_seed = derived_seed(seed, "init.source")
    if isinstance(chmms[0], MulticlassCHMM):
        init = init_softmax_net(len(chmms), H, chmms[0].D, chmms[0].n_classes, seed=init_seed,
                                device=Xs.device, dtype=Xs.dtype)
    else:
        init = init_two_layer(len(chmms), H, chmms[0].D, seed=init_seed, device=Xs.device, dtype=Xs.dtype)
    res = train_stack(init, Xs, ys, epochs=config.epochs, lr=config.lr, batch_size=config.batch_size,
                      lam=lam, X_val=Xv, y_val=yv, patience=patience, seed=derived_seed(seed, "batches.source"),
                      progress=progress,
                      desc="source nets")
    return res, init


def resolve_source_networks(source_params, stack_type: type, sizes: dict, train):
    """The source networks of a transfer protocol: trained now, or given and checked.

    ``source_params`` None -> ``train()`` is called and must return a TrainingResult (``.params``,
    ``.epochs``); otherwise it must be a ``stack_type`` whose sizes equal ``sizes`` (e.g.
    ``{"K": 8, "H": 100, "D": 500}``, K first).  Returns (params, epochs (K,)), epochs -1 when given.
    """
    if source_params is None:
        src = train()
        return src.params, src.epochs.numpy()
    names, want = tuple(sizes), tuple(sizes.values())
    got = (tuple(getattr(source_params, n) for n in names) if isinstance(source_params, stack_type)
           else type(source_params).__name__)
    if got != want:
        raise ValueError(f"source_params must hold a {stack_type.__name__} of ({', '.join(names)}) = {want} "
                         f"networks, got {got}")
    return source_params, np.full(want[0], -1)



class TheoryAndNumericsGains:
    """``gain`` and ``gain_sem`` for a result holding errors per learner from the theory and from
    trained networks: ``theory[name]`` / ``numerics[name]`` (realization means) and
    ``theory_realizations[name]`` / ``numerics_realizations[name]`` (realizations on axis 1):
    the diagrams of C4 and C7, one row per knob value (width, source size), one column per M / H."""

    def gain(self, transfer: str, baseline: str, numerics: bool = False) -> np.ndarray:
        """err(baseline) - err(transfer) of the realization-mean errors, from the theory or (with
        ``numerics``) from the trained learners; positive where the ``transfer`` learner is better."""
        table = self.numerics if numerics else self.theory
        return table[baseline] - table[transfer]

    def gain_sem(self, transfer: str, baseline: str, numerics: bool = False) -> np.ndarray:
        """Standard error of :meth:`gain` from the paired per-realization differences
        (:func:`paired_standard_error` over the K realizations)."""
        table = self.numerics_realizations if numerics else self.theory_realizations
        return paired_standard_error(table[baseline] - table[transfer], axis=1)

    def paired_gain(self, transfer: str, baseline: str, numerics: bool = False, region=None,
                    label: str | None = None) -> PairedDifference:
        """The gain err(baseline) - err(transfer) with its paired standard error over the K realizations.

        Without ``region``, one difference per cell (shape (n_rows, n_x)).  ``region`` is a boolean
        mask of the cells' shape: each realization's errors are first averaged over the masked cells,
        giving one scalar difference for the region (its SE still from the K paired values).
        """
        table = self.numerics_realizations if numerics else self.theory_realizations
        b, t = table[baseline], table[transfer]          # (n_rows, K, n_x)
        if label is None:
            label = f"gain of {transfer} over {baseline}"
        if region is None:
            return paired_difference(b, t, axis=1, label=label)
        mask = np.asarray(region, dtype=bool)
        if mask.shape != (b.shape[0], b.shape[2]):
            raise ValueError(f"region must be a boolean mask of shape {(b.shape[0], b.shape[2])}, got {mask.shape}")
        if not mask.any():
            raise ValueError("region must select at least one cell")
        bm = np.moveaxis(b, 1, 0)[:, mask].mean(1)      # (K,)
        tm = np.moveaxis(t, 1, 0)[:, mask].mean(1)
        return paired_difference(bm, tm, axis=0, label=label)


@dataclass
class TransferCurves:
    """Test errors of the learners vs target size.

    ``M`` (n_M,) target sizes; ``H`` hidden width; ``errors[name]`` (n_M, K) test
    errors per target size and realization; ``source_error`` (K,) test error of the
    source networks on their own task; ``head_converged[name]`` (n_M, K) flags of
    the logistic fits; ``config`` the parameters used; ``source_params`` the trained
    source networks (``source_epochs`` is -1 where they were passed in).
    """

    M: np.ndarray
    H: int
    errors: dict[str, np.ndarray]
    source_error: np.ndarray
    source_epochs: np.ndarray
    head_converged: dict[str, np.ndarray] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    source_params: TwoLayerStack | SoftmaxStack | None = None

    @property
    def alpha(self) -> np.ndarray:
        """Samples per hidden unit, M / H (the paper's horizontal axis)."""
        return self.M / self.H

    def mean(self, name: str) -> np.ndarray:
        return self.errors[name].mean(axis=1)

    def sem(self, name: str) -> np.ndarray:
        e = self.errors[name]
        return e.std(axis=1, ddof=1) / np.sqrt(e.shape[1]) if e.shape[1] > 1 else np.zeros(e.shape[0])

    def table(self) -> list[dict]:
        """One row per target size: M, M/H and the mean error of each learner."""
        rows = []
        for i, M in enumerate(self.M):
            row = {"M": int(M), "M/H": float(M / self.H)}
            row.update({n: float(self.errors[n][i].mean()) for n in self.errors})
            rows.append(row)
        return rows


def transfer_learning_curves(D: int, H: int, L_source: int, L_target: int, eta: float = 1.0,
                             rho: float = 0.0, q: float = 1.0, M_grid=(25, 50, 100, 200, 400),
                             M_source: int = 10_000, M_test: int = 5_000, realizations: int = 8,
                             lam: float = 1e-4, learners=LEARNERS,
                             source: TrainingConfig = SOURCE_DEFAULT,
                             scratch: TrainingConfig = SCRATCH_DEFAULT,
                             finetune: TrainingConfig = FINETUNE_DEFAULT,
                             seed: int = 0, device="auto", progress: bool = True,
                             source_params: TwoLayerStack | SoftmaxStack | None = None,
                             n_classes: int | None = None, max_iter: int = 200) -> TransferCurves:
    """Learning curves of TF, RF, 2L and ft-TF on the CHMM (figure 2b of the paper, numerically).

    Parameters
    ----------
    D, H, L_source, L_target : ints >= 1: input dimension, hidden width, latent dimensions.
    eta, rho, q : the CHMM correlations (see :class:`tasknb.chmm.CHMM`).
    M_grid : increasing target training-set sizes (ints >= 1).
    M_source, M_test : source training-set size; target test-set size per realization.
    realizations : K, the number of independent CHMMs averaged over (batched).
    lam : float > 0, L2 strength on the last layer for every learner.
    learners : subset of ("TF", "RF", "2L", "ft-TF").
    source, scratch, finetune : TrainingConfig of the Adam runs.
    seed : master seed; realization k is ``CHMM(..., seed=seed, realization=k)`` and every other draw
        (source, validation and test sets, target sets per size, initialisations, batch orders) has
        its own stream ``derived_seed(seed, purpose[, index])``; device : where to compute.
    source_params : optional source networks from an earlier call with the same D, H,
        L_source, realizations and seed (``curves.source_params``).  The source task of a
        CHMM depends only on its seed, so a sweep over the target's eta, rho, q or L_target
        can train the source networks once and reuse them.
    n_classes : None (default) for the binary CHMM; an int C >= 2 for the C-class
        :class:`~tasknb.chmm.MulticlassCHMM` with soft-max networks (appendix B), whose heads take
        ``max_iter`` Newton steps; ``config["n_classes"]`` then holds C and chance is 1 - 1/C.
    """
    D, H = check_positive_int("D", D), check_positive_int("H", H)
    C = None if n_classes is None else check_positive_int("n_classes", n_classes, minimum=2)
    M_grid = check_int_sequence("M_grid", M_grid, minimum=1)
    M_source = check_positive_int("M_source", M_source)
    M_test = check_positive_int("M_test", M_test)
    K = check_positive_int("realizations", realizations)
    lam = check_positive_real("lam", lam)
    learners = check_learners(learners)
    seed = check_seed("seed", seed)
    dev = get_device(device)
    if C is None:
        chmms = [CHMM(D, L_source, L_target, eta, rho, q, seed=seed, realization=k, device=dev) for k in range(K)]
        stack_type, sizes, error = TwoLayerStack, {"K": K, "H": H, "D": D}, classification_error
    else:
        chmms = [MulticlassCHMM(D, L_source, L_target, C, eta, rho, q, seed=seed, realization=k, device=dev)
                 for k in range(K)]
        stack_type, sizes, error = SoftmaxStack, {"K": K, "H": H, "D": D, "C": C}, softmax_error

    source_params, source_epochs = resolve_source_networks(
        source_params, stack_type, sizes,
        lambda: train_source(chmms, H, M_source, source, lam=lam, seed=seed, progress=progress)[0])
    Xs_test, ys_test = stack_samples(chmms, M_test, "source", derived_seed(seed, "source.test"))
    source_error = error(source_params, Xs_test, ys_test).cpu().numpy()
    W1_tf = source_params.W1
    if C is None:
        W1_rf = init_two_layer(K, H, D, seed=derived_seed(seed, "init.rf"), device=dev).W1
        family = binary_family(K, H, D, dev)
    else:
        W1_rf = init_softmax_net(K, H, D, C, seed=derived_seed(seed, "init.rf"), device=dev).W1
        family = softmax_family(K, H, D, C, dev, max_iter=max_iter)
    Xt_test, yt_test = stack_samples(chmms, M_test, "target", derived_seed(seed, "target.test"))

    errors, conv = target_learning_curves(
        family, W1_tf, W1_rf,
        lambda i, M: stack_samples(chmms, M, "target", derived_seed(seed, "target.train", i)), M_grid,
        Xt_test, yt_test,
        learners, lam, scratch, finetune, seed, progress=progress)
    config = dict(D=D, H=H, L_source=L_source, L_target=L_target, eta=eta, rho=rho, q=q,
                  M_source=M_source, M_test=M_test, realizations=K, lam=lam, seed=seed,
                  source=source, scratch=scratch, finetune=finetune, device=str(dev))
    if C is not None:
        config = dict(D=D, H=H, L_source=L_source, L_target=L_target, n_classes=C, **{
            k: v for k, v in config.items() if k not in ("D", "H", "L_source", "L_target")})
    return TransferCurves(np.asarray(M_grid), H, errors, source_error, source_epochs, conv, config,
                          source_params)
