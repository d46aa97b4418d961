"""Gaussian class-mixture datasets of the paper (EXPERIMENTS.md, paper eq. 17).

A *spec* is a frozen description of a distribution; ``spec.sample(seed)`` draws a
:class:`Dataset` whose rows are organised (sorted) by class, as Theorem 4.1 assumes.
"""
from __future__ import annotations

from dataclasses import dataclass, field, asdict

import numpy as np

from ._validate import check_class_sizes, check_positive


@dataclass(frozen=True)
class Dataset:
    """Inputs ``X`` (N, d0), scalar regression targets ``y`` (N,), class index ``labels`` (N,)."""

    X: np.ndarray
    y: np.ndarray
    labels: np.ndarray
    class_sizes: tuple[int, ...]
    spec: "GaussianClasses | None" = None
    seed: int | None = None

    @property
    def N(self) -> int:
        return int(self.X.shape[0])

    @property
    def d0(self) -> int:
        return int(self.X.shape[1])

    @property
    def C(self) -> int:
        return len(self.class_sizes)


@dataclass(frozen=True)
class GaussianClasses:
    """Class ``c`` is ``N(means[c] * 1_{d0}, stds[c]^2 I)`` with target ``targets[c]``."""

    class_sizes: tuple[int, ...]
    d0: int
    means: tuple[float, ...]
    stds: tuple[float, ...]
    targets: tuple[float, ...]
    name: str = "gaussian"

    def __post_init__(self):
        cs = tuple(int(c) for c in self.class_sizes)
        object.__setattr__(self, "class_sizes", cs)
        check_class_sizes(cs, sum(cs))
        if int(self.d0) < 1:
            raise ValueError(f"d0 must be a positive integer, got {self.d0!r}")
        for nm in ("means", "stds", "targets"):
            v = tuple(float(a) for a in getattr(self, nm))
            if len(v) != len(cs):
                raise ValueError(f"{nm} has {len(v)} entries but there are {len(cs)} classes")
            object.__setattr__(self, nm, v)
        for s in self.stds:
            check_positive(s, "stds")

    @property
    def N(self) -> int:
        return sum(self.class_sizes)

    def config(self) -> dict:
        """Plain-data description (used as part of a cache key)."""
        return asdict(self)

    def sample(self, seed: int) -> Dataset:
        """Draw one dataset; the same ``seed`` gives the same data."""
        rng = np.random.default_rng(seed)
        blocks, ys, labs = [], [], []
        for c, n_c in enumerate(self.class_sizes):
            blocks.append(self.means[c] + self.stds[c] * rng.standard_normal((n_c, self.d0)))
            ys.append(np.full(n_c, self.targets[c]))
            labs.append(np.full(n_c, c, dtype=np.int64))
        return Dataset(np.concatenate(blocks), np.concatenate(ys), np.concatenate(labs),
                       self.class_sizes, spec=self, seed=seed)


def _halves(N: int) -> tuple[int, int]:
    if int(N) != N or N < 4 or N % 2:
        raise ValueError(f"N must be an even integer >= 4, got {N!r}")
    return (N // 2, N // 2)


def D1(N: int, d0: int, class_sizes=None) -> GaussianClasses:
    """Separable two-class data: N(-2*1, 0.25 I) with target -1 and N(+2*1, 0.25 I) with target +1."""
    cs = _halves(N) if class_sizes is None else tuple(class_sizes)
    if sum(cs) != N:
        raise ValueError(f"class_sizes sum to {sum(cs)}, but N = {N}")
    return GaussianClasses(cs, d0, (-2.0, 2.0), (0.5, 0.5), (-1.0, 1.0), name="D1")


#: The imbalanced splits of Appendix G (N = 2048).
IMBALANCED_SPLITS = ((1024, 1024), (768, 1280), (512, 1536), (256, 1792))


def D1_imbalanced(class_sizes, d0: int) -> GaussianClasses:
    """D1 with the given class sizes (App. G uses :data:`IMBALANCED_SPLITS`)."""
    cs = tuple(int(c) for c in class_sizes)
    return D1(sum(cs), d0, class_sizes=cs)


def D2(N: int, d0: int, mean: float = 0.5, std: float = 1.0) -> GaussianClasses:
    """Non-separable two-class data. *Assumed* (values lost in extraction): means -/+0.5*1, std 1."""
    return GaussianClasses(_halves(N), d0, (-mean, mean), (std, std), (-1.0, 1.0), name="D2")


def FourClass(N: int, d0: int) -> GaussianClasses:
    """Four classes with means -6, -2, 2, 6 (times 1_{d0}), std 0.5, targets -3, -1, 1, 3 (App. G)."""
    if int(N) != N or N < 8 or N % 4:
        raise ValueError(f"N must be a multiple of 4 and >= 8, got {N!r}")
    n = N // 4
    return GaussianClasses((n,) * 4, d0, (-6.0, -2.0, 2.0, 6.0), (0.5,) * 4,
                           (-3.0, -1.0, 1.0, 3.0), name="FourClass")
