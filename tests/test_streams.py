"""One random stream per draw: tasknb.device.stream(seed, purpose) and its NumPy counterpart."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from tasknb.chmm import CHMM
from tasknb.device import generator, numpy_stream, stream

PURPOSES = ("chmm.model", "chmm.source", "chmm.target", "monte_carlo", "network.init")


def test_same_seed_and_purpose_give_the_same_numbers():
    a = torch.randn(8, generator=stream(5, "chmm.source"))
    b = torch.randn(8, generator=stream(5, "chmm.source"))
    assert torch.equal(a, b)
    assert np.array_equal(numpy_stream(5, "x").normal(size=8), numpy_stream(5, "x").normal(size=8))


def test_every_seed_purpose_pair_has_its_own_stream():
    first = {(s, p): tuple(torch.randn(4, generator=stream(s, p)).tolist()) for s in range(200) for p in PURPOSES}
    assert len(set(first.values())) == len(first)
    first_np = {(s, p): tuple(numpy_stream(s, p).normal(size=4)) for s in range(50) for p in PURPOSES}
    assert len(set(first_np.values())) == len(first_np)


def test_no_plain_seed_replays_a_stream():
    plain = {tuple(torch.randn(4, generator=generator(s)).tolist()) for s in range(1000)}
    for s in range(50):
        for p in PURPOSES:
            assert tuple(torch.randn(4, generator=stream(s, p)).tolist()) not in plain


@pytest.mark.parametrize("seed, purpose, match", [(-1, "a", "seed"), (1.5, "a", "seed"), (0, "", "purpose"),
                                                  (0, 3, "purpose")])
def test_bad_arguments_name_the_parameter(seed, purpose, match):
    with pytest.raises(ValueError, match=match):
        stream(seed, purpose)
    with pytest.raises(ValueError, match=match):
        numpy_stream(seed, purpose)


def _model_entries(model):
    """Every number drawn for the model's matrices, as a set of floats."""
    return set(torch.cat([model.F_source.flatten(), model.theta_source, model.F_target.flatten(),
                          model.theta_target]).double().tolist())


@pytest.mark.parametrize("model_seed", [0, 3, 17])
def test_chmm_samples_are_independent_of_the_model_and_of_each_other(model_seed):
    """For every sample seed s: the latents of sample_source(M, s) and sample_target(M, s) share no number
    with the model's matrices (a replayed stream would share all of them, as the old code did for
    s = the model seed) and none with each other; their empirical correlation is that of independent draws."""
    model = CHMM(50, 10, 10, 0.8, 0.2, 0.9, seed=model_seed, dtype=torch.float64)   # float64: no chance ties
    entries = _model_entries(model)
    for s in range(40):
        src, tgt = model.sample_source(60, seed=s), model.sample_target(60, seed=s)
        assert not (set(src.c.double().flatten().tolist()) & entries), s
        assert not (set(tgt.c.double().flatten().tolist()) & entries), s
        assert not (set(src.c.double().flatten().tolist()) & set(tgt.c.double().flatten().tolist())), s
    big_s, big_t = model.sample_source(20_000, seed=model_seed), model.sample_target(20_000, seed=model_seed)
    r = np.corrcoef(big_s.c.double().flatten().numpy(), big_t.c.double().flatten().numpy())[0, 1]
    assert abs(r) < 4 / np.sqrt(big_s.c.numel()), r          # 4 standard errors of a null correlation


def test_chmm_samples_stay_reproducible():
    model = CHMM(40, 8, 6, 0.7, 0.25, 0.5, seed=2)
    for draw in ("sample_source", "sample_target"):
        a, b = getattr(model, draw)(30, seed=11), getattr(CHMM(40, 8, 6, 0.7, 0.25, 0.5, seed=2), draw)(30, seed=11)
        assert torch.equal(a.X, b.X) and torch.equal(a.y, b.y)
        assert not torch.equal(a.c, getattr(model, draw)(30, seed=12).c)


def test_realizations_of_one_seed_are_not_the_realizations_of_the_next():
    """Realization k of seed s is its own stream: seed 1's realizations are not seed 0's shifted by one,
    as they were with CHMM(seed=seed + k)."""
    r = {(s, k): CHMM(30, 5, 5, seed=s, realization=k).F_source for s in range(3) for k in range(3)}
    for (s1, k1), F1 in r.items():
        for (s2, k2), F2 in r.items():
            if (s1, k1) != (s2, k2):
                assert not torch.equal(F1, F2), ((s1, k1), (s2, k2))
    assert torch.equal(CHMM(30, 5, 5, seed=1, realization=2).F_source, r[(1, 2)])


def test_stack_samples_are_independent_for_a_repeated_model():
    from tasknb.chmm import stack_samples

    model = CHMM(30, 6, 6, seed=0)
    X, _ = stack_samples([model] * 3, 20, "target", seed=5)
    assert not torch.equal(X[0], X[1]) and not torch.equal(X[1], X[2])


def test_derived_seeds_differ_by_purpose_and_key():
    from tasknb.device import derived_seed

    seeds = {derived_seed(s, p, k) for s in range(20) for p in PURPOSES for k in range(5)}
    assert len(seeds) == 20 * len(PURPOSES) * 5
    assert derived_seed(3, "a", 1) == derived_seed(3, "a", 1)
    with pytest.raises(ValueError, match="keys"):
        derived_seed(0, "a", -1)
