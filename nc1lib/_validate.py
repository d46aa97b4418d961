"""Input checks shared by the library: every bad input raises a ValueError naming the parameter."""
from __future__ import annotations

import numpy as np


def as_float_array(x, name: str, ndim: int | None = None) -> np.ndarray:
    """Convert ``x`` (numpy array, torch tensor, list) to float64; reject NaN/inf and wrong rank."""
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x, dtype=np.float64)
    if ndim is not None and a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        bad = int(np.size(a) - np.count_nonzero(np.isfinite(a)))
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s)")
    return a


def check_class_sizes(class_sizes, n: int, name: str = "class_sizes") -> np.ndarray:
    """Class sizes must be positive integers, at least 2 each, summing to ``n``."""
    cs = np.asarray(class_sizes)
    if cs.ndim != 1 or cs.size < 2:
        raise ValueError(f"{name} must list at least 2 classes, got {class_sizes!r}")
    if not np.all(np.equal(np.mod(cs, 1), 0)):
        raise ValueError(f"{name} must be whole numbers, got {class_sizes!r}")
    cs = cs.astype(np.int64)
    if np.any(cs < 2):
        raise ValueError(f"{name}: every class needs at least 2 samples, got {cs.tolist()}")
    if int(cs.sum()) != n:
        raise ValueError(f"{name} sum to {int(cs.sum())}, but there are N = {n} samples")
    return cs


def check_gram(K, name: str = "K", rtol: float = 1e-8) -> np.ndarray:
    """A Gram matrix must be square, finite and symmetric."""
    K = as_float_array(K, name, ndim=2)
    if K.shape[0] != K.shape[1]:
        raise ValueError(f"{name} must be square, got shape {K.shape}")
    scale = max(float(np.max(np.abs(K))), 1e-300)
    asym = float(np.max(np.abs(K - K.T)))
    if asym > rtol * scale:
        raise ValueError(f"{name} is not symmetric: max |K - K^T| = {asym:.3g} (scale {scale:.3g})")
    return K


def check_choice(value, choices, name: str):
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {sorted(choices)}")
    return value


def check_positive(value, name: str, allow_zero: bool = False) -> float:
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'non-negative' if allow_zero else 'positive'} and finite, got {value!r}")
    return v
