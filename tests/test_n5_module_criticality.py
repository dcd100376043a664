"""N5's protocol at tiny sizes: rewinding against a hand-built network, the alpha-paths' endpoints against
rewinding and the final network, criticality bookkeeping, the joint noisy network, the bound's terms."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tasknb.chapters import n5_module_criticality as n5
from tasknb.networks.resnet import SmallResNet, init_resnet
from tasknb.pretraining import TrainSpec, evaluate, get_state, load_state

WIDTH = 2


@pytest.fixture(scope="module")
def setup():
    train, test = n5.load_target("digits", 40, 40, seed=0)
    source = get_state(init_resnet(5, WIDTH, 123, "cpu"))       # any 5-class network stands in for P
    runs = n5.train_models(train, TrainSpec(steps=8, batch_size=8, eval_every=4), 2, 0, source, WIDTH, device="cpu")
    return train, test, runs


@pytest.fixture(scope="module")
def rewound(setup):
    train, test, runs = setup
    return n5.rewind_errors(runs, WIDTH, train, test, device="cpu")


@pytest.fixture(scope="module")
def loose(setup):
    train, _, runs = setup
    return n5.criticalities(runs, WIDTH, train, 0.9, alphas=[0.0, 0.5, 1.0], sigma_steps=2, n_noise=2, seed=3,
                            device="cpu")


def test_load_target_draws_its_own_subsets():
    a, _ = n5.load_target("digits", 30, 20, seed=0)
    b, _ = n5.load_target("digits", 30, 20, seed=1)
    assert a.X.shape == (30, 1, 28, 28) and not torch.equal(a.X, b.X)
    assert torch.equal(n5.first_images(a, 10).X, a.X[:10])
    with pytest.raises(ValueError, match="n must be at most"):
        n5.first_images(a, 31)


def test_module_sizes_sum_to_the_network(setup):
    _, _, runs = setup
    k = n5.module_sizes(runs, WIDTH)
    assert k.sum() == sum(p.numel() for p in SmallResNet(runs.n_classes, WIDTH).parameters())
    assert len(k) == len(n5.MODULES)


def test_rewinding_matches_a_hand_built_network(setup, rewound):
    train, test, runs = setup
    rw = rewound
    model = SmallResNet(runs.n_classes, WIDTH)
    for kind in n5.KINDS:
        for k in range(2):
            init, final = runs.starts[kind][k], runs.records[kind][k].final
            load_state(model, final)
            assert rw.final_test[kind][k] == pytest.approx(1 - evaluate(model, test.X, test.y)[1])
            # fc by hand: the start's head on the final body
            hand = {n: (init[n] if n.startswith("fc.") else final[n]) for n in final}
            load_state(model, hand)
            assert rw.test[kind][k, 5] == pytest.approx(1 - evaluate(model, test.X, test.y)[1])
            assert rw.train[kind][k, 0] == pytest.approx(
                1 - evaluate(load_state(model, {n: (init[n] if n.startswith("conv1.") else final[n]) for n in final}),
                             train.X, train.y)[1])
    # the P-T head starts from the new head's init, so rewinding it changes the network (fc distance > 0)
    assert np.all(rw.distance["P"][:, 5] > 0) and np.all(rw.distance["RI"] > 0)


def test_alpha_paths_end_at_rewinding_and_at_the_final_network(setup, rewound):
    train, test, runs = setup
    rw = rewound
    paths = n5.alpha_paths(runs, WIDTH, train, None, [0.0, 1.0], device="cpu")
    for kind in n5.KINDS:
        np.testing.assert_allclose(paths.train[kind][:, :, 0], rw.train[kind], atol=1e-9)
        np.testing.assert_allclose(paths.train[kind][:, :, -1], np.repeat(rw.final_train[kind][:, None], 6, 1), atol=1e-9)
    assert np.all(np.isnan(paths.test["P"]))


def test_criticalities_bookkeeping_and_determinism(setup, loose):
    train, _, runs = setup
    kw = dict(alphas=[0.0, 0.5, 1.0], sigma_steps=2, n_noise=2, seed=3, device="cpu")
    a = loose
    b = n5.criticalities(runs, WIDTH, train, 0.9, **kw)
    for kind in n5.KINDS:
        np.testing.assert_array_equal(a.mu[kind], b.mu[kind])
        assert np.all(a.mu[kind] >= 0)
        np.testing.assert_allclose(a.network[kind], a.mu[kind].sum(1))
        np.testing.assert_allclose(a.per_weight(kind), a.mu[kind] / a.n_params)
    # a strict eps forces larger alphas or smaller sigmas than a loose one: mu cannot fall
    strict = n5.criticalities(runs, WIDTH, train, 0.3, **kw)
    for kind in n5.KINDS:
        fin = np.isfinite(strict.mu[kind])
        assert np.all(strict.mu[kind][fin] >= a.mu[kind][fin] - 1e-9)


def _fake(crit, alpha, sigma, noise="absolute"):
    out = n5.CriticalityResult(crit.epsilon, noise, {}, {}, {}, {}, crit.distance, {}, crit.n_params)
    for kind in n5.KINDS:
        shape = crit.distance[kind].shape
        out.alpha[kind], out.sigma[kind] = np.full(shape, alpha), np.full(shape, sigma)
        out.mu[kind] = alpha ** 2 * crit.distance[kind] ** 2 / sigma ** 2
        out.network[kind] = out.mu[kind].sum(1)
    return out


def test_joint_noisy_network_is_the_final_one_without_noise_and_chance_with_much(setup, rewound, loose):
    train, test, runs = setup
    crit, rw = loose, rewound
    quiet = n5.joint_noisy_errors(runs, WIDTH, _fake(crit, 1.0, 1e-9), {"test": test}, 2, 0, device="cpu")
    loud = n5.joint_noisy_errors(runs, WIDTH, _fake(crit, 1.0, 1.0), {"test": test}, 2, 0, device="cpu")
    for kind in n5.KINDS:
        np.testing.assert_allclose(quiet["test"][kind], rw.final_test[kind], atol=1e-9)
        assert np.all(loud["test"][kind] > 0.6)        # 10 classes: sigma = 1 on every weight destroys the network
    with pytest.raises(ValueError, match="absolute"):
        n5.joint_noisy_errors(runs, WIDTH, _fake(crit, 1.0, 0.1, "relative"), {"test": test}, 1, 0, device="cpu")


def test_bound_terms_by_hand(setup, rewound, loose):
    train, test, runs = setup
    crit, rw = _fake(loose, 0.5, 0.1), rewound
    bd = n5.bounds(runs, WIDTH, crit, train, test, rw.final_test, 2, 0, delta=0.1, device="cpu")
    m = train.X.shape[0]
    k = crit.n_params.astype(float)
    for kind in n5.KINDS:
        for s in range(2):
            kl = 0.25 * np.sum(k * np.log1p(crit.mu[kind][s] / k))
            assert bd.kl[kind][s] == pytest.approx(kl)
            assert bd.pac_bayes[kind][s] == pytest.approx(bd.noisy_train[kind][s] + math.sqrt((kl + math.log(m / 0.1)) / (m - 1)))
            assert bd.simplified[kind][s] == pytest.approx(0.9 + math.sqrt((crit.network[kind][s] / 4 + math.log(m / 0.1)) / m))
    assert bd.log_term == pytest.approx(math.log(m / 0.1))
