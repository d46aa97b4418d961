"""NC1 metrics: from features (paper eqs. 5-7) and from a Gram matrix alone (Theorem 4.1).

Two conventions for the covariance traces, which agree when the classes are balanced:

* ``weighting="paper"`` -- Theorem 4.1 as the paper and its reference code state it:
  ``Tr(Sigma~_T - Sigma~_B)`` and ``Tr(Sigma~_B - Sigma_G)`` (MATH.md section 3).
* ``weighting="sample"`` -- the sample-weighted definitions of MATH.md section 2:
  ``Sigma_W = (1/N) sum_c sum_i (h - mu_c)(h - mu_c)^T``,
  ``Sigma_B = (1/C) sum_c (mu_c - mu_G)(mu_c - mu_G)^T`` with ``mu_G`` the sample mean.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._validate import as_float_array, check_class_sizes, check_choice, check_gram

WEIGHTINGS = ("paper", "sample")


class FeatureNC1(NamedTuple):
    """NC1 of a feature matrix: the paper's trace ratio and the classical metric beside it."""

    nc1: float            # Tr(Sigma_W) / Tr(Sigma_B) in the chosen weighting (paper eq. 7)
    nc1_classical: float  # (1/C) Tr(Sigma_W Sigma_B^+), sample-weighted (Papyan et al. 2020)
    tr_w: float
    tr_b: float


def labels_from_class_sizes(class_sizes) -> np.ndarray:
    """Class index of each row of an organised (class-sorted) dataset."""
    cs = np.asarray(class_sizes, dtype=np.int64)
    return np.repeat(np.arange(cs.size), cs)


def _class_means(H: np.ndarray, labels: np.ndarray):
    classes, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    if classes.size < 2:
        raise ValueError(f"labels must contain at least 2 classes, got {classes.size}")
    if np.any(counts < 2):
        raise ValueError(f"labels: every class needs at least 2 samples, got sizes {counts.tolist()}")
    means = np.zeros((classes.size, H.shape[1]))
    np.add.at(means, inv, H)
    means /= counts[:, None]
    return inv, counts, means


def nc1_from_features(H, labels, weighting: str = "paper") -> FeatureNC1:
    """NC1 of features ``H`` (N, p) with integer ``labels`` (N,) (paper eqs. 5-7)."""
    check_choice(weighting, WEIGHTINGS, "weighting")
    H = as_float_array(H, "H", ndim=2)
    labels = np.asarray(labels)
    if labels.shape != (H.shape[0],):
        raise ValueError(f"labels must have shape ({H.shape[0]},), got {labels.shape}")
    inv, counts, means = _class_means(H, labels)
    N, C = H.shape[0], counts.size
    mu_G = H.mean(axis=0)
    tr_w_s = float(np.sum((H - means[inv]) ** 2)) / N          # Tr Sigma_W, eq. 5
    D = means - mu_G                                               # centred class means (C, p)
    tr_b_s = float(np.sum(D ** 2)) / C                             # Tr Sigma_B, eq. 5
    if weighting == "sample":
        tr_w, tr_b = tr_w_s, tr_b_s
    else:
        # Tr(Sigma~_T - Sigma~_B) and Tr(Sigma~_B - Sigma_G) (eq. 6), written with centred terms
        sq = np.sum(means ** 2, axis=1)
        tr_w = tr_w_s + float(np.sum((counts / N - 1.0 / C) * sq))
        tr_b = tr_b_s + 2.0 * float(mu_G @ (means.mean(axis=0) - mu_G))
    # classical: (1/C) Tr(Sigma_W Sigma_B^+) with Sigma_B = (1/C) D^T D, so Sigma_B^+ = C D^+ D^+T
    Dp = np.linalg.pinv(D)                                         # (p, C)
    R = H - means[inv]
    classical = float(np.sum((R @ Dp) ** 2)) / N                  # = (1/C) * C * Tr(Dp^T Sigma_W Dp)
    return FeatureNC1(tr_w / tr_b if tr_b != 0 else float("inf"), classical, tr_w, tr_b)


def _block_sums(K: np.ndarray, cs: np.ndarray) -> np.ndarray:
    """C x C matrix of the sums of the Gram's class blocks."""
    starts = np.concatenate([[0], np.cumsum(cs)[:-1]])
    return np.add.reduceat(np.add.reduceat(K, starts, axis=0), starts, axis=1)


def traces_from_block_sums(trK, B, class_sizes, weighting: str = "paper"):
    """``(Tr Sigma_W, Tr Sigma_B)`` from ``Tr K`` and the C x C class-block sums ``B[c][d]``.

    Theorem 4.1 needs nothing else of a Gram. Written with plain arithmetic, so it applies to
    numbers, to arrays with leading batch axes, to expectations (the traces are linear in K)
    and to sympy symbols.
    """
    check_choice(weighting, WEIGHTINGS, "weighting")
    C = len(class_sizes)
    N = sum(class_sizes)
    n = class_sizes
    within = sum(B[c][c] / n[c] ** 2 for c in range(C)) / C      # (1/C) sum_c S_c / n_c^2
    S = sum(B[c][d] for c in range(C) for d in range(C))           # S: sum of the whole Gram
    if weighting == "paper":
        tr_w = trK / N - within                                    # Theorem 4.1, eq. 8
        tr_b = within - S / N ** 2                                 # Theorem 4.1, eq. 9
    else:
        T = [sum(B[c][d] for d in range(C)) for c in range(C)]     # T_c: block-row sums
        tr_w = (trK - sum(B[c][c] / n[c] for c in range(C))) / N   # (1/N) sum ||h - mu_c||^2
        tr_b = within - 2 * sum(T[c] / n[c] for c in range(C)) / (N * C) + S / N ** 2  # (1/C) sum ||mu_c - mu_G||^2
    return tr_w, tr_b


def covariance_traces_from_gram(K, class_sizes, weighting: str = "paper") -> tuple[float, float]:
    """``(Tr Sigma_W, Tr Sigma_B)`` from an organised Gram matrix (Theorem 4.1, eqs. 8-9)."""
    check_choice(weighting, WEIGHTINGS, "weighting")
    K = check_gram(K)
    cs = check_class_sizes(class_sizes, K.shape[0])
    tr_w, tr_b = traces_from_block_sums(float(np.trace(K)), _block_sums(K, cs), [int(c) for c in cs], weighting)
    return float(tr_w), float(tr_b)


def nc1_from_gram(K, class_sizes, weighting: str = "paper") -> float:
    """NC1 = Tr(Sigma_W)/Tr(Sigma_B) through the kernel alone (Theorem 4.1)."""
    tr_w, tr_b = covariance_traces_from_gram(K, class_sizes, weighting)
    return tr_w / tr_b if tr_b != 0 else float("inf")


def nc1_of_data(X, class_sizes, weighting: str = "paper") -> float:
    """NC1 of the raw inputs (the linear kernel x.x'), used by the relative NC1 (App. F).

    In O(N d0): the class-block sums of ``X X^T`` are the inner products of the class sums.
    """
    X = as_float_array(X, "X", ndim=2)
    cs = check_class_sizes(class_sizes, X.shape[0])
    M = np.add.reduceat(X, np.concatenate([[0], np.cumsum(cs)[:-1]]), axis=0)   # class sums of x
    tr_w, tr_b = traces_from_block_sums(float(np.einsum("ij,ij->", X, X)), M @ M.T, [int(c) for c in cs],
                                        weighting)
    return float(tr_w / tr_b) if tr_b != 0 else float("inf")


def relative_nc1(nc1_features, nc1_data, tau: float = 1e-8):
    """Relative NC1 = NC1(H) / (NC1(X) + tau) (App. F); the reference uses tau = 1e-8."""
    return np.asarray(nc1_features) / (np.asarray(nc1_data) + tau)
