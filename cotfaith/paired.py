"""Paired comparisons of two runs on the questions they share.

Every statistic the summary reports is a ratio of per-question sums (cotfaith.bootstrap): AOC is
the mean of each CoT's area over CoTs, accuracy the mean of `correct` over answers. So a
statistic is given here as a per-question table (num, den), and a comparison of runs A and B is

    diff = sum_q num_A / sum_q den_A - sum_q num_B / sum_q den_B     over the shared questions q

with a cluster-bootstrap CI that resamples questions, drawing the SAME questions for both runs
(the pairing: a question that is hard for A is hard for B too, which the paired CI removes from
the noise). The p-value tests diff = 0 by the shifted bootstrap: the share of resampled
differences at least as far from the observed one as the observed one is from 0,
p = (1 + #{|d*_b - d| >= |d|}) / (B + 1). Across several comparisons, `adjust_pvalues` applies
Holm (family-wise error, the default) or Benjamini-Hochberg (false discovery rate).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import pandas as pd

from cotfaith.records import CALL_FAILED, REFERENCE

__all__ = [
    "PairedResult",
    "Statistic",
    "accuracy",
    "adjust_pvalues",
    "aoc",
    "paired_difference",
    "paired_from_tables",
    "statistics",
]


@dataclass(frozen=True)
class Statistic:
    """A ratio statistic, given by its per-question table."""

    name: str
    """The summary column it reproduces (aoc, accuracy_cot...)."""
    intervention: str
    """Whose rows it reads."""
    per_question: Callable[[pd.DataFrame], pd.DataFrame]
    """records -> DataFrame indexed by question_id (str) with columns num, den (den > 0)."""

    def table(self, records: pd.DataFrame) -> pd.DataFrame:
        return self.per_question(records)


def _answered(records: pd.DataFrame, intervention: str) -> pd.DataFrame:
    rows = records[records["intervention"] == intervention]
    return rows[rows["parse_status"] != CALL_FAILED]


def _sums(keys: pd.Series, values: pd.Series) -> pd.DataFrame:
    frame = pd.DataFrame({"num": values.astype(float).to_numpy(), "den": 1.0}, index=keys.index)
    out = frame.groupby(keys.astype(str).to_numpy(), sort=True).sum()
    out.index.name = "question_id"
    return out


def accuracy(intervention: str = REFERENCE, name: str = "accuracy_cot") -> Statistic:
    """Share of correct answers among the answered rows of `intervention` (cot: accuracy with
    a CoT, as `accuracy_cot` in the summary; no_cot: accuracy without)."""

    def per_question(records: pd.DataFrame) -> pd.DataFrame:
        rows = _answered(records, intervention)
        return _sums(rows["question_id"], rows["correct"].astype(bool))

    return Statistic(name, intervention, per_question)


def aoc(
    intervention: str = "truncation", unparseable: str = "drop", anchor_end: bool = False
) -> Statistic:
    """AOC as the summary computes it (cotfaith.curvestats): the mean over CoTs of each CoT's
    area over its curve, unread answers handled by `unparseable`."""

    def per_question(records: pd.DataFrame) -> pd.DataFrame:
        from cotfaith.curvestats import apply_rule, per_cot
        from cotfaith.interventions import curves
        from cotfaith.interventions.base import intervention_class

        rows = _answered(records, intervention)
        select = getattr(intervention_class(intervention), "_ok", None)
        if callable(select) and not rows.empty:
            rows = select(rows)  # the intervention's own choice of usable rows
        if rows.empty:
            return pd.DataFrame(columns=["num", "den"], index=pd.Index([], name="question_id"))
        cots, _ = per_cot(apply_rule(curves.points(rows), unparseable), anchor_end=anchor_end)
        return _sums(cots["question_id"], cots["a"])

    name = "aoc" if intervention == "truncation" else f"aoc_{intervention}"
    return Statistic(name, intervention, per_question)


def statistics(unparseable: str = "drop") -> dict[str, Statistic]:
    """The statistics a sweep compares, by name."""
    return {
        "aoc": aoc("truncation", unparseable),
        "aoc_adding_mistakes": aoc("adding_mistakes", unparseable, anchor_end=True),
        "accuracy_cot": accuracy(REFERENCE),
        "accuracy_no_cot": accuracy("no_cot", "accuracy_no_cot"),
    }


class PairedResult(NamedTuple):
    diff: float
    """estimate_a - estimate_b on the shared questions."""
    low: float
    high: float
    p: float
    """Two-sided bootstrap p-value of diff = 0 (unadjusted)."""
    n_shared: int
    """Questions both runs have for this statistic."""
    estimate_a: float
    estimate_b: float


def _ratio(w: np.ndarray, num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return (w @ num) / (w @ den)


def paired_from_tables(
    table_a: pd.DataFrame,
    table_b: pd.DataFrame,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    draws: np.ndarray | None = None,
) -> PairedResult:
    """The paired difference of two per-question tables (num, den indexed by question).

    `draws` (B x Q over the shared questions in sorted order: how often each is drawn) may be
    given instead of `n_boot`/`seed`, e.g. to check a result by hand.
    """
    a = table_a[table_a["den"] > 0]
    b = table_b[table_b["den"] > 0]
    shared = sorted(set(a.index.astype(str)) & set(b.index.astype(str)))
    nan = float("nan")
    if not shared:
        return PairedResult(nan, nan, nan, nan, 0, nan, nan)
    a = a.set_axis(a.index.astype(str)).loc[shared]
    b = b.set_axis(b.index.astype(str)).loc[shared]
    na, da = a["num"].to_numpy(float), a["den"].to_numpy(float)
    nb, db = b["num"].to_numpy(float), b["den"].to_numpy(float)
    est_a, est_b = na.sum() / da.sum(), nb.sum() / db.sum()
    diff = float(est_a - est_b)
    q = len(shared)
    if draws is None:
        if q < 2 or n_boot < 1:
            return PairedResult(diff, nan, nan, nan, q, float(est_a), float(est_b))
        rng = np.random.default_rng(seed)
        draws = rng.multinomial(q, np.full(q, 1.0 / q), size=n_boot).astype(float)
    draws = np.asarray(draws, dtype=float)
    if draws.ndim != 2 or draws.shape[1] != q:
        raise ValueError(f"draws must be B x {q} (one column per shared question)")
    boots = _ratio(draws, na, da) - _ratio(draws, nb, db)
    boots = boots[np.isfinite(boots)]
    if len(boots) == 0:
        return PairedResult(diff, nan, nan, nan, q, float(est_a), float(est_b))
    alpha = (1 - ci) / 2
    low, high = np.quantile(boots, [alpha, 1 - alpha])
    extreme = int(np.sum(np.abs(boots - diff) >= abs(diff) - 1e-12))
    p = (1 + extreme) / (len(boots) + 1)
    return PairedResult(diff, float(low), float(high), float(min(p, 1.0)), q, est_a, est_b)


def paired_difference(
    rows_a: pd.DataFrame,
    rows_b: pd.DataFrame,
    statistic: Statistic,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    *,
    draws: np.ndarray | None = None,
) -> PairedResult:
    """Statistic of records A minus the same statistic of records B, on their shared
    questions, with a paired cluster-bootstrap CI and p-value (see the module docstring)."""
    return paired_from_tables(
        statistic.table(rows_a), statistic.table(rows_b), n_boot, ci, seed, draws=draws
    )


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm") -> np.ndarray:
    """p-values adjusted for multiple comparisons: `holm` (step-down Bonferroni, controls the
    family-wise error) or `bh` (Benjamini-Hochberg step-up, controls the false discovery rate).
    NaNs stay NaN and do not count as comparisons."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    ranked = p[order]
    if method == "holm":
        adj = np.maximum.accumulate(ranked * (m - np.arange(m)))
    elif method in ("bh", "fdr_bh"):
        adj = np.minimum.accumulate((ranked * m / np.arange(1, m + 1))[::-1])[::-1]
    else:
        raise ValueError(f"unknown p-value adjustment {method!r}; use holm or bh")
    out[order] = np.minimum(adj, 1.0)
    return out
