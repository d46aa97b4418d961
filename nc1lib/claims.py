"""The paper's claims as checkable records: each verdict is computed by a stated rule.

A chapter builds ``Claim(number, statement, rule, holds, evidence)`` objects whose
``holds`` is the result of code applied to a sweep table (never typed by hand), and
shows them with :func:`claims_table`.

The rules for the limiting kernels' claims (chapter 2: claims 1, 2, 3, 4's kernel part and 7)
live here as functions of a KernelModel sweep table (:func:`kernel_claims` runs them all); a
rule returns an "undecided" Claim (``holds=None``) when the table lacks the data it needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Claim:
    """One claim of the paper (EXPERIMENTS.md numbering) and this reproduction's verdict.

    ``holds`` is True/False, or None when the data do not decide (e.g. not computed in
    this profile). ``evidence`` gives the numbers the verdict rests on.
    """

    number: int | str
    statement: str
    rule: str
    holds: bool | None
    evidence: str

    def __post_init__(self):
        h = self.holds
        if h is not None:
            if isinstance(h, (bool, np.bool_)):
                object.__setattr__(self, "holds", bool(h))
            else:
                raise ValueError(f"holds must be True, False or None, got {h!r}")
        for nm in ("statement", "rule", "evidence"):
            if not isinstance(getattr(self, nm), str):
                raise ValueError(f"{nm} must be a string, got {type(getattr(self, nm)).__name__}")

    @property
    def verdict(self) -> str:
        return {True: "holds", False: "does not hold", None: "undecided"}[self.holds]


def claims_table(claims) -> pd.DataFrame:
    """A DataFrame, one row per claim (index: the claim number), ready to display in the book."""
    claims = list(claims)
    for c in claims:
        if not isinstance(c, Claim):
            raise ValueError(f"claims must be Claim objects, got {type(c).__name__}")
    df = pd.DataFrame({"claim": [c.number for c in claims],
                       "statement": [c.statement for c in claims],
                       "rule": [c.rule for c in claims],
                       "verdict": [c.verdict for c in claims],
                       "evidence": [c.evidence for c in claims]})
    return df.set_index("claim")


#: MIME type under which :func:`show_claims` attaches the claims to a notebook output; the book
#: build (tools/build_book.py) collects them from the executed notebooks into its summary page.
CLAIMS_MIME = "application/vnd.nc1lib.claims+json"


def show_claims(claims) -> None:
    """Display the claims table in a notebook, with the records attached for the book's summary.

    The output carries the table as HTML and text, and the same claims as JSON under
    :data:`CLAIMS_MIME`, so the summary page is read from the executed notebooks themselves and
    can never disagree with what a chapter shows.
    """
    from IPython.display import display

    display(claims_bundle(claims), raw=True)


def claims_bundle(claims) -> dict:
    """The MIME bundle :func:`show_claims` displays: the table as HTML and text, the claims as JSON."""
    claims = list(claims)
    table = claims_table(claims)
    records = [{"number": str(c.number), "statement": c.statement, "rule": c.rule, "verdict": c.verdict,
                "evidence": c.evidence} for c in claims]
    with pd.option_context("display.max_colwidth", None):
        return {"text/html": table.to_html(), "text/plain": repr(table), CLAIMS_MIME: records}


# ---------------------------------------------------------------------------------------------
# Rules for the claims about the limiting kernels (chapter 2). Each takes a sweep table of
# KernelModel runs (nc1lib.sweep.sweep) and returns a Claim; ``holds`` is None ("undecided")
# when the table lacks the rows the rule needs, never a verdict made up from partial data.
# ---------------------------------------------------------------------------------------------

#: The paper's smallest and largest input dimension (EXPERIMENTS.md grid): claims 1 and 2's
#: theory are about d0 = 1, claim 7 about high dimension.
LOW_D0, HIGH_D0 = 1, 128
#: Numerical resolution of a log10 NC1 from float64 kernels: the ReLU kernel's arccos loses half
#: the digits, so NC1 is known to about sqrt(machine eps) relative (ReLU at d0 = 1, where
#: NTK = 2 NNGP exactly, shows differences of this size).
LOG10_RESOLUTION = float(np.log10(1.0 + np.sqrt(np.finfo(np.float64).eps)))
#: Standard errors a paired mean difference must clear to count as a difference.
Z = 2.0
_COLUMNS = ("model", "activation", "variant", "N", "d0", "repeat", "nc1")


def _check_table(table, extra=()):
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"table must be a pandas DataFrame (a sweep table), got {type(table).__name__}")
    missing = [c for c in (*_COLUMNS, *extra) if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks the column(s) {missing} of a KernelModel sweep table")


def _runs(table, activation, model, variant="derived"):
    return table[(table.activation == activation) & (table.model == model) & (table.variant == variant)]


def _absent(table, kernels, d0=None):
    """None if every (activation, model, variant) in ``kernels`` has runs (at ``d0`` if given), else why not."""
    lacking = []
    for act, model, variant in kernels:
        r = _runs(table, act, model, variant)
        if d0 is not None:
            r = r[r.d0 == d0]
        if r.empty:
            lacking.append(f"{act} {model.upper()} ({variant})")
    if not lacking:
        return None
    where = f" at d0 = {d0}" if d0 is not None else ""
    return (f"the table has no runs{where} of {', '.join(lacking)} "
            f"(its d0: {sorted(table.d0.unique().tolist())})")


def _undecided(number, statement, rule, why):
    return Claim(number, statement, rule, None, f"undecided: {why}")


def cell_means(table, activation, model, variant="derived", value="nc1") -> pd.Series:
    """Mean over repeats of log10(value) per (N, d0) cell for one kernel (what the figures plot)."""
    from .plots import summarise
    return summarise(_runs(table, activation, model, variant), value=value).set_index(["N", "d0"])["mean"]


def _cell_stats(values: pd.Series) -> pd.DataFrame:
    """Per (N, d0): mean of the finite values over repeats, its standard error (std with ddof=1
    over sqrt(n)), n (finite values) and n_excluded (NaN/inf values, counted, not hidden)."""
    v = values.where(np.isfinite(values))
    g = v.groupby(level=["N", "d0"])
    out = pd.DataFrame({"mean": g.mean(), "n": g.count()})
    out["n_excluded"] = g.size() - out["n"]
    out["se"] = g.std(ddof=1) / np.sqrt(out["n"])
    return out


def ntk_minus_nngp(table, activation, variant="derived") -> pd.DataFrame:
    """Paired difference log10 NC1(NTK) - log10 NC1(NNGP) per (N, d0) cell.

    Both kernels of a repeat are evaluated on the same dataset (the seed depends on the cell
    and the repeat only), so the difference is formed per repeat and then averaged. Columns:
    ``mean``, ``se`` (standard error of the mean, std with ddof=1 / sqrt(n)), ``n`` (pairs with
    both NC1 finite and positive), ``n_excluded`` (pairs left out), ``lower`` (NTK lower:
    ``mean < -Z se`` and ``mean < -LOG10_RESOLUTION``; None when n < 2), ``gap_percent``
    (``100 (10^mean - 1)``, the NTK's NC1 relative to the NNGP's).
    """
    _check_table(table)
    key = ["N", "d0", "repeat"]
    ntk = _runs(table, activation, "ntk", variant).set_index(key)["nc1"]
    nngp = _runs(table, activation, "nngp", "derived").set_index(key)["nc1"]
    for name, s in (("NTK", ntk), ("NNGP", nngp)):
        if s.index.duplicated().any():
            raise ValueError(f"table has several {activation} {name} rows per (N, d0, repeat)")
    a, b = ntk.align(nngp, join="outer")
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    out = _cell_stats(np.log10(a.where(ok)) - np.log10(b.where(ok)))
    lower = (out["mean"] < -Z * out["se"]) & (out["mean"] < -LOG10_RESOLUTION)
    out["lower"] = pd.Series(lower, dtype=object).where(out["n"] >= 2, None)
    out["gap_percent"] = 100.0 * (10.0 ** out["mean"] - 1.0)
    return out[["mean", "se", "n", "n_excluded", "lower", "gap_percent"]]


def slopes(means: pd.Series) -> pd.Series:
    """Least-squares slope of mean log10 NC1 against log2 d0, per N (decades per doubling of d0)."""
    out = {}
    for n, s in means.groupby(level="N"):
        x = np.log2(s.index.get_level_values("d0").to_numpy(dtype=float))
        out[n] = np.polyfit(x, s.to_numpy(), 1)[0] if np.unique(x).size >= 2 else np.nan
    return pd.Series(out, dtype=float)


def claim1(table, factor: float = 10.0) -> Claim:
    """Claim 1: at d0 = 1, the ReLU NNGP's NC1 is more than ``factor`` times the Erf NNGP's, for every N."""
    _check_table(table)
    statement = "With Erf, the NNGP's NC1 is small at d0 = 1; with ReLU it is more than ten times larger."
    rule = (f"at d0 = {LOW_D0}, for every N: 10^(mean ReLU NNGP - mean Erf NNGP) > {factor:g} "
            "(means of log10 NC1 over the repeats)")
    why = _absent(table, [("erf", "nngp", "derived"), ("relu", "nngp", "derived")], d0=LOW_D0)
    if why:
        return _undecided(1, statement, rule, why)
    erf = cell_means(table, "erf", "nngp").xs(LOW_D0, level="d0")
    ratio = 10 ** (cell_means(table, "relu", "nngp").xs(LOW_D0, level="d0") - erf)
    if ratio.isna().any():
        return _undecided(1, statement, rule, f"no finite mean for N = {ratio.index[ratio.isna()].tolist()}")
    return Claim(1, statement, rule, bool((ratio > factor).all()),
                 f"ratio per N: {', '.join(f'{n}: {v:.1f}' for n, v in ratio.items())}; Erf NNGP NC1 "
                 f"(geometric mean) {10 ** erf.min():.3g} to {10 ** erf.max():.3g}")


def claim2(table, erf_variant: str = "derived") -> Claim:
    """Claim 2: the NTK does not give lower NC1 than the NNGP, in any (activation, N, d0) cell.

    Paired rule (:func:`ntk_minus_nngp`): a cell has the NTK lower when the mean over repeats
    of the per-repeat difference of log10 NC1 is below zero by more than ``Z`` standard errors
    (and by more than the float64 resolution). One such cell makes the claim fail; a cell that
    cannot be decided (fewer than 2 finite pairs) makes it undecided unless another cell fails.
    """
    _check_table(table)
    statement = "The NTK does not give lower NC1 than the NNGP (Erf and ReLU, all d0)."
    rule = (f"paired per (activation, N, d0) cell: d = mean over repeats of log10 NC1(NTK) - log10 NC1(NNGP) "
            f"(same datasets), se its standard error; the NTK is lower where d < -{Z:g} se "
            f"(and |d| > {LOG10_RESOLUTION:.1e} decades, the float64 resolution); holds if no cell is lower")
    number = f"2 ({erf_variant} Erf K̇)"
    why = _absent(table, [("erf", "ntk", erf_variant), ("erf", "nngp", "derived"),
                          ("relu", "ntk", "derived"), ("relu", "nngp", "derived")])
    if why:
        return _undecided(number, statement, rule, why)
    parts, cells = [], []
    for act, v in (("erf", erf_variant), ("relu", "derived")):
        d = ntk_minus_nngp(table, act, v)
        cells.append(d)
        if d["mean"].isna().all():
            parts.append(f"{act}: no cell with a finite pair")
            continue
        n_low = int((d.lower == True).sum())  # noqa: E712  (object column: True/False/None)
        worst = d["mean"].idxmin()
        gap = d.gap_percent[worst]
        parts.append(f"{act}: NTK lower in {n_low} of {len(d)} cells; smallest d at (N, d0) = "
                     f"{tuple(int(x) for x in worst)}: the NTK's NC1 {abs(gap):.3g}% "
                     f"{'below' if gap < 0 else 'above'} the NNGP's (d = {d['mean'][worst]:+.2e} "
                     f"+- {d.se[worst]:.1e} decades, {d.n[worst]} pairs)")
        if d.n_excluded.sum():
            parts.append(f"{act}: {int(d.n_excluded.sum())} pairs with a non-finite NC1 left out")
    allc = pd.concat(cells)
    z = (allc["mean"].abs() / allc.se)[(allc.n >= 2) & (allc["mean"].abs() > LOG10_RESOLUTION)]
    if z.notna().any():       # how far from the 2-se line the decided cells are
        parts.append(f"smallest |d| / se over the cells with |d| above the resolution: {z.min():.3g}")
    if (allc.lower == True).any():  # noqa: E712
        holds = False
    elif allc.lower.isna().any():
        holds = None
        parts.append(f"{int(allc.lower.isna().sum())} cells with fewer than 2 finite pairs")
    else:
        holds = True
    return Claim(number, statement, rule, holds, "; ".join(parts))


def _slope_claim(number, statement, rule, table, kernels, decide):
    """Shared body of the claim-3 rules: ``decide(nngp_slopes, ntk_slopes)`` gives the verdict."""
    _check_table(table)
    why = _absent(table, kernels)
    if why:
        return _undecided(number, statement, rule, why)
    sn, st = (slopes(cell_means(table, *k)) for k in kernels)
    if sn.isna().any() or st.isna().any():
        return _undecided(number, statement, rule, "some N has fewer than 2 values of d0, no slope")
    holds, extra = decide(sn, st)
    return Claim(number, statement, rule, holds,
                 f"NNGP slopes {sn.min():.3f} to {sn.max():.3f}, NTK slopes {st.min():.3f} to {st.max():.3f} "
                 f"decades per doubling of d0{extra}")


def claim3_erf(table, variant: str = "derived", band=(0.5, 2.0)) -> Claim:
    """Claim 3 (Section 5.4, Erf): NC1 of NNGP and NTK grows with d0 at similar rates."""
    lo, hi = band

    def decide(sn, st):
        r = st / sn
        return (bool((sn > 0).all() and (st > 0).all() and ((r > lo) & (r < hi)).all()),
                f" (NTK/NNGP {r.min():.2f} to {r.max():.2f})")
    return _slope_claim(
        f"3 (Erf, {variant} K̇)", "With Erf, NC1 of NNGP and NTK grows with d0 at similar rates.",
        f"for every N: both slopes of mean log10 NC1 against log2 d0 are positive and NTK/NNGP is in ({lo:g}, {hi:g})",
        table, [("erf", "nngp", "derived"), ("erf", "ntk", variant)], decide)


def claim3_relu(table, flat: float = 1 / 3) -> Claim:
    """Claim 3 (Section 5.4, ReLU): the NNGP's NC1 stays almost constant in d0, the NTK's increases."""
    def decide(sn, st):
        return bool((st > 0).all() and (sn.abs() < flat * st).all()), ""
    return _slope_claim(
        "3 (ReLU)", "With ReLU, NC1 of the NNGP stays almost constant as d0 grows, that of the NTK increases.",
        f"for every N: NTK slope > 0 and |NNGP slope| < {flat:.2g} x NTK slope (slopes of mean log10 NC1 against log2 d0)",
        table, [("relu", "nngp", "derived"), ("relu", "ntk", "derived")], decide)


def claim4_kernels(table) -> Claim:
    """Claim 4, kernel part: ReLU gives higher NC1 than Erf in every (N, d0) cell, NNGP and NTK."""
    _check_table(table)
    statement = ("ReLU gives higher NC1 than Erf for every d0 (NNGP and NTK; the 2L-FCN part is in a "
                 "later chapter).")
    rule = "in every (N, d0) cell: mean log10 NC1 of ReLU > that of Erf, for the NNGP and the derived NTK"
    why = _absent(table, [(a, k, "derived") for a in ("erf", "relu") for k in ("nngp", "ntk")])
    if why:
        return _undecided("4 (kernels)", statement, rule, why)
    parts, holds = [], True
    for kern in ("nngp", "ntk"):
        d = cell_means(table, "relu", kern) - cell_means(table, "erf", kern)
        holds &= bool(d.notna().all() and (d > 0).all())
        parts.append(f"{kern.upper()}: ReLU - Erf from {d.min():+.3f} to {d.max():+.3f} decades, "
                     f"higher in {int((d > 0).sum())} of {len(d)} cells")
    return Claim("4 (kernels)", statement, rule, holds, "; ".join(parts))


def claim7(table, d0: int = HIGH_D0, factor: float = 1.0) -> Claim:
    """Claim 7 (App. F): at high d0 the relative NC1 of all four kernels exceeds ``factor``.

    App. F states relative NC1 > 1 at high d0 (``factor=1``, claim "7"); EXPERIMENTS.md's
    "well above 1" is checked as a factor of at least 10 (claim "7 (>= 10)").

    A cell passes when the mean over repeats of log10 relative NC1 exceeds log10(factor) by more
    than ``Z`` standard errors. Undecided when the table has no runs at ``d0``.
    """
    _check_table(table, extra=("rel_nc1",))
    statement = ("In high dimensions the raw data can be more collapsed than the features "
                 "(relative NC1 well above 1).")
    rule = (f"at d0 = {d0}, for every N and each of the Erf/ReLU NNGP/NTK (derived K̇): mean log10 relative NC1 "
            f"> log10({factor:g}) by more than {Z:g} standard errors (App. F: the features' NC1 above the data's)")
    kernels = [(a, k, "derived") for a in ("erf", "relu") for k in ("nngp", "ntk")]
    number = 7 if factor == 1.0 else f"7 (>= {factor:g})"
    why = _absent(table, kernels, d0=d0)
    if why:
        return _undecided(number, statement, rule, why)
    parts, holds = [], True
    for act, kern, v in kernels:
        r = _runs(table, act, kern, v)
        rel = r[r.d0 == d0].set_index(["N", "d0", "repeat"])["rel_nc1"]
        st = _cell_stats(np.log10(rel.where(rel > 0)))
        holds &= bool((st["n"] >= 2).all() and (st["mean"] > np.log10(factor) + Z * st["se"]).all())
        parts.append(f"{act} {kern.upper()}: {10 ** st['mean'].min():.3g} to {10 ** st['mean'].max():.3g}"
                     + (f" ({int(st.n_excluded.sum())} non-finite runs left out)" if st.n_excluded.sum() else ""))
    return Claim(number, statement, rule, holds,
                 f"relative NC1 at d0 = {d0} (geometric mean over repeats, range over N): " + "; ".join(parts))


def kernel_claims(table) -> list[Claim]:
    """Chapter 2's claims table: 1, 2 and 3 (Erf under both derivative kernels), 3 (ReLU), 4 (kernels), 7 (> 1 and >= 10)."""
    return [claim1(table),
            *(claim2(table, v) for v in ("derived", "reference")),
            *(claim3_erf(table, v) for v in ("derived", "reference")),
            claim3_relu(table), claim4_kernels(table), claim7(table), claim7(table, factor=10.0)]
