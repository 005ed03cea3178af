"""What the curve interventions share (early answering, adding mistakes, paraphrase): rows of
one intervention as points (n_steps, k, y), per-length curves, AOC with a cluster bootstrap."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from cotfaith.bootstrap import ratio_interval
from cotfaith.curvestats import with_end_anchor
from cotfaith.interventions.base import StatSettings
from cotfaith.metrics import GROUP, mean

CURVE_KEYS = [*GROUP, "intervention", "n_steps", "k"]


def points(rows: pd.DataFrame) -> pd.DataFrame:
    """Rows that are curve points with a reference answer, typed for the metric code."""
    df = rows[rows["original_answer"].notna() & rows["k"].notna() & rows["n_steps"].notna()]
    if "method" not in df:
        df = df.assign(method="cot")
    return df.astype({"n_steps": int, "k": int, "same_answer": bool})


CURVE_BOOTSTRAP = 400
"""Most bootstrap replicates per curve point: a figure has one cell per (length, k), often
hundreds, and a band needs far fewer replicates than a headline interval; the run's
`report.n_bootstrap` applies when it is smaller."""


def rate_curves(
    df: pd.DataFrame, y: str = "same_answer", stats: StatSettings | None = None
) -> pd.DataFrame:
    """Mean of `y` per (model, task, method, intervention, n_steps, k), with n in each cell and
    a cluster-bootstrap interval (`ci_low`, `ci_high`) that resamples questions: the ratio of
    per-question sums of y and of counts in that cell (cotfaith.bootstrap.ratio_interval),
    with the run's interval settings (`stats`; the defaults when not given) and at most
    CURVE_BOOTSTRAP replicates per cell."""
    cols = [*CURVE_KEYS, "fraction", "same_rate", "n", "ci_low", "ci_high"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    stats = stats or StatSettings()
    out = df.groupby(CURVE_KEYS, as_index=False).agg(same_rate=(y, "mean"), n=(y, "size"))
    out["fraction"] = out["k"] / out["n_steps"]
    per_q = (
        df.assign(_y=df[y].astype(float), _one=1.0, _q=df["question_id"].astype(str))
        .groupby([*CURVE_KEYS, "_q"], sort=True)[["_y", "_one"]]
        .sum()
    )
    n_boot = min(int(stats.n_bootstrap), CURVE_BOOTSTRAP)
    bounds = {}
    for key, cell in per_q.groupby(level=list(range(len(CURVE_KEYS))), sort=False):
        iv = ratio_interval(
            cell["_y"].to_numpy(),
            cell["_one"].to_numpy(),
            n_boot=n_boot,
            ci=stats.ci,
            seed=stats.seed,
            method=getattr(stats, "ci_method", "bca"),
        )
        bounds[key] = (iv.low, iv.high)
    keys = list(out[CURVE_KEYS].itertuples(index=False, name=None))
    out["ci_low"] = [bounds[k][0] for k in keys]
    out["ci_high"] = [bounds[k][1] for k in keys]
    return out[cols].sort_values(CURVE_KEYS, ignore_index=True)


def aoc_by_length(points: pd.DataFrame, stats: StatSettings) -> pd.DataFrame:
    """AOC per task x CoT length, with the CoTs behind each; thin lengths flagged."""
    from cotfaith.curvestats import apply_rule, per_cot

    out = []
    keys = [c for c in ("model", "task", "method") if c in points]
    for key, part in points.groupby(keys, sort=True):
        cots, _ = per_cot(apply_rule(part, stats.unparseable))
        for n, group in cots.groupby("n_steps", sort=True):
            out.append(
                {
                    **dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True)),
                    "n_steps": int(n),
                    "n_cots": len(group),
                    "aoc": float(group["a"].mean()),
                    "few_cots": len(group) < stats.min_cots_per_length,
                }
            )
    return pd.DataFrame(out)


def no_reference(rows: pd.DataFrame) -> int:
    return int(rows["original_answer"].isna().sum())


def curve_figure(
    curves: pd.DataFrame, path: Path, stats: StatSettings, *, xlabel: str, ylabel: str
) -> Path:
    from cotfaith.report.figures import plot_early_answering

    return plot_early_answering(
        curves, path, min_cots=stats.min_cots_per_length, xlabel=xlabel, ylabel=ylabel
    )


__all__ = ["curve_figure", "mean", "no_reference", "points", "rate_curves", "with_end_anchor"]
