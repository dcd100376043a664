"""tasknb.landscape: CKA invariances and reference formulas, distances, vectorised interpolation against the
per-lambda loop, barriers, rewinding, module criticality (known answers, bracket checked by an independent
loop), the bounds against hand-computed values, and input validation."""
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from tasknb.device import stream
from tasknb.landscape import (
    InterpolationCurve,
    ModuleCriticality,
    barrier,
    criticality_bound,
    interpolate_states,
    interpolation_curve,
    interpolation_curve_loop,
    layer_cka,
    layer_representations,
    linear_cka,
    module_criticalities,
    module_criticality,
    module_groups,
    module_path_curve,
    network_criticality,
    pac_bayes_bound,
    parameter_distance,
    parameter_state,
    rbf_cka,
    rewind_module,
)
from tasknb.networks.cnn import init_cnn


# ----------------------------------------------------------------------------- CKA
def _reference_cka(X, Y, debiased):
    """CKA from n x n Gram matrices, straight from the HSIC formulas (biased: tr(KHLH); unbiased: Song et al.)."""
    X, Y = np.asarray(X, float), np.asarray(Y, float)
    n = len(X)
    K, L = X @ X.T, Y @ Y.T

    def hsic(K, L):
        if not debiased:
            H = np.eye(n) - np.ones((n, n)) / n
            return np.trace(K @ H @ L @ H) / (n - 1) ** 2
        Kt, Lt = K - np.diag(np.diag(K)), L - np.diag(np.diag(L))
        one = np.ones(n)
        return (np.trace(Kt @ Lt) + (one @ Kt @ one) * (one @ Lt @ one) / ((n - 1) * (n - 2))
                - 2.0 / (n - 2) * (one @ Kt @ Lt @ one)) / (n * (n - 3))

    return hsic(K, L) / math.sqrt(hsic(K, K) * hsic(L, L))


def _related(n=40, p=12, q=9, seed=0):
    g = np.random.default_rng(seed)
    X = g.standard_normal((n, p)) + 2.0
    Y = np.tanh(X @ g.standard_normal((p, q))) + 0.3 * g.standard_normal((n, q))
    return X, Y


@pytest.mark.parametrize("shape", [(10, 50, 30), (200, 3, 4)])   # Gram branch and feature branch
@pytest.mark.parametrize("debiased", [False, True])
def test_linear_cka_matches_the_gram_formula(shape, debiased):
    n, p, q = shape
    X, Y = _related(n, p, q, seed=n)
    assert linear_cka(X, Y, debiased=debiased) == pytest.approx(_reference_cka(X, Y, debiased), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("f", [linear_cka, rbf_cka])
@pytest.mark.parametrize("debiased", [False, True])
def test_cka_identity_symmetry_and_invariances(f, debiased):
    X, Y = _related()
    g = np.random.default_rng(1)
    assert f(X, X, debiased=debiased) == pytest.approx(1.0, abs=1e-10)
    base = f(X, Y, debiased=debiased)
    assert f(Y, X, debiased=debiased) == pytest.approx(base, abs=1e-12)
    Qx = np.linalg.qr(g.standard_normal((X.shape[1], X.shape[1])))[0]
    Qy = np.linalg.qr(g.standard_normal((Y.shape[1], Y.shape[1])))[0]
    assert f(X @ Qx, Y, debiased=debiased) == pytest.approx(base, abs=1e-9)
    assert f(X, Y @ Qy, debiased=debiased) == pytest.approx(base, abs=1e-9)
    assert f(3.7 * X, 0.02 * Y, debiased=debiased) == pytest.approx(base, abs=1e-9)
    # the control: a non-isotropic scaling is not an invariance
    s = np.geomspace(0.05, 20.0, X.shape[1])
    assert abs(f(X * s, Y, debiased=debiased) - base) > 0.02


def test_biased_cka_is_large_for_independent_wide_matrices_and_debiased_is_not():
    g = np.random.default_rng(0)
    X, Y = g.standard_normal((50, 2000)), g.standard_normal((50, 2000))
    assert linear_cka(X, Y) > 0.9
    assert abs(linear_cka(X, Y, debiased=True)) < 0.05


def test_biased_cka_lies_in_unit_interval_and_accepts_tensors():
    g = np.random.default_rng(2)
    for _ in range(5):
        X, Y = g.standard_normal((20, 5)), g.standard_normal((20, 7))
        v = linear_cka(torch.tensor(X, dtype=torch.float32), Y)
        assert 0.0 <= v <= 1.0
        assert 0.0 <= rbf_cka(X, Y) <= 1.0


@pytest.mark.parametrize("args, match", [
    ((np.ones(5), np.ones((5, 2))), "2-D"),
    ((np.ones((5, 2)), np.ones((6, 2))), "same number of rows"),
    ((np.ones((1, 2)), np.ones((1, 2))), "at least 2"),
    ((np.full((5, 2), np.nan), np.ones((5, 2))), "NaN"),
    ((np.ones((5, 2)), np.random.default_rng(0).standard_normal((5, 2))), "undefined"),
])
def test_linear_cka_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        linear_cka(*args)


def test_debiased_cka_needs_four_samples_and_rbf_a_positive_fraction():
    X = np.random.default_rng(0).standard_normal((3, 2))
    with pytest.raises(ValueError, match="at least 4"):
        linear_cka(X, X, debiased=True)
    with pytest.raises(ValueError, match="sigma_fraction"):
        rbf_cka(X, X, sigma_fraction=0.0)
    with pytest.raises(ValueError, match="debiased"):
        linear_cka(X, X, debiased="yes")


# ----------------------------------------------------------------------------- models
class ShiftNet(nn.Module):
    """body -> head, plus a ``shift`` module whose (B, 1) output is added to every logit: it never
    changes the arg-max, so the zero-one loss does not depend on its parameters at all."""

    def __init__(self, d_in=6, hidden=16, n_classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d_in, hidden), nn.Tanh())
        self.head = nn.Linear(hidden, n_classes)
        self.shift = nn.Linear(d_in, 1)

    def forward(self, x):
        return self.head(self.body(x)) + self.shift(x)


def _seeded(ctor, seed, scale=1.0):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ctor()
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(scale)
    return model


@pytest.fixture(scope="module")
def shift_setting():
    """A 'final' network (large weights) whose own predictions are the labels (train error 0) and an
    independent 'initial' network."""
    final = _seeded(ShiftNet, 1, scale=3.0)
    init = _seeded(ShiftNet, 2)
    X = torch.randn(300, 6, generator=stream(0, "test.landscape.inputs"))
    with torch.no_grad():
        y = final(X).argmax(-1)
    return final, parameter_state(init), parameter_state(final), X, y


def _cnn_pair():
    a, b = init_cnn(3, seed=0, device="cpu"), init_cnn(3, seed=1, device="cpu")
    X = torch.randn(45, 1, 28, 28, generator=stream(0, "test.landscape.images"))
    y = torch.randint(0, 3, (45,), generator=stream(0, "test.landscape.labels"))
    return a, parameter_state(a), {k: 4.0 * v for k, v in parameter_state(b).items()}, X, y


def test_layer_representations_are_the_flattened_layer_outputs():
    a, _, _, X, _ = _cnn_pair()
    a.train()
    reps = layer_representations(a, X, ["conv1", "head"], batch_size=16)
    assert a.training                                   # mode restored
    with torch.no_grad():
        assert torch.allclose(reps["conv1"], a.conv1(X).flatten(1), atol=1e-6)
        assert torch.allclose(reps["head"], a(X), atol=1e-6)
    assert reps["conv1"].shape == (45, 8 * 14 * 14)
    same = layer_cka(a, a, X, ["conv1", "conv2", "head"])
    assert all(v == pytest.approx(1.0, abs=1e-9) for v in same.values())
    with pytest.raises(ValueError, match="not submodules"):
        layer_representations(a, X, ["layer9"])


def test_module_groups_parameter_distance_and_interpolation_of_states():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    model.register_parameter("temperature", nn.Parameter(torch.ones(1)))
    groups = module_groups(model)
    assert groups == {"0": ["0.weight", "0.bias"], "1": ["1.weight", "1.bias"], "4": ["4.weight", "4.bias"],
                      "temperature": ["temperature"]}
    assert not any("running" in n for names in groups.values() for n in names)
    a = parameter_state(model)
    b = {k: v + 1.0 for k, v in a.items()}
    b["4.weight"] = a["4.weight"] + 2.0
    d = parameter_distance(a, b, groups)
    sizes = {k: v.numel() for k, v in a.items()}
    assert d["4"] == pytest.approx(math.sqrt(4.0 * 16 + 2))
    assert d["0"] == pytest.approx(math.sqrt(sizes["0.weight"] + sizes["0.bias"]))
    assert d["whole"] ** 2 == pytest.approx(sum(v ** 2 for k, v in d.items() if k != "whole"))
    for lam in (-1.0, 0.0, 0.5, 2.0):
        s = interpolate_states(a, b, lam)
        assert torch.allclose(s["4.weight"], a["4.weight"] + 2.0 * lam)
    ints = {"w": torch.zeros(2), "n": torch.tensor(3)}
    s = interpolate_states(ints, {"w": torch.ones(2), "n": torch.tensor(9)}, 0.5)
    assert int(s["n"]) == 3 and torch.allclose(s["w"], torch.full((2,), 0.5))
    with pytest.raises(ValueError, match="same parameter names"):
        parameter_distance(a, {k: v for k, v in b.items() if k != "temperature"})
    with pytest.raises(ValueError, match="shape"):
        parameter_distance(a, {**b, "temperature": torch.ones(2)})
    with pytest.raises(ValueError, match="lam"):
        interpolate_states(a, b, float("nan"))


# ----------------------------------------------------------------------------- interpolation
@pytest.mark.parametrize("vectorize", ["vmap", "sequential"])
def test_vectorised_interpolation_equals_the_loop_including_extrapolation(vectorize):
    model, sa, sb, X, y = _cnn_pair()
    lambdas = np.linspace(-1.0, 2.0, 13)
    fast = interpolation_curve(model, sa, sb, lambdas, X, y, batch_size=16, chunk=5, vectorize=vectorize)
    slow = interpolation_curve_loop(model, sa, sb, lambdas, X, y, batch_size=20)
    assert np.allclose(fast.loss, slow.loss, atol=1e-5)
    assert np.allclose(fast.accuracy, slow.accuracy, atol=1e-9)
    assert np.ptp(fast.loss) > 0.1                       # the curve is not flat: the comparison means something
    # the model's own parameters are untouched, and lambda = 0 is the network of state_a
    assert all(torch.equal(p, sa[k]) for k, p in model.named_parameters())
    with torch.no_grad():
        acc0 = float((model(X).argmax(-1) == y).double().mean())
    assert fast.accuracy[np.flatnonzero(lambdas == 0)[0]] == pytest.approx(acc0)


def test_interpolation_refuses_batchnorm_and_foreign_states():
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.LazyLinear(2))
    bn(torch.zeros(1, 1, 5, 5))
    s = parameter_state(bn)
    with pytest.raises(ValueError, match="running statistics"):
        interpolation_curve(bn, s, s, [0, 1], torch.zeros(3, 1, 5, 5), torch.zeros(3, dtype=torch.long))
    model, sa, sb, X, y = _cnn_pair()
    with pytest.raises(ValueError, match="exactly the model's parameters"):
        interpolation_curve(model, {k: v for k, v in sa.items() if k != "head.bias"}, sb, [0, 1], X, y)
    with pytest.raises(ValueError, match="y must be"):
        interpolation_curve(model, sa, sb, [0, 1], X, y.float())
    with pytest.raises(ValueError, match="lambdas"):
        interpolation_curve(model, sa, sb, [], X, y)
    huge = {k: v * 1e30 for k, v in sb.items()}
    with pytest.raises(ValueError, match="not finite"):
        interpolation_curve(model, sa, huge, [0.0, 1e10], X, y)
    with pytest.raises(ValueError, match="vectorize"):
        interpolation_curve(model, sa, sb, [0, 1], X, y, vectorize="gpu")


def test_barrier_definition():
    lam = np.array([-0.5, 0.0, 0.25, 0.5, 1.0, 1.5])
    acc = np.array([0.0, 0.9, 0.7, 0.5, 0.7, 0.0])
    loss = np.array([9.0, 0.2, 0.4, 1.0, 0.6, 9.0])
    curve = InterpolationCurve(lam, loss, acc, 10)
    assert barrier(curve) == pytest.approx((0.5 * 0.9 + 0.5 * 0.7) - 0.5)      # points outside [0, 1] ignored
    assert barrier(curve, "loss") == pytest.approx(1.0 - 0.4)
    flat = InterpolationCurve(np.array([0.0, 0.5, 1.0]), np.array([1.0, 0.5, 1.0]), np.array([0.5, 0.9, 0.7]), 10)
    assert barrier(flat) == 0.0 and barrier(flat, "loss") == 0.0
    with pytest.raises(ValueError, match="lam = 0 and lam = 1"):
        barrier(InterpolationCurve(np.array([0.0, 0.5]), np.zeros(2), np.zeros(2), 1))
    with pytest.raises(ValueError, match="metric"):
        barrier(curve, "auc")


# ----------------------------------------------------------------------------- rewinding
def test_rewind_and_module_path(shift_setting):
    final, s0, sF, X, y = shift_setting
    groups = module_groups(final)
    rewound = rewind_module(sF, s0, "head", groups)
    assert torch.equal(rewound["head.weight"], s0["head.weight"]) and torch.equal(rewound["body.0.weight"],
                                                                                   sF["body.0.weight"])
    ref = interpolation_curve_loop(final, rewound, sF, [0.0, 0.5, 1.0], X, y)   # only the head differs
    for vectorize in ("vmap", "sequential"):
        path = module_path_curve(final, s0, sF, "head", [0.0, 0.5, 1.0], X, y, chunk=2, vectorize=vectorize)
        assert np.allclose(path.loss, ref.loss, atol=1e-5) and np.allclose(path.error, ref.error)
    assert path.error[-1] == 0.0 and path.error[0] > 0.3
    assert path.distance == pytest.approx(parameter_distance(s0, sF, groups)["head"])
    with pytest.raises(ValueError, match="module must be one of"):
        rewind_module(sF, s0, "fc", groups)


# ----------------------------------------------------------------------------- criticality
def _reference_noisy_error(model, s0, sF, names, module, alpha, sigma, X, y, n_noise, seed):
    """E_u[L_S] by a plain loop: load each perturbed state, count mistakes (same documented noise stream)."""
    errors = []
    for r in range(n_noise):
        g = stream(seed, "landscape.criticality." + module, r)
        state = {k: v.clone() for k, v in sF.items()}
        for k in names:
            z = torch.randn(s0[k].shape, generator=g, dtype=torch.float64).float()
            state[k] = (1 - alpha) * s0[k] + alpha * sF[k] + sigma * z
        model.load_state_dict(state)
        with torch.no_grad():
            errors.append(float((model(X).argmax(-1) != y).double().mean()))
    model.load_state_dict(sF)
    return float(np.mean(errors))


def test_criticality_known_answers(shift_setting):
    final, s0, sF, X, y = shift_setting
    kw = dict(alphas=np.linspace(0, 1, 6), n_noise=3, sigma_steps=6, seed=3)
    shift = module_criticality(final, s0, sF, "shift", X, y, 0.05, **kw)
    head = module_criticality(final, s0, sF, "head", X, y, 0.05, **kw)
    assert shift.distance > 1.0 and shift.mu == 0.0 and shift.alpha == 0.0       # harmless however far it moved
    assert head.feasible and 0.0 < head.mu < math.inf and head.alpha > 0
    assert head.noisy_error <= 0.05
    zero_distance = module_criticality(final, {**s0, "head.weight": sF["head.weight"], "head.bias": sF["head.bias"]},
                                       sF, "head", X, y, 0.05, **kw)
    assert zero_distance.distance == 0.0 and zero_distance.mu == 0.0
    assert network_criticality({"shift": shift, "head": head}) == pytest.approx(head.mu)
    every = module_criticalities(final, s0, sF, X, y, 0.05, **kw)
    assert list(every) == ["body", "head", "shift"] and every["head"].mu == head.mu and every["shift"].mu == 0.0


def test_criticality_bracket_is_verified_by_an_independent_loop(shift_setting):
    final, s0, sF, X, y = shift_setting
    res = module_criticality(final, s0, sF, "head", X, y, 0.05, alphas=[0.0, 0.5, 0.8, 1.0], n_noise=2,
                             sigma_steps=5, seed=5, prune=False)
    names = module_groups(final)["head"]
    checked = 0
    for a, lo, hi in zip(res.alphas, res.sigma_feasible, res.sigma_infeasible):
        if lo > 0:
            assert _reference_noisy_error(final, s0, sF, names, "head", a, lo, X, y, 2, 5) <= 0.05
            checked += 1
        if np.isfinite(hi):
            assert _reference_noisy_error(final, s0, sF, names, "head", a, hi, X, y, 2, 5) > 0.05
            checked += 1
    assert checked >= 4
    feasible = res.sigma_feasible > 0
    assert res.mu == pytest.approx(np.min(res.alphas[feasible] ** 2 * res.distance ** 2
                                          / res.sigma_feasible[feasible] ** 2))
    pruned = module_criticality(final, s0, sF, "head", X, y, 0.05, alphas=[0.0, 0.5, 0.8, 1.0], n_noise=2,
                                sigma_steps=5, seed=5, prune=True)
    assert (pruned.mu, pruned.alpha, pruned.sigma) == (res.mu, res.alpha, res.sigma)
    assert len(pruned.evaluations) <= len(res.evaluations)
    again = module_criticality(final, s0, sF, "head", X, y, 0.05, alphas=[0.0, 0.5, 0.8, 1.0], n_noise=2,
                               sigma_steps=5, seed=5, prune=False)
    assert np.array_equal(again.evaluations, res.evaluations)                    # deterministic
    vmapped = module_criticality(final, s0, sF, "head", X, y, 0.05, alphas=[0.0, 0.5, 0.8, 1.0], n_noise=2,
                                 sigma_steps=5, seed=5, prune=False, vectorize="vmap", chunk=3)
    assert np.allclose(vmapped.evaluations, res.evaluations)


def test_criticality_infeasible_is_inf_with_a_warning_and_relative_noise_differs(shift_setting):
    final, s0, sF, X, y = shift_setting
    y_noisy = y.clone()
    y_noisy[:30] = (y_noisy[:30] + 1) % 3                                       # train error 0.1 at the final weights
    with pytest.warns(RuntimeWarning, match="mu = inf"):
        res = module_criticality(final, s0, sF, "head", X, y_noisy, 0.05, alphas=[0.5, 1.0], n_noise=2, sigma_steps=2)
    assert res.mu == math.inf and not res.feasible and res.alpha is None and "no (alpha, sigma)" in res.message
    assert not np.any(np.isnan(res.evaluations))
    assert criticality_bound(0.05, res.mu, 100) == math.inf
    assert network_criticality([res, 1.0]) == math.inf
    kw = dict(alphas=[0.0, 0.5, 1.0], n_noise=2, sigma_steps=4, prune=False)
    absolute = module_criticality(final, s0, sF, "head", X, y, 0.05, **kw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        relative = module_criticality(final, s0, sF, "head", X, y, 0.05, noise="relative", **kw)
    assert relative.feasible and not np.array_equal(relative.sigma_feasible, absolute.sigma_feasible)


@pytest.mark.parametrize("kwargs, match", [
    (dict(epsilon=1.5), "epsilon"),
    (dict(alphas=[0.0, 0.5]), "contain 1"),
    (dict(alphas=[0.5, 1.2]), "alphas"),
    (dict(noise="proportional"), "noise"),
    (dict(module="fc"), "module must be one of"),
    (dict(n_noise=0), "n_noise"),
])
def test_criticality_rejects_bad_input(shift_setting, kwargs, match):
    final, s0, sF, X, y = shift_setting
    args = dict(module="head", epsilon=0.1)
    args.update(kwargs)
    module, epsilon = args.pop("module"), args.pop("epsilon")
    with pytest.raises(ValueError, match=match):
        module_criticality(final, s0, sF, module, X, y, epsilon, **args)


# ----------------------------------------------------------------------------- bounds
def test_pac_bayes_and_criticality_bounds_by_hand():
    # two modules: k = (10, 4), alpha = (0.5, 1), sigma = (0.1, 0.2), d = (2, 3), m = 1000, delta = 0.05
    kl = 0.25 * (10 * math.log(1 + 0.25 * 4 / (10 * 0.01)) + 4 * math.log(1 + 9 / (4 * 0.04)))
    expected = 0.03 + math.sqrt((kl + math.log(1000 / 0.05)) / 999)
    got = pac_bayes_bound(0.03, [0.5, 1.0], [0.1, 0.2], [2.0, 3.0], [10, 4], 1000, 0.05)
    assert got == pytest.approx(expected, rel=1e-12)
    assert criticality_bound(0.03, 40.0, 1000, 0.05) == pytest.approx(0.03 + math.sqrt((10.0 + math.log(2e4)) / 1000))
    # alpha = 0 (every module rewound) leaves only the confidence term
    assert pac_bayes_bound(0.0, [0.0], [0.5], [7.0], [3], 50) == pytest.approx(math.sqrt(math.log(50 / 0.05) / 49))
    with pytest.raises(ValueError, match="sigmas"):
        pac_bayes_bound(0.0, [0.5], [0.0], [1.0], [3], 50)
    with pytest.raises(ValueError, match="one value per module"):
        pac_bayes_bound(0.0, [0.5, 0.5], [0.1], [1.0], [3], 50)
    with pytest.raises(ValueError, match="delta"):
        criticality_bound(0.1, 1.0, 100, delta=1.0)
    with pytest.raises(ValueError, match="mu"):
        criticality_bound(0.1, -1.0, 100)
    with pytest.raises(ValueError, match="n_params"):
        pac_bayes_bound(0.0, [0.5], [0.1], [1.0], [2.5], 50)
    assert isinstance(ModuleCriticality, type)
