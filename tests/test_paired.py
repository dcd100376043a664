"""Paired differences over realizations: mean, standard error, and the resolved / not-resolved verdict."""
import numpy as np
import pytest

from tasknb.paired import NOT_RESOLVED, paired_difference, paired_standard_error


def test_mean_and_standard_error_of_the_paired_differences():
    rng = np.random.default_rng(0)
    base = rng.normal(0.4, 0.05, size=(3, 10))
    trans = base - 0.02 + rng.normal(0, 0.01, size=(3, 10))
    d = paired_difference(base, trans, axis=1, label="gain")
    np.testing.assert_allclose(d.mean, (base - trans).mean(1))
    np.testing.assert_allclose(d.sem, (base - trans).std(1, ddof=1) / np.sqrt(10))
    assert d.n == 10 and d.mean.shape == (3,)
    # pairing removes the shared realization-to-realization spread of the errors
    assert np.all(d.sem < base.std(1, ddof=1) / np.sqrt(10))


def test_resolved_needs_the_claimed_sign_at_two_standard_errors():
    d = paired_difference([[0.30, 0.31, 0.29, 0.30], [0.3, 0.3, 0.3, 0.3]],
                          [[0.25, 0.27, 0.24, 0.26], [0.29, 0.32, 0.28, 0.31]], axis=1)
    assert d.resolved(+1).tolist() == [True, False]
    assert d.resolved(-1).tolist() == [False, False]
    assert "not resolved at this scale" in d[1].describe() and NOT_RESOLVED not in d[0].describe()
    assert "resolved with the sign opposite to the claim" in d[0].describe(sign=-1)
    assert NOT_RESOLVED not in d[0].describe(sign=-1)


def test_within_is_an_equivalence_test():
    d = paired_difference([[0.300, 0.301, 0.299, 0.300], [0.30, 0.35, 0.25, 0.32]],
                          [[0.299, 0.300, 0.300, 0.301], [0.30, 0.30, 0.30, 0.30]], axis=1)
    assert d.within(0.02).tolist() == [True, False]          # the second is noisy: its interval is too wide
    assert not bool(d[0].within(0.001))
    np.testing.assert_array_equal(d.within(0.02), np.abs(d.mean) + 2 * d.sem < 0.02)
    assert NOT_RESOLVED in d[1].describe()
    assert d[1].describe(verdict=False) == d[1].describe().replace(f", {NOT_RESOLVED}", "")


def test_no_spread_is_never_resolved():
    d = paired_difference([0.3, 0.3], [0.2, 0.2])
    assert float(d.sem) == 0 and not bool(d.resolved()) and np.isinf(d.z)


def test_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        paired_difference([0.1, 0.2], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match=">= 2 realizations"):
        paired_difference([0.1], [0.2])
    with pytest.raises(ValueError, match="finite"):
        paired_difference([0.1, np.nan], [0.2, 0.1])
    with pytest.raises(ValueError, match="sign must be one of 1, -1"):
        paired_difference([0.1, 0.2], [0.2, 0.1]).resolved(0)
    with pytest.raises(ValueError, match="scalar"):
        paired_difference(np.zeros((2, 3)), np.ones((2, 3)), axis=1).describe()
    assert paired_standard_error(np.ones((4, 1))).shape == (4,)
