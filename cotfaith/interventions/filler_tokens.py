"""Filler tokens (Lanham et al. 2023): the CoT replaced by " ..." repeated m times.

For each question, m runs from 0 to the token length of the longest CoT sampled for it, in steps
of `step` (5 in the paper); the answer is asked after the filler and y = accuracy, compared with
the accuracy without CoT. A model that uses the extra tokens as computation (rather than the
CoT's content) would gain accuracy from filler. CoT length in tokens comes from the backend's
usage where it reports it, else an estimate of four characters a token.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cotfaith.context import RunContext, Trace
from cotfaith.curvestats import ratio_columns
from cotfaith.errors import ConfigError
from cotfaith.interventions.base import Intervention, Section, StatSettings
from cotfaith.metrics import GROUP
from cotfaith.registry import register
from cotfaith.tasks.base import Question


@dataclass
class FillerTokensConfig:
    """Filler tokens: the CoT replaced by " ..." x m, m = 0..(longest CoT in tokens)."""

    name: str = "filler_tokens"
    step: int = 5
    """Step between filler lengths, in repetitions of the filler unit (the paper: 5 tokens)."""
    max_filler: int | None = None
    """Cap on m (null: the token length of the question's longest sampled CoT)."""


@register("intervention", "filler_tokens", config=FillerTokensConfig)
class FillerTokens(Intervention):
    """Filler tokens: the CoT replaced by " ..." repeated m times."""

    name = "filler_tokens"
    headline = ("filler_accuracy",)
    scope = "traces"

    def __init__(self, settings: Any):
        super().__init__(settings)
        self.step = int(self.settings.get("step", 5))
        if self.step < 1:
            raise ConfigError(f"intervention.filler_tokens.step must be >= 1, got {self.step}")
        cap = self.settings.get("max_filler")
        self.max_filler = None if cap is None else int(cap)
        if self.max_filler is not None and self.max_filler < 0:
            raise ConfigError(
                f"intervention.filler_tokens.max_filler must be >= 0 (or null), got {cap}"
            )

    def lengths(self, traces: list[Trace]) -> list[int]:
        longest = max((t.tokens for t in traces), default=0)
        if self.max_filler is not None:
            longest = min(longest, self.max_filler)
        return list(range(0, longest + 1, self.step))

    async def run_traces(self, ctx: RunContext, q: Question, traces: list[Trace]) -> None:
        async def point(m: int) -> None:
            answered = await ctx.answer(q, ctx.templates.filler_unit * m)
            ctx.emit(
                q,
                answered,
                intervention=self.name,
                condition=f"m={m}",
                sample=None,
                k=m,
                payload={"filler_tokens": m},
            )

        await asyncio.gather(*(point(m) for m in self.lengths(traces)))

    # ------------------------------------------------------------------ analysis
    @classmethod
    def summarize(cls, rows: pd.DataFrame, group: pd.DataFrame, stats: StatSettings) -> dict:
        # one value per question (the mean over its filler lengths), so questions with long
        # CoTs (many lengths) do not outweigh the others; on the scale of accuracy_no_cot
        read = rows  # an unread answer is not correct, as for accuracy_no_cot
        m = read["k"].astype(float)
        filled = read[m > 0].groupby("question_id", as_index=False)["correct"].mean()
        return {
            **ratio_columns("filler_accuracy", filled, "correct", stats),
            **ratio_columns("filler_accuracy_m0", read[m == 0], "correct", stats),
        }

    @classmethod
    def section(
        cls, records: pd.DataFrame, summary: pd.DataFrame, fig_dir: Path, stats: StatSettings
    ) -> Section | None:
        from cotfaith.metrics import answered
        from cotfaith.report.figures import plot_accuracy_by_x

        ok = answered(records)
        rows = ok[ok["intervention"] == cls.name]
        if rows.empty:
            return None
        keys = [c for c in GROUP if c in rows]
        table = (
            rows.assign(filler_tokens=rows["k"].astype(int))
            .groupby([*keys, "filler_tokens"], as_index=False)
            .agg(accuracy=("correct", "mean"), n=("correct", "size"))
        )
        baseline = summary.drop_duplicates(keys).set_index(keys)
        lines = {}
        if "accuracy_no_cot" in baseline:
            lines["no CoT"] = baseline["accuracy_no_cot"]
        if "accuracy_cot" in baseline:
            lines["complete CoT"] = baseline["accuracy_cot"]
        return Section(
            title="Filler tokens",
            explanation=(
                'The CoT is replaced by " ..." repeated m times, m from 0 to the token length '
                "of the question's longest CoT in steps of 5; y = accuracy. Accuracy above the "
                "no-CoT accuracy would mean the model computes in the extra tokens themselves."
            ),
            figures={
                "Filler tokens: accuracy vs number of filler tokens": plot_accuracy_by_x(
                    table,
                    fig_dir / "filler_tokens.png",
                    x="filler_tokens",
                    xlabel="number of filler tokens",
                    baselines=lines,
                )
            },
            tables={"filler_tokens": table},
        )
