"""Each bad input raises a ValueError that names the problem."""
import numpy as np
import pytest

import nc1lib as nl


@pytest.fixture
def K():
    X = np.random.default_rng(0).standard_normal((10, 3))
    return X @ X.T


def test_class_sizes_must_sum_to_N(K):
    with pytest.raises(ValueError, match=r"class_sizes sum to 9.*N = 10"):
        nl.nc1_from_gram(K, [4, 5])


def test_class_needs_two_samples(K):
    with pytest.raises(ValueError, match="at least 2 samples"):
        nl.nc1_from_gram(K, [1, 9])
    with pytest.raises(ValueError, match="at least 2 samples"):
        nl.nc1_from_features(np.ones((3, 2)) + np.arange(3)[:, None], [0, 1, 1])


def test_nan_or_inf_in_inputs():
    X = np.ones((6, 2))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains 1 NaN"):
        nl.nngp_gram(X, "erf")
    X[2, 1] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        nl.ntk_gram(X, "relu")
    with pytest.raises(ValueError, match="H contains"):
        nl.nc1_from_features(X, [0, 0, 0, 1, 1, 1])


def test_unknown_activation():
    with pytest.raises(ValueError, match=r"unknown activation 'tanh'"):
        nl.nngp_gram(np.ones((4, 2)), "tanh")


def test_unknown_variant_weighting_and_bad_depth(K):
    with pytest.raises(ValueError, match="unknown variant"):
        nl.ntk_gram(np.ones((4, 2)), "erf", variant="paper")
    with pytest.raises(ValueError, match="unknown weighting"):
        nl.nc1_from_gram(K, [5, 5], weighting="balanced")
    with pytest.raises(ValueError, match="depth must be an integer >= 2"):
        nl.nngp_gram(np.ones((4, 2)), "erf", depth=1)


def test_gram_must_be_square_and_symmetric(K):
    with pytest.raises(ValueError, match="must be square"):
        nl.nc1_from_gram(K[:, :9], [5, 5])
    A = K.copy()
    A[0, 1] += 1.0
    with pytest.raises(ValueError, match="not symmetric"):
        nl.nc1_from_gram(A, [5, 5])


def test_dataset_spec_errors():
    with pytest.raises(ValueError, match="N must be an even integer"):
        nl.D1(7, 2)
    with pytest.raises(ValueError, match="d0 must be a positive integer"):
        nl.D1(8, 0)
    with pytest.raises(ValueError, match="stds must be positive"):
        nl.GaussianClasses((4, 4), 2, (0, 1), (1, -1), (0, 1))
