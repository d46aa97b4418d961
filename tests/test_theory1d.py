"""Tests of the 1-D theory (paper Sec. 5.3, App. C-E): sympy identities, Monte Carlo, quadrature."""
import numpy as np
import pytest
import sympy as sp

import nc1lib
from nc1lib import theory1d as T


# ---------------------------------------------------------------- sympy identities

def test_relu_ntk_is_twice_nngp_symbolically():
    diffs = T.relu_ntk_minus_2nngp_sym()
    assert set(diffs) == {"same sign", "opposite signs", "both negative"}
    assert all(sp.simplify(d) == 0 for d in diffs.values())


def test_gaussian_moments_sym():
    mu, s = sp.symbols("mu", real=True), sp.symbols("s", positive=True)
    assert sp.simplify(T.gaussian_moment_sym(1, mu, s) - mu) == 0
    assert sp.simplify(T.gaussian_moment_sym(2, mu, s) - (mu ** 2 + s ** 2)) == 0


def test_relu_theorem51_balanced_closed_form():
    nc1, tw, tb, (mu1, mu2, s1, s2, n) = T.relu_expected_nc1_sym(balanced=True)
    assert sp.simplify(tw - (n - 1) * (s1 ** 2 + s2 ** 2) / (4 * n)) == 0
    assert sp.simplify(tb - (n * (mu1 ** 2 + mu2 ** 2) + s1 ** 2 + s2 ** 2) / (8 * n)) == 0
    # NTK = 2 NNGP, so the ratio is the same expression
    nc1_ntk = T.relu_expected_nc1_sym(get="ntk", balanced=True)[0]
    assert sp.simplify(nc1 - nc1_ntk) == 0


def test_lemma_c12_matches_theorem41_on_a_gram():
    # expected_traces_from_cases with *observed* block sums must equal Theorem 4.1 exactly
    rng = np.random.default_rng(0)
    H = rng.standard_normal((11, 5))
    K = H @ H.T
    cs = [4, 7]
    starts = [0, 4, 11]
    B = [[K[starts[c]:starts[c + 1], starts[d]:starts[d + 1]].sum() for d in range(2)] for c in range(2)]
    for w in ("paper", "sample"):
        got = T.traces_from_block_sums(np.trace(K), B, cs, w)
        want = nc1lib.covariance_traces_from_gram(K, cs, w)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_erf_within_class_coefficient():
    kappa, mu, _ = T.within_class_coefficient_sym("nngp")
    assert sp.simplify(kappa - 4 / (sp.pi * (1 + 4 * mu ** 2) ** sp.Rational(3, 2))) == 0
    # and numerically against a finite-difference mixed derivative of the kernel
    m, h = 1.3, 1e-4
    k = lambda a, b: T.kernel_1d(a, b, "erf_nngp")
    fd = (k(m + h, m + h) - k(m + h, m - h) - k(m - h, m + h) + k(m - h, m - h)) / (4 * h * h)
    assert abs(fd - float(kappa.subs(mu, m))) < 1e-6


def test_balanced_leading_orders():
    nc1, _, _, (m, s, _) = T.balanced_leading_nc1_sym("nngp")
    lead = T.large_mu_series_sym(nc1, m, 1)
    assert sp.simplify(lead - s ** 2 / (2 * sp.pi * m ** 3)) == 0
    nc1_ntk = T.balanced_leading_nc1_sym("ntk")[0]
    lead_ntk = T.large_mu_series_sym(nc1_ntk, m, 1)
    assert sp.simplify(sp.limit(lead_ntk * m ** 2 / s ** 2, m, sp.oo) - sp.Rational(3, 4)) == 0


# ---------------------------------------------------------------- kernels and MC plumbing

@pytest.mark.parametrize("kernel", list(T.KERNELS))
def test_kernel_1d_matches_library(kernel):
    act, get, variant = T.KERNELS[kernel]
    x = np.random.default_rng(1).normal(0.3, 1.5, 9)
    want = nc1lib.kernel_fn(x[:, None], activation=act, get=get, variant=variant)
    D = np.sum((1 + 2 * x * x) ** 2)
    got = T.kernel_1d(x[:, None], x[None, :], kernel, D)
    # atol: the library's arccos(cos t) near cos t = -1 carries ~sqrt(eps) rounding (t = pi pairs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-8)


@pytest.mark.parametrize("kernel", ["relu_nngp", "erf_ntk_reference"])
@pytest.mark.parametrize("weighting", ["paper", "sample"])
def test_monte_carlo_traces_match_theorem41(kernel, weighting):
    mu, s, cs = (-1.0, 1.5), (0.7, 0.4), (5, 8)
    mc = T.monte_carlo(mu, s, cs, kernel, 3, seed=7, weighting=weighting)
    X = T.sample_1d(np.array(mu), np.array(s), cs, 3, np.random.default_rng(7))
    act, get, variant = T.KERNELS[kernel]
    for r in range(3):
        K = nc1lib.kernel_fn(X[r][:, None], activation=act, get=get, variant=variant)
        np.testing.assert_allclose((mc.tr_w[r], mc.tr_b[r]),
                                   nc1lib.covariance_traces_from_gram(K, cs, weighting), rtol=1e-10)


def test_relu_explicit_feature_map():
    # 1-D ReLU NNGP feature map h(x) = (x+, x-)/sqrt(2): K1 = h(x).h(x') exactly
    mu, s, cs = (-0.5, 0.8), (1.0, 1.0), (6, 10)
    mc = T.monte_carlo(mu, s, cs, "relu_nngp", 2, seed=3)
    X = T.sample_1d(np.array(mu), np.array(s), cs, 2, np.random.default_rng(3))
    labels = nc1lib.labels_from_class_sizes(cs)
    for r in range(2):
        H = np.stack([np.maximum(X[r], 0), np.maximum(-X[r], 0)], axis=1) / np.sqrt(2)
        assert abs(nc1lib.nc1_from_features(H, labels).nc1 - mc.nc1[r]) < 1e-10


# ---------------------------------------------------------------- theory vs Monte Carlo

@pytest.mark.parametrize("cs", [(16, 16), (8, 40)])
@pytest.mark.parametrize("weighting", ["paper", "sample"])
def test_relu_derived_agrees_with_mc_under_assumption1(cs, weighting):
    mu, s = (-2.0, 3.0), (0.25, 0.4)            # |mu|/s >= 7.5: Assumption 1 holds
    mc = T.monte_carlo(mu, s, cs, "relu_nngp", 20000, seed=11, weighting=weighting)
    tw, tb = T.relu_cases(mu, s).traces(cs, weighting)
    (mw, sw), (mb, sb) = mc.mean_se("tr_w"), mc.mean_se("tr_b")
    assert abs(tw - mw) < 4 * sw and abs(tb - mb) < 4 * sb
    # a factor 2 in the within-class variance (s^2 -> 2 s^2) must be caught
    tw2, _ = T.relu_cases(mu, tuple(np.sqrt(2) * np.array(s))).traces(cs, weighting)
    assert abs(tw2 - mw) > 20 * sw


def test_relu_assumption1_breaks_but_exact_holds():
    mu, s, cs = (-1.0, 1.0), (1.0, 1.0), (16, 16)
    mc = T.monte_carlo(mu, s, cs, "relu_nngp", 20000, seed=5)
    mw, sw = mc.mean_se("tr_w")
    tw_exact, _ = T.relu_cases(mu, s, assumption1=False).traces(cs)
    tw_derived, _ = T.relu_cases(mu, s, assumption1=True).traces(cs)
    assert abs(tw_exact - mw) < 4 * sw
    assert abs(tw_derived - mw) > 10 * sw
    assert mc.sign_violations.mean() > 0


@pytest.mark.parametrize("mu, cs", [((-1.0, 1.0), (16, 16)), ((-1.0, 2.0), (8, 24))])
def test_relu_exact_tr_b_without_assumption1(mu, cs):
    # |mu|/s = 1, 2: sign flips are frequent, so the cross-class case E[x+]E[x'+] + E[x-]E[x'-] is far from 0;
    # setting it to 0 moves E Tr B by 27 (imbalanced) to 71 (balanced) standard errors
    s = (1.0, 1.0)
    mc = T.monte_carlo(mu, s, cs, "relu_nngp", 20000, seed=5)
    mb, sb = mc.mean_se("tr_b")
    _, tb_exact = T.relu_cases(mu, s, assumption1=False).traces(cs)
    assert abs(tb_exact - mb) < 4 * sb


@pytest.mark.parametrize("kernel", ["erf_nngp", "erf_ntk", "erf_ntk_reference"])
def test_erf_quadrature_agrees_with_mc(kernel):
    # the reference NTK's D = sum_k (1 + 2 x_k^2)^2 is held at its mean: an O(1/N) bias
    # (2.7% of Tr W at N = 16), so that variant is checked at N = 64
    mu, s = (-1.0, 2.0), (0.5, 0.8)
    cs = (24, 40) if kernel == "erf_ntk_reference" else (6, 10)
    mc = T.monte_carlo(mu, s, cs, kernel, 4000, seed=2)
    tw, tb = T.theory_cases(mu, s, cs, kernel, "exact").traces(cs)
    (mw, sw), (mb, sb) = mc.mean_se("tr_w"), mc.mean_se("tr_b")
    assert abs(tw - mw) < 4 * sw and abs(tb - mb) < 4 * sb


@pytest.mark.parametrize("kernel", ["erf_nngp", "erf_ntk"])
def test_erf_series_vs_quadrature_small_s(kernel):
    mu, cs = (-2.0, 2.0), (32, 32)
    errs = []
    for s in (0.2, 0.1):
        ex = T.theory_cases(mu, (s, s), cs, kernel, "exact").traces(cs)[0]
        s2 = T.theory_cases(mu, (s, s), cs, kernel, "derived").traces(cs)[0]
        s4 = T.theory_cases(mu, (s, s), cs, kernel, "series4").traces(cs)[0]
        errs.append((abs(s2 / ex - 1), abs(s4 / ex - 1)))
        assert abs(s4 / ex - 1) < abs(s2 / ex - 1)       # the next order helps
    assert errs[1][0] < 0.02
    assert errs[1][0] < errs[0][0] / 3                    # relative error of the s^2 term is O(s^2)


@pytest.mark.parametrize("kernel", ["erf_nngp", "erf_ntk", "erf_ntk_reference"])
def test_erf_series_cross_term_and_tr_b_vs_quadrature(kernel):
    # asymmetric classes (a swap of mu1/mu2 or s1/s2 would show); compare the s-corrections
    # (series of order 2 or 4 minus order 0, i.e. minus k(mu, mu')) with quadrature minus order 0
    mu, s, cs = (-1.5, 2.5), (0.1, 0.15), (12, 20)
    D = T.reference_D_expected(mu, s, cs)
    ex = T.theory_cases(mu, s, cs, kernel, "exact")
    ser = {o: T.erf_cases_series(mu, s, kernel, o, D) for o in (0, 2, 4)}
    for get in (lambda c: c.cross[0, 1], lambda c: c.cross[1, 0], lambda c: c.traces(cs)[1]):
        c0 = get(ser[0])
        rel = {o: abs((get(ser[o]) - c0) / (get(ex) - c0) - 1) for o in (2, 4)}
        assert rel[2] < 0.02                       # the s^2 terms carry the correction
        assert rel[4] < 1e-3 and rel[4] < rel[2] / 5   # the s^4 terms make it better


def test_erf_reference_series_and_quadrature_treat_D_alike():
    # both keep the pair's own terms of D = sum_k (1 + 2 x_k^2)^2 and hold the rest at its mean,
    # so the order-4 series converges to the quadrature as s/|mu| -> 0 (MATH.md 8.1)
    mu, cs = (-2.0, 2.0), (16, 16)
    errs = []
    for s in (0.5, 0.25, 0.125):
        ex = T.theory_cases(mu, (s, s), cs, "erf_ntk_reference", "exact").traces(cs)
        s4 = T.theory_cases(mu, (s, s), cs, "erf_ntk_reference", "series4").traces(cs)
        s2 = T.theory_cases(mu, (s, s), cs, "erf_ntk_reference", "derived").traces(cs)
        errs.append(max(abs(a / b - 1) for a, b in zip(s4, ex)))
        assert errs[-1] < max(abs(a / b - 1) for a, b in zip(s2, ex))
    assert errs[2] < errs[1] / 8 < errs[0] / 64 and errs[2] < 1e-4


# ---------------------------------------------------------------- bad input

def test_bad_input_raises():
    with pytest.raises(ValueError, match="kernel"):
        T.monte_carlo((-1, 1), (1, 1), (4, 4), "tanh_nngp", 10, 0)
    with pytest.raises(ValueError, match="stds"):
        T.relu_cases((-1, 1), (1, -1))
    with pytest.raises(ValueError, match="repeats"):
        T.monte_carlo((-1, 1), (1, 1), (4, 4), "relu_nngp", 1, 0)
    with pytest.raises(ValueError, match="class_sizes"):
        T.monte_carlo((-1, 1), (1, 1), (4, 1), "relu_nngp", 10, 0)
    with pytest.raises(ValueError, match="D"):
        T.kernel_1d(1.0, 2.0, "erf_ntk_reference")
    with pytest.raises(ValueError, match="order"):
        T.gaussian_taylor_expectation_sym(sp.Symbol("x"), sp.Symbol("x"), None, 0, 1, order=3)
