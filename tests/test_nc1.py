"""Theorem 4.1 against the definitions, evaluated on explicit finite feature maps."""
import numpy as np
import pytest

import nc1lib as nl


def traces_by_definition(H, class_sizes, weighting):
    """Literal eqs. 5-6: build the covariance matrices from features, then take traces."""
    cs = list(class_sizes)
    N, C = H.shape[0], len(cs)
    blocks = np.split(H, np.cumsum(cs)[:-1])
    mus = [b.mean(axis=0) for b in blocks]
    mu_G = H.mean(axis=0)
    if weighting == "sample":
        S_W = sum((b - m).T @ (b - m) for b, m in zip(blocks, mus)) / N
        S_B = sum(np.outer(m - mu_G, m - mu_G) for m in mus) / C
    else:  # Tr(Sigma~_T - Sigma~_B), Tr(Sigma~_B - Sigma_G)
        S_T = H.T @ H / N
        S_Bt = sum(np.outer(m, m) for m in mus) / C
        S_W, S_B = S_T - S_Bt, S_Bt - np.outer(mu_G, mu_G)
    return np.trace(S_W), np.trace(S_B), S_W, S_B


def random_features(X, p, seed):
    """An explicit finite feature map: a random ReLU layer plus an offset."""
    g = np.random.default_rng(seed)
    W = g.standard_normal((X.shape[1], p)) / np.sqrt(X.shape[1])
    return np.maximum(X @ W + 0.3, 0.0)


@pytest.mark.parametrize("class_sizes", [(60, 60), (30, 90), (20, 45, 70), (25, 25, 25, 25)])
@pytest.mark.parametrize("weighting", ["paper", "sample"])
def test_theorem41_matches_definition_on_explicit_features(class_sizes, weighting):
    C = len(class_sizes)
    spec = nl.GaussianClasses(class_sizes, 5, means=np.linspace(-1, 1, C), stds=[0.7] * C,
                              targets=range(C))
    ds = spec.sample(3)
    H = random_features(ds.X, 40, seed=4)
    tw, tb, _, _ = traces_by_definition(H, class_sizes, weighting)
    gw, gb = nl.covariance_traces_from_gram(H @ H.T, class_sizes, weighting)
    assert gw == pytest.approx(tw, rel=1e-10)
    assert gb == pytest.approx(tb, rel=1e-10)
    assert nl.nc1_from_gram(H @ H.T, class_sizes, weighting) == pytest.approx(tw / tb, rel=1e-10)
    f = nl.nc1_from_features(H, ds.labels, weighting)
    assert f.tr_w == pytest.approx(tw, rel=1e-10) and f.tr_b == pytest.approx(tb, rel=1e-10)


def test_conventions_agree_when_balanced_and_differ_when_not():
    ds = nl.D1(200, 3).sample(0)
    H = random_features(ds.X, 30, seed=1)
    K = H @ H.T
    assert nl.nc1_from_gram(K, ds.class_sizes, "paper") == pytest.approx(
        nl.nc1_from_gram(K, ds.class_sizes, "sample"), rel=1e-12)
    ds = nl.D1_imbalanced((40, 160), 3).sample(0)
    H = random_features(ds.X, 30, seed=1)
    K = H @ H.T
    a, b = (nl.nc1_from_gram(K, ds.class_sizes, w) for w in ("paper", "sample"))
    assert abs(a - b) > 1e-3 * abs(b)


def test_classical_nc1_matches_pseudoinverse_definition():
    spec = nl.GaussianClasses((30, 40, 50), 4, (-1, 0, 1), (0.5, 0.5, 0.5), (0, 1, 2))
    ds = spec.sample(2)
    H = random_features(ds.X, 25, seed=2)
    _, _, S_W, S_B = traces_by_definition(H, ds.class_sizes, "sample")
    want = np.trace(S_W @ np.linalg.pinv(S_B)) / 3
    assert nl.nc1_from_features(H, ds.labels).nc1_classical == pytest.approx(want, rel=1e-8)


def test_linear_kernel_gives_data_nc1():
    ds = nl.D1_imbalanced((50, 150), 4).sample(5)
    for w in ("paper", "sample"):
        assert nl.nc1_of_data(ds.X, ds.class_sizes, w) == pytest.approx(
            nl.nc1_from_gram(ds.X @ ds.X.T, ds.class_sizes, w), rel=1e-10)
    assert nl.relative_nc1(0.5, 0.25, tau=0.0) == pytest.approx(2.0)


def test_nc1_is_invariant_to_feature_scale_and_row_order_of_features():
    ds = nl.D1(100, 2).sample(1)
    H = random_features(ds.X, 20, seed=0)
    base = nl.nc1_from_features(H, ds.labels).nc1
    perm = np.random.default_rng(0).permutation(ds.N)
    assert nl.nc1_from_features(3.0 * H[perm], ds.labels[perm]).nc1 == pytest.approx(base, rel=1e-12)


def test_zero_between_class_trace_gives_inf_not_an_exception():
    H = np.ones((6, 2))
    H[::2] += 1.0       # within-class spread, identical class means
    labels = np.array([0, 0, 0, 1, 1, 1])
    H[3:] = H[:3]
    assert nl.nc1_from_features(H, labels).nc1 == float("inf")
    assert nl.nc1_from_gram(H @ H.T, (3, 3)) == float("inf")
