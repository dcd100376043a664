"""Opening the model: mistakes, feature similarity and parameter distance of P-T and RI-T networks
(Neyshabur, Sedghi & Zhang 2020, slides "Investigating mistakes", "Feature similarity", "Distance in
parameter space").

On one target, ``n_seeds`` P-T runs (the shared source body, new head k) and ``n_seeds`` RI-T runs
(random network k) are trained; run k of both kinds shares its mini-batch order
(:func:`tasknb.pretraining.target_runs`).  Then:

``run_target``          trains the runs and returns a :class:`TargetStudy` (final states, test
                        probabilities, the P start states)
``held_out_ambiguity``  per image and per compared index k, the normalised entropy of the mean
                        prediction of the held-out ensemble: every P-T and RI-T run j != k (the two
                        networks compared never vote on how ambiguous an image is)
``mistake_sets``        P-T_k wrong & RI-T_k right ("A"), P-T_k right & RI-T_k wrong ("B"), both
                        wrong, both right; the mean held-out ambiguity of each set and the fraction
                        of "easy" images (ambiguity below the median over all test images)
``error_overlap``       Cohen's kappa and the Jaccard index of two error sets; kappa is 0 and the
                        Jaccard index is e1 e2 / (e1 + e2 - e1 e2) in expectation for independent
                        errors at rates e1, e2 (the control printed beside it)
``overlap_table``       kappa / Jaccard for the pairs P-T & P-T, P-T & RI-T, RI-T & RI-T (pair k is
                        run k with run k+1 mod K; for P-T & RI-T, P-T_k with RI-T_{k+1}, so that no
                        pair shares its batch order)
``cka_table``           linear CKA (Kornblith et al. 2019), biased and debiased (Song et al. 2012
                        unbiased HSIC), of the outputs of conv1, layer1 ... layer4 on test images,
                        for the rows of the slides' table: P-T & P, P-T & P-T, P-T & RI-T, RI-T & RI-T
``distance_table``      l2 (Frobenius) distances, whole network and per module, for the columns of
                        the slides' table: 2 P-T, 2 RI-T, P-T & P, RI-T & P; raw, per weight
                        (divided by sqrt(k_i), k_i the module's number of weights) and relative to
                        the module's norm (mean of the two endpoints' norms)
``layer_slope``         least-squares slope of a per-module quantity against the module's depth
                        (conv1 = 0 ... layer4 = 4), per pair: "grows toward higher layers" > 0
``summary_figure``, ``mistake_images_figure``   the frames of the notebook's slider and its images

"P" in "P-T & P" and "RI-T & P" is the start of P-T run k: the source network's weights with the
new head k (the slides' P has ImageNet's head, which a target head cannot be compared with either).
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..landscape import layer_representations, linear_cka, parameter_distance
from ..networks.resnet import RESNET_MODULES, SmallResNet
from ..pretraining import TaskImages, TrainSpec, load_state, target_runs
from ..validation import check_choice, check_positive_int

__all__ = ["SLIDES_CKA", "SLIDES_L2", "CKA_ROWS", "CKA_CONTROL_ROW", "CKA_LAYERS", "L2_COLUMNS", "TargetStudy", "run_target",
           "predict_proba", "held_out_ambiguity", "mistake_sets", "MistakeSets", "cohen_kappa", "jaccard",
           "independent_jaccard", "error_overlap", "overlap_table", "cka_table", "distance_table",
           "module_sizes", "layer_slope", "summary_figure", "mistake_images_figure"]

#: the layers of the slides' CKA table
CKA_LAYERS = ("conv1", "layer1", "layer2", "layer3", "layer4")
#: its rows
CKA_ROWS = ("P-T & P", "P-T & P-T", "P-T & RI-T", "RI-T & RI-T")
#: the control row of the CKA table (not in the slides): two UNTRAINED random networks, RI_k and RI_{k+1}
#: -- what the architecture and the images alone give, before any training
CKA_CONTROL_ROW = "RI & RI (untrained)"
#: the slides' CKA table (ResNet-50, ImageNet -> a DomainNet/CheXpert target; estimator not stated)
SLIDES_CKA = {
    "P-T & P": (0.6225, 0.4592, 0.2896, 0.1877, 0.0453),
    "P-T & P-T": (0.6710, 0.8230, 0.6052, 0.4089, 0.1628),
    "P-T & RI-T": (0.0036, 0.0011, 0.0022, 0.0003, 0.0808),
    "RI-T & RI-T": (0.0016, 0.0088, 0.0004, 0.0004, 0.0424),
}
#: the columns of the slides' l2 table
L2_COLUMNS = ("2 P-T", "2 RI-T", "P-T & P", "RI-T & P")
#: the slides' l2 table (whole network), rows = their target domains
SLIDES_L2 = {
    "CheXpert": (200.12, 255.34, 237.31, 598.19),
    "clipart": (178.07, 822.43, 157.19, 811.87),
    "quickdraw": (218.52, 776.76, 195.44, 785.22),
    "real": (193.45, 815.08, 164.83, 796.80),
}


@dataclass
class TargetStudy:
    """P-T and RI-T runs on one target: ``finals[kind][k]`` / ``starts[kind][k]`` (kind "P" = P-T,
    "RI" = RI-T), ``probs[kind]`` (K, n_test, C) softmax on the test images, ``y_test``, ``X_test``,
    ``n_classes``, ``name``, ``width``."""

    name: str
    n_classes: int
    width: int
    finals: dict
    starts: dict
    probs: dict
    X_test: torch.Tensor
    y_test: torch.Tensor

    @property
    def n_seeds(self) -> int:
        return len(self.finals["P"])

    def errors(self, kind: str) -> np.ndarray:
        """(K, n_test) bool: run k of ``kind`` misclassifies test image i."""
        return self.probs[kind].argmax(-1) != self.y_test.numpy()[None]

    def accuracy(self, kind: str) -> np.ndarray:
        return 1.0 - self.errors(kind).mean(1)

    def model(self, state: dict, device="cpu") -> SmallResNet:
        return load_state(SmallResNet(self.n_classes, self.width).to(device), state)


@torch.no_grad()
def predict_proba(model: torch.nn.Module, X: torch.Tensor, batch_size: int = 1000) -> np.ndarray:
    """Softmax outputs (n, C) of ``model`` (eval mode) on X, float64."""
    dev = next(model.parameters()).device
    model.eval()
    out = [torch.softmax(model(X[i:i + batch_size].to(dev)), -1).double().cpu() for i in range(0, len(X), batch_size)]
    return torch.cat(out).numpy()


def run_target(train: TaskImages, test: TaskImages, spec: TrainSpec, n_seeds: int, seed: int, source: dict,
               width: int, device="auto", progress: bool = False) -> TargetStudy:
    """Train ``n_seeds`` P-T and RI-T networks on ``train`` (``target_runs``, paired batch orders) and
    record their softmax outputs on ``test``."""
    n_seeds = check_positive_int("n_seeds", n_seeds, minimum=3)
    runs = target_runs(train, spec, n_seeds, seed, source=source, width=width, device=device, progress=progress)
    finals = {kind: runs.finals(kind) for kind in ("P", "RI")}
    starts = {kind: list(runs.starts[kind]) for kind in ("P", "RI")}
    net = SmallResNet(train.n_classes, width)
    probs = {kind: np.stack([predict_proba(load_state(net, s), test.X) for s in finals[kind]]) for kind in finals}
    return TargetStudy(train.name, train.n_classes, width, finals, starts, probs, test.X, test.y)


def held_out_ambiguity(study: TargetStudy) -> np.ndarray:
    """(K, n_test): for compared index k, the entropy of the mean softmax of the runs P-T_j and RI-T_j,
    j != k, divided by log C (0: the held-out ensemble is sure, 1: uniform)."""
    P, R = study.probs["P"], study.probs["RI"]
    K = P.shape[0]
    out = []
    for k in range(K):
        keep = [j for j in range(K) if j != k]
        m = np.concatenate([P[keep], R[keep]]).mean(0)
        out.append(-(m * np.log(np.clip(m, 1e-300, None))).sum(-1) / np.log(m.shape[-1]))
    return np.stack(out)


@dataclass
class MistakeSets:
    """Per compared index k (P-T_k vs RI-T_k): ``sizes[name]`` (K,), ``ambiguity[name]`` (K,) the mean
    held-out ambiguity of each set, ``easy[name]`` (K,) its fraction of easy images (ambiguity below
    the median over all test images), ``members[name][k]`` the test indices; names "A" (P-T wrong,
    RI-T right), "B" (P-T right, RI-T wrong), "both wrong", "both right"."""

    sizes: dict
    ambiguity: dict
    easy: dict
    members: dict
    scores: np.ndarray

    @property
    def complete(self) -> bool:
        """Every set of every k non-empty (else its mean ambiguity is NaN)."""
        return all(np.all(self.sizes[n] > 0) for n in ("A", "B"))


SET_NAMES = ("A", "B", "both wrong", "both right")


def mistake_sets(study: TargetStudy) -> MistakeSets:
    """The four agreement sets of P-T_k and RI-T_k and their held-out ambiguity (:func:`held_out_ambiguity`)."""
    eP, eR = study.errors("P"), study.errors("RI")
    amb = held_out_ambiguity(study)
    masks = {"A": eP & ~eR, "B": ~eP & eR, "both wrong": eP & eR, "both right": ~eP & ~eR}
    sizes, ambiguity, easy, members = {}, {}, {}, {}
    for name, m in masks.items():
        sizes[name] = m.sum(1)
        members[name] = [np.nonzero(row)[0] for row in m]
        ambiguity[name] = np.array([amb[k][m[k]].mean() if m[k].any() else np.nan for k in range(len(m))])
        easy[name] = np.array([(amb[k][m[k]] < np.median(amb[k])).mean() if m[k].any() else np.nan
                               for k in range(len(m))])
    return MistakeSets(sizes, ambiguity, easy, members, amb)


def cohen_kappa(e1, e2) -> float:
    """Cohen's kappa of two binary error indicators: (p_o - p_e) / (1 - p_e), p_o the agreement rate,
    p_e = e1 e2 + (1 - e1)(1 - e2) its value for independent errors at the two rates."""
    a, b = np.asarray(e1, bool), np.asarray(e2, bool)
    r1, r2 = a.mean(), b.mean()
    po = (a == b).mean()
    pe = r1 * r2 + (1 - r1) * (1 - r2)
    return float((po - pe) / (1 - pe)) if pe < 1 else 0.0


def jaccard(e1, e2) -> float:
    """|E1 & E2| / |E1 | E2| of two error sets (0 when both are empty)."""
    a, b = np.asarray(e1, bool), np.asarray(e2, bool)
    u = (a | b).sum()
    return float((a & b).sum() / u) if u else 0.0


def independent_jaccard(e1, e2) -> float:
    """The Jaccard index expected for independent errors at the two error rates: r1 r2 / (r1 + r2 - r1 r2)."""
    r1, r2 = np.asarray(e1, bool).mean(), np.asarray(e2, bool).mean()
    d = r1 + r2 - r1 * r2
    return float(r1 * r2 / d) if d > 0 else 0.0


def error_overlap(e1, e2) -> dict:
    """{"kappa", "jaccard", "jaccard_independent"} of two error indicator vectors."""
    return {"kappa": cohen_kappa(e1, e2), "jaccard": jaccard(e1, e2), "jaccard_independent": independent_jaccard(e1, e2)}


OVERLAP_PAIRS = ("P-T & P-T", "P-T & RI-T", "RI-T & RI-T")


def _pairs(K: int):
    return [(k, (k + 1) % K) for k in range(K)]


def overlap_table(study: TargetStudy) -> dict:
    """{pair: {"kappa" | "jaccard" | "jaccard_independent": (K,)}} for :data:`OVERLAP_PAIRS`; pair k
    is (run k, run k+1 mod K) -- for P-T & RI-T, (P-T_k, RI-T_{k+1})."""
    eP, eR = study.errors("P"), study.errors("RI")
    K = len(eP)
    sides = {"P-T & P-T": (eP, eP), "P-T & RI-T": (eP, eR), "RI-T & RI-T": (eR, eR)}
    out = {}
    for pair, (a, b) in sides.items():
        rows = [error_overlap(a[i], b[j]) for i, j in _pairs(K)]
        out[pair] = {key: np.array([r[key] for r in rows]) for key in rows[0]}
    return out


def cka_table(study: TargetStudy, n_images: int | None = None, layers=CKA_LAYERS, device="cpu") -> dict:
    """Linear CKA per layer for the rows :data:`CKA_ROWS` on the first ``n_images`` test images:
    ``{"biased" | "debiased": {row: (K, L)}}``.  Pair k: P-T & P = (P-T_k, P start k) [the layers
    compared do not contain the head, so this is the source network's representation];
    P-T & P-T = (P-T_k, P-T_{k+1}); P-T & RI-T = (P-T_k, RI-T_{k+1}); RI-T & RI-T = (RI-T_k, RI-T_{k+1});
    and the control row :data:`CKA_CONTROL_ROW` = (RI_k, RI_{k+1}), the two untrained starts."""
    X = study.X_test if n_images is None else study.X_test[:check_positive_int("n_images", n_images, minimum=4)]
    layers = list(layers)
    reps = {}

    def rep(kind, k, final=True):
        key = (kind, k, final)
        if key not in reps:
            state = (study.finals if final else study.starts)[kind][k]
            r = layer_representations(study.model(state, device), X, layers)
            reps[key] = {n: r[n].double().numpy() for n in layers}
        return reps[key]

    K = study.n_seeds
    pairs = {
        "P-T & P": [(("P", k, True), ("P", k, False)) for k in range(K)],
        "P-T & P-T": [(("P", i, True), ("P", j, True)) for i, j in _pairs(K)],
        "P-T & RI-T": [(("P", i, True), ("RI", j, True)) for i, j in _pairs(K)],
        "RI-T & RI-T": [(("RI", i, True), ("RI", j, True)) for i, j in _pairs(K)],
        CKA_CONTROL_ROW: [(("RI", i, False), ("RI", j, False)) for i, j in _pairs(K)],
    }
    out = {"biased": {}, "debiased": {}}
    for row, plist in pairs.items():
        for est in out:
            out[est][row] = np.array([[linear_cka(rep(*a)[n], rep(*b)[n], debiased=(est == "debiased"))
                                       for n in layers] for a, b in plist])
    return out


def module_sizes(state: dict, modules=RESNET_MODULES) -> dict:
    """{module: number of weights k_i} of a SmallResNet state."""
    return {m: int(sum(t.numel() for n, t in state.items() if n.split(".", 1)[0] == m)) for m in modules}


def _norm(state: dict, names) -> float:
    return float(np.sqrt(sum(float(torch.sum(state[n].double() ** 2)) for n in names)))


def distance_table(study: TargetStudy, modules=RESNET_MODULES) -> dict:
    """l2 distances for :data:`L2_COLUMNS`: ``{"raw" | "per_weight" | "relative": {column: {part: (K,)}}}``,
    parts "whole" and each module.  Pairs: 2 P-T = (P-T_k, P-T_{k+1}), 2 RI-T = (RI-T_k, RI-T_{k+1}),
    P-T & P = (P-T_k, P start k), RI-T & P = (RI-T_k, P start k).  per_weight = raw / sqrt(k_i);
    relative = raw / mean(||a_i||, ||b_i||)."""
    K = study.n_seeds
    F, S = study.finals, study.starts
    groups = {m: [n for n in F["P"][0] if n.split(".", 1)[0] == m] for m in modules}
    groups_all = dict(groups, whole=list(F["P"][0]))
    pairs = {
        "2 P-T": [(F["P"][i], F["P"][j]) for i, j in _pairs(K)],
        "2 RI-T": [(F["RI"][i], F["RI"][j]) for i, j in _pairs(K)],
        "P-T & P": [(F["P"][k], S["P"][k]) for k in range(K)],
        "RI-T & P": [(F["RI"][k], S["P"][k]) for k in range(K)],
    }
    sizes = {part: sum(F["P"][0][n].numel() for n in names) for part, names in groups_all.items()}
    out = {"raw": {}, "per_weight": {}, "relative": {}}
    for col, plist in pairs.items():
        raw = {part: [] for part in groups_all}
        rel = {part: [] for part in groups_all}
        for a, b in plist:
            d = parameter_distance(a, b, groups)
            for part, names in groups_all.items():
                raw[part].append(d[part])
                rel[part].append(d[part] / (0.5 * (_norm(a, names) + _norm(b, names))))
        out["raw"][col] = {p: np.array(v) for p, v in raw.items()}
        out["relative"][col] = {p: np.array(v) for p, v in rel.items()}
        out["per_weight"][col] = {p: np.array(v) / np.sqrt(sizes[p]) for p, v in raw.items()}
    out["sizes"] = sizes
    return out


def layer_slope(per_module: dict, modules=CKA_LAYERS) -> np.ndarray:
    """(K,) least-squares slope of ``per_module[m]`` (each (K,)) against depth 0 .. len(modules)-1."""
    Y = np.stack([np.asarray(per_module[m], float) for m in modules], axis=1)       # (K, L)
    x = np.arange(len(modules), dtype=float) - (len(modules) - 1) / 2
    return (Y - Y.mean(1, keepdims=True)) @ x / (x @ x)


def summary_figure(name: str, cka: dict, overlap: dict, dist: dict, estimator: str = "debiased",
                   normalisation: str = "per_weight"):
    """Three panels for one target: CKA per layer (rows of the slides' table, mean ± SE over pairs),
    the kappa of the error sets per pair type, and the normalised per-module l2 distance per column."""
    check_choice("estimator", estimator, ("biased", "debiased"))
    check_choice("normalisation", normalisation, ("raw", "per_weight", "relative"))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    x = np.arange(len(CKA_LAYERS))
    for row, v in cka[estimator].items():
        se = v.std(0, ddof=1) / np.sqrt(len(v))
        axes[0].errorbar(x, v.mean(0), yerr=se, marker="o", capsize=3, label=row)
    axes[0].set_xticks(x, CKA_LAYERS)
    axes[0].set_ylabel(f"linear CKA ({estimator})")
    axes[0].set_title(f"{name}: feature similarity")
    axes[0].legend(fontsize=7)
    kap = [overlap[p]["kappa"] for p in OVERLAP_PAIRS]
    axes[1].bar(range(3), [k.mean() for k in kap], yerr=[k.std(ddof=1) / np.sqrt(len(k)) for k in kap], capsize=4,
                color=["C1", "C2", "C3"])
    axes[1].axhline(0, color="k", lw=0.8, ls="--", label="independent errors")
    axes[1].set_xticks(range(3), OVERLAP_PAIRS, fontsize=8)
    axes[1].set_ylabel("Cohen's kappa of error sets")
    axes[1].set_title("overlap of mistakes")
    axes[1].legend(fontsize=7)
    mods = list(RESNET_MODULES)
    xm = np.arange(len(mods))
    for col in L2_COLUMNS:
        v = np.stack([dist[normalisation][col][m] for m in mods], 1)
        axes[2].errorbar(xm, v.mean(0), yerr=v.std(0, ddof=1) / np.sqrt(len(v)), marker="o", capsize=3, label=col)
    axes[2].set_xticks(xm, mods, fontsize=8)
    axes[2].set_ylabel({"raw": "l2 distance", "per_weight": "l2 / sqrt(k_i)", "relative": "l2 / module norm"}[normalisation])
    axes[2].set_title("distance per module")
    axes[2].legend(fontsize=7)
    fig.tight_layout()
    return fig


def mistake_images_figure(study: TargetStudy, sets: MistakeSets, k: int = 0, n_show: int = 6, class_names=None):
    """Rows "A" (P-T wrong, RI-T right) and "B" (P-T right, RI-T wrong) of compared index ``k``: up to
    ``n_show`` images each, the most ambiguous first for A and the least ambiguous first for B, titled
    with label / P-T / RI-T predictions and the held-out ambiguity."""
    n_show = check_positive_int("n_show", n_show)
    names = class_names or [str(c) for c in range(study.n_classes)]
    fig, axes = plt.subplots(2, n_show, figsize=(1.6 * n_show, 4.0), squeeze=False)
    pP, pR = study.probs["P"][k].argmax(-1), study.probs["RI"][k].argmax(-1)
    for r, (s, order) in enumerate((("A", -1), ("B", 1))):
        idx = sets.members[s][k]
        idx = idx[np.argsort(order * sets.scores[k][idx])][:n_show]
        for c in range(n_show):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(idx):
                i = idx[c]
                ax.imshow(study.X_test[i, 0].numpy(), cmap="gray_r" if study.name != "fashion_inverted" else "gray")
                ax.set_title(f"y={names[int(study.y_test[i])]}\nP-T {names[pP[i]]} RI-T {names[pR[i]]}\n"
                             f"amb {sets.scores[k][i]:.2f}", fontsize=7)
        axes[r, 0].text(-0.3, 0.5, {"A": "P-T wrong,\nRI-T right", "B": "P-T right,\nRI-T wrong"}[s],
                        transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=8)
    fig.suptitle(f"{study.name}: mistakes of P-T run {k} vs RI-T run {k} (amb = held-out ensemble entropy / log C)",
                 fontsize=9)
    fig.tight_layout()
    return fig
