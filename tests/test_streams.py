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


@pytest.mark.xfail(strict=True, reason="issue 10: CHMM samples still share the model's stream; "
                                       "when the CHMM draws through tasknb.device.stream this passes: drop the mark")
def test_chmm_samples_are_independent_of_the_model_and_of_each_other():
    model = CHMM(50, 10, 10, 0.8, 0.2, 0.9, seed=3)
    source, target = model.sample_source(20, seed=3), model.sample_target(20, seed=3)
    assert not torch.equal(source.c.flatten()[:10], model.F_source.flatten()[:10])
    assert not torch.equal(source.c, target.c)
