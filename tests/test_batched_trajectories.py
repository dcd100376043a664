"""tasknb.batched_trajectories: the vmap-ed seeds follow the sequential recorder (same inits, same
batches, element-wise optimizers), for both readouts, and validate their inputs the same way."""
import numpy as np
import pytest

from tasknb.trajectories import record_trajectories, record_trajectories_batched

SMALL = dict(classes=(1, 7, 9), n_seeds=3, steps=12, checkpoints=[0, 3, 12], n_test=80, n_train=600,
             batch_size=16, device="cpu")


@pytest.mark.parametrize("kw", [
    dict(optimizer="sgd", lr=0.05),
    dict(optimizer="adam", lr=0.01, readout="imprint", union_classes=range(10), n_imprint=6),
])
def test_batched_seeds_match_the_sequential_recorder(kw):
    a = record_trajectories(**SMALL, **kw)
    b = record_trajectories_batched(**SMALL, **kw)
    assert b.probs.shape == a.probs.shape and b.seeds == a.seeds and np.array_equal(b.labels, a.labels)
    # float reassociation only: over a dozen steps the runs must not drift apart
    assert np.abs(a.probs - b.probs).max() < 1e-4
    # and they did train: the last checkpoint differs from the first
    assert np.abs(b.probs[:, -1] - b.probs[:, 0]).max() > 1e-2
    assert b.config["batched"] is True


def test_batched_is_deterministic():
    a = record_trajectories_batched(**{**SMALL, "steps": 4, "checkpoints": [0, 4]})
    b = record_trajectories_batched(**{**SMALL, "steps": 4, "checkpoints": [0, 4]})
    assert np.array_equal(a.probs, b.probs)


@pytest.mark.parametrize("kw, message", [
    ({"n_seeds": 0}, r"n_seeds must be an integer >= 1"),
    ({"optimizer": "lbfgs"}, r"optimizer must be one of 'sgd', 'adam'"),
    ({"union_classes": range(10), "readout": "softmax"}, r"union_classes needs a feature readout"),
    ({"readout": "probe"}, r"readout must be one of 'softmax', 'imprint'"),
])
def test_batched_validates_by_name(kw, message):
    with pytest.raises(ValueError, match=message):
        record_trajectories_batched(**{**SMALL, **kw})
