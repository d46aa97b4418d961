"""The paper's claims as checkable records: each verdict is computed by a stated rule.

A chapter builds ``Claim(number, statement, rule, holds, evidence)`` objects whose
``holds`` is the result of code applied to a sweep table (never typed by hand), and
shows them with :func:`claims_table`.
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
