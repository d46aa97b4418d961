"""Limiting kernels of fully connected networks: NNGP and NTK (paper eqs. 10-15, App. B).

``kernel_fn(X1, X2, get=...)`` follows neural-tangents' style; ``nngp_gram`` and
``ntk_gram`` are the Gram-matrix shortcuts the book uses. A network of ``depth`` L has
L - 1 hidden layers; depth 2 is the paper's 2L-FCN. For one hidden layer:

* ``Sigma0(x, x') = sigma_b^2 + sigma_w^2 x.x' / d0``                      (eq. 10)
* ``K1(x, x') = E[phi(u) phi(v)]``, ``(u, v) ~ N(0, Sigma0)``              (eq. 11, App. B)
* ``Kdot(x, x') = E[phi'(u) phi'(v)]``                                     (eq. 15, App. B)
* ``Theta = Sigma1 + Sigma0 * sigma_w^2 * Kdot``, ``Sigma1 = sigma_b^2 + sigma_w^2 K1``  (eqs. 13-14)

and deeper networks repeat the recursion layer by layer.
"""
from __future__ import annotations

import numpy as np

from ._validate import as_float_array, check_choice, check_positive

ACTIVATIONS = ("erf", "relu")
VARIANTS = ("derived", "reference")
GETS = ("nngp", "ntk")


def _erf_layer(S12, d1, d2, variant, want_dot):
    """Erf post-activation and derivative kernels (Williams 1996).

    ``d1``, ``d2`` are the variances S(x, x), S(x', x'), shaped to broadcast against ``S12``.
    """
    a1, a2 = 1.0 + 2.0 * d1, 1.0 + 2.0 * d2
    prod = a1 * a2
    # eq. 11: K1 = (2/pi) arcsin(2 S12 / sqrt((1 + 2 S11)(1 + 2 S22)))
    K = (2.0 / np.pi) * np.arcsin(np.clip(2.0 * S12 / np.sqrt(prod), -1.0, 1.0))
    if not want_dot:
        return K, None
    if variant == "reference":
        # MATH.md 8.1: the reference forms the product as a dot product, sum_k (1 + 2 S_kk)^2
        prod = np.full_like(S12, float(np.sum(a1 * a1)))
    # eq. 15: Kdot = (4/pi) ((1 + 2 S11)(1 + 2 S22) - 4 S12^2)^(-1/2)
    Kdot = (4.0 / np.pi) / np.sqrt(prod - 4.0 * S12 ** 2)
    return K, Kdot


def _relu_layer(S12, d1, d2, variant, want_dot):
    """ReLU arc-cosine kernels of degree 1 and 0 (Cho & Saul 2009; App. B); shapes as for Erf."""
    norms = np.sqrt(d1 * d2)
    safe = np.where(norms > 0, norms, 1.0)
    cos_t = np.clip(np.where(norms > 0, S12 / safe, 0.0), -1.0, 1.0)
    t = np.arccos(cos_t)
    # App. B: K1 = (1/2pi) sqrt(S11 S22) (sin t + (pi - t) cos t)
    K = norms * (np.sqrt(1.0 - cos_t ** 2) + (np.pi - t) * cos_t) / (2.0 * np.pi)
    # App. B: Kdot = (pi - t) / (2 pi)
    Kdot = (np.pi - t) / (2.0 * np.pi) if want_dot else None
    return K, Kdot


_LAYERS = {"erf": _erf_layer, "relu": _relu_layer}


def kernel_fn(X1, X2=None, *, activation: str, get=("nngp", "ntk"), depth: int = 2,
              sigma_w: float = 1.0, sigma_b: float = 0.0, variant: str = "derived"):
    """Limiting kernels between the rows of ``X1`` and ``X2`` (``X2=None``: the Gram of ``X1``).

    ``get`` is ``"nngp"`` (post-activation kernel of the last hidden layer), ``"ntk"``
    (the recursion of eq. 13 up to the last hidden layer's output), or a tuple of both,
    in which case a dict is returned. ``variant="reference"`` reproduces the reference
    implementation's Erf derivative kernel (MATH.md 8.1); it needs ``X2=None``, because
    that kernel couples every pair to the whole dataset's diagonal.
    """
    check_choice(activation, ACTIVATIONS, "activation")
    check_choice(variant, VARIANTS, "variant")
    gets = (get,) if isinstance(get, str) else tuple(get)
    for g in gets:
        check_choice(g, GETS, "get")
    if int(depth) != depth or depth < 2:
        raise ValueError(f"depth must be an integer >= 2 (one hidden layer or more), got {depth!r}")
    sigma_w = check_positive(sigma_w, "sigma_w")
    sigma_b = check_positive(sigma_b, "sigma_b", allow_zero=True)
    X1 = as_float_array(X1, "X1" if X2 is not None else "X", ndim=2)
    same = X2 is None
    if same:
        X2 = X1
    else:
        if variant == "reference":
            raise ValueError("variant='reference' is defined only for a Gram matrix (X2=None)")
        X2 = as_float_array(X2, "X2", ndim=2)
        if X2.shape[1] != X1.shape[1]:
            raise ValueError(f"X1 and X2 must have the same d0, got {X1.shape[1]} and {X2.shape[1]}")
    d0 = X1.shape[1]
    sw2, sb2 = sigma_w ** 2, sigma_b ** 2
    want_ntk = "ntk" in gets
    layer = _LAYERS[activation]

    # eq. 10: pre-activation covariance of the first hidden layer
    S12 = sb2 + sw2 * (X1 @ X2.T) / d0
    d1 = sb2 + sw2 * np.einsum("ij,ij->i", X1, X1) / d0
    d2 = d1 if same else sb2 + sw2 * np.einsum("ij,ij->i", X2, X2) / d0
    if same:
        # keep the diagonal bit-identical to the variances, so cos t = 1 exactly there (ReLU)
        np.fill_diagonal(S12, d1)
    theta = S12 if want_ntk else None
    for _ in range(depth - 1):
        K, Kdot = layer(S12, d1[:, None], d2[None, :], variant, want_ntk)
        # the post-activation variances K(x, x), for the next layer
        Kd1 = np.diag(K).copy() if same else layer(d1, d1, d1, "derived", False)[0]
        Kd2 = Kd1 if same else layer(d2, d2, d2, "derived", False)[0]
        S_next = sb2 + sw2 * K                                   # eq. 14: Sigma^{l}
        if want_ntk:
            theta = S_next + theta * sw2 * Kdot                  # eq. 13: Theta^{l}
        post = K
        S12, d1, d2 = S_next, sb2 + sw2 * Kd1, sb2 + sw2 * Kd2
    out = {"nngp": post, "ntk": theta}
    if isinstance(get, str):
        return out[get]
    return {g: out[g] for g in gets}


def nngp_gram(X, activation: str, depth: int = 2, sigma_w: float = 1.0, sigma_b: float = 0.0):
    """Post-activation NNGP Gram of the last hidden layer (eqs. 10-12)."""
    return kernel_fn(X, activation=activation, get="nngp", depth=depth, sigma_w=sigma_w, sigma_b=sigma_b)


def ntk_gram(X, activation: str, depth: int = 2, sigma_w: float = 1.0, sigma_b: float = 0.0,
             variant: str = "derived"):
    """NTK Gram by the recursion of eqs. 13-15; ``variant="reference"``: MATH.md 8.1."""
    return kernel_fn(X, activation=activation, get="ntk", depth=depth, sigma_w=sigma_w,
                     sigma_b=sigma_b, variant=variant)
