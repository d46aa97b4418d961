"""Limiting kernels against Monte Carlo over wide random networks and the empirical NTK."""
import numpy as np
import pytest
import torch
from scipy.special import erf

import nc1lib as nl
from nc1lib.kernels import _erf_layer

PHI = {"erf": erf, "relu": lambda u: np.maximum(u, 0.0)}
DPHI = {"erf": lambda u: 2.0 / np.sqrt(np.pi) * np.exp(-u ** 2), "relu": lambda u: (u > 0).astype(float)}


def points(n=6, d0=3, seed=0):
    g = np.random.default_rng(seed)
    return g.standard_normal((n, d0)) * 0.8 + np.array([1.0, -0.5, 0.3][:d0])


def mc_features(X, activation, widths, sigma_w, sigma_b, seed):
    """Post-activations of a random network with the given hidden widths (NNGP scaling)."""
    g = np.random.default_rng(seed)
    h, fan_in = X, X.shape[1]
    for m in widths:
        W = g.standard_normal((fan_in, m)) * sigma_w / np.sqrt(fan_in)
        b = g.standard_normal(m) * sigma_b
        u = h @ W + b
        h, fan_in = PHI[activation](u), m
    return h, u


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("sigma_b", [0.0, 0.4])
def test_nngp_depth2_matches_monte_carlo(activation, sigma_b):
    X = points()
    H, _ = mc_features(X, activation, [400_000], 1.3, sigma_b, seed=1)
    K_mc = H @ H.T / H.shape[1]
    K = nl.nngp_gram(X, activation, sigma_w=1.3, sigma_b=sigma_b)
    # 400k units: relative MC error ~ 0.3%; a factor of 2 or a wrong formula is far outside 2%
    np.testing.assert_allclose(K, K_mc, rtol=0.02, atol=0.005 * np.abs(K).max())


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_nngp_depth3_matches_monte_carlo(activation):
    X = points(5)
    H, _ = mc_features(X, activation, [3000, 3000], 1.0, 0.2, seed=2)
    K_mc = H @ H.T / H.shape[1]
    K = nl.nngp_gram(X, activation, depth=3, sigma_b=0.2)
    np.testing.assert_allclose(K, K_mc, rtol=0.05, atol=0.02 * np.abs(K).max())


@pytest.mark.parametrize("activation", ["erf", "relu"])
def test_derivative_kernel_matches_monte_carlo(activation):
    """Kdot = E[phi'(u) phi'(v)], recovered from the NTK recursion at depth 2 (sigma_b = 0)."""
    X = points()
    _, u = mc_features(X, activation, [400_000], 1.0, 0.0, seed=3)
    D = DPHI[activation](u)
    Kdot_mc = D @ D.T / D.shape[1]
    S0 = X @ X.T / X.shape[1]
    g = nl.kernel_fn(X, activation=activation, get=("nngp", "ntk"))
    Kdot = (g["ntk"] - g["nngp"]) / S0
    np.testing.assert_allclose(Kdot, Kdot_mc, rtol=0.03)


def test_math_md_example_derivative_kernel_and_reference_variant():
    """MATH.md 8.1: for S = [[4.3, 3.9], [3.9, 4.1]] the formula gives 0.243, the reference 0.118."""
    S = np.array([[4.3, 3.9], [3.9, 4.1]])
    d = np.diag(S)
    _, kd = _erf_layer(S, d[:, None], d[None, :], "derived", True)
    _, kr = _erf_layer(S, d[:, None], d[None, :], "reference", True)
    L = np.linalg.cholesky(S)
    u = np.random.default_rng(4).standard_normal((2_000_000, 2)) @ L.T
    mc = np.mean(DPHI["erf"](u[:, 0]) * DPHI["erf"](u[:, 1]))
    assert kd[0, 1] == pytest.approx(0.243, abs=5e-4)
    assert kr[0, 1] == pytest.approx(0.118, abs=5e-4)
    assert kd[0, 1] == pytest.approx(mc, rel=0.01)
    assert abs(kr[0, 1] - mc) > 0.1


def test_reference_variant_differs_only_where_math_md_says():
    X = nl.D1(64, 4).sample(0).X
    for depth in (2, 3):
        d, r = (nl.ntk_gram(X, "erf", depth=depth, variant=v) for v in ("derived", "reference"))
        assert np.max(np.abs(d - r) / np.abs(d)) > 0.1            # the Erf NTK changes ...
        np.testing.assert_array_equal(nl.ntk_gram(X, "relu", depth=depth, variant="reference"),
                                      nl.ntk_gram(X, "relu", depth=depth))  # ... ReLU does not
        # the NNGP part is untouched: the NTK's first term Sigma1 is the same
    g_d = nl.kernel_fn(X, activation="erf", variant="derived")
    g_r = nl.kernel_fn(X, activation="erf", variant="reference")
    np.testing.assert_array_equal(g_d["nngp"], g_r["nngp"])
    # and the gap grows with N (the reference sums (1 + 2 S_kk)^2 over the whole dataset)
    gaps = []
    for N in (32, 128, 512):
        Xn = nl.D1(N, 4).sample(1).X
        gaps.append(np.mean(nl.ntk_gram(Xn, "erf") / nl.ntk_gram(Xn, "erf", variant="reference")))
    assert gaps[0] < gaps[1] < gaps[2]


def test_relu_1d_ntk_is_twice_nngp_when_sign_separated():
    """MATH.md 5: in 1-D with sigma_b = 0, Theta = 2 K1 exactly when the sign of x is its class.

    Exact in the algebra; in floating point the angle t = arccos(+-1 -/+ eps) is ~1e-8 off,
    hence the 1e-7 tolerances (relative to the Gram's scale).
    """
    ds = nl.D1(200, 1).sample(0)
    assert np.all(np.sign(ds.X[:, 0]) == np.sign(ds.y))
    K, T = nl.nngp_gram(ds.X, "relu"), nl.ntk_gram(ds.X, "relu")
    np.testing.assert_allclose(T, 2.0 * K, rtol=1e-7, atol=1e-7 * np.abs(K).max())
    assert nl.nc1_from_gram(T, ds.class_sizes) == pytest.approx(nl.nc1_from_gram(K, ds.class_sizes), rel=1e-7)
    # not an identity of ReLU in general: it fails in 2-D
    X2 = nl.D1(200, 2).sample(0).X
    assert not np.allclose(nl.ntk_gram(X2, "relu"), 2 * nl.nngp_gram(X2, "relu"), rtol=1e-3)


def test_cross_kernel_agrees_with_gram_blocks():
    X = points(8)
    for act in ("erf", "relu"):
        full = nl.kernel_fn(X, activation=act, depth=3, sigma_b=0.1)
        cross = nl.kernel_fn(X[:3], X[3:], activation=act, depth=3, sigma_b=0.1)
        for g in ("nngp", "ntk"):
            np.testing.assert_allclose(cross[g], full[g][:3, 3:], rtol=1e-7)


class WideNet(torch.nn.Module):
    """A fully connected net in NTK parametrisation, scalar output."""

    def __init__(self, d0, width, depth, activation, sigma_w, sigma_b, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        dims = [d0] + [width] * (depth - 1) + [1]
        self.Ws = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(o, i, generator=g, dtype=torch.float64)) for i, o in zip(dims, dims[1:])])
        self.bs = torch.nn.ParameterList(
            [torch.nn.Parameter(torch.randn(o, generator=g, dtype=torch.float64)) for o in dims[1:]])
        self.phi = torch.erf if activation == "erf" else torch.relu
        self.sw, self.sb = sigma_w, sigma_b

    def forward(self, x):
        h = x
        for k, (W, b) in enumerate(zip(self.Ws, self.bs)):
            u = self.sw * h @ W.T / np.sqrt(h.shape[1]) + self.sb * b
            h = self.phi(u) if k < len(self.Ws) - 1 else u
        return h[:, 0]


@pytest.mark.parametrize("activation", ["erf", "relu"])
@pytest.mark.parametrize("depth", [2, 3])
def test_ntk_matches_empirical_ntk_of_wide_network(activation, depth):
    from torch.func import functional_call, jacrev

    X = points(5)
    Xt = torch.from_numpy(X)
    # width 20k at depth 2; at depth 3 the finite-width NTK fluctuates more (~10% at width
    # 2000 for ReLU), so average the empirical NTK of 4 independent nets of width 2000
    width, nets = (20_000, 1) if depth == 2 else (2_000, 4)
    ntk_emp = 0.0
    for seed in range(nets):
        net = WideNet(X.shape[1], width, depth, activation, 1.2, 0.3, seed=5 + seed)
        params = {k: v.detach() for k, v in net.named_parameters()}
        jac = jacrev(lambda p: functional_call(net, p, (Xt,)))(params)
        J = torch.cat([j.reshape(X.shape[0], -1) for j in jac.values()], dim=1)
        ntk_emp = ntk_emp + (J @ J.T).numpy() / nets
    ntk = nl.ntk_gram(X, activation, depth=depth, sigma_w=1.2, sigma_b=0.3)
    np.testing.assert_allclose(ntk_emp, ntk, rtol=0.06, atol=0.03 * np.abs(ntk).max())
    if activation == "erf":  # the reference variant is far from the network's NTK
        ref = nl.ntk_gram(X, activation, depth=depth, sigma_w=1.2, sigma_b=0.3, variant="reference")
        assert np.max(np.abs(ntk_emp - ref) / np.abs(ntk)) > 0.1


def test_torch_tensors_are_accepted():
    X = points(6)
    np.testing.assert_array_equal(nl.nngp_gram(torch.from_numpy(X), "erf"), nl.nngp_gram(X, "erf"))
