"""Unit tests of the N4 protocol (tasknb.chapters.n4_pretraining_checkpoints): tiny sizes, a tmp cache."""
import math

import numpy as np
import pytest

from tasknb.chapters.n4_pretraining_checkpoints import (benefit_fraction, checkpoint_runs, loss_area, saturation,
                                                        source_accuracy_at)
from tasknb.pretraining import (SourceConfig, TrainingRecord, TrainSpec, pretrained_source, source_config,
                                start_state, target_images)


@pytest.fixture(scope="module")
def tiny_source(tmp_path_factory):
    cfg = source_config(width=2, n_train=80, steps=10, seed=0)
    return pretrained_source(cfg, cache_dir=tmp_path_factory.mktemp("models"), device="cpu")


def _record(steps, loss):
    return TrainingRecord(np.array(steps), {"train": {"loss": np.array(loss, float), "accuracy": np.zeros(len(steps))}},
                          {}, {})


def test_loss_area_is_the_trapezoid_mean():
    assert loss_area(_record([0, 10, 20], [2.0, 1.0, 0.0])) == pytest.approx(1.0)
    assert loss_area(_record([0, 5, 20], [1.0, 1.0, 1.0])) == pytest.approx(1.0)
    # a faster run (lower loss early) has a smaller area
    assert loss_area(_record([0, 10, 20], [2.0, 0.2, 0.0])) < loss_area(_record([0, 10, 20], [2.0, 1.5, 0.0]))
    with pytest.raises(ValueError, match="eval_set"):
        loss_area(_record([0, 10], [1.0, 1.0]), eval_set="test")
    with pytest.raises(ValueError, match="two evaluated steps"):
        loss_area(_record([0], [1.0]))


def test_saturation_finds_the_first_checkpoint_within_tolerance():
    rng = np.random.default_rng(0)
    noise = lambda: 0.001 * rng.standard_normal(6)
    vals = {0: 0.5 + noise(), 1: 0.7 + noise(), 2: 0.9 + noise(), 3: 0.9 + noise()}
    i, diffs = saturation(vals, [0, 1, 2, 3], tol=0.02, sign=+1)
    assert i == 2
    assert float(diffs[0].mean) == pytest.approx(0.4, abs=0.01)  # last - first, positive: the last is better
    # for a loss (sign -1) the orientation flips: a lower value at the last checkpoint is a positive difference
    i, diffs = saturation({c: -v for c, v in vals.items()}, [0, 1, 2, 3], tol=0.02, sign=-1)
    assert i == 2 and float(diffs[0].mean) > 0
    i, _ = saturation({0: 0.5 + noise(), 1: 0.9 + noise()}, [0, 1], tol=0.02)
    assert i is None
    with pytest.raises(ValueError, match="sign"):
        saturation(vals, [0, 1], tol=0.1, sign=0)


def test_benefit_fraction():
    f = benefit_fraction({0: [1.0, 1.0], 5: [2.0, 2.0], 9: [3.0, 3.0]}, [0, 5, 9])
    np.testing.assert_allclose(f, [0.0, 0.5, 1.0])
    assert np.isnan(benefit_fraction({0: [1.0], 9: [1.0]}, [0, 9])).all()


def test_checkpoint_runs_pairing_and_starts(tiny_source):
    task = target_images("fashion_classes", "train", 24, 0)
    test = target_images("fashion_classes", "test", 20, 0)
    spec = TrainSpec(steps=4, batch_size=8, eval_every=2)
    cks = sorted(tiny_source.states)
    runs = checkpoint_runs(tiny_source, task, test, spec, 2, 0, checkpoints=cks[:2], device="cpu")
    assert runs.starts == (cks[0], cks[1], "RI")
    assert runs.curves("RI").shape == (2, 3) and runs.test_accuracy["RI"].shape == (2,)
    assert np.isfinite(runs.speed(cks[0])).all() and runs.steps_to("RI", 2.0).tolist() == [math.inf, math.inf]
    # at step 0 a run from a checkpoint is the checkpoint's body with new head k: its training loss there
    # equals that of start_state("P", ..., k) -- and differs between the two checkpoints (different bodies)
    l0 = {c: runs.curves(c)[:, 0] for c in cks[:2]}
    assert not np.allclose(l0[cks[0]], l0[cks[1]])
    # deterministic
    again = checkpoint_runs(tiny_source, task, test, spec, 2, 0, checkpoints=cks[:1], device="cpu")
    np.testing.assert_array_equal(again.curves(cks[0]), runs.curves(cks[0]))
    np.testing.assert_array_equal(again.curves("RI"), runs.curves("RI"))


def test_checkpoint_runs_rejects_bad_input(tiny_source):
    task = target_images("fashion_classes", "train", 24, 0)
    test = target_images("fashion_classes", "test", 20, 0)
    spec = TrainSpec(steps=2, batch_size=8, eval_every=1)
    with pytest.raises(ValueError, match="checkpoints"):
        checkpoint_runs(tiny_source, task, test, spec, 2, 0, checkpoints=[7777], device="cpu")
    with pytest.raises(ValueError, match="n_seeds"):
        checkpoint_runs(tiny_source, task, test, spec, 1, 0, device="cpu")
    with pytest.raises(ValueError, match="source"):
        checkpoint_runs({}, task, test, spec, 2, 0, device="cpu")
    digits = target_images("digits", "test", 20, 0)
    with pytest.raises(ValueError, match="same classes"):
        checkpoint_runs(tiny_source, task, digits, spec, 2, 0, device="cpu")


def test_source_accuracy_at_matches_its_curve(tiny_source):
    acc = source_accuracy_at(tiny_source, [0, tiny_source.config.spec.steps], device="cpu")
    # the source curve was evaluated on the same test images at steps 0 and the last
    np.testing.assert_allclose(acc, [tiny_source.accuracy[0], tiny_source.accuracy[-1]])
