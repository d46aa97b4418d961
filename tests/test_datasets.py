import numpy as np
import pytest

import nc1lib as nl


def test_same_seed_same_data_and_sorted_by_class():
    a, b, c = nl.D1(64, 3).sample(7), nl.D1(64, 3).sample(7), nl.D1(64, 3).sample(8)
    np.testing.assert_array_equal(a.X, b.X)
    assert not np.allclose(a.X, c.X)
    assert np.all(np.diff(a.labels) >= 0) and a.class_sizes == (32, 32)


@pytest.mark.parametrize("spec, means, std, targets", [
    (nl.D1(20000, 2), (-2, 2), 0.5, (-1, 1)),
    (nl.D2(20000, 2), (-0.5, 0.5), 1.0, (-1, 1)),
    (nl.FourClass(20000, 2), (-6, -2, 2, 6), 0.5, (-3, -1, 1, 3)),
])
def test_class_distributions(spec, means, std, targets):
    ds = spec.sample(0)
    blocks = np.split(ds.X, np.cumsum(ds.class_sizes)[:-1])
    for blk, m, t, yb in zip(blocks, means, targets, np.split(ds.y, np.cumsum(ds.class_sizes)[:-1])):
        assert blk.mean() == pytest.approx(m, abs=0.03)
        assert blk.std() == pytest.approx(std, rel=0.03)
        assert np.all(yb == t)


def test_imbalanced_splits():
    for split in nl.IMBALANCED_SPLITS:
        ds = nl.D1_imbalanced(split, 2).sample(0)
        assert ds.N == 2048 and ds.class_sizes == split
