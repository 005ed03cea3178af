"""Early answering (Lanham et al. 2023): keep the first k of the n steps, k = 0..n, and ask.

x = k/n, y = same answer as after the complete CoT. k = n re-asks the reference request itself,
so it is a cache hit and agrees by construction, as in the paper's curves. AOC_n = 1 - the
trapezoid area of the curve of CoTs of length n; the AOC weights lengths by their share of CoTs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cotfaith.context import RunContext, Trace
from cotfaith.curvestats import curve_columns
from cotfaith.interventions import curves
from cotfaith.interventions.base import Intervention, Section, StatSettings
from cotfaith.registry import register
from cotfaith.robustness import segmenter_table


@dataclass
class TruncationConfig:
    """Early answering: answer after the first k of n steps, for every k = 0..n."""

    name: str = "truncation"


@register("intervention", "truncation", config=TruncationConfig)
class Truncation(Intervention):
    """Early answering: the CoT cut after k of its n steps, k = 0..n."""

    name = "truncation"
    headline = ("aoc", "changed_at_k0", "aoc_given_changed")
    scope = "trace"

    async def run_trace(self, ctx: RunContext, trace: Trace) -> None:
        n = trace.n_steps
        if n == 0:
            return  # nothing to truncate; the cot row records the empty CoT

        async def point(k: int) -> None:
            answered = await ctx.answer(trace.question, trace.prefix(k))
            ctx.emit(
                trace.question,
                answered,
                intervention=self.name,
                condition=f"k={k}/{n}",
                sample=trace.sample,
                reference=trace.reference,
                n_steps=n,
                k=k,
                fraction=k / n,
            )

        await asyncio.gather(*(point(k) for k in range(n + 1)))

    @classmethod
    def summarize(cls, rows: pd.DataFrame, group: pd.DataFrame, stats: StatSettings) -> dict:
        # changed_at_k0 is read on the k = 0 truncation prompt (question, empty CoT turn),
        # not on the no-CoT prompt (that is no_cot's changed_vs_no_cot)
        return {
            **curve_columns(curves.points(rows), stats),
            "no_reference": curves.no_reference(rows),
        }

    @classmethod
    def section(
        cls, records: pd.DataFrame, summary: pd.DataFrame, fig_dir: Path, stats: StatSettings
    ) -> Section | None:
        from cotfaith.metrics import answered
        from cotfaith.report.figures import plot_aoc_summary

        rows = answered(records[records["intervention"] == cls.name])
        if rows.empty:
            return None
        points = curves.points(rows)
        table = curves.rate_curves(points, stats=stats)
        by_length = curves.aoc_by_length(points, stats)
        mine = summary[summary["intervention"] == cls.name]
        figures: dict[str, Any] = {
            "Early answering: % same answer vs % of the CoT kept": curves.curve_figure(
                table,
                fig_dir / "early_answering.png",
                stats,
                xlabel="% of reasoning sample provided",
                ylabel="% same answer as complete CoT",
            ),
            "Early answering AOC by task": plot_aoc_summary(mine, fig_dir / "aoc.png"),
        }
        return Section(
            title="Early answering (truncation)",
            explanation=(
                "The CoT is cut after k of its n steps (k = 0..n) and the model answers again. "
                "The curve is the share of answers equal to the answer after the complete CoT; "
                "AOC = 1 - its area, weighted over CoT lengths. A low AOC can mean the answer "
                "ignores the CoT, or that the answer without reasoning already equals the CoT's "
                "conclusion: read it beside 'changed at k=0' and the accuracies. The tables give "
                "the AOC "
                "under each step segmenter (the segmenter changes the numbers) and per CoT length "
                "(lengths with few CoTs flagged)."
            ),
            figures=figures,
            tables={
                "curves": table,
                "aoc_by_length": by_length,
                # the run folder holds traces.jsonl and run.json (the cache to look in)
                "aoc_by_segmenter": segmenter_table(fig_dir.parent, stats.unparseable),
            },
            shown_tables=("aoc_by_segmenter", "aoc_by_length"),
        )
