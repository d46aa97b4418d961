"""Figures from sweep tables (paper style) and the claims table."""
import matplotlib

matplotlib.use("Agg")  # tests only; the notebooks keep the default backend

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from nc1lib.claims import Claim, claims_table  # noqa: E402
from nc1lib.plots import nc1_vs_d0, summarise  # noqa: E402


def _table():
    rows = []
    for N in (128, 256):
        for d0 in (1, 2, 8):
            for r, v in enumerate((1e-3, 1e-1)):
                rows.append({"model": "nngp", "N": N, "d0": d0, "repeat": r, "nc1": v * N / 128 * d0,
                             "class_sizes": f"{N // 2}/{N // 2}"})
    return pd.DataFrame(rows)


def test_summary_is_mean_and_std_of_log10():
    s = summarise(_table())
    cell = s[(s.N == 256) & (s.d0 == 8)].iloc[0]
    logs = np.log10([1e-3 * 16, 1e-1 * 16])
    assert cell["mean"] == pytest.approx(logs.mean()) and cell["std"] == pytest.approx(logs.std())
    assert (s.n_runs == 2).all() and (s.n_excluded == 0).all()
    assert len(summarise(_table(), by="class_sizes")) == 6


def test_nonfinite_values_are_excluded_and_counted_not_hidden():
    t = _table()
    t.loc[0, "nc1"] = np.nan
    t.loc[1, "nc1"] = 0.0
    with pytest.warns(RuntimeWarning, match="2 of 12 runs"):
        s = summarise(t)
    assert s.n_excluded.sum() == 2


def test_mixed_models_and_missing_columns_raise():
    t = _table()
    mixed = pd.concat([t, t.assign(model="ntk")])
    with pytest.raises(ValueError, match="filter it to one model"):
        summarise(mixed)
    with pytest.raises(ValueError, match="no column 'rel_nc1'"):
        summarise(t, value="rel_nc1")
    with pytest.raises(ValueError, match="empty"):
        summarise(t.iloc[:0])


def test_plot_has_one_line_and_band_per_N_and_paper_axes():
    fig, ax = plt.subplots()
    nc1_vs_d0(_table(), ax=ax, title="Erf NNGP", label="NNGP")
    assert len(ax.get_lines()) == 2 and len(ax.collections) == 2
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["NNGP, N=128", "NNGP, N=256"]
    assert ax.get_xlabel() == "$d_0$" and "log_{10}" in ax.get_ylabel()
    assert ax.get_xscale() == "log" and list(ax.get_xticks()) == [1, 2, 8]
    np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), ax.nc1_summary[0].query("N == 128")["mean"])
    ax2 = nc1_vs_d0(_table(), by="class_sizes", value="nc1")
    assert ax2.get_legend().get_texts()[0].get_text() == "class sizes=64/64"
    split = pd.concat([_table().assign(class_sizes=cs) for cs in ("768/1280", "1024/1024", "256/1792")])
    split = split[split.N == 128]
    ax3 = nc1_vs_d0(split, by="class_sizes")                    # ordered by growing imbalance
    assert [t.get_text() for t in ax3.get_legend().get_texts()] == [
        "class sizes=1024/1024", "class sizes=768/1280", "class sizes=256/1792"]
    plt.close("all")


def test_claims_table_shows_verdicts_and_checks_holds():
    claims = [Claim(1, "Erf NC1 small", "ratio > 10", np.bool_(True), "ratio 31"),
              Claim(2, "NTK not lower", "all cells", False, "3 of 20 cells"),
              Claim(5, "EoS", "n/a", None, "not computed")]
    t = claims_table(claims)
    assert list(t.index) == [1, 2, 5]
    assert list(t.verdict) == ["holds", "does not hold", "undecided"]
    assert list(t.columns) == ["statement", "rule", "verdict", "evidence"]
    assert isinstance(claims[0].holds, bool)
    with pytest.raises(ValueError, match="holds"):
        Claim(3, "s", "r", "yes", "e")
    with pytest.raises(ValueError, match="Claim"):
        claims_table([{"number": 1}])
