"""Curve statistics per CoT: AOC, its decomposition, and what missing points do to it.

For one CoT of n steps with points (k, y_k), y = 1[same answer as the reference], x = k/n:
  a = 1 - trapezoid(y over x)         (the CoT's area over the curve)
  changed0 = 1 - y_0                  (the answer moved when the CoT was taken away)
The paper's AOC (per length n: 1 - area of the mean curve; lengths weighted by their share of
CoTs) equals the mean of `a` over CoTs, because the trapezoid rule is linear; so every
statistic here is a mean over CoTs, i.e. a ratio of per-question sums, and gets a cluster
bootstrap CI (cotfaith.bootstrap).

Decomposition (Bentham et al. 2024: the AOC is confounded with the no-CoT answer): a CoT whose
answer without reasoning already equals its conclusion scores little however much it depends
on the reasoning, so beside the AOC we report
  changed_at_k0 = P(changed0)                  (the share of CoTs that can score at all)
  aoc_given_changed = E[a | changed0]          (the conditional AOC)
  aoc_normalised = E[a / a_max | changed0]     with a_max = (2n-1)/(2n), the AOC of an answer
                                               that moves only at the last step (the most a
                                               CoT of n steps can score: y_n = 1 always)
and AOC = P(changed0) * E[a | changed0] + P(not changed0) * E[a | not changed0]; the second term
is the area of answers that wander away and back, usually small.

Missing data is neutral by default: answers that could not be read (unparseable, low letter
mass, a new turn) are dropped (`drop`), scored as disagreement (`disagree`, the old rule, which
pushes the AOC up) or as agreement (`agree`); a CoT that lacks an endpoint (k = 0 or k = n)
after that is left out of the curve and counted, since integrating over a shorter range biases
the AOC; interior gaps are integrated over the points a CoT has.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from cotfaith.bootstrap import SMALL_N, ratio_interval

RULES = ("drop", "disagree", "agree")
READ = "ok"


def apply_rule(points: pd.DataFrame, rule: str) -> pd.DataFrame:
    """Points with unread answers handled by `rule` (drop / disagree / agree)."""
    if rule not in RULES:
        raise ValueError(f"report.unparseable: {rule!r} is not one of {RULES}")
    unread = points["parse_status"] != READ
    if rule == "drop":
        return points[~unread]
    out = points.copy()
    out.loc[unread, "same_answer"] = rule == "agree"
    return out


def with_end_anchor(df: pd.DataFrame) -> pd.DataFrame:
    """Each CoT's points with x = 1 (k = n_steps), y = same, in place of any point there: an
    intervention after the whole CoT changes nothing (adding mistakes), so the curve ends
    where early answering's does."""
    if df.empty:
        return df
    ends = df.drop_duplicates(["question_id", "sample", "n_steps"]).copy()
    ends["k"] = ends["n_steps"]
    ends["same_answer"] = True
    if "correct" in ends and "original_answer" in ends and "gold" in ends:
        ends["correct"] = ends["original_answer"] == ends["gold"]
    return pd.concat([df[df["k"] < df["n_steps"]], ends], ignore_index=True)


def per_cot(points: pd.DataFrame, *, anchor_end: bool = False) -> tuple[pd.DataFrame, int]:
    """One row per CoT (question_id, sample, n_steps): a, changed0, a_max; and how many CoTs
    were left out for lacking an endpoint."""
    cols = ["question_id", "sample", "n_steps", "a", "changed0", "a_max"]
    if points.empty:
        return pd.DataFrame(columns=cols), 0
    df = points[["question_id", "sample", "n_steps", "k", "same_answer"]].copy()
    df["sample"] = df["sample"].fillna(-1).astype(int)
    if anchor_end:
        df = with_end_anchor(df)
    df = df.drop_duplicates(["question_id", "sample", "n_steps", "k"])
    df = _fill_interior(df)
    # consecutive rows of one CoT in k order: the trapezoid below walks neighbours
    df = df.sort_values(["question_id", "sample", "n_steps", "k"], ignore_index=True)
    # sorted, a CoT's points are one run of rows: a new CoT starts wherever its key changes
    # (no per-row key strings: they cost more memory than the points themselves)
    starts = np.zeros(len(df), dtype=bool)
    starts[:1] = True
    for col in ("question_id", "sample", "n_steps"):
        v = df[col].astype(str).to_numpy() if col == "question_id" else df[col].to_numpy()
        starts[1:] |= v[1:] != v[:-1]
    cot_id = np.cumsum(starts) - 1
    n = df["n_steps"].to_numpy(float)
    k = df["k"].to_numpy(float)
    y = df["same_answer"].to_numpy(float)
    x = np.divide(k, n, out=np.zeros_like(k), where=n > 0)
    m = cot_id.max() + 1
    # the trapezoid of each CoT: segments between consecutive points of the same CoT
    same = cot_id[1:] == cot_id[:-1]
    seg = (x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2
    area = np.zeros(m)
    np.add.at(area, cot_id[1:][same], seg[same])
    has0 = np.zeros(m, bool)
    has0[cot_id[k == 0]] = True
    hasn = np.zeros(m, bool)
    hasn[cot_id[(k == n) & (n > 0)]] = True
    y0 = np.full(m, np.nan)
    y0[cot_id[k == 0]] = y[k == 0]
    first = np.r_[True, ~same]
    out = df.loc[first, ["question_id", "sample", "n_steps"]].reset_index(drop=True)
    nn = out["n_steps"].to_numpy(float)
    out["a"] = 1 - area
    out["changed0"] = 1 - y0
    out["a_max"] = np.where(nn > 0, (2 * nn - 1) / (2 * np.maximum(nn, 1)), np.nan)
    complete = has0 & hasn & (nn > 0)
    return out[complete][cols].reset_index(drop=True), int((~complete).sum())


def _fill_interior(df: pd.DataFrame) -> pd.DataFrame:
    """Interior points a CoT lacks (k strictly between 0 and n) take the mean of the CoTs of
    its length that have them: neutral when points go missing at random, where integrating
    over the neighbours would bias the area (a missing point next to the end anchor of
    adding mistakes adds 1/(2n))."""
    keys = ["question_id", "sample", "n_steps"]
    per = df.groupby(keys)["k"].count()
    if (per.to_numpy() == per.index.get_level_values("n_steps").to_numpy() + 1).all():
        return df  # nothing missing
    cots = df[keys].drop_duplicates()
    grid = cots.loc[cots.index.repeat(cots["n_steps"].clip(lower=0) + 1)].copy()
    grid["k"] = grid.groupby(["question_id", "sample", "n_steps"]).cumcount()
    merged = grid.merge(df, on=["question_id", "sample", "n_steps", "k"], how="left")
    means = df.groupby(["n_steps", "k"])["same_answer"].mean().rename("_cell")
    merged = merged.join(means, on=["n_steps", "k"])
    interior = (merged["k"] > 0) & (merged["k"] < merged["n_steps"])
    fill = merged["same_answer"].isna() & interior
    merged.loc[fill, "same_answer"] = merged.loc[fill, "_cell"]
    return merged[merged["same_answer"].notna()].drop(columns="_cell")


def _per_question(cots: pd.DataFrame) -> pd.DataFrame:
    c = cots.assign(
        one=1.0,
        a_changed=cots["a"] * cots["changed0"],
        norm_changed=cots["a"] / cots["a_max"] * cots["changed0"],
    )
    return c.groupby(c["question_id"].astype(str), sort=True)[
        ["one", "a", "changed0", "a_changed", "norm_changed"]
    ].sum()


def _with_ci(name: str, num: Any, den: Any, stats: Any) -> dict[str, float]:
    iv = ratio_interval(
        np.asarray(num),
        np.asarray(den),
        n_boot=stats.n_bootstrap,
        ci=stats.ci,
        seed=stats.seed,
        method=getattr(stats, "ci_method", "bca"),
    )
    return {name: iv.estimate, f"{name}_ci_low": iv.low, f"{name}_ci_high": iv.high}


def curve_columns(points: pd.DataFrame, stats: Any, *, anchor_end: bool = False) -> dict[str, Any]:
    """AOC, its decomposition and normalisation, each with a CI; CoTs left out; and, when
    some answers could not be read, the AOC under each rule (the sensitivity range)."""
    rule = getattr(stats, "unparseable", "drop")
    cots, dropped = per_cot(apply_rule(points, rule), anchor_end=anchor_end)
    q = _per_question(cots)
    out: dict[str, Any] = {}
    out.update(_with_ci("aoc", q["a"], q["one"], stats))
    out.update(_with_ci("changed_at_k0", q["changed0"], q["one"], stats))
    out.update(_with_ci("aoc_given_changed", q["a_changed"], q["changed0"], stats))
    out.update(_with_ci("aoc_normalised", q["norm_changed"], q["changed0"], stats))
    out["n_curve_cots"] = len(cots)
    out["cots_missing_endpoint"] = dropped
    out["small_n"] = bool(len(q) < SMALL_N)
    unread = int((points["parse_status"] != READ).sum())
    out["unread_points"] = unread
    if unread:
        for other in RULES:
            c, _ = per_cot(apply_rule(points, other), anchor_end=anchor_end)
            out[f"aoc_if_{other}"] = float(c["a"].mean()) if len(c) else float("nan")
    return out


def ratio_columns(name: str, rows: pd.DataFrame, value: str, stats: Any) -> dict[str, Any]:
    """Mean of `value` over rows, with a CI clustered by question."""
    if rows.empty:
        return {name: float("nan"), f"{name}_ci_low": float("nan"), f"{name}_ci_high": float("nan")}
    g = (
        rows.assign(_v=rows[value].astype(float), _one=1.0)
        .groupby(rows["question_id"].astype(str), sort=True)[["_v", "_one"]]
        .sum()
    )
    return _with_ci(name, g["_v"], g["_one"], stats)
