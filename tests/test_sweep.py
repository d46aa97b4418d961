"""The sweep engine: fused kernels agree with kernel_fn, tables are tidy, cached, reproducible,
and non-finite runs are flagged, never dropped."""
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

from nc1lib import D1, D1_imbalanced, FourClass, covariance_traces_from_gram, kernel_fn, nc1_of_data
from nc1lib.sweep import (KernelModel, data_nc1, gram_row, grid, kernel_block_sums, repeat_seed, sweep,
                          traces_from_block_sums)

SPECS = [D1(40, 1), D1(36, 8), D1_imbalanced((12, 30), 32), FourClass(40, 2), D1(30, 128)]


def _relu_ntk_longdouble(X, sigma_w, sigma_b):
    """ReLU NTK (one hidden layer) in extended precision, cos t = 1 on the diagonal exactly."""
    X = X.astype(np.longdouble)
    sw2, sb2 = np.longdouble(sigma_w) ** 2, np.longdouble(sigma_b) ** 2
    S = sb2 + sw2 * (X @ X.T) / X.shape[1]
    d = np.diag(S).copy()
    n = np.sqrt(d[:, None] * d[None, :])
    c = np.clip(S / n, -1, 1)
    np.fill_diagonal(c, 1)
    t = np.arccos(c)
    K = n * (np.sin(t) + (np.pi - t) * c) / (2 * np.pi)
    return (sb2 + sw2 * K + S * sw2 * (np.pi - t) / (2 * np.pi)).astype(np.float64)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: f"{s.name}-{s.class_sizes}-{s.d0}")
@pytest.mark.parametrize("sigma_b", [0.0, 0.7])
def test_fused_block_sums_match_kernel_fn(spec, sigma_b):
    ds = spec.sample(3)
    for act in ("erf", "relu"):
        sums = kernel_block_sums(ds.X, ds.class_sizes, act, sigma_w=1.3, sigma_b=sigma_b,
                                 variants=("derived", "reference"), chunk=7)
        for v in ("derived", "reference"):
            G = kernel_fn(ds.X, activation=act, sigma_w=1.3, sigma_b=sigma_b, variant=v)
            if act == "relu":
                # The ReLU derivative kernel (pi - t)/2pi is ill-conditioned where cos t ~ 1: a
                # rounding error of 1e-16 in cos t moves t by 1e-8. kernel_fn's diagonal has such
                # an error; compare with an extended-precision evaluation instead. At d0 = 1 every
                # within-class pair has cos t = 1, so float64 cannot do better than ~1e-8 there.
                G["ntk"] = _relu_ntk_longdouble(ds.X, 1.3, sigma_b)
            for g in ("nngp", "ntk"):
                rtol = 1e-7 if (act, g, spec.d0) == ("relu", "ntk", 1) else 1e-11
                for w in ("paper", "sample"):
                    want = covariance_traces_from_gram(G[g], ds.class_sizes, w)
                    got = traces_from_block_sums(*sums[(g, v)], ds.class_sizes, w)
                    np.testing.assert_allclose(got, want, rtol=rtol, err_msg=f"{act} {v} {g} {w}")


def test_fused_reference_variant_differs_only_for_the_erf_ntk():
    ds = D1(64, 8).sample(0)
    erf = kernel_block_sums(ds.X, ds.class_sizes, "erf", variants=("derived", "reference"))
    relu = kernel_block_sums(ds.X, ds.class_sizes, "relu", variants=("derived", "reference"))
    assert erf[("nngp", "derived")][0] == erf[("nngp", "reference")][0]
    assert abs(erf[("ntk", "reference")][0] / erf[("ntk", "derived")][0] - 1) > 1e-2
    assert relu[("ntk", "derived")][0] == relu[("ntk", "reference")][0]


def test_relu_1d_sign_separated_ntk_and_nngp_have_equal_nc1():
    # Theorem 5.1 setting: Theta = 2 K1 sample by sample, so NC1 agrees to rounding
    ds = D1(64, 1).sample(5)
    assert np.all(np.sign(ds.X[:, 0]) == np.where(ds.labels == 0, -1, 1))
    sums = kernel_block_sums(ds.X, ds.class_sizes, "relu")
    nngp = traces_from_block_sums(*sums[("nngp", "derived")], ds.class_sizes)
    ntk = traces_from_block_sums(*sums[("ntk", "derived")], ds.class_sizes)
    assert nngp[0] / nngp[1] == pytest.approx(ntk[0] / ntk[1], rel=1e-7)  # float64 limit at cos t = 1


def test_gram_row_and_data_nc1_match_theorem41():
    ds = D1_imbalanced((10, 26), 4).sample(2)
    K = kernel_fn(ds.X, activation="erf", get="ntk")
    row = gram_row("ntk", K, ds.class_sizes, extra=1)
    for w, key in (("paper", "nc1"), ("sample", "nc1_sample")):
        tw, tb = covariance_traces_from_gram(K, ds.class_sizes, w)
        assert row[key] == pytest.approx(tw / tb, rel=1e-12)
        assert data_nc1(ds.X, ds.class_sizes, w) == pytest.approx(nc1_of_data(ds.X, ds.class_sizes, w), rel=1e-12)
    assert row["extra"] == 1 and row["model"] == "ntk"
    with pytest.raises(ValueError, match="symmetric"):
        gram_row("x", K + np.triu(np.ones_like(K), 1), ds.class_sizes)
    with pytest.raises(ValueError, match="weighting"):
        traces_from_block_sums(1.0, np.eye(2), (2, 2), "balanced")


def test_kernel_model_fused_and_gram_paths_agree_and_table_is_tidy(tmp_path):
    specs = grid(D1, [32, 48], [1, 8])
    models = [KernelModel("erf", variant=("derived", "reference")), KernelModel("relu")]
    fused = sweep(models, specs, 2, cache=False, progress=False)
    slow = sweep([KernelModel("erf", variant=("derived", "reference"), fused=False), KernelModel("relu", fused=False)],
                 specs, 2, cache=False, progress=False)
    for col in ("model", "activation", "variant", "N", "d0", "class_sizes", "repeat", "seed", "nc1",
                "nc1_sample", "data_nc1", "rel_nc1", "seconds", "finite"):
        assert col in fused.columns, col
    # 2 cells x 2 d0 x 2 repeats x (erf: 2 variants x 2 kernels + relu: 2 kernels)
    assert len(fused) == 4 * 2 * (4 + 2)
    pd.testing.assert_frame_equal(fused.drop(columns="seconds"), slow.drop(columns="seconds"), rtol=1e-6)
    erf_ntk = fused[(fused.activation == "erf") & (fused.model == "ntk")]
    assert (erf_ntk.groupby("variant").size() == 8).all()
    np.testing.assert_allclose(fused.rel_nc1, fused.nc1 / (fused.data_nc1 + 1e-8))
    assert fused.finite.all() and fused.attrs["n_nonfinite"] == 0


def test_repeats_have_distinct_reproducible_seeds():
    specs = grid(D1, [16, 24], [1, 2])
    a = sweep(KernelModel("erf", get="nngp"), specs, 4, cache=False, progress=False)
    b = sweep(KernelModel("erf", get="nngp"), specs, 4, cache=False, progress=False)
    assert a.seed.nunique() == len(a) == 16
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    for _, row in a.iterrows():
        spec = D1(row["N"], row["d0"])
        assert row["seed"] == repeat_seed(0, spec, row["repeat"])
        ds = spec.sample(row["seed"])
        assert row["data_nc1"] == pytest.approx(nc1_of_data(ds.X, ds.class_sizes))
    c = sweep(KernelModel("erf", get="nngp"), specs, 4, seed=1, cache=False, progress=False)
    assert not set(c.seed) & set(a.seed)


class CountingModel:
    """A model that counts its calls; ``bad`` makes some runs NaN or infinite."""

    def __init__(self, tag="a", bad=False):
        self.name, self.tag, self.bad, self.calls = "counting", tag, bad, 0

    def config(self):
        return {"tag": self.tag, "bad": self.bad}

    def run_cell(self, datasets, seeds):
        self.calls += 1
        out = []
        for r, ds in enumerate(datasets):
            v = float(np.mean(ds.X ** 2))
            if self.bad and r == 0:
                v = float("nan")
            if self.bad and r == 1:
                v = float("inf")
            out.append([{"model": "count", "nc1": v, "flag": bool(np.bool_(True))}])
        return out


def test_cache_hits_misses_and_force(tmp_path):
    specs = grid(D1, [16], [1, 2])
    m = CountingModel()
    t1 = sweep(m, specs, 3, cache=tmp_path, progress=False)
    assert m.calls == 2
    t2 = sweep(m, specs, 3, cache=tmp_path, progress=False)
    assert m.calls == 2                                   # all cells from the cache
    pd.testing.assert_frame_equal(t1, t2)
    sweep(m, specs, 3, cache=tmp_path, progress=False, force=True)
    assert m.calls == 4                                   # force recomputes
    sweep(m, specs, 4, cache=tmp_path, progress=False)
    assert m.calls == 6                                   # more repeats: new seeds, a miss
    m2 = CountingModel(tag="b")
    sweep(m2, specs, 3, cache=tmp_path, progress=False)
    assert m2.calls == 2                                  # other model settings: a miss
    sweep(m, grid(D1, [16], [1, 2, 8]), 3, cache=tmp_path, progress=False)
    assert m.calls == 7                                   # only the new cell is computed
    sweep(m, specs, 3, cache=tmp_path, progress=False, data_weighting="sample")
    assert m.calls == 9                                   # other data weighting: a miss


def test_nonfinite_runs_are_kept_flagged_and_counted(tmp_path):
    specs = grid(D1, [16], [1, 2])
    with pytest.warns(RuntimeWarning, match="4 of 12 runs have a non-finite nc1"):
        t = sweep(CountingModel(bad=True), specs, 6, cache=tmp_path, progress=False)
    assert len(t) == 12 and t.attrs["n_nonfinite"] == 4
    assert (~t.finite).sum() == 4 and t[~t.finite].repeat.isin([0, 1]).all()
    assert np.isnan(t.nc1[~t.finite & (t.repeat == 0)]).all()
    assert np.isinf(t.nc1[~t.finite & (t.repeat == 1)]).all()
    with pytest.warns(RuntimeWarning, match="4 of 12"):   # and again from the cache
        t2 = sweep(CountingModel(bad=True), specs, 6, cache=tmp_path, progress=False)
    pd.testing.assert_frame_equal(t, t2)


def test_thread_executor_gives_the_in_process_table():
    specs = grid(D1, [16, 32], [1, 8])
    models = [KernelModel("erf", variant=("derived", "reference")), KernelModel("relu")]
    a = sweep(models, specs, 3, cache=False, progress=False)
    with ThreadPoolExecutor(max_workers=2) as ex:
        b = sweep(models, specs, 3, cache=False, progress=False, executor=ex)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


class _RecordingExecutor(ThreadPoolExecutor):
    """One worker, so cells run in submission order; records that order."""

    def __init__(self):
        super().__init__(max_workers=1)
        self.order = []

    def submit(self, fn, *args, **kwargs):
        self.order.append((args[0].name, args[1].N, args[1].d0))
        return super().submit(fn, *args, **kwargs)


def test_executor_gets_the_most_expensive_cells_first_and_the_table_keeps_grid_order():
    from nc1lib.fcn import FCNModel
    specs = grid(D1, [16, 32], [1, 8])
    models = [KernelModel("relu"), FCNModel("erf", width=4, epochs=2), FCNModel("relu", width=4, epochs=2)]
    ex = _RecordingExecutor()
    with ex:
        b = sweep(models, specs, 2, cache=False, progress=False, executor=ex)
    costs = [next(m for m in models if m.name == nm).cost(D1(N, d0), 2) for nm, N, d0 in ex.order]
    assert len(costs) == 12 and costs == sorted(costs, reverse=True)
    assert ex.order[0] == ("2l-fcn-erf", 32, 8)            # Erf's elementwise work costs more than ReLU's
    a = sweep(models, specs, 2, cache=False, progress=False)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    first = b[(b.repeat == 0) & (b.model != "ntk")]           # one row per (model, cell)
    assert [(int(N), int(d0)) for N, d0 in zip(first.N, first.d0)] == \
        [(N, d0) for _ in models for N, d0 in [(16, 1), (16, 8), (32, 1), (32, 8)]]   # grid order, model-major


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="repeats"):
        sweep(KernelModel("erf"), [D1(8, 1)], 0, cache=False)
    with pytest.raises(ValueError, match="specs"):
        sweep(KernelModel("erf"), [], 1, cache=False)
    with pytest.raises(ValueError, match="data_weighting"):
        sweep(KernelModel("erf"), [D1(8, 1)], 1, cache=False, data_weighting="x")
    with pytest.raises(ValueError, match="activation"):
        KernelModel("tanh")
    with pytest.raises(ValueError, match="variant"):
        KernelModel("erf", variant=("derived", "faithful"))
    with pytest.raises(ValueError, match="depth"):
        KernelModel("erf", depth=1)
    ds = D1(8, 1).sample(0)
    with pytest.raises(ValueError, match="chunk"):
        kernel_block_sums(ds.X, ds.class_sizes, "erf", chunk=0)
    with pytest.raises(ValueError, match="class_sizes"):
        kernel_block_sums(ds.X, (3, 3), "erf")


def test_deeper_kernel_model_uses_kernel_fn():
    specs = [D1(24, 2)]
    t = sweep(KernelModel("relu", depth=3), specs, 1, cache=False, progress=False)
    ds = specs[0].sample(repeat_seed(0, specs[0], 0))
    G = kernel_fn(ds.X, activation="relu", depth=3)
    for g in ("nngp", "ntk"):
        tw, tb = covariance_traces_from_gram(G[g], ds.class_sizes)
        assert t[t.model == g].nc1.item() == pytest.approx(tw / tb, rel=1e-12)


def test_blas_thread_limit_is_restored_after_concurrent_use():
    from nc1lib.sweep import _openblas_libs, limit_blas_threads
    np.ones((64, 64)) @ np.ones((64, 64))             # make sure BLAS is loaded
    before = [get() for get, _ in _openblas_libs()]
    specs = grid(D1, [32], [2, 8])
    with ThreadPoolExecutor(max_workers=3) as ex:
        sweep([KernelModel("erf"), KernelModel("relu")], specs, 2, cache=False, progress=False, executor=ex)
    with limit_blas_threads(1):
        with limit_blas_threads(1):
            assert all(get() == 1 for get, _ in _openblas_libs())
    assert [get() for get, _ in _openblas_libs()] == before


def test_process_executor_gives_the_in_process_table():
    from concurrent.futures import ProcessPoolExecutor
    specs = grid(D1, [16], [1, 8])
    models = [KernelModel("erf", variant=("derived", "reference"))]
    a = sweep(models, specs, 2, cache=False, progress=False)
    with ProcessPoolExecutor(max_workers=1) as ex:
        b = sweep(models, specs, 2, cache=False, progress=False, executor=ex)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))


def test_progress_bar_is_shown(capsys):
    sweep(KernelModel("erf", get="nngp"), grid(D1, [16], [1, 2]), 1, cache=False, progress=True)
    err = capsys.readouterr().err
    assert "sweep (0/2 cells cached)" in err and "2/2" in err
