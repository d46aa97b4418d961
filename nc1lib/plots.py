"""Figures in the paper's style, drawn from sweep tables (one row per run).

The paper's NC1 figures (Figs. 2-6, 10-13) show, for each N (or class-size split),
the mean over repeats of ``log10 NC1`` against ``d0``, with a band of plus or minus one
standard deviation. :func:`summarise` computes those numbers; :func:`nc1_vs_d0` draws them.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

#: y-axis labels of the paper's figures, by table column.
VALUE_LABELS = {
    "nc1": r"$\log_{10}(\mathcal{NC}_1)$",
    "nc1_sample": r"$\log_{10}(\mathcal{NC}_1)$, sample-weighted",
    "rel_nc1": r"$\log_{10}(\mathcal{NC}_1(H) / \mathcal{NC}_1(X))$",
    "data_nc1": r"$\log_{10}(\mathcal{NC}_1(X))$",
}
_BY_LABELS = {"N": "N", "class_sizes": "class sizes"}


def summarise(table: pd.DataFrame, value: str = "nc1", by: str = "N") -> pd.DataFrame:
    """Mean and std (over repeats) of ``log10(value)`` per (``by``, ``d0``).

    Rows whose value is NaN, infinite or not positive cannot enter a log-mean: they are
    left out of ``mean``/``std`` but counted in the ``n_excluded`` column (and a
    ``RuntimeWarning`` says how many), so nothing disappears silently. Raises a
    ``ValueError`` if the table mixes several runs of the same repeat in one cell (e.g.
    NNGP and NTK rows together): filter it to one model first.
    """
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame, got {type(table).__name__}")
    for col in (value, by, "d0"):
        if col not in table.columns:
            raise ValueError(f"table has no column {col!r} (columns: {list(table.columns)})")
    if table.empty:
        raise ValueError("table is empty: nothing to plot")
    if "repeat" in table.columns and table.duplicated([by, "d0", "repeat"]).any():
        mixed = [c for c in ("model", "activation", "variant", "dataset") if c in table.columns
                 and table[c].nunique() > 1]
        raise ValueError(f"table has several rows per ({by}, d0, repeat)"
                         + (f"; it mixes values of {mixed}" if mixed else "")
                         + ": filter it to one model first")
    v = table[value].to_numpy(dtype=float)
    ok = np.isfinite(v) & (v > 0)
    logv = np.where(ok, np.log10(np.where(ok, v, 1.0)), np.nan)
    df = pd.DataFrame({by: table[by].to_numpy(), "d0": table["d0"].to_numpy(), "log10": logv, "ok": ok})
    g = df.groupby([by, "d0"], sort=True)
    out = pd.DataFrame({"mean": g["log10"].mean(), "std": g["log10"].std(ddof=0),
                        "n_runs": g["ok"].size(), "n_excluded": g["ok"].size() - g["ok"].sum()})
    bad = int(out["n_excluded"].sum())
    if bad:
        warnings.warn(f"{bad} of {len(df)} runs have a non-finite or non-positive {value}; they are "
                      f"left out of the log-mean (see the n_excluded column)", RuntimeWarning, stacklevel=2)
    return out.reset_index()


def _by_order(values):
    """N ascending; class-size splits like '768/1280' by growing imbalance (max/min), then by N."""
    vals = list(pd.unique(values))

    def key(v):
        if isinstance(v, str) and "/" in v:
            sizes = [int(x) for x in v.split("/")]
            return (max(sizes) / min(sizes), sum(sizes))
        return (float(v), 0)
    try:
        return sorted(vals, key=key)
    except (TypeError, ValueError):
        return vals


def nc1_vs_d0(table: pd.DataFrame, ax=None, value: str = "nc1", by: str = "N", label: str | None = None,
              title: str | None = None, band: bool = True, marker: str = "o", legend: bool = True, **plot_kw):
    """Draw mean ``log10(value)`` against ``d0``, one line per ``by`` (N or class-size split), with a
    +-1 std band. ``label`` prefixes each legend entry (to overlay several models on one axes).

    The x axis is log2 (the paper's d0 = 1, 2, 8, 32, 128) with the d0 values as ticks.
    Returns the axes. The summary it drew is in ``ax.nc1_summary`` (a list, one per call).
    """
    import matplotlib.pyplot as plt

    s = summarise(table, value=value, by=by)
    own_figure = ax is None
    if own_figure:
        _, ax = plt.subplots(figsize=(4.8, 3.6))
    for key in _by_order(s[by]):
        part = s[s[by] == key].sort_values("d0")
        name = f"{_BY_LABELS.get(by, by)}={key}"
        line, = ax.plot(part["d0"], part["mean"], marker=marker, markersize=4,
                        label=f"{label}, {name}" if label else name, **plot_kw)
        if band:
            ax.fill_between(part["d0"], part["mean"] - part["std"], part["mean"] + part["std"],
                            color=line.get_color(), alpha=0.2, linewidth=0)
    d0s = np.sort(s["d0"].unique())
    if d0s.min() > 0:
        ax.set_xscale("log", base=2)
    ax.set_xticks(d0s)
    ax.set_xticklabels([str(int(d)) if float(d).is_integer() else str(d) for d in d0s])
    ax.minorticks_off()
    ax.set_xlabel(r"$d_0$")
    ax.set_ylabel(VALUE_LABELS.get(value, rf"$\log_{{10}}$({value})"))
    if title is not None:
        ax.set_title(title)
    if legend:
        ax.legend(fontsize="small")
    ax.grid(True, alpha=0.3)
    if not hasattr(ax, "nc1_summary"):
        ax.nc1_summary = []
    ax.nc1_summary.append(s)
    if own_figure:
        ax.figure.tight_layout()
    return ax
