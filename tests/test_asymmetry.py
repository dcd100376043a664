"""tasknb.chapters.c5_asymmetry: shapes, determinism, equivalence with the one-family protocol, validation."""
import numpy as np
import pytest
import torch

from tasknb.chapters.c5_asymmetry import (DIRECTIONS, asymmetry_sweep, hard_easy_curves, train_sources,
                              transfer_curves_many)
from tasknb.chapters.c5_asymmetry import AsymmetrySweep, HardEasy
from tasknb.feature_transfer import TransferCurves
from tasknb.chmm import CHMM
from tasknb.feature_transfer import train_source, transfer_learning_curves
from tasknb.training import TrainingConfig

D, H = 40, 20
FAST = dict(source=TrainingConfig(3, 1e-2, 100), scratch=TrainingConfig(5, 0.1, 1000),
            finetune=TrainingConfig(5, 0.01, 1000))


def small_sweep(seed=0, **kw):
    args = dict(L_total=20, L_target_values=[5, 10, 15], D=D, H=H, alphas=[0.5, 2.0], M_cut=8, M_source=300,
                M_grid=[4, 16], realizations=2, lam=1e-2, n_samples=2000, M_test=300, seed=seed, device="cpu")
    return asymmetry_sweep(**{**args, **FAST, **kw})


@pytest.fixture(scope="module")
def sweep():
    return small_sweep()


def test_sweep_shapes(sweep):
    n, K = 3, 2
    assert sweep.L_target.tolist() == [5, 10, 15] and sweep.L_source.tolist() == [15, 10, 5]
    assert sweep.theory["TF"].shape == sweep.theory["RF"].shape == sweep.gain().shape == (n, 2)
    assert sweep.theory_cut["TF"].shape == (n,) and sweep.converged.shape == (n, 3)
    assert set(sweep.errors) == {"TF", "RF", "2L", "ft-TF"}
    assert all(e.shape == (n, K) for e in sweep.errors.values()) and sweep.source_error.shape == (n, K)
    assert sweep.numerics("2L").shape == (n,) and sweep.alpha_cut == pytest.approx(8 / H)
    assert sweep.mirror_pairs() == [(0, 2)] and sweep.index(10) == 1
    assert [c.M.tolist() for c in sweep.curves] == [[4, 8, 16]] * n
    assert all(c.source_params.K == K for c in sweep.curves)
    np.testing.assert_array_equal(sweep.errors["TF"][1], sweep.curves[1].errors["TF"][1])
    assert np.all((0 <= sweep.theory["TF"]) & (sweep.theory["TF"] <= 0.5))
    pair = sweep.hard_easy(5)
    assert (pair.L_hard, pair.L_easy) == (15, 5)
    assert pair.curves["hard→easy"] is sweep.curves[0] and pair.curves["easy→hard"] is sweep.curves[2]
    np.testing.assert_array_equal(pair.theory["easy→hard"]["RF"], sweep.theory["RF"][2])
    assert isinstance(pair.gain("hard→easy", "2L"), float)


def test_sweep_is_deterministic(sweep):
    again = small_sweep()
    for name in ("TF", "RF"):
        np.testing.assert_array_equal(sweep.theory[name], again.theory[name])
    for name in sweep.errors:
        np.testing.assert_array_equal(sweep.errors[name], again.errors[name])
    other = small_sweep(seed=1, M_grid=None, learners=("TF", "RF"))
    assert not np.array_equal(sweep.theory["TF"], other.theory["TF"])
    assert set(other.errors) == {"TF", "RF"} and [c.M.tolist() for c in other.curves] == [[8]] * 3


def test_batched_protocol_matches_one_family():
    sets = [[CHMM(D, Ls, Lt, seed=3, realization=k) for k in range(2)] for Ls, Lt in ((15, 5), (5, 15))]
    cfg = FAST["source"]
    sources = train_sources(sets, H, 300, cfg, lam=1e-2, seed=3)
    alone = train_source(sets[1], H, 300, cfg, lam=1e-2, seed=3, progress=False)[0].params
    torch.testing.assert_close(sources[1].W1, alone.W1, atol=1e-5, rtol=0)
    many = transfer_curves_many(sets, sources, [6, 12], 1e-2, scratch=FAST["scratch"], finetune=FAST["finetune"],
                                M_test=300, seed=3)
    ref = transfer_learning_curves(D, H, 5, 15, M_grid=[6, 12], M_test=300, realizations=2, lam=1e-2,
                                   scratch=FAST["scratch"], finetune=FAST["finetune"], seed=3, device="cpu",
                                   progress=False, source_params=sources[1])
    for name in ref.errors:
        np.testing.assert_allclose(many[1].errors[name], ref.errors[name], atol=2 / 300)
    np.testing.assert_array_equal(many[1].source_error, ref.source_error)


def test_hard_easy_curves():
    kw = dict(D=D, H=H, M_grid=[4, 16], M_source=300, realizations=2, lam=1e-2, M_test=300, **FAST)
    he = hard_easy_curves(15, 5, alphas=[0.5, 2.0], n_samples=2000, **kw)
    assert set(he.curves) == set(DIRECTIONS) and he.curves["hard→easy"].errors["TF"].shape == (2, 2)
    assert he.curves["hard→easy"].config["L_target"] == 5 and he.curves["easy→hard"].config["L_target"] == 15
    assert he.theory["easy→hard"]["TF"].shape == (2,) and he.converged["hard→easy"].shape == (2,)
    again = hard_easy_curves(15, 5, alphas=None, sources={d: he.curves[d].source_params for d in DIRECTIONS}, **kw)
    assert again.theory == {}
    for d in DIRECTIONS:
        np.testing.assert_array_equal(again.curves[d].errors["2L"], he.curves[d].errors["2L"])


@pytest.mark.parametrize("change, message", [
    (dict(L_target_values=[5, 20]), r"L_target_values must contain integers in \[1, 19\]"),
    (dict(L_target_values=[5, 5]), "L_target_values must not repeat"),
    (dict(L_total=1), "L_total must be an integer >= 2"),
    (dict(alphas=[0.5, -1.0]), "alphas must be a non-empty 1-D sequence of finite numbers > 0"),
    (dict(M_cut=0), "M_cut must be an integer >= 1"),
    (dict(M_grid=[0]), r"M_grid must contain integers in \[1\]"),
    (dict(lam=0.0), "lam must be a finite number > 0"),
    (dict(realizations=0), "realizations must be an integer >= 1"),
    (dict(learners=("ft-TF",)), "needs 'TF'"),
    (dict(learners=("TF", "XX")), "learners must be one of"),
    (dict(scratch=(5, 0.1, 1000)), "scratch must be a tasknb.feature_transfer.TrainingConfig"),
    (dict(n_samples=1), "n_samples must be an integer >= 2"),
    (dict(seed=-1), "seed must be an integer >= 0"),
])
def test_sweep_rejects_bad_input(change, message):
    with pytest.raises(ValueError, match=message):
        small_sweep(**change)


def test_other_bad_inputs(sweep):
    kw = dict(D=D, H=H, M_grid=[4], M_source=300, realizations=2, **FAST)
    with pytest.raises(ValueError, match="L_easy must be < L_hard"):
        hard_easy_curves(5, 5, **kw)
    with pytest.raises(ValueError, match="sources must be one of"):
        hard_easy_curves(15, 5, sources={"up": sweep.curves[0].source_params}, **kw)
    with pytest.raises(ValueError, match=r"sources\['hard→easy'\] must be a TwoLayerStack"):
        hard_easy_curves(15, 5, sources={"hard→easy": sweep.curves[0].source_params.select(0)}, **kw)
    with pytest.raises(ValueError, match=r"L_t must be one of the swept values \[5, 10, 15\]"):
        sweep.index(7)
    with pytest.raises(ValueError, match="L_easy must be < L_total / 2"):
        sweep.hard_easy(10)
    with pytest.raises(ValueError, match="direction must be one of"):
        sweep.hard_easy(5).gain("sideways", "RF")
    with pytest.raises(ValueError, match="baseline must be one of"):
        sweep.hard_easy(5).gain("hard→easy", "TF")
    with pytest.raises(ValueError, match="chmm_sets must be a non-empty list"):
        train_sources([], H, 100)


def test_gains_are_positive_when_tf_is_better():
    # toy sweep and hard/easy pair, 3 realizations: TF's error is below every baseline's
    rng = np.random.default_rng(2)
    per_rf = 0.4 + 0.05 * rng.random((3, 3, 2))
    per_tf = per_rf - 0.1 - 0.02 * rng.random((3, 3, 2))
    sweep = AsymmetrySweep(20, np.array([5, 10, 15]), np.array([0.5, 2.0]), H, 8,
                           {"TF": per_tf.mean(1), "RF": per_rf.mean(1)}, {}, np.ones((3, 3), dtype=bool), {},
                           np.zeros((3, 3)), theory_realizations={"TF": per_tf, "RF": per_rf})
    g = sweep.gain()
    assert np.all(g > 0)
    np.testing.assert_array_equal(g, sweep.theory["RF"] - sweep.theory["TF"])   # err(baseline) - err(transfer)
    np.testing.assert_array_equal(sweep.gain("RF", "TF"), -g)
    np.testing.assert_allclose(sweep.gain_sem(), (per_rf - per_tf).std(1, ddof=1) / np.sqrt(3))
    errors = {"TF": np.array([[0.1, 0.2, 0.15]]), "RF": np.array([[0.3, 0.35, 0.4]]), "2L": np.array([[0.2, 0.3, 0.2]])}
    curves = {d: TransferCurves(np.array([4]), H, errors, np.zeros(3), np.zeros(3)) for d in DIRECTIONS}
    pair = HardEasy(15, 5, curves, np.zeros(0), {}, {})
    for base in ("RF", "2L"):
        assert pair.gain("hard→easy", base) > 0
        d = errors[base][0] - errors["TF"][0]
        assert pair.gain_sem("hard→easy", base) == pytest.approx(d.std(ddof=1) / np.sqrt(3))
