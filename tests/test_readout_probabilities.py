"""tasknb.readout.readout_probabilities: the *_ml readouts do not change when the features are rescaled or
rotated (the temperature-1 ones do change), "imprint" / "prototype" are eqs. (7)-(8) of S and the
prototypical logits, the fitted inverse temperature maximises the support log-likelihood, the cap warns
on a separated support set, bad inputs name the parameter; PredictionSet reads models through them."""
import warnings

import numpy as np
import pytest
import torch

from tasknb.device import numpy_stream, stream
from tasknb.readout import (READOUT_BETA_CAP, READOUT_METHODS, READOUTS, PredictionSet, ReadoutInfo,
                            prototypical_logits, readout_probabilities, to_union_task)

K, D = 4, 7


def _clusters(n_per=12, n_query=30, spread=1.3, seed=0, offset=0.5):
    """Overlapping Gaussian clusters (the support set is not separable: finite ML temperatures)."""
    rng = numpy_stream(seed, "readout test clusters")
    centres = rng.standard_normal((K, D))
    y = np.repeat(np.arange(K), n_per)
    support = centres[y] + spread * rng.standard_normal((len(y), D)) + offset
    yq = rng.integers(0, K, n_query)
    query = centres[yq] + spread * rng.standard_normal((n_query, D)) + offset
    return support, y, query


def _orthogonal(d, seed=0):
    A = numpy_stream(seed, "readout test rotation").standard_normal((d, d))
    Q, R = np.linalg.qr(A)
    return Q * np.where(np.diag(R) < 0, -1.0, 1.0)


def _raw_scores(method, support, y, query):
    """Scores straight from the definitions (NumPy, one class at a time)."""
    out = np.empty((len(query), K))
    for c in range(K):
        if method.startswith("imprint"):
            h = support[y == c].sum(0)
            out[:, c] = query @ (h / np.linalg.norm(h))
        else:
            out[:, c] = -((query - support[y == c].mean(0)) ** 2).sum(-1)
    return out


def _mean_log_lik(beta, scores, y):
    logits = beta * scores
    logits = logits - logits.max(-1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logp[np.arange(len(y)), y].mean()


# ----------------------------------------------------------------------------- invariances
@pytest.mark.parametrize("method", [None, "imprint_ml", "prototype_ml"])
def test_ml_readouts_invariant_to_rescaling_and_rotation(method):
    fs, y, fq = _clusters()
    kw = {} if method is None else {"method": method}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not separated: no cap warning
        p, info = readout_probabilities(fs, y, fq, K, return_info=True, **kw)
        assert not info.at_cap and 0 < info.inverse_temperature
        for a in (1e-3, 7.0, 1e3):
            pa, info_a = readout_probabilities(a * fs, y, a * fq, K, return_info=True, **kw)
            np.testing.assert_allclose(pa, p, rtol=1e-6, atol=1e-12)
            assert info_a.support_log_likelihood == pytest.approx(info.support_log_likelihood, rel=1e-9)
        U = _orthogonal(D)
        pu = readout_probabilities(fs @ U.T, y, fq @ U.T, K, **kw)
        np.testing.assert_allclose(pu, p, rtol=1e-6, atol=1e-12)
    assert p.shape == (len(fq), K) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-12)


@pytest.mark.parametrize("method", ["imprint", "prototype"])
def test_temperature_one_readouts_change_with_the_scale(method):
    fs, y, fq = _clusters()
    p = readout_probabilities(fs, y, fq, K, method)
    for a in (1e-3, 7.0):
        pa = readout_probabilities(a * fs, y, a * fq, K, method)
        assert np.abs(pa - p).max() > 1e-2  # the invariance test above would fail without the fitted beta


def test_cap_is_scale_free_too():
    fs, y, fq = _clusters(spread=0.02)  # perfectly separated support set
    with pytest.warns(RuntimeWarning, match="READOUT_BETA_CAP"):
        p, info = readout_probabilities(fs, y, fq, K, return_info=True)
    with pytest.warns(RuntimeWarning, match="READOUT_BETA_CAP"):
        p7 = readout_probabilities(7.0 * fs, y, 7.0 * fq, K)
    np.testing.assert_allclose(p7, p, rtol=1e-6, atol=1e-12)
    s = _raw_scores("prototype", fs, y, fs)
    sigma = np.sqrt(((s - s.mean(-1, keepdims=True)) ** 2).mean())
    assert info.at_cap and info.inverse_temperature * sigma == pytest.approx(READOUT_BETA_CAP, rel=1e-12)


# ----------------------------------------------------------------------------- the definitions
def test_imprint_and_prototype_are_eq_7_8_and_prototypical_logits():
    fs, y, fq = _clusters(seed=1)
    np.testing.assert_allclose(readout_probabilities(fs, y, fq, K, "imprint"),
                               to_union_task(fs, y, K, eval_features=fq), rtol=1e-12, atol=1e-15)
    logits = prototypical_logits(torch.as_tensor(fs), torch.as_tensor(y), torch.as_tensor(fq), K)
    pt = readout_probabilities(torch.as_tensor(fs), torch.as_tensor(y), torch.as_tensor(fq), K, "prototype")
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float64
    torch.testing.assert_close(pt, torch.softmax(logits, -1), rtol=1e-12, atol=1e-15)
    for method in READOUT_METHODS:  # NumPy in -> NumPy out, same numbers as torch in
        pn = readout_probabilities(fs, y, fq, K, method)
        assert isinstance(pn, np.ndarray)
        np.testing.assert_allclose(pn, readout_probabilities(torch.as_tensor(fs), y, torch.as_tensor(fq), K,
                                                             method).numpy(), rtol=1e-12, atol=1e-15)


def test_leading_axes_read_one_by_one_and_deterministic():
    runs = [_clusters(seed=s) for s in (2, 3, 4)]
    y = runs[0][1]
    fs = np.stack([r[0] for r in runs])
    fq = np.stack([r[2] for r in runs])
    p, info = readout_probabilities(fs, y, fq, K, "imprint_ml", return_info=True)
    assert p.shape == (3, fq.shape[1], K) and info.inverse_temperature.shape == (3,)
    for k in range(3):
        pk, ik = readout_probabilities(fs[k], y, fq[k], K, "imprint_ml", return_info=True)
        np.testing.assert_allclose(p[k], pk, rtol=1e-10, atol=1e-14)
        assert info.inverse_temperature[k] == pytest.approx(ik.inverse_temperature, rel=1e-10)
    assert len(set(np.round(info.inverse_temperature, 6))) == 3  # each its own temperature
    p2 = readout_probabilities(fs, y, fq, K, "imprint_ml")
    assert np.array_equal(p, p2)


@pytest.mark.parametrize("method", ["imprint_ml", "prototype_ml"])
def test_fitted_beta_maximises_the_support_log_likelihood(method):
    fs, y, fq = _clusters(seed=5)
    p, info = readout_probabilities(fs, y, fq, K, method, return_info=True)
    assert isinstance(info, ReadoutInfo) and info.method == method
    beta = info.inverse_temperature
    s_support = _raw_scores(method, fs, y, fs)
    ll_hat = _mean_log_lik(beta, s_support, y)
    assert info.support_log_likelihood == pytest.approx(ll_hat, rel=1e-12)
    grid = np.concatenate([np.linspace(0.0, 5 * beta, 4001), beta * np.logspace(-4, 3, 1001)])
    ll_grid = np.array([_mean_log_lik(b, s_support, y) for b in grid])
    assert ll_hat >= ll_grid.max() - 1e-13
    assert abs(grid[np.argmax(ll_grid)] - beta) <= 5 * beta / 4000  # the grid's best lies next to beta
    assert ll_hat > _mean_log_lik(1.0, s_support, y)  # temperature 1 is not the optimum here
    s_query = _raw_scores(method, fs, y, fq)
    e = np.exp(beta * s_query - (beta * s_query).max(-1, keepdims=True))
    np.testing.assert_allclose(p, e / e.sum(-1, keepdims=True), rtol=1e-10, atol=1e-14)


def test_constant_scores_give_uniform_probabilities_without_nan():
    y = np.repeat(np.arange(K), 3)
    p, info = readout_probabilities(np.zeros((len(y), D)), y, np.zeros((5, D)), K, return_info=True)
    np.testing.assert_array_equal(p, np.full((5, K), 1.0 / K))
    assert info.inverse_temperature == 0.0 and not info.at_cap


def test_cap_warns_only_on_a_separated_support_set():
    fs, y, fq = _clusters(spread=0.02)
    for method in ("imprint_ml", "prototype_ml"):
        with pytest.warns(RuntimeWarning, match=r"capped at READOUT_BETA_CAP = 1000 "):
            _, info = readout_probabilities(fs, y, fq, K, method, return_info=True)
        assert info.at_cap
    fs, y, fq = _clusters()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for method in READOUT_METHODS:
            assert not readout_probabilities(fs, y, fq, K, method, return_info=True)[1].at_cap


def test_validation_names_the_parameter():
    fs, y, fq = _clusters()
    with pytest.raises(ValueError, match="method must be one of 'imprint', 'imprint_ml', 'prototype', 'prototype_ml'"):
        readout_probabilities(fs, y, fq, K, "softmax")
    with pytest.raises(ValueError, match=r"support_labels must contain every class 0..3; classes \[2\]"):
        readout_probabilities(fs, np.where(y == 2, 1, y), fq, K)
    with pytest.raises(ValueError, match="support_labels must be integers in"):
        readout_probabilities(fs, y + 1, fq, K)
    with pytest.raises(ValueError, match="support_labels must have shape"):
        readout_probabilities(fs, y[:-1], fq, K)
    with pytest.raises(ValueError, match="query_features must have the feature dimension d = 7"):
        readout_probabilities(fs, y, fq[:, :5], K)
    with pytest.raises(ValueError, match="query_features must have the leading axes"):
        readout_probabilities(fs, y, np.stack([fq, fq]), K)
    bad = fs.copy()
    bad[3, 2] = np.nan
    with pytest.raises(ValueError, match="support_features must be finite"):
        readout_probabilities(bad, y, fq, K)
    badq = fq.copy()
    badq[0, 0] = np.inf
    with pytest.raises(ValueError, match="query_features must be finite"):
        readout_probabilities(fs, y, badq, K)
    with pytest.raises(ValueError, match="support_features must have shape"):
        readout_probabilities(fs[0], y, fq, K)
    with pytest.raises(ValueError, match="n_classes"):
        readout_probabilities(fs, y, fq, 1)
    with pytest.raises(ValueError, match="return_info"):
        readout_probabilities(fs, y, fq, K, return_info=1)


# ----------------------------------------------------------------------------- PredictionSet
class _Features(torch.nn.Module):
    """A fixed random feature map of 8x8 images (no head of its own)."""

    def __init__(self, d=D):
        super().__init__()
        self.lin = torch.nn.Linear(64, d, dtype=torch.float64)
        with torch.no_grad():
            self.lin.weight.copy_(torch.randn(d, 64, generator=stream(0, "readout test features"),
                                              dtype=torch.float64))

    def features(self, x):
        return torch.tanh(self.lin(x.reshape(len(x), -1).double()))

    forward = features


def _pset(readout):
    g = stream(0, "readout test images")
    yi = torch.arange(K).repeat_interleave(6)
    means = torch.randn(K, 1, 8, 8, generator=g)
    Xi = means[yi] + 0.8 * torch.randn(len(yi), 1, 8, 8, generator=g)
    yt = torch.arange(20) % K
    X = means[yt] + 0.8 * torch.randn(20, 1, 8, 8, generator=g)
    return PredictionSet(X=X, labels=yt, classes=list(range(K)), readout=readout, X_imprint=Xi, y_imprint=yi)


def test_prediction_set_reads_models_through_every_method():
    assert READOUTS == ("softmax",) + READOUT_METHODS
    model = _Features()
    for readout in READOUT_METHODS:
        ps = _pset(readout)
        with torch.no_grad():
            f_imp, f_test = model.features(ps.X_imprint), model.features(ps.X)
        want = (to_union_task(f_imp, ps.y_imprint, K, eval_features=f_test) if readout == "imprint"
                else readout_probabilities(f_imp, ps.y_imprint, f_test, K, readout))
        got = ps.predict(model)
        torch.testing.assert_close(got, want / want.sum(-1, keepdim=True), rtol=1e-12, atol=1e-15)
        stacked = ps.read_features(torch.stack([f_imp, 2 * f_imp]), torch.stack([f_test, 2 * f_test]))
        torch.testing.assert_close(stacked[0], want, rtol=1e-10, atol=1e-14)
    p_ml = _pset("prototype_ml").predict(model)
    p_1 = _pset("prototype").predict(model)
    assert (p_ml - p_1).abs().max() > 1e-3  # the methods are different readouts
    with pytest.raises(ValueError, match="reads the model's own head"):
        _pset("softmax").read_features(f_imp, f_test)


def test_run_config_accepts_the_feature_readouts():
    from tasknb.trajectories import RunConfig

    assert RunConfig(classes=(0, 1), readout="prototype_ml", union_classes=(0, 1, 2)).readout == "prototype_ml"
    assert RunConfig().readout == "prototype_ml"  # the scale-free default
    with pytest.raises(ValueError, match="readout must be one of 'softmax', 'imprint', 'imprint_ml', 'prototype'"):
        RunConfig(readout="cosine")
