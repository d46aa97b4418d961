"""The one-dimensional theory: expected NC1 of the limiting kernels on 1-D Gaussian classes.

Paper Section 5.3, Theorem 5.1 and Appendices C, D, E. Setting: ``d0 = 1``, class ``c``
draws ``x ~ N(mu_c, s_c^2)``, ``sigma_w = 1``, ``sigma_b = 0``, so the pre-activation
kernel is ``S(x, x') = x x'``. Three layers:

* **Symbolic** (sympy; functions ending in ``_sym``): the three cases of ``E[k(x, x')]``
  (App. C eq. 27), the expected traces (Lemmas C.1, C.2), the ReLU expected NC1
  (Theorem 5.1 via Lemma C.3), the identity ``NTK = 2 NNGP`` for ReLU, and the
  small-``s`` (Gaussian Taylor) expansion of the Erf kernels' cases (App. E).
* **Numeric** (functions returning arrays): the same quantities evaluated, for the
  derived formulas, the exact ReLU expectation without Assumption 1, and the exact Erf
  expectations by numerical quadrature (a trapezoid rule in ``z = (x - mu)/s``, see
  :func:`_normal_nodes`).
* **Monte Carlo** (:func:`monte_carlo`): ``Tr Sigma_W``, ``Tr Sigma_B`` and NC1 over many
  sampled datasets, vectorised, with explicit seeds, means and standard errors, and the
  second-order ratio correction of Lemma C.3 (Seltman 2012) from the sampled moments.

Everything works for any number of classes ``C``; the paper's setting is ``C = 2``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import sympy as sp
from scipy.special import ndtr

from ._validate import as_float_array, check_choice, check_class_sizes
from .nc1 import WEIGHTINGS, traces_from_block_sums

KERNELS = {  # name -> (activation, get, variant); variant matters only for the Erf NTK (MATH.md 8.1)
    "relu_nngp": ("relu", "nngp", "derived"),
    "relu_ntk": ("relu", "ntk", "derived"),
    "erf_nngp": ("erf", "nngp", "derived"),
    "erf_ntk": ("erf", "ntk", "derived"),
    "erf_ntk_reference": ("erf", "ntk", "reference"),
}


# ----------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------

def _check_setting(means, stds, class_sizes=None):
    means = as_float_array(means, "means", ndim=1)
    stds = as_float_array(stds, "stds", ndim=1)
    if means.size < 2:
        raise ValueError(f"means must list at least 2 classes, got {means.size}")
    if stds.shape != means.shape:
        raise ValueError(f"stds has {stds.size} entries but means has {means.size}")
    if np.any(stds <= 0):
        raise ValueError(f"stds must be positive, got {stds.tolist()}")
    if class_sizes is None:
        return means, stds, None
    cs = np.asarray(class_sizes)
    if cs.shape != means.shape:
        raise ValueError(f"class_sizes has {cs.size} entries but means has {means.size}")
    cs = check_class_sizes(cs, int(np.sum(cs)))
    return means, stds, cs


def _check_kernel(kernel: str) -> tuple[str, str, str]:
    check_choice(kernel, KERNELS, "kernel")
    return KERNELS[kernel]


# ----------------------------------------------------------------------------------------
# Lemmas C.1, C.2: expected traces from the expected block sums (works for numbers,
# numpy arrays with leading batch axes, and sympy expressions)
# ----------------------------------------------------------------------------------------

def expected_block_sums(same_sample, same_class, cross, class_sizes):
    """``E[Tr K]`` and ``E[B]`` from the three cases of eq. 27 (App. C).

    ``same_sample[c] = E k(x, x)``, ``same_class[c] = E k(x, x')`` (two samples of class c),
    ``cross[c][d] = E k(x, x')`` (x in c, x' in d); ``E S_c = n_c a_c + n_c (n_c - 1) b_c``.
    """
    C = len(class_sizes)
    n = class_sizes
    trK = sum(n[c] * same_sample[c] for c in range(C))
    B = [[(n[c] * same_sample[c] + n[c] * (n[c] - 1) * same_class[c]) if c == d
          else n[c] * n[d] * cross[c][d] for d in range(C)] for c in range(C)]
    return trK, B


def expected_traces_from_cases(same_sample, same_class, cross, class_sizes, weighting="paper"):
    """Lemmas C.1 and C.2: ``(E Tr Sigma_W, E Tr Sigma_B)`` from the three cases of eq. 27."""
    trK, B = expected_block_sums(same_sample, same_class, cross, class_sizes)
    return traces_from_block_sums(trK, B, class_sizes, weighting)


# ----------------------------------------------------------------------------------------
# Symbolic layer
# ----------------------------------------------------------------------------------------

def symbols_2class():
    """The symbols of the two-class setting: mu1, mu2 (real), s1, s2 > 0, n1, n2 > 0."""
    mu1, mu2 = sp.symbols("mu1 mu2", real=True)
    s1, s2 = sp.symbols("s1 s2", positive=True)
    n1, n2 = sp.symbols("n1 n2", positive=True)
    return mu1, mu2, s1, s2, n1, n2


def lemma_c12_sym(weighting: str = "paper"):
    """Lemmas C.1, C.2 for two classes with generic case symbols.

    Returns ``(E Tr W, E Tr B, symbols)`` with ``symbols = (a1, a2, b1, b2, e, n1, n2)``:
    ``a_c`` same sample, ``b_c`` same class, ``e`` different classes (eq. 27).
    """
    a1, a2, b1, b2, e = sp.symbols("a1 a2 b1 b2 e", real=True)
    n1, n2 = sp.symbols("n1 n2", positive=True)
    tw, tb = expected_traces_from_cases([a1, a2], [b1, b2], [[None, e], [e, None]], [n1, n2], weighting)
    return sp.simplify(tw), sp.simplify(tb), (a1, a2, b1, b2, e, n1, n2)


def gaussian_moment_sym(k: int, mu, s):
    """``E[x^k]`` for ``x ~ N(mu, s^2)``, by integrating against the density (sympy)."""
    x = sp.symbols("x", real=True)
    dens = sp.exp(-(x - mu) ** 2 / (2 * s ** 2)) / sp.sqrt(2 * sp.pi * s ** 2)
    return sp.simplify(sp.integrate(x ** k * dens, (x, -sp.oo, sp.oo)))


def relu_kernel_branches_sym(x, y, get: str = "nngp"):
    """ReLU NNGP (App. B eq. 23) or NTK (eqs. 24-25) in 1-D with sigma_w = 1, sigma_b = 0.

    In 1-D, ``cos t = S(x, y) / sqrt(S(x, x) S(y, y)) = sign(x y)``, so ``t`` is 0 (same
    sign, ``|x||y| = x y``) or pi (opposite signs, ``|x||y| = -x y``). Returns
    ``{"same sign": expr, "opposite signs": expr}``, each a polynomial in ``x, y``.
    """
    check_choice(get, ("nngp", "ntk"), "get")
    t, norm = sp.symbols("t norm", real=True)
    K1 = norm * (sp.sin(t) + (sp.pi - t) * sp.cos(t)) / (2 * sp.pi)        # eq. 23
    Kdot = (sp.pi - t) / (2 * sp.pi)                                          # eq. 24
    kern = K1 if get == "nngp" else K1 + x * y * Kdot                         # eq. 25 (eq. 13)
    return {"same sign": sp.expand(kern.subs({t: 0, norm: x * y})),
            "opposite signs": sp.expand(kern.subs({t: sp.pi, norm: -x * y}))}


def relu_kernel_sym(x, y, get: str = "nngp"):
    """The ReLU kernel in 1-D as a :class:`sympy.Piecewise` in the sign of ``x y``."""
    br = relu_kernel_branches_sym(x, y, get)
    return sp.Piecewise((br["same sign"], x * y > 0), (br["opposite signs"], True))


def relu_ntk_minus_2nngp_sym():
    """``Theta - 2 K1`` for ReLU in 1-D, for same-sign and opposite-sign pairs (both simplify to 0)."""
    xp, yp = sp.symbols("x_p y_p", positive=True)
    out = {}
    for name, (x, y) in {"same sign": (xp, yp), "opposite signs": (xp, -yp), "both negative": (-xp, -yp)}.items():
        out[name] = sp.simplify(relu_kernel_sym(x, y, "ntk") - 2 * relu_kernel_sym(x, y, "nngp"))
    return out


def relu_cases_sym(get: str = "nngp"):
    """The three cases of eq. 27 for ReLU under Assumption 1 (sign of x = class), by sympy.

    Returns ``(same_sample, same_class, cross, symbols)`` with lists indexed by class
    (class 1 has mu1 < 0, class 2 has mu2 > 0), from ``E[x] = mu`` and ``E[x^2] = mu^2 + s^2``.
    """
    mu1, mu2, s1, s2, n1, n2 = symbols_2class()
    X, Y = sp.symbols("X Y", real=True)
    br = relu_kernel_branches_sym(X, Y, get)
    k_same, k_opp = br["same sign"], br["opposite signs"]   # Assumption 1: sign of x = its class

    def expect(poly, m, s, m2=None, s2_=None):
        # E over independent Gaussians of a polynomial in X (and Y): substitute moments
        p = sp.Poly(poly, X, Y)
        tot = 0
        for (i, j), coef in p.terms():
            tot += coef * gaussian_moment_sym(i, m, s) * (gaussian_moment_sym(j, m2, s2_) if j else 1)
        return sp.simplify(tot)

    mus, ss = [mu1, mu2], [s1, s2]
    same_sample = [expect(k_same.subs(Y, X), mus[c], ss[c]) for c in range(2)]
    same_class = [expect(k_same, mus[c], ss[c], mus[c], ss[c]) for c in range(2)]
    e = expect(k_opp, mu1, s1, mu2, s2)
    return same_sample, same_class, [[None, e], [e, None]], (mu1, mu2, s1, s2, n1, n2)


def relu_expected_nc1_sym(get: str = "nngp", weighting: str = "paper", balanced: bool = False):
    """Theorem 5.1: ``E[Tr W] / E[Tr B]`` for ReLU (Lemma C.3's leading term), simplified.

    Returns ``(nc1, E Tr W, E Tr B, symbols)``; with ``balanced=True`` both classes have
    ``n1 = n2 = n`` (symbol ``n``).
    """
    a, b, cross, (mu1, mu2, s1, s2, n1, n2) = relu_cases_sym(get)
    sizes = [n1, n2]
    syms = (mu1, mu2, s1, s2, n1, n2)
    if balanced:
        n = sp.symbols("n", positive=True)
        sizes = [n, n]
        syms = (mu1, mu2, s1, s2, n)
    tw, tb = expected_traces_from_cases(a, b, cross, sizes, weighting)
    tw, tb = sp.factor(sp.simplify(tw)), sp.factor(sp.simplify(tb))
    return sp.simplify(tw / tb), tw, tb, syms


def erf_kernel_sym(x, y, get: str = "nngp", variant: str = "derived", D=None):
    """Erf NNGP (eq. 11) or NTK (eqs. 13, 15) in 1-D with sigma_w = 1, sigma_b = 0.

    ``variant="reference"`` uses the reference code's derivative kernel (MATH.md 8.1) with
    ``D = sum_k (1 + 2 x_k^2)^2`` over the whole dataset, a symbol or expression here.
    """
    check_choice(get, ("nngp", "ntk"), "get")
    check_choice(variant, ("derived", "reference"), "variant")
    K1 = 2 / sp.pi * sp.asin(2 * x * y / sp.sqrt((1 + 2 * x ** 2) * (1 + 2 * y ** 2)))   # eq. 11
    if get == "nngp":
        return K1
    prod = (1 + 2 * x ** 2) * (1 + 2 * y ** 2) if variant == "derived" else D
    Kdot = 4 / sp.pi / sp.sqrt(prod - 4 * x ** 2 * y ** 2)                                  # eq. 15
    return K1 + x * y * Kdot                                                                 # eq. 13


def gaussian_taylor_expectation_sym(f, x, y, mu_x, s_x, mu_y=None, s_y=None, order: int = 2):
    """``E f(mu_x + s_x z1, mu_y + s_y z2)`` for independent standard normals, as a series.

    Keeps the terms of total order ``<= order`` in the standard deviations:
    ``sum_{2j + 2k <= order} s_x^{2j} s_y^{2k} (2j-1)!! (2k-1)!! / ((2j)! (2k)!) d_x^{2j} d_y^{2k} f``
    (odd Gaussian moments vanish). With ``y=None`` ``f`` is a function of ``x`` alone.
    Asymptotic, not convergent: a finite truncation is good only for ``s << |mu|``.
    """
    if order < 0 or order % 2:
        raise ValueError(f"order must be an even non-negative integer, got {order!r}")

    def coef(j):  # E[z^{2j}] / (2j)!
        return sp.factorial2(2 * j - 1) / sp.factorial(2 * j) if j else sp.Integer(1)

    tot = 0
    if y is None:
        for j in range(order // 2 + 1):
            tot += s_x ** (2 * j) * coef(j) * sp.diff(f, x, 2 * j).subs(x, mu_x)
        return tot
    for j in range(order // 2 + 1):
        for k in range(order // 2 + 1 - j):
            d = sp.diff(f, x, 2 * j) if j else f
            d = sp.diff(d, y, 2 * k) if k else d
            tot += s_x ** (2 * j) * s_y ** (2 * k) * coef(j) * coef(k) * d.subs({x: mu_x, y: mu_y})
    return tot


@lru_cache(maxsize=None)
def erf_cases_sym(get: str = "nngp", variant: str = "derived", order: int = 2):
    """App. E: the three cases of eq. 27 for Erf, as Gaussian Taylor series in the stds.

    Returns ``(same_sample, same_class, cross, symbols)`` for two classes, symbols
    ``(mu1, mu2, s1, s2, R)``. ``R`` enters only the reference variant (MATH.md 8.1): there
    ``D = sum_k (1 + 2 x_k^2)^2`` is split into the pair's own terms, expanded with the rest
    of the kernel, and the rest ``R`` of the dataset, held fixed (its value differs per case,
    see :func:`reference_rest_of_D`). :func:`kernel_cases_quadrature` treats ``D`` the same way.
    The kernel is smooth on the whole line, so no sign assumption is needed for the
    expansion itself; Assumption 1 enters as the condition ``s_c << |mu_c|`` for the
    truncated series to be accurate.
    """
    mu1, mu2, s1, s2, _, _ = symbols_2class()
    R = sp.symbols("R", positive=True)
    x, y = sp.symbols("x y", real=True)
    q = lambda v: (1 + 2 * v ** 2) ** 2                              # one sample's term of D
    f = erf_kernel_sym(x, y, get, variant, R + q(x) + q(y))           # a pair i != j
    g = erf_kernel_sym(x, x, get, variant, R + q(x))                  # i = j: one own term
    mus, ss = [mu1, mu2], [s1, s2]
    same_sample = [gaussian_taylor_expectation_sym(g, x, None, mus[c], ss[c], order=order) for c in range(2)]
    same_class = [gaussian_taylor_expectation_sym(f, x, y, mus[c], ss[c], mus[c], ss[c], order) for c in range(2)]
    e = gaussian_taylor_expectation_sym(f, x, y, mu1, s1, mu2, s2, order)
    return same_sample, same_class, [[None, e], [e, None]], (mu1, mu2, s1, s2, R)


def within_class_coefficient_sym(get: str = "nngp", variant: str = "derived"):
    """``kappa(mu) = d^2 k / dx dy`` at ``x = y = mu``: to order s^2, ``a_c - b_c = s_c^2 kappa(mu_c)``.

    (The delta method: the within-class spread of the features is ``s^2 |h'(mu)|^2``.)
    Returns ``(kappa, mu, D)``.
    """
    mu = sp.symbols("mu", positive=True)
    D = sp.symbols("D", positive=True)
    x, y = sp.symbols("x y", real=True)
    f = erf_kernel_sym(x, y, get, variant, D)
    return sp.simplify(sp.diff(f, x, y).subs({x: mu, y: mu})), mu, D


def balanced_leading_nc1_sym(get: str = "nngp", variant: str = "derived"):
    """Leading order of the expected NC1 for balanced, symmetric classes, ``n -> oo``.

    ``mu1 = -m``, ``mu2 = m``, ``s1 = s2 = s``: ``E Tr W = s^2 kappa(m) + O(s^4)`` and
    ``E Tr B = (k(m, m) - k(m, -m)) / 2 + O(s^2)``, so ``NC1 ~ s^2 kappa(m) / E Tr B``.
    Returns ``(nc1_leading, tr_w_leading, tr_b_leading, (m, s, D))``. For ReLU this gives
    Theorem 5.1's balanced large-n limit ``2 s^2 / m^2`` (``= 4 s^2 / (mu1^2 + mu2^2)``).
    """
    m = sp.symbols("m", positive=True)
    s_ = sp.symbols("s", positive=True)
    D = sp.symbols("D", positive=True)
    x, y = sp.symbols("x y", real=True)
    if variant == "reference" and get == "nngp":
        raise ValueError("variant='reference' changes only the NTK")
    if get not in ("nngp", "ntk"):
        raise ValueError(f"get must be 'nngp' or 'ntk', got {get!r}")
    f = erf_kernel_sym(x, y, get, variant, D)
    kappa = sp.diff(f, x, y).subs({x: m, y: m})
    tw = s_ ** 2 * sp.simplify(kappa)
    tb = sp.simplify((f.subs({x: m, y: m}) - f.subs({x: m, y: -m})) / 2)
    return sp.simplify(tw / tb), tw, tb, (m, s_, D)


def large_mu_series_sym(expr, mu, n_terms: int = 2):
    """Series of ``expr`` in ``1/mu`` as ``mu -> +oo`` (the first ``n_terms`` nonzero terms)."""
    eps = sp.symbols("epsilon", positive=True)
    e = expr.subs(mu, 1 / eps)
    out, order = 0, 4
    while True:
        ser = sp.series(e, eps, 0, order).removeO()
        terms = sp.Add.make_args(sp.expand(ser))
        if len([t for t in terms if t != 0]) >= n_terms or order > 16:
            break
        order += 2
    out = sp.expand(ser).subs(eps, 1 / mu)
    return out


# ----------------------------------------------------------------------------------------
# Numeric layer
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelCases:
    """The three cases of eq. 27 evaluated: ``same_sample[c]``, ``same_class[c]``, ``cross[c, d]``."""

    same_sample: np.ndarray
    same_class: np.ndarray
    cross: np.ndarray

    def traces(self, class_sizes, weighting: str = "paper"):
        """Lemmas C.1, C.2: ``(E Tr Sigma_W, E Tr Sigma_B)`` for these class sizes."""
        cs = [int(c) for c in class_sizes]
        if len(cs) != len(self.same_sample):
            raise ValueError(f"class_sizes has {len(cs)} entries but the cases have {len(self.same_sample)} classes")
        return expected_traces_from_cases(self.same_sample, self.same_class, self.cross, cs, weighting)

    def nc1(self, class_sizes, weighting: str = "paper"):
        """Lemma C.3's leading term: ``E[Tr W] / E[Tr B]``."""
        tw, tb = self.traces(class_sizes, weighting)
        return tw / tb


def _pos_part_mean(mu, s):
    """``E[max(x, 0)]`` for ``x ~ N(mu, s^2)``: ``mu Phi(mu/s) + s phi(mu/s)``."""
    r = mu / s
    return mu * ndtr(r) + s * np.exp(-0.5 * r * r) / math.sqrt(2 * math.pi)


def relu_cases(means, stds, get: str = "nngp", assumption1: bool = True) -> KernelCases:
    """ReLU cases of eq. 27 in 1-D. In 1-D ``K1(x, x') = (1/2) x x' 1[x x' > 0]`` exactly.

    ``assumption1=True``: the derived cases (sign = class; App. D eqs. 42-46):
    ``E k(x,x) = (mu^2 + s^2)/2``, ``E k(x,x') = mu^2/2`` within a class, ``0`` across.
    ``assumption1=False``: the exact expectation for any ``mu, s``, from
    ``x x' 1[x x' > 0] = x+ x'+ + x- x'-`` and ``E[x+] = mu Phi(mu/s) + s phi(mu/s)``.
    The NTK is twice the NNGP (see :func:`relu_ntk_minus_2nngp_sym`).
    """
    check_choice(get, ("nngp", "ntk"), "get")
    means, stds, _ = _check_setting(means, stds)
    scale = 1.0 if get == "nngp" else 2.0
    same_sample = 0.5 * (means ** 2 + stds ** 2)
    if assumption1:
        same_class = 0.5 * means ** 2
        cross = np.zeros((means.size, means.size))
    else:
        p = _pos_part_mean(means, stds)           # E[x+]
        m = _pos_part_mean(-means, stds)          # E[x-] = E[max(-x, 0)]
        same_class = 0.5 * (p ** 2 + m ** 2)
        cross = 0.5 * (np.outer(p, p) + np.outer(m, m))
    np.fill_diagonal(cross, np.nan)               # the diagonal is not a "cross" case
    return KernelCases(scale * same_sample, scale * same_class, scale * cross)


def kernel_1d(x, y, kernel: str, D=None):
    """The 1-D limiting kernels, vectorised by broadcasting ``x`` against ``y``.

    ``sigma_w = 1``, ``sigma_b = 0``; equals :func:`nc1lib.kernel_fn` on ``X[:, None]``.
    ``D`` (broadcastable) is ``sum_k (1 + 2 x_k^2)^2`` over the dataset, needed only by
    ``"erf_ntk_reference"`` (MATH.md 8.1).
    """
    act, get, variant = _check_kernel(kernel)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    S12 = x * y                                                     # eq. 10, d0 = 1
    if act == "relu":
        K1 = np.where(S12 > 0, 0.5 * S12, 0.0)                      # App. B with t in {0, pi}
        return K1 if get == "nngp" else 2.0 * K1                    # eq. 25: Theta = 2 K1 in 1-D
    a1, a2 = 1.0 + 2.0 * x * x, 1.0 + 2.0 * y * y
    K1 = (2.0 / np.pi) * np.arcsin(np.clip(2.0 * S12 / np.sqrt(a1 * a2), -1.0, 1.0))   # eq. 11
    if get == "nngp":
        return K1
    if variant == "reference":
        if D is None:
            raise ValueError("D (sum_k (1 + 2 x_k^2)^2 over the dataset) is required for 'erf_ntk_reference'")
        prod = D
    else:
        prod = a1 * a2
    return K1 + S12 * (4.0 / np.pi) / np.sqrt(prod - 4.0 * S12 ** 2)   # eqs. 13, 15


def _q2_mean(means, stds):
    """``E[(1 + 2x^2)^2] = 1 + 4(mu^2 + s^2) + 4(mu^4 + 6 mu^2 s^2 + 3 s^4)`` per class."""
    return (1.0 + 4.0 * (means ** 2 + stds ** 2)
            + 4.0 * (means ** 4 + 6 * means ** 2 * stds ** 2 + 3 * stds ** 4))


def reference_D_expected(means, stds, class_sizes):
    """``E[D] = sum_c n_c E[(1 + 2 x^2)^2]`` for the reference Erf NTK (MATH.md 8.1)."""
    means, stds, cs = _check_setting(means, stds, class_sizes)
    return float(np.sum(cs * _q2_mean(means, stds)))


def reference_rest_of_D(means, stds, D):
    """The part of ``D`` that the theory holds fixed, per case of eq. 27 (reference Erf NTK).

    ``D = sum_k (1 + 2 x_k^2)^2``: for a pair ``(i, j)`` the terms ``k = i, j`` are kept
    exactly (they correlate with ``k(x_i, x_j)``) and the other ``N - 2`` (``N - 1`` when
    ``i = j``) are replaced by their expectation; ``D`` is ``E[D]``. Returns
    ``(same_sample[c], same_class[c], cross[c, d])`` of ``D - E[own terms]``. The remaining
    fluctuations of the rest are ``O(N^-1/2)`` and leave an ``O(1/N)`` bias against Monte Carlo.
    """
    m4 = _q2_mean(means, stds)
    return D - m4, D - 2.0 * m4, D - m4[:, None] - m4[None, :]


def _normal_nodes(stds, n_nodes):
    """Nodes ``z`` and weights for ``E f(z)``, ``z ~ N(0, 1)``: a trapezoid rule on [-9, 9].

    For an integrand analytic in a strip ``|Im x| < d`` the trapezoid error falls like
    ``exp(-2 pi d / h)`` with ``h`` the spacing in ``x`` (``s * dz``); the Erf kernels'
    nearest singularities are at ``Im x = +-1/sqrt(2)``, so ``h <= 0.1`` gives rounding-level
    accuracy (checked against ``h = 0.03``: relative differences <= 1e-15 for s in 0.05-4).
    (Gauss-Hermite with a fixed 80 nodes was off by 1% at s = 4.)
    """
    L = 9.0
    if n_nodes is None:
        n_nodes = int(min(4001, max(241, math.ceil(2 * L * float(np.max(stds)) / 0.1))))
    z = np.linspace(-L, L, int(n_nodes))
    w = np.exp(-0.5 * z * z)
    return z, w / w.sum()


def kernel_cases_quadrature(means, stds, kernel: str, D=None, n_nodes: int | None = None) -> KernelCases:
    """The three cases of eq. 27 by numerical quadrature of the exact expectation.

    Exact up to quadrature error for kernels smooth in ``x`` (Erf); no sign assumption.
    For ``"erf_ntk_reference"``, ``D = E[sum_k (1 + 2 x_k^2)^2]``: the pair's own terms are
    integrated exactly and the rest held at its mean, as in the series (:func:`reference_rest_of_D`).
    (ReLU's kink at 0 makes quadrature slow to converge: use ``relu_cases(..., assumption1=False)``.)
    """
    means, stds, _ = _check_setting(means, stds)
    _, _, variant = _check_kernel(kernel)
    if variant == "reference" and D is None:
        raise ValueError("D is required for 'erf_ntk_reference' (see reference_D_expected)")
    z, w = _normal_nodes(stds, n_nodes)                              # E over N(0, 1)
    C = means.size
    xs = means[:, None] + stds[:, None] * z[None, :]                  # (C, n_nodes)
    q = (1.0 + 2.0 * xs * xs) ** 2                                    # each sample's term of D
    if variant == "reference":
        R_a, R_b, R_e = reference_rest_of_D(means, stds, D)
        D_a = lambda c: R_a[c] + q[c]
        D_pair = lambda c, d: (R_b[c] if c == d else R_e[c, d]) + q[c][:, None] + q[d][None, :]
    else:
        D_a = D_pair = lambda *_: None

    same_sample = np.array([np.sum(w * kernel_1d(xs[c], xs[c], kernel, D_a(c))) for c in range(C)])
    W2 = w[:, None] * w[None, :]
    pair = lambda c, d: float(np.sum(W2 * kernel_1d(xs[c][:, None], xs[d][None, :], kernel, D_pair(c, d))))
    same_class = np.array([pair(c, c) for c in range(C)])
    cross = np.full((C, C), np.nan)
    for c in range(C):
        for d in range(C):
            if c != d:
                cross[c, d] = pair(c, d)
    return KernelCases(same_sample, same_class, cross)


@lru_cache(maxsize=256)
def _quadrature_cached(means, stds, kernel, D):
    return kernel_cases_quadrature(means, stds, kernel, D)


@lru_cache(maxsize=None)
def _erf_cases_lambdified(get, variant, order):
    a, b, cross, syms = erf_cases_sym(get, variant, order)
    fa = [sp.lambdify(syms, a[c], "numpy", cse=True) for c in range(2)]
    fb = [sp.lambdify(syms, b[c], "numpy", cse=True) for c in range(2)]
    fe = sp.lambdify(syms, cross[0][1], "numpy", cse=True)
    return fa, fb, fe


def erf_cases_series(means, stds, kernel: str = "erf_nngp", order: int = 2, D=None) -> KernelCases:
    """App. E: the Erf cases of eq. 27 from the truncated Gaussian Taylor series (two classes).

    ``order`` 0 keeps only ``k(mu, mu')`` (the data collapsed to the class means); 2 adds the
    ``s^2`` terms (the leading within-class variance); 4 the ``s^4`` terms. For the reference
    NTK, ``D = E[sum_k (1 + 2 x_k^2)^2]`` (see :func:`reference_rest_of_D`).
    """
    act, get, variant = _check_kernel(kernel)
    if act != "erf":
        raise ValueError(f"kernel must be an Erf kernel, got {kernel!r}")
    means, stds, _ = _check_setting(means, stds)
    if means.size != 2:
        raise ValueError(f"the Erf series is implemented for 2 classes, got {means.size}")
    if variant == "reference" and D is None:
        raise ValueError("D is required for 'erf_ntk_reference' (see reference_D_expected)")
    fa, fb, fe = _erf_cases_lambdified(get, variant, int(order))
    if variant == "reference":
        R_a, R_b, R_e = reference_rest_of_D(means, stds, float(D))
    else:
        R_a = R_b = np.ones(2)
        R_e = np.ones((2, 2))
    args = lambda R: (means[0], means[1], stds[0], stds[1], float(R))
    same_sample = np.array([float(fa[c](*args(R_a[c]))) for c in range(2)])
    same_class = np.array([float(fb[c](*args(R_b[c]))) for c in range(2)])
    e = float(fe(*args(R_e[0, 1])))
    return KernelCases(same_sample, same_class, np.array([[np.nan, e], [e, np.nan]]))


def theory_cases(means, stds, class_sizes, kernel: str, method: str) -> KernelCases:
    """One entry point for the cases of eq. 27.

    ``method``: ``"derived"`` (ReLU under Assumption 1; Erf: series to order 2),
    ``"series4"`` (Erf series to order 4), ``"exact"`` (ReLU closed form without
    Assumption 1; Erf by quadrature). The reference Erf NTK keeps each pair's own terms of
    ``D`` and holds the rest at its expectation (:func:`reference_rest_of_D`), in all methods.
    """
    check_choice(method, ("derived", "series4", "exact"), "method")
    act, get, variant = _check_kernel(kernel)
    D = reference_D_expected(means, stds, class_sizes) if variant == "reference" else None
    if act == "relu":
        if method == "series4":
            raise ValueError("method 'series4' applies to Erf kernels only")
        return relu_cases(means, stds, get, assumption1=(method == "derived"))
    if method == "exact":
        m, sd, _ = _check_setting(means, stds)
        return _quadrature_cached(tuple(m.tolist()), tuple(sd.tolist()), kernel, D)
    return erf_cases_series(means, stds, kernel, 2 if method == "derived" else 4, D)


# ----------------------------------------------------------------------------------------
# Monte Carlo over datasets
# ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MonteCarlo:
    """Per-dataset traces and NC1 over ``repeats`` sampled datasets, with summaries."""

    tr_w: np.ndarray
    tr_b: np.ndarray
    nc1: np.ndarray
    sign_violations: np.ndarray   # per dataset: samples whose sign is not their class's (Assumption 1)
    kernel: str
    weighting: str
    seed: int

    @property
    def repeats(self) -> int:
        return int(self.nc1.size)

    def mean_se(self, name: str):
        """``(mean, standard error)`` of ``tr_w``, ``tr_b`` or ``nc1`` over the datasets."""
        check_choice(name, ("tr_w", "tr_b", "nc1"), "name")
        v = getattr(self, name)
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(v.size))

    def ratio_of_means(self) -> float:
        """``mean(Tr W) / mean(Tr B)``: Lemma C.3's leading term with Monte Carlo expectations."""
        return float(self.tr_w.mean() / self.tr_b.mean())

    def seltman_second_order(self) -> float:
        """Lemma C.3 with the next terms (Seltman 2012), moments from the samples:
        ``E[A/B] ~ E A / E B - Cov(A, B) / (E B)^2 + Var(B) E A / (E B)^3``."""
        A, B = self.tr_w, self.tr_b
        mA, mB = A.mean(), B.mean()
        cov = np.cov(A, B, ddof=1)
        return float(mA / mB - cov[0, 1] / mB ** 2 + cov[1, 1] * mA / mB ** 3)


def sample_1d(means, stds, class_sizes, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """``repeats`` datasets of 1-D samples, shape (repeats, N), organised by class."""
    blocks = [means[c] + stds[c] * rng.standard_normal((repeats, int(n))) for c, n in enumerate(class_sizes)]
    return np.concatenate(blocks, axis=1)


def _block_sums_batched(K, cs):
    starts = np.concatenate([[0], np.cumsum(cs)])
    C = len(cs)
    B = [[K[:, starts[c]:starts[c + 1], starts[d]:starts[d + 1]].sum(axis=(1, 2)) for d in range(C)]
         for c in range(C)]
    return np.einsum("rii->r", K), B


def monte_carlo(means, stds, class_sizes, kernel: str, repeats: int, seed: int,
                weighting: str = "paper", max_elements: int = 4_000_000) -> MonteCarlo:
    """``Tr Sigma_W``, ``Tr Sigma_B`` and NC1 (Theorem 4.1) over ``repeats`` fresh datasets.

    Vectorised over datasets in chunks of at most ``max_elements`` Gram entries. ReLU uses
    the exact factorisation ``K = (x+ x'+ + x- x'-)/2`` (times 2 for the NTK) so its cost is
    ``O(N)`` per dataset; Erf builds each Gram. Datasets whose traces are not finite are
    kept (NaN in the arrays) and make the summaries NaN: nothing is dropped silently.
    """
    _check_kernel(kernel)
    check_choice(weighting, WEIGHTINGS, "weighting")
    means, stds, cs = _check_setting(means, stds, class_sizes)
    if int(repeats) != repeats or repeats < 2:
        raise ValueError(f"repeats must be an integer >= 2, got {repeats!r}")
    act, get, variant = KERNELS[kernel]
    rng = np.random.default_rng(seed)
    N, C = int(cs.sum()), cs.size
    starts = np.concatenate([[0], np.cumsum(cs)])
    chunk = max(1, int(max_elements // (N * N))) if act == "erf" else max(1, int(max_elements // N))
    tw_all, tb_all, viol_all = [], [], []
    done = 0
    while done < repeats:
        r = min(chunk, repeats - done)
        X = sample_1d(means, stds, cs, r, rng)
        sgn = np.sign(means)
        viol = sum(np.sum(np.sign(X[:, starts[c]:starts[c + 1]]) != sgn[c], axis=1) for c in range(C))
        if act == "relu":
            P, M = np.maximum(X, 0.0), np.maximum(-X, 0.0)
            Ps = [P[:, starts[c]:starts[c + 1]].sum(axis=1) for c in range(C)]
            Ms = [M[:, starts[c]:starts[c + 1]].sum(axis=1) for c in range(C)]
            scale = 0.5 if get == "nngp" else 1.0                  # Theta = 2 K1 in 1-D
            B = [[scale * (Ps[c] * Ps[d] + Ms[c] * Ms[d]) for d in range(C)] for c in range(C)]
            trK = scale * np.sum(X * X, axis=1)
        else:
            D = None
            if variant == "reference":
                D = np.sum((1.0 + 2.0 * X * X) ** 2, axis=1)[:, None, None]
            K = kernel_1d(X[:, :, None], X[:, None, :], kernel, D)
            trK, B = _block_sums_batched(K, cs)
        tw, tb = traces_from_block_sums(trK, B, [int(c) for c in cs], weighting)
        tw_all.append(tw)
        tb_all.append(tb)
        viol_all.append(viol)
        done += r
    tr_w, tr_b = np.concatenate(tw_all), np.concatenate(tb_all)
    with np.errstate(divide="ignore", invalid="ignore"):
        nc1 = tr_w / tr_b
    return MonteCarlo(tr_w, tr_b, nc1, np.concatenate(viol_all), kernel, weighting, int(seed))


def compare(means, stds, class_sizes, kernel: str, repeats: int, seed: int,
            weighting: str = "paper", methods=("derived", "exact")) -> dict:
    """One row comparing theory with Monte Carlo for one setting (used by the book's tables).

    Columns: the setting, ``|mu|/s`` (smallest over classes), Monte Carlo means and standard
    errors of ``Tr W``, ``Tr B``, NC1 (and NC1's median: its mean is heavy-tailed where
    ``Tr B`` can come near 0); for each method the expected traces, their z-scores
    ``(theory - MC) / SE``, and ``E Tr W / E Tr B``; the MC ratio of means and the Seltman
    second-order estimate; the fraction of samples violating Assumption 1.
    """
    means_a, stds_a, cs = _check_setting(means, stds, class_sizes)
    mc = monte_carlo(means_a, stds_a, cs, kernel, repeats, seed, weighting)
    row = {"kernel": kernel, "weighting": weighting, "mu": tuple(means_a.tolist()), "s": tuple(stds_a.tolist()),
           "class_sizes": tuple(int(c) for c in cs), "mu_over_s": float(np.min(np.abs(means_a) / stds_a)),
           "repeats": int(repeats), "seed": int(seed),
           "sign_violation_rate": float(mc.sign_violations.sum() / (mc.repeats * cs.sum()))}
    for nm in ("tr_w", "tr_b", "nc1"):
        row[f"mc_{nm}"], row[f"mc_{nm}_se"] = mc.mean_se(nm)
    row["mc_nc1_median"] = float(np.median(mc.nc1))
    row["mc_ratio_of_means"] = mc.ratio_of_means()
    row["mc_seltman2"] = mc.seltman_second_order()
    for m in methods:
        if m == "series4" and KERNELS[kernel][0] == "relu":
            continue
        tw, tb = theory_cases(means_a, stds_a, cs, kernel, m).traces(cs, weighting)
        row[f"{m}_tr_w"], row[f"{m}_tr_b"] = float(tw), float(tb)
        row[f"{m}_z_tr_w"] = (float(tw) - row["mc_tr_w"]) / row["mc_tr_w_se"]
        row[f"{m}_z_tr_b"] = (float(tb) - row["mc_tr_b"]) / row["mc_tr_b_se"]
        row[f"{m}_nc1"] = float(tw / tb)
    return row
