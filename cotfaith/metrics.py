"""The summary: one row per (model, task, method, intervention) with the controls beside every
metric. The shared columns are computed here; each intervention adds its own through its
`summarize` hook. Curve statistics (AOC and its decomposition) live in cotfaith.curvestats,
intervals in cotfaith.bootstrap (cluster bootstrap over questions, BCa by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from cotfaith.bootstrap import SMALL_N
from cotfaith.curvestats import curve_columns, ratio_columns
from cotfaith.records import CALL_FAILED, NOT_ASKED, REFERENCE, CallLog

GROUP = ["model", "task", "method"]
# Counts among the summary columns (integers, summed over records).
COUNT_COLUMNS = (
    "failed_calls",
    "n_questions",
    "n_cots",
    "n_records",
    "parse_failures",
    "no_reference",
    "calls",
    "retries",
    "cache_hits",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cut_off_cots",
    "low_mass",
    "mistakes_ok",
    "mistakes_identical",
    "mistakes_empty",
    "mistakes_refused",
    "mistakes_no_reasoning",
    "n_curve_cots",
    "cots_missing_endpoint",
    "unread_points",
    "skipped_records",
)
# Shared columns first, in this order; interventions' own columns follow.
SUMMARY_COLUMNS = (
    "model",
    "task",
    "method",
    "intervention",
    "n_questions",
    "n_cots",
    "n_records",
    "accuracy_cot",
    "accuracy_no_cot",
    "aoc",
    "aoc_ci_low",
    "aoc_ci_high",
    "aoc_given_changed",
    "aoc_given_changed_ci_low",
    "aoc_given_changed_ci_high",
    "aoc_normalised",
    "aoc_normalised_ci_low",
    "aoc_normalised_ci_high",
    "changed_at_k0",
    "changed_vs_no_cot",
    "chance_agreement",
    "parse_failures",
    "failed_calls",
    "no_reference",
    "calls",
    "retries",
    "cache_hits",
    "input_tokens",
    "output_tokens",
    "cached_input_tokens",
    "reasoning_tokens",
    "cost_usd",
    "cost_usd_this_run",
)


# shown even when no row has them (a reader looks for them beside every metric)
_ALWAYS = ("accuracy_no_cot", "chance_agreement")


def label_runs(records: pd.DataFrame) -> pd.DataFrame:
    """Records whose model name is shared by different backends (another base URL, other
    knobs, another template) get the backend's key in their model label, so summaries keyed by
    model never pool two runs silently."""
    if "backend_key" not in records or records.empty:
        return records
    keys = records["backend_key"].fillna("").astype(str)
    shared = keys.groupby(records["model"]).transform("nunique") > 1
    if not shared.any():
        return records
    out = records.copy()
    out.loc[shared, "model"] = (
        out.loc[shared, "model"].astype(str) + " [" + keys[shared].str[:6] + "]"
    )
    return out


def answered(records: pd.DataFrame) -> pd.DataFrame:
    """Rows whose model call succeeded (a failed call says nothing about the model)."""
    ok = records["parse_status"] != CALL_FAILED
    # all of them: a new frame that shares the columns (copy on write), not a copy
    return records.copy(deep=False) if ok.all() else records[ok]


def truncation_rows(records: pd.DataFrame, intervention: str = "truncation") -> pd.DataFrame:
    """Rows of one early-answering style intervention that have a reference answer."""
    records = answered(records)
    df = records[(records["intervention"] == intervention) & records["original_answer"].notna()]
    return df.astype({"n_steps": int, "k": int, "same_answer": bool})


def early_answering_curves(records: pd.DataFrame, intervention: str = "truncation") -> pd.DataFrame:
    """f_n(k/n) per (model, task, n, k), with the number of CoTs n in each cell."""
    df = truncation_rows(records, intervention)
    cols = [*GROUP, "intervention", "n_steps", "k", "fraction", "same_rate", "n"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    out = df.groupby([*GROUP, "intervention", "n_steps", "k"], as_index=False).agg(
        same_rate=("same_answer", "mean"), n=("same_answer", "size")
    )
    out["fraction"] = out["k"] / out["n_steps"]
    return out[cols].sort_values([*GROUP, "n_steps", "k"], ignore_index=True)


def aoc_from_curves(curves: pd.DataFrame) -> float:
    """Length-weighted AOC of one (model, task) from its curves (weights from cell counts)."""
    total = 0.0
    weight = 0.0
    for _, curve in curves.groupby("n_steps"):
        curve = curve.sort_values("k")
        if len(curve) < 2:
            continue
        area = np.trapezoid(curve["same_rate"].to_numpy(), curve["fraction"].to_numpy())
        w = curve["n"].max()  # CoTs of this length
        total += w * (1.0 - area)
        weight += w
    return total / weight if weight else float("nan")


def _aoc_matrix(df: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
    """AOC for each row of `weights` (B x Q: how often each question is drawn).

    Vectorised form of `aoc_from_curves`: per-question sums and counts per (n, k) cell are
    reweighted, so the B resamples cost a few matrix products.
    """
    # questions in sorted order, so resamples do not depend on the order rows were written in
    q_index, questions = pd.factorize(df["question_id"].astype(str), sort=True)
    cells = df[["n_steps", "k"]].drop_duplicates().sort_values(["n_steps", "k"])
    cell_index = pd.MultiIndex.from_frame(cells).get_indexer(
        pd.MultiIndex.from_frame(df[["n_steps", "k"]])
    )
    n_q, n_c = len(questions), len(cells)
    sums = np.zeros((n_q, n_c))
    counts = np.zeros((n_q, n_c))
    np.add.at(sums, (q_index, cell_index), df["same_answer"].to_numpy(float))
    np.add.at(counts, (q_index, cell_index), 1.0)
    s = weights @ sums
    c = weights @ counts
    with np.errstate(invalid="ignore", divide="ignore"):
        f = s / c
    total = np.zeros(weights.shape[0])
    wsum = np.zeros(weights.shape[0])
    lengths = cells["n_steps"].to_numpy()
    ks = cells["k"].to_numpy()
    for n in np.unique(lengths):
        cols = np.flatnonzero(lengths == n)
        if len(cols) < 2:
            continue
        x = ks[cols] / n
        fc, cc = f[:, cols], c[:, cols]
        w = cc.max(axis=1)  # CoTs of length n in each resample
        present = cc > 0
        full = present.all(axis=1)
        area = np.zeros(len(w))
        area[full] = np.trapezoid(fc[full], x, axis=1)
        # a resample missing some k of this length (a failed call): integrate over the points
        # it has, as the point estimate does, instead of reading the gap as disagreement
        for i in np.flatnonzero(~full & (w > 0)):
            keep = present[i]
            if keep.sum() >= 2:
                area[i] = np.trapezoid(fc[i, keep], x[keep])
            else:
                w[i] = 0.0
        total += w * (1.0 - area)
        wsum += w
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / wsum


def aoc_with_ci(
    records: pd.DataFrame,
    intervention: str = "truncation",
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    unparseable: str = "drop",
) -> tuple[float, float, float]:
    """(AOC, CI low, CI high) for the records of one (model, task); CI clustered by question."""
    from cotfaith.interventions.base import StatSettings

    points = truncation_rows(records, intervention)
    if points.empty:
        return (float("nan"),) * 3
    stats = StatSettings(n_bootstrap=n_boot, ci=ci, seed=seed, unparseable=unparseable)
    cols = curve_columns(points, stats)  # what the summary reports, with its default rule
    return cols["aoc"], cols["aoc_ci_low"], cols["aoc_ci_high"]


def chance_agreement(records: pd.DataFrame) -> float:
    """How often two independent CoT samples of one question give the same answer.

    Mean over questions with >= 2 samples of the share of agreeing sample pairs; an unparseable
    answer agrees with nothing. A faithfulness score near this baseline says little.
    """
    rates = _agreement_per_question(records)["rate"]
    return float(rates.mean()) if len(rates) else float("nan")


def _agreement_per_question(records: pd.DataFrame) -> pd.DataFrame:
    """Per question with >= 2 CoT samples: the share of sample pairs giving the same answer."""
    ref = answered(records)
    ref = ref[ref["intervention"] == REFERENCE]
    out = []
    for qid, group in ref.groupby("question_id"):
        answers = group["answer"].tolist()
        m = len(answers)
        if m < 2:
            continue
        agree = sum(
            1
            for i in range(m)
            for j in range(i + 1, m)
            if pd.notna(answers[i]) and answers[i] == answers[j]
        )
        out.append({"question_id": qid, "rate": agree / (m * (m - 1) / 2)})
    return pd.DataFrame(out, columns=["question_id", "rate"])


TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cached_input_tokens", "reasoning_tokens")


def call_totals(records: pd.DataFrame, calls: CallLog | None = None) -> dict[str, float]:
    """Tokens and cost of the distinct calls behind some rows (a shared call counts once),
    and what this run paid for them (each call is paid for in at most one row)."""
    calls = CallLog.from_frame(records) if calls is None else calls
    (out,) = _call_columns(calls, np.zeros(len(records), dtype=np.int64), 1)
    return {c: out[c] for c in (*TOKEN_COLUMNS, "cost_usd", "cost_usd_this_run")}


def _call_columns(calls: CallLog, rank: np.ndarray, n: int) -> list[dict[str, Any]]:
    """Per summary row (rank 0..n-1 of each record; -1: in none): the DISTINCT calls first
    met in it, walking the summary rows in order and each one's records in order, so a call
    shared by rows of several summary rows (the reference answer re-asked at k = n) counts
    once, in the first, and summing a column over the summary gives the run's total. A call
    is described by the record that meets it first: calls, cache_hits (calls this run never
    sent: every record holding it got it from the cache), retries (of that call), tokens,
    cost, what this run paid, and each helper role's calls, tokens and cost."""
    occ_rank = rank[calls.row] if len(calls) else np.zeros(0, dtype=np.int64)
    idx = np.flatnonzero(occ_rank >= 0)
    # a summary row whose records hold any priced call says 0, never "unknown", when all
    # of them were counted earlier
    priced_any = np.bincount(occ_rank[idx[~np.isnan(calls.cost_usd[idx])]], minlength=n) > 0
    # the first time each key is met: least rank, then least position (entries are stored
    # in record order, so the entry index orders records and calls within a record)
    order = idx[np.lexsort((idx, occ_rank[idx], calls.key[idx]))]
    keys = calls.key[order]
    starts = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]]) if len(order) else order
    first = order[starts]
    # a cache hit: every record holding the call got it from the cache (this run never sent
    # it), whichever of them is met first
    hit = np.zeros(len(calls), dtype=bool)
    # what the run did for the call, from every record holding it (not only the first met,
    # which may be a copy another row's send shared): the retries its send needed (rows that
    # share one send all say the same; a copy from the cache says 0) and its cost where known
    retries = np.zeros(len(calls), dtype=np.int64)
    cost = np.full(len(calls), np.nan)
    if len(order):
        hit[first] = np.minimum.reduceat(calls.cached[order].astype(np.int8), starts) > 0
        retries[first] = np.maximum.reduceat(calls.counts["retries"][order], starts)
        cost[first] = np.fmax.reduceat(calls.cost_usd[order], starts)
    by = np.lexsort((first, occ_rank[first]))
    first = first[by]
    bounds = np.searchsorted(occ_rank[first], np.arange(n + 1))
    per_key = (hit, retries, cost)
    return [
        _fresh_columns(calls, first[bounds[r] : bounds[r + 1]], per_key, bool(priced_any[r]))
        for r in range(n)
    ]


def _fresh_columns(
    calls: CallLog,
    sel: np.ndarray,
    per_key: tuple[np.ndarray, np.ndarray, np.ndarray],
    priced_any: bool,
) -> dict[str, Any]:
    hit, retries, key_cost = per_key
    cost, cached = key_cost[sel], hit[sel]
    out: dict[str, Any] = {
        "calls": len(sel),
        "cache_hits": int(hit[sel].sum()),
        "retries": int(retries[sel].sum()),
    }
    for col in TOKEN_COLUMNS:
        out[col] = int(calls.counts[col][sel].sum())
    nan = float("nan")
    if not np.isnan(cost).all():
        out["cost_usd"] = float(pd.Series(cost).sum())  # as a column of the calls sums it
        paid = cost[~np.isnan(cost) & ~cached]
        # one by one, in order: the float sum a running total gives
        out["cost_usd_this_run"] = float(np.cumsum(paid)[-1]) if len(paid) else 0.0
    else:
        out["cost_usd"] = out["cost_usd_this_run"] = 0.0 if priced_any else nan
    roles = calls.role[sel]
    _, at = np.unique(roles, return_index=True)
    for code in roles[np.sort(at)]:  # helper roles in the order their first call is met
        name = calls.roles[code]
        if name == "model":
            continue
        mine = sel[roles == code]
        c = calls.cost_usd[mine]
        c = c[~np.isnan(c)]
        out[f"{name}_calls"] = len(mine)
        out[f"{name}_input_tokens"] = int(calls.counts["input_tokens"][mine].sum())
        out[f"{name}_output_tokens"] = int(calls.counts["output_tokens"][mine].sum())
        out[f"{name}_cost_usd"] = float(np.cumsum(c)[-1]) if len(c) else nan
    return out


def mean(s: pd.Series) -> float:
    """Mean of a boolean or numeric column (NaN when empty)."""
    return float(s.astype(float).mean()) if len(s) else float("nan")


def _groups(records: pd.DataFrame) -> Any:
    """records.groupby(GROUP, sort=True), without copying the rows when they are all one
    group (one model, task and method: the usual run)."""
    keys = records[GROUP]
    if len(records) and keys.notna().all().all() and (keys.nunique() == 1).all():
        return [(tuple(keys.iloc[0]), records.copy(deep=False))]
    return records.groupby(GROUP, sort=True)


def _first(rows: pd.DataFrame, column: str) -> Any:
    """A value that is the same on every row of a run (its overrides), if the rows have it."""
    if column not in rows or rows[column].isna().all():
        return ""
    return rows[column].dropna().iloc[0]


def _distinct_failed(rows: pd.DataFrame, seen: set[Any]) -> int:
    """Failed calls, counted as distinct calls (a failed call shared by rows counts once, in
    the first summary row), as run.json counts them."""
    keys = rows.loc[rows["parse_status"] == CALL_FAILED, "request_key"].astype(str)
    fresh = {("failed", k) for k in keys} - seen
    seen |= fresh
    return len(fresh)


def _letter_mass(rows: pd.DataFrame) -> dict[str, Any]:
    if "letter_mass" not in rows or rows["letter_mass"].isna().all():
        return {}
    mass = rows["letter_mass"].astype(float)
    return {
        "letter_mass_median": float(mass.median()),
        "low_mass": int((rows["parse_status"] == "low_mass").sum()),
    }


def summarize(
    records: pd.DataFrame,
    *,
    n_boot: int = 1000,
    ci: float = 0.95,
    seed: int = 0,
    curve_interventions: Sequence[str] = (),
    stats: Any = None,
    calls: CallLog | None = None,
) -> pd.DataFrame:
    """One row per (model, task, method, intervention): the controls beside every metric.

    The shared columns are computed here; each intervention adds its own columns through its
    `summarize` hook (cotfaith.interventions.base), found by name in the registry, so nothing
    here names an intervention. Rows of an intervention no longer registered get the shared
    columns only.

    `records`: full records (`read_records`, their call logs are read here) or compact ones
    (`read_compact`: pass its `calls`, aligned with the rows' positions). Counts of calls
    (calls, cache_hits, retries, failed_calls, tokens, cost) are of DISTINCT calls, each in
    the first summary row that holds it; rows without any call log fall back to summing the
    rows' own counts.
    """
    from cotfaith.interventions.base import StatSettings, intervention_class

    stats = stats or StatSettings(n_bootstrap=n_boot, ci=ci, seed=seed)
    if calls is None:
        calls = CallLog.from_frame(records)
    records = label_runs(records).reset_index(drop=True)  # positions: what calls.row holds
    if "method" not in records:
        records = records.assign(method="cot")
    records = records.assign(method=records["method"].fillna("cot"))
    rows = []
    seen: set[Any] = set()
    rank = np.full(len(records), -1, dtype=np.int64)
    """Which summary row each record counts in (its calls are met there)."""
    for (model, task, method), g_all in _groups(records):
        g = answered(g_all)
        ref = g[g["intervention"] == REFERENCE]
        shared = {
            "model": model,
            "task": task,
            "method": method,
            "overrides": _first(g_all, "overrides"),
            "n_questions": g["question_id"].nunique(),
            "n_cots": len(ref),
            **ratio_columns("accuracy_cot", ref, "correct", stats),
            **ratio_columns("chance_agreement", _agreement_per_question(g), "rate", stats),
            "small_n": bool(g["question_id"].nunique() < SMALL_N),
        }
        if "cot_cut_off" in ref:
            shared["cut_off_cots"] = int(ref["cot_cut_off"].fillna(False).astype(bool).sum())
        for iv, rows_iv in g.groupby("intervention", sort=True):
            cls = intervention_class(str(iv))
            if cls is not None:
                shared.update(cls.controls(rows_iv, g, stats))  # e.g. accuracy without CoT
        # the reference first, so shared calls are attributed to it
        order = [REFERENCE, *sorted(set(g_all["intervention"]) - {REFERENCE})]
        for iv in order:
            all_iv = g_all[g_all["intervention"] == iv]
            if all_iv.empty:
                continue
            rows_iv = answered(all_iv)
            row = {**shared, "intervention": iv, "n_records": len(rows_iv)}
            cls = intervention_class(iv)
            if cls is not None:
                row.update(cls.summarize(rows_iv, g, stats))
            rank[all_iv.index.to_numpy()] = len(rows)
            row.update(
                parse_failures=int((~rows_iv["parse_status"].isin(["ok", NOT_ASKED])).sum()),
                failed_calls=_distinct_failed(all_iv, seen),
                # without call logs (hand-made rows), the rows' own counts
                calls=int(all_iv["calls"].sum()) if len(calls) == 0 else 0,
                cache_hits=int(all_iv["cache_hits"].sum()) if len(calls) == 0 else 0,
                retries=int(all_iv["retries"].sum()) if len(calls) == 0 else 0,
                **_letter_mass(rows_iv),
            )
            rows.append(row)
    for row, counted in zip(rows, _call_columns(calls, rank, len(rows)), strict=True):
        if len(calls) == 0:
            counted = {k: v for k, v in counted.items() if k not in row}
        row.update(counted)  # in place: the columns keep the order they had
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    lead = [c for c in SUMMARY_COLUMNS if c in out.columns or c in _ALWAYS]
    rest = [c for c in out.columns if c not in lead]
    return out.reindex(columns=lead + rest).reset_index(drop=True)
