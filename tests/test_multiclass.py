"""The multi-class CHMM and the softmax learners (appendix B of Gerace et al.)."""
import numpy as np
import pytest
import torch

from tasknb.chmm import CHMM, MulticlassCHMM, stack_samples
from tasknb.networks.stacks import SoftmaxStack, features, init_softmax_net, softmax_error, softmax_logits
from tasknb.training import TrainingConfig, cross_entropy, fit_softmax_head, train_stack
from tasknb.chapters.c9_multiclass import AsymmetricTransfer, GainMap
from tasknb.feature_transfer import TransferCurves, train_source
from tasknb.chapters.c9_multiclass import (asymmetric_transfer, multiclass_gain_map, multiclass_transfer_curves)


# ----------------------------------------------------------------------------- generator
@pytest.mark.parametrize("C", [2, 3, 5])
def test_shapes_dtypes_and_label_range(C):
    m = MulticlassCHMM(D=80, L_source=20, L_target=30, n_classes=C, eta=0.7, rho=0.2, q=0.5, seed=3)
    X, y = m.sample_source(64, seed=1)
    assert X.shape == (64, 80) and y.shape == (64,) and y.dtype == torch.int64
    assert bool((X >= 0).all())
    Xt, yt = m.sample_target(64, seed=1)
    assert Xt.shape == (64, 80) and int(yt.min()) >= 0 and int(yt.max()) <= C - 1
    assert m.Theta_source.shape == (20, C) and m.Theta_target.shape == (30, C)
    assert m.sample_target(10).c.shape == (10, 30)


@pytest.mark.parametrize("C", [3, 4])
def test_classes_are_roughly_balanced(C):
    for seed in range(3):
        m = MulticlassCHMM(D=50, L_source=100, L_target=100, n_classes=C, eta=0.5, q=0.5, seed=seed)
        for which in ("source", "target"):
            f = m.class_frequencies(which, M=20_000, seed=seed)
            assert f.sum() == pytest.approx(1.0)
            assert np.all(np.abs(f - 1 / C) < 0.07), (which, seed, f)


def test_uncorrelated_perturbations_give_identical_tasks():
    m = MulticlassCHMM(D=60, L_source=25, L_target=25, n_classes=4, eta=1.0, rho=0.0, q=1.0, seed=5)
    torch.testing.assert_close(m.F_source, m.F_target, rtol=0, atol=0)
    torch.testing.assert_close(m.Theta_source, m.Theta_target, rtol=0, atol=0)
    (Xs, ys), (Xt, yt) = m.sample_paired(200, seed=9)
    assert torch.equal(Xs, Xt) and torch.equal(ys, yt)
    assert m.label_agreement(M=2000) == 1.0
    np.testing.assert_allclose(m.teacher_overlaps(), 1.0)


def test_composes_the_binary_chmm():
    kw = dict(D=70, L_source=30, L_target=20, eta=0.6, rho=0.3, q=0.4, seed=11)
    m, b = MulticlassCHMM(n_classes=3, **kw), CHMM(**kw)
    assert torch.equal(m.F_source, b.F_source) and torch.equal(m.F_target, b.F_target)
    assert torch.equal(m.Theta_source[:, 0], b.theta_source) and torch.equal(m.Theta_target[:, 0], b.theta_target)
    # same inputs as the binary model; the label is the argmax of c Theta
    sb, sm = b.sample_target(100, seed=2), m.sample_target(100, seed=2)
    assert torch.equal(sb.X, sm.X)
    assert torch.equal(sm.y, torch.argmax(sm.c @ m.Theta_target, dim=1))
    # feature deletion (eq. 5) per column at q = 1: the target teacher keeps the first L_t rows
    m1 = MulticlassCHMM(n_classes=3, **{**kw, "q": 1.0})
    assert torch.equal(m1.Theta_target, m1.Theta_source[:20])


def test_teacher_perturbation_controls_label_agreement():
    agree = [MulticlassCHMM(60, 200, 200, 3, q=q, seed=0).label_agreement(M=20_000) for q in (0.0, 0.5, 0.9, 1.0)]
    assert abs(agree[0] - 1 / 3) < 0.05                  # unrelated rules: chance agreement
    assert agree[0] < agree[1] < agree[2] < agree[3] == 1.0
    ov = MulticlassCHMM(60, 400, 400, 3, q=0.6, seed=1).teacher_overlaps()
    assert np.all(np.abs(ov - 0.6) < 0.1), ov


@pytest.mark.parametrize("kwargs, message", [
    (dict(n_classes=1), "n_classes must be an integer >= 2"),
    (dict(n_classes=2.5), "n_classes must be an integer >= 2"),
    (dict(rho=1.5), r"rho must be in \[0, 1\]"),
    (dict(eta=-0.1), r"eta must be in \[0, 1\]"),
    (dict(q=2.0), r"q must be in \[-1, 1\]"),
    (dict(D=0), "D must be an integer >= 1"),
    (dict(L_target=0), "L_target must be an integer >= 1"),
    (dict(seed=-1), "seed must be an integer >= 0"),
])
def test_generator_validation(kwargs, message):
    base = dict(D=10, L_source=5, L_target=5, n_classes=3)
    with pytest.raises(ValueError, match=message):
        MulticlassCHMM(**{**base, **kwargs})


def test_sample_validation():
    m = MulticlassCHMM(10, 5, 5, 3)
    with pytest.raises(ValueError, match="M must be an integer >= 1"):
        m.sample_source(0)
    with pytest.raises(ValueError, match="which must be one of"):
        m.class_frequencies("both")


# ----------------------------------------------------------------------------- learners
def test_softmax_head_matches_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    K, M, H, C, lam = 2, 90, 8, 3, 0.05
    V = torch.rand(K, M, H, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (K, M), generator=g)
    fit = fit_softmax_head(V, y, C, lam, tol=1e-10)
    assert bool(fit.converged.all()) and fit.w.shape == (K, H, C)
    for k in range(K):
        sk = LogisticRegression(C=1.0 / lam, fit_intercept=False, tol=1e-12, max_iter=10_000)
        sk.fit((V[k] / np.sqrt(H)).numpy(), y[k].numpy())
        np.testing.assert_allclose(fit.w[k].numpy(), sk.coef_.T, rtol=1e-4, atol=1e-6)


def test_softmax_head_reports_non_convergence_and_bad_inputs():
    g = torch.Generator().manual_seed(1)
    V, y = torch.rand(2, 40, 30, generator=g), torch.randint(0, 3, (2, 40), generator=g)
    with pytest.warns(RuntimeWarning, match="did not reach tol"):
        fit = fit_softmax_head(V, y, 3, 1e-8, max_iter=1)
    assert not bool(fit.converged.any()) and bool(torch.isfinite(fit.w).all())
    with pytest.raises(ValueError, match="class indices in 0..2"):
        fit_softmax_head(V, y + 1, 3, 1.0)
    with pytest.raises(ValueError, match="integer class indices"):
        fit_softmax_head(V, y.float(), 3, 1.0)
    with pytest.raises(ValueError, match="lam must be a finite number > 0"):
        fit_softmax_head(V, y, 3, 0.0)
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        fit_softmax_head(V, y, 1, 1.0)


def test_network_shapes_and_batched_training_equals_one_at_a_time():
    chmms = [MulticlassCHMM(40, 10, 10, 3, seed=k) for k in range(3)]
    X, y = stack_samples(chmms, 120, "source", seed=0)
    assert X.shape == (3, 120, 40) and y.shape == (3, 120)
    init = init_softmax_net(3, 12, 40, 3, seed=4)
    assert softmax_logits(init, X).shape == (3, 120, 3) and cross_entropy(softmax_logits(init, X), y).shape == (3,)
    batched = train_stack(init, X, y, epochs=3, lr=1e-2, batch_size=20, seed=1)
    for k in range(3):
        one = SoftmaxStack(init.W1[k:k + 1], init.W2[k:k + 1])
        alone = train_stack(one, X[k:k + 1], y[k:k + 1], epochs=3, lr=1e-2, batch_size=20, seed=1)
        torch.testing.assert_close(alone.params.W1[0], batched.params.W1[k], rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(alone.params.W2[0], batched.params.W2[k], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="X must have shape"):
        train_stack(init, X[:1], y[:1])
    with pytest.raises(ValueError, match="patience"):
        train_stack(init, X, y, patience=0)


def test_tiny_learners_beat_chance_and_transfer_helps():
    K, D, H, L, C = 2, 100, 50, 25, 3
    chmms = [MulticlassCHMM(D, L, L, C, seed=k) for k in range(K)]
    src, init = train_source(chmms, H, 2000, TrainingConfig(20, 1e-2, 50), seed=0, progress=False)
    Xt, yt = stack_samples(chmms, 1500, "target", seed=7)
    assert float(softmax_error(src.params, Xt, yt).mean()) < 0.4           # chance is 2/3
    X, y = stack_samples(chmms, 60, "target", seed=8)
    err = {}
    for name, W1 in (("TF", src.params.W1), ("RF", init.W1)):
        fit = fit_softmax_head(features(W1, X), y, C, 1e-4)
        assert bool(fit.converged.all())
        err[name] = float(softmax_error(SoftmaxStack(W1, fit.w), Xt, yt).mean())
    assert err["RF"] < 1 - 1 / C - 0.03 and err["TF"] < 1 - 1 / C - 0.03   # both beat chance
    assert err["TF"] < err["RF"] - 0.05                                    # the source features help


def test_protocol_determinism_sweeps_and_validation():
    kw = dict(M_source=400, M_test=300, realizations=2, source=TrainingConfig(3, 1e-2, 50),
              scratch=TrainingConfig(3, 0.1, 1000), finetune=TrainingConfig(3, 0.01, 1000), progress=False)
    c = multiclass_transfer_curves(40, 20, 10, 10, 3, M_grid=[15, 40], **kw)
    assert set(c.errors) == {"TF", "RF", "2L", "ft-TF"} and c.errors["TF"].shape == (2, 2)
    assert c.config["n_classes"] == 3 and np.allclose(c.alpha, [15 / 20, 40 / 20])
    again = multiclass_transfer_curves(40, 20, 10, 10, 3, M_grid=[15, 40], **kw)
    for n in c.errors:
        assert np.array_equal(c.errors[n], again.errors[n])                 # same seed -> same numbers
    gm = multiclass_gain_map("eta", [0.0, 1.0], D=40, H=20, L_source=10, L_target=10, n_classes=3,
                             M_grid=[15, 40], source_params=c.source_params, **kw)
    assert gm.gain("TF", "RF").shape == (2, 2) and gm.errors("2L").shape == (2, 2, 2)
    np.testing.assert_array_equal(gm.curves[1].errors["TF"], c.errors["TF"])  # eta = 1 is the task above
    a = asymmetric_transfer(20, [5, 10], D=40, H=20, n_classes=3, M_grid=[15], source_params={10: c.source_params},
                            **{k: v for k, v in kw.items() if k not in ("scratch", "finetune")})
    assert a.gain().shape == (2, 1) and list(a.L_source) == [15, 10]
    with pytest.raises(ValueError, match="learners must be one of"):
        multiclass_transfer_curves(40, 20, 10, 10, 3, learners=("TF", "SVM"))
    with pytest.raises(ValueError, match="ft-TF"):
        multiclass_transfer_curves(40, 20, 10, 10, 3, learners=("ft-TF",))
    with pytest.raises(ValueError, match="n_classes must be an integer >= 2"):
        multiclass_transfer_curves(40, 20, 10, 10, 1)
    with pytest.raises(ValueError, match="source_params must hold a SoftmaxStack"):
        multiclass_transfer_curves(40, 20, 10, 10, 4, source_params=c.source_params, **kw)
    with pytest.raises(ValueError, match="param must be one of"):
        multiclass_gain_map("L", [1], D=40, H=20, L_source=10, L_target=10)
    with pytest.raises(ValueError, match=r"eta must be in \[0, 1\]"):
        multiclass_gain_map("eta", [1.5], D=40, H=20, L_source=10, L_target=10)
    with pytest.raises(ValueError, match="L_targets must contain integers"):
        asymmetric_transfer(20, [0, 25], D=40, H=20)


def test_gains_are_positive_when_tf_is_better():
    # toy maps, 2 rows x 2 sizes x 3 realizations: TF's error is below RF's everywhere
    rng = np.random.default_rng(3)
    rows = []
    for _ in range(2):
        rf = 0.5 + 0.05 * rng.random((2, 3))
        rows.append(TransferCurves(np.array([10, 20]), 10, {"TF": rf - 0.1 - 0.02 * rng.random((2, 3)), "RF": rf},
                                   np.zeros(3), np.zeros(3)))
    d = np.stack([c.errors["RF"] - c.errors["TF"] for c in rows])       # err(baseline) - err(transfer)
    for obj in (GainMap("eta", np.array([0.0, 1.0]), np.array([10, 20]), 10, rows),
                AsymmetricTransfer(20, np.array([5, 15]), np.array([10, 20]), 10, rows)):
        g = obj.gain("TF", "RF")
        assert np.all(g > 0)
        np.testing.assert_array_equal(g, d.mean(-1))
        np.testing.assert_allclose(obj.gain("RF", "TF"), -g)
        np.testing.assert_allclose(obj.gain_sem("TF", "RF"), d.std(-1, ddof=1) / np.sqrt(3))
        p = obj.paired_gain("TF", "RF")
        np.testing.assert_allclose(p.mean, g)
        np.testing.assert_allclose(p.sem, obj.gain_sem("TF", "RF"))
        assert p.n == 3 and p.resolved(+1).shape == g.shape and "gain of TF over RF" in p[0, 0].describe()
